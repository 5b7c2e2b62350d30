//! Multi-device btrfs filesystems from `/sys/fs/btrfs/<fsid>/` (Documentation/ABI/testing/
//! sysfs-fs-btrfs): the present devices (`devices/`), each device id's `missing`,
//! `replace_target` and `error_stats` (`devinfo/<id>/`), the data profiles (`allocation/data/`)
//! and the running exclusive operation.
//!
//! A device id is named by the `BTRFS_IOC_DEV_INFO` ioctl on the mount point (the kernel's
//! in-memory device list: no I/O to the member disks, no disk woken). sysfs shows a filesystem
//! only while it is mounted.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use super::read::AttrReader;
use crate::model::array::{tolerated_losses, Array, ArrayKind, ArrayMember, ArrayState, ErrorCounts, MemberRole};

#[derive(Debug, thiserror::Error)]
pub enum BtrfsError {
    #[error("btrfs attribute {path} vanished while the filesystem was read: {source}")]
    Vanished { path: PathBuf, source: io::Error },
}

/// Data profiles as `allocation/data/` names them.
const PROFILES: &[&str] = &["raid1c4", "raid1c3", "raid1", "raid10", "raid6", "raid5", "dup", "raid0", "single"];

/// One `devinfo/<devid>` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct DevInfo {
    pub devid: u64,
    pub missing: bool,
    pub replace_target: bool,
    pub errors: ErrorCounts,
}

/// What sysfs shows of one mounted btrfs filesystem.
#[derive(Debug, Clone, PartialEq)]
pub struct BtrfsFs {
    pub fsid: String,
    pub label: String,
    /// Kernel names of the present devices (`devices/`).
    pub devices: Vec<String>,
    pub devinfo: Vec<DevInfo>,
    /// Data profiles with chunks allocated, most redundant first.
    pub data_profiles: Vec<String>,
    pub exclusive_operation: Option<String>,
}

/// The fsids under the btrfs sysfs root (`features` is not one).
pub fn list(root: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(root) else { return Vec::new() };
    let mut fsids: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 36 && n.chars().filter(|c| *c == '-').count() == 4)
        .collect();
    fsids.sort();
    fsids
}

/// Parses `error_stats`: `write_errs 0\nread_errs 0\n…`.
pub fn parse_error_stats(text: &str) -> ErrorCounts {
    let mut counts = ErrorCounts::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(name), Some(value)) = (words.next(), words.next().and_then(|v| v.parse().ok())) else { continue };
        match name {
            "write_errs" => counts.write = value,
            "read_errs" => counts.read = value,
            "flush_errs" => counts.flush = value,
            "corruption_errs" => counts.corruption = value,
            "generation_errs" => counts.generation = value,
            _ => {}
        }
    }
    counts
}

/// Reads one filesystem; `Ok(None)` when it is gone (unmounted since the listing).
pub fn read_fs(root: &Path, fsid: &str, reader: &mut dyn AttrReader) -> Result<Option<BtrfsFs>, BtrfsError> {
    let dir = root.join(fsid);
    if !dir.is_dir() {
        return Ok(None);
    }
    let attr = |reader: &mut dyn AttrReader, rel: &str| -> Result<String, BtrfsError> {
        let path = dir.join(rel);
        reader.read(&path).map(|s| s.trim().to_owned()).map_err(|source| BtrfsError::Vanished { path, source })
    };
    let names = |rel: &str| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir.join(rel))
            .map(|it| it.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    let label = attr(reader, "label")?;
    let devices = names("devices");
    let mut devinfo = Vec::new();
    for id in names("devinfo") {
        let Ok(devid) = id.parse::<u64>() else { continue };
        let missing = attr(reader, &format!("devinfo/{id}/missing"))? == "1";
        let replace_target = match reader.read(&dir.join(format!("devinfo/{id}/replace_target"))) {
            Ok(v) => v.trim() == "1",
            Err(_) => false,
        };
        let errors = parse_error_stats(&attr(reader, &format!("devinfo/{id}/error_stats"))?);
        devinfo.push(DevInfo { devid, missing, replace_target, errors });
    }
    devinfo.sort_by_key(|d| d.devid);
    let present = names("allocation/data");
    let data_profiles: Vec<String> =
        PROFILES.iter().filter(|p| present.iter().any(|n| n == *p)).map(|p| (*p).to_owned()).collect();
    let exclusive_operation = reader
        .read(&dir.join("exclusive_operation"))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty() && s != "none");
    Ok(Some(BtrfsFs { fsid: fsid.to_owned(), label, devices, devinfo, data_profiles, exclusive_operation }))
}

impl BtrfsFs {
    /// More than one device id: a multi-device filesystem (an array).
    pub fn is_multi_device(&self) -> bool {
        self.devinfo.len() > 1
    }
}

/// The Array of a filesystem, with each device id named by `names` (devid → kernel name).
pub fn array_from(fs: &BtrfsFs, names: &HashMap<u64, String>) -> Array {
    let name = if fs.label.is_empty() { fs.fsid.clone() } else { fs.label.clone() };
    let mut array = Array::new(ArrayKind::Btrfs, &name, Some(fs.fsid.clone()));
    array.level = (!fs.data_profiles.is_empty()).then(|| fs.data_profiles.join("+"));
    array.raid_disks = Some(fs.devinfo.len() as u32);
    let mut total = ErrorCounts::default();
    for info in &fs.devinfo {
        let kernel_name = names.get(&info.devid).cloned().filter(|_| !info.missing);
        let role = if info.missing { MemberRole::Missing } else { MemberRole::Active };
        let mut member = ArrayMember::new(kernel_name, role, Some(info.devid));
        member.rebuilding = info.replace_target;
        member.errors = Some(info.errors);
        if info.missing {
            member.flags.push("missing".to_owned());
        }
        if info.replace_target {
            member.flags.push("replace_target".to_owned());
        }
        total.add(&info.errors);
        array.members.push(member);
    }
    array.errors = Some(total);
    array.degraded_count = fs.devinfo.iter().filter(|d| d.missing).count() as u32;
    let replacing = fs.devinfo.iter().any(|d| d.replace_target)
        || fs.exclusive_operation.as_deref().is_some_and(|op| op.contains("replace"));
    array.sync_action = if replacing {
        Some("replace".to_owned())
    } else {
        fs.exclusive_operation.as_ref().map(|op| op.replace(' ', "_"))
    };
    // The most redundant profile in use decides what can be lost; chunks written while mounted
    // degraded land in `single` next to it.
    let tolerated =
        fs.data_profiles.iter().map(|p| tolerated_losses(p, array.raid_disks.unwrap_or(0))).max().unwrap_or(0);
    array.state = if array.degraded_count > tolerated {
        ArrayState::Failed
    } else if array.degraded_count > 0 && replacing {
        ArrayState::Recovering
    } else if array.degraded_count > 0 {
        ArrayState::Degraded
    } else if replacing {
        ArrayState::Recovering
    } else {
        ArrayState::Clean
    };
    array.raw_state = fs.exclusive_operation.clone();
    array
}

/// `struct btrfs_ioctl_dev_info_args` (include/uapi/linux/btrfs.h).
#[repr(C)]
pub struct DevInfoArgs {
    devid: u64,
    uuid: [u8; 16],
    bytes_used: u64,
    total_bytes: u64,
    fsid: [u8; 16],
    unused: [u64; 377],
    path: [u8; 1024],
}

nix::ioctl_readwrite!(btrfs_dev_info, 0x94, 30, DevInfoArgs);

/// Kernel names of a mounted filesystem's device ids, asked of the kernel with
/// `BTRFS_IOC_DEV_INFO` on its mount point. A missing device has no name.
pub fn device_names(mount_point: &Path, devids: &[u64]) -> io::Result<HashMap<u64, String>> {
    use std::os::fd::AsRawFd;
    let dir = std::fs::File::open(mount_point)?;
    let mut names = HashMap::new();
    for devid in devids {
        let mut args = Box::new(DevInfoArgs {
            devid: *devid,
            uuid: [0; 16],
            bytes_used: 0,
            total_bytes: 0,
            fsid: [0; 16],
            unused: [0; 377],
            path: [0; 1024],
        });
        // SAFETY: `args` is a valid, writable `btrfs_ioctl_dev_info_args` of the size the request
        // number encodes, and `dir` is an open descriptor for the duration of the call.
        let result = unsafe { btrfs_dev_info(dir.as_raw_fd(), &mut *args) };
        if result.is_err() {
            continue;
        }
        let end = args.path.iter().position(|b| *b == 0).unwrap_or(args.path.len());
        let path = String::from_utf8_lossy(&args.path[..end]).into_owned();
        if let Some(name) = path.strip_prefix("/dev/") {
            names.insert(*devid, name.rsplit('/').next().unwrap_or(name).to_owned());
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::super::read::PlainReader;
    use super::*;

    const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/arrays/btrfs-sysfs");

    #[test]
    fn error_stats_parse() {
        let counts =
            parse_error_stats("write_errs 0\nread_errs 2\nflush_errs 0\ncorruption_errs 7\ngeneration_errs 0\n");
        assert_eq!(counts, ErrorCounts { read: 2, corruption: 7, ..Default::default() });
    }

    #[test]
    fn the_size_of_the_ioctl_argument_is_the_kernels() {
        assert_eq!(std::mem::size_of::<DevInfoArgs>(), 4096);
    }

    #[test]
    fn a_degraded_mount_from_this_machines_kernel() {
        let fsids = list(Path::new(ROOT));
        assert!(!fsids.is_empty(), "fixture tree present");
        let degraded = fsids
            .iter()
            .filter_map(|f| read_fs(Path::new(ROOT), f, &mut PlainReader).expect("reads"))
            .find(|fs| fs.devinfo.iter().any(|d| d.missing))
            .expect("a degraded sample");
        assert!(degraded.is_multi_device());
        let names = HashMap::from([(1, "loop0".to_owned())]);
        let array = array_from(&degraded, &names);
        assert_eq!(array.state, ArrayState::Degraded);
        assert_eq!(array.degraded_count, 1);
        assert_eq!(array.level.as_deref(), Some("raid1"));
        assert_eq!(array.lost_members(), vec!["slot 2".to_owned()]);
    }
}
