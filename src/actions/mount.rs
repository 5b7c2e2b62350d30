//! Mounting a partition below `actions.mount_root`, as udisks does for removable media:
//! `nosuid,nodev`, read-only unless read-write is allowed and asked for, in a directory named
//! after the filesystem label (else the partition id) that is removed again on unmount.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use super::machine::{entry_on, Failure, Machine, Progress};
use crate::model::Partition;

/// Filesystems `mount` accepts, and the kernel type to mount them as.
const FILESYSTEMS: &[(&str, &str)] = &[
    ("ext2", "ext2"),
    ("ext3", "ext3"),
    ("ext4", "ext4"),
    ("xfs", "xfs"),
    ("btrfs", "btrfs"),
    ("f2fs", "f2fs"),
    ("vfat", "vfat"),
    ("exfat", "exfat"),
    ("ntfs", "ntfs3"),
    ("ntfs3", "ntfs3"),
    ("hfsplus", "hfsplus"),
    ("iso9660", "iso9660"),
    ("udf", "udf"),
];

/// The directory name for a partition: its label with anything but letters, digits, `.`,
/// `_` and `-` made `_` (never `.` or `..`), else its id.
pub fn dir_name(partition: &Partition) -> String {
    let label = partition.fs_label.as_deref().map(str::trim).unwrap_or("");
    let clean: String =
        label.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    if clean.is_empty() || clean.chars().all(|c| c == '.') {
        crate::model::sanitize_id(&partition.id)
    } else {
        clean
    }
}

pub fn mount(
    machine: &Machine,
    partition: &Partition,
    mount_root: &Path,
    read_write: bool,
    progress: &mut Progress,
) -> Result<String, Failure> {
    let name = partition.kernel_name.as_str();
    machine.same_device(name, &partition.dev)?;
    let fs = partition.fs_type.as_deref().unwrap_or("");
    let Some((_, kernel_fs)) = FILESYSTEMS.iter().find(|(f, _)| *f == fs) else {
        let what = if fs.is_empty() { "no filesystem".to_owned() } else { format!("filesystem {fs:?}") };
        return Err(Failure::new("unsupported_filesystem", format!("{name} has {what}, which mount does not take")));
    };
    let table = machine.mount_table()?;
    let devs = [partition.dev.clone()];
    if let Some(e) = table.iter().find(|e| entry_on(e, &devs)) {
        return Err(Failure::new("already_mounted", format!("{name} is already mounted at {}", e.mount_point)));
    }
    let held = machine.sysfs_holders(name);
    if !held.is_empty() {
        return Err(Failure::new("in_use", format!("{name} is held by {}", held.join(", "))));
    }
    std::fs::create_dir_all(mount_root).map_err(|e| Failure::os(&format!("create {}", mount_root.display()), &e))?;
    let target = free_dir(mount_root, &dir_name(partition), &table)?;
    let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if !read_write {
        flags |= MsFlags::MS_RDONLY;
    }
    let node = machine.node(name);
    // Right before the call: the node is still the partition asked about.
    if let Err(failure) = machine.same_device(name, &partition.dev) {
        let _ = std::fs::remove_dir(&target);
        return Err(failure);
    }
    if let Err(e) = nix::mount::mount(Some(&node), &target, Some(*kernel_fs), flags, None::<&str>) {
        let _ = std::fs::remove_dir(&target);
        let e = std::io::Error::from(e);
        return Err(match e.raw_os_error() {
            Some(libc::EBUSY) => Failure::new("in_use", format!("{name} is in use: {e}")),
            _ => Failure::os(&format!("mount {} on {}", node.display(), target.display()), &e),
        });
    }
    let point = target.display().to_string();
    progress.mount_point = Some(point.clone());
    Ok(format!("{name} mounted {} at {point}", if read_write { "read-write" } else { "read-only" }))
}

/// Creates `root/name` (or `name-2`, `name-3`, … when taken by a mount or a non-empty directory).
fn free_dir(root: &Path, name: &str, table: &[crate::mounts::mountinfo::Entry]) -> Result<PathBuf, Failure> {
    for n in 1..100 {
        let candidate = if n == 1 { root.join(name) } else { root.join(format!("{name}-{n}")) };
        let taken = table.iter().any(|e| Path::new(&e.mount_point) == candidate);
        if taken {
            continue;
        }
        match std::fs::create_dir(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let empty = std::fs::read_dir(&candidate).map(|mut d| d.next().is_none()).unwrap_or(false);
                if empty && candidate.is_dir() {
                    return Ok(candidate);
                }
            }
            Err(e) => return Err(Failure::os(&format!("create {}", candidate.display()), &e)),
        }
    }
    Err(Failure::new("error", format!("no free directory for {name} below {}", root.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(label: Option<&str>) -> Partition {
        Partition {
            id: "c0ffee-1234".into(),
            stable: true,
            kernel_name: "sdb1".into(),
            devpath: String::new(),
            devnode: "/dev/sdb1".into(),
            dev: "8:17".into(),
            disk_id: "d".into(),
            number: 1,
            size_bytes: 1,
            read_only: false,
            fs_type: Some("ext4".into()),
            fs_label: label.map(Into::into),
            fs_uuid: None,
            part_label: None,
            part_uuid: None,
            mounts: vec![],
            arrays: vec![],
        }
    }

    #[test]
    fn directory_names_are_safe() {
        assert_eq!(dir_name(&part(Some("My Photos"))), "My_Photos");
        assert_eq!(dir_name(&part(Some("../etc"))), ".._etc");
        assert_eq!(dir_name(&part(Some(".."))), "c0ffee-1234");
        assert_eq!(dir_name(&part(None)), "c0ffee-1234");
    }

    #[test]
    fn taken_directories_get_a_suffix() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("data")).unwrap();
        std::fs::write(root.path().join("data/file"), "x").unwrap();
        let dir = free_dir(root.path(), "data", &[]).unwrap();
        assert_eq!(dir, root.path().join("data-2"));
        // An empty directory left behind is reused.
        std::fs::create_dir(root.path().join("empty")).unwrap();
        assert_eq!(free_dir(root.path(), "empty", &[]).unwrap(), root.path().join("empty"));
    }
}
