//! Who keeps a mount busy: processes whose working directory, root, executable, open files
//! or memory maps are on it (from `/proc/<pid>/{cwd,root,exe,fd/*,maps}`, matched by mount id,
//! so another bind mount of the same filesystem does not count), mounts on top of it, and
//! loop devices backed by a file on it.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::machine::Machine;
use crate::model::Holder;
use crate::mounts::mountinfo::Entry;

/// The mount id and device of the file a path (or `/proc` magic link) leads to.
pub(super) fn locate(path: &Path) -> Option<(u64, String)> {
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statx only writes into `buf`, a plain C struct that may be zeroed.
    let mut buf: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path that outlives the call; `buf` is valid for writes.
    let rc =
        unsafe { libc::statx(libc::AT_FDCWD, c.as_ptr(), 0, libc::STATX_MNT_ID | libc::STATX_BASIC_STATS, &mut buf) };
    if rc != 0 {
        return None;
    }
    let mnt_id = if buf.stx_mask & libc::STATX_MNT_ID != 0 { buf.stx_mnt_id } else { u64::MAX };
    Some((mnt_id, format!("{}:{}", buf.stx_dev_major, buf.stx_dev_minor)))
}

/// `major:minor` of a maps line's `dev` field (hex, `fd:01`).
fn maps_dev(field: &str) -> Option<String> {
    let (major, minor) = field.split_once(':')?;
    Some(format!("{}:{}", u32::from_str_radix(major, 16).ok()?, u32::from_str_radix(minor, 16).ok()?))
}

/// What keeps `mount` busy. `other_namespaces`: also count processes of other mount
/// namespaces that use the same filesystem through their own copy of the mount (it stays
/// alive there after an unmount here: what matters before a disk is powered off).
pub fn holders(machine: &Machine, mount: &Entry, table: &[Entry], other_namespaces: bool) -> Vec<Holder> {
    let mut out = Vec::new();
    for sub in table.iter().filter(|e| e.parent_id == mount.mount_id && e.mount_id != mount.mount_id) {
        out.push(Holder {
            pid: 0,
            command: "mount".into(),
            cmdline: String::new(),
            uses: vec![format!("mount {} on top", sub.mount_point)],
        });
    }
    out.extend(loop_backings(machine, &mount.mount_point));
    let own_ns = std::fs::read_link(machine.proc.join("thread-self/ns/mnt")).ok();
    let Ok(dir) = std::fs::read_dir(&machine.proc) else { return out };
    let target = u64::from(mount.mount_id);
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let base = entry.path();
        let foreign = other_namespaces && std::fs::read_link(base.join("ns/mnt")).ok() != own_ns;
        let hit = |path: &Path| locate(path).is_some_and(|(mnt, dev)| mnt == target || (foreign && dev == mount.dev));
        let mut uses = Vec::new();
        for link in ["cwd", "root", "exe"] {
            if hit(&base.join(link)) {
                uses.push(link.to_owned());
            }
        }
        if let Ok(fds) = std::fs::read_dir(base.join("fd")) {
            for fd in fds.flatten() {
                if hit(&fd.path()) {
                    let what = std::fs::read_link(fd.path()).map(|p| p.display().to_string()).unwrap_or_default();
                    uses.push(format!("fd {} {what}", fd.file_name().to_string_lossy()));
                }
            }
        }
        if let Ok(maps) = std::fs::read_to_string(base.join("maps")) {
            let mut seen = std::collections::BTreeSet::new();
            for line in maps.lines() {
                let mut fields = line.split_whitespace();
                let (Some(dev), Some(inode)) = (fields.nth(3), fields.next()) else { continue };
                let path = fields.collect::<Vec<_>>().join(" ");
                if inode != "0" && maps_dev(dev).as_deref() == Some(mount.dev.as_str()) && path.starts_with('/') {
                    // Maps carry no mount id: only count files below this mount point.
                    if (path.starts_with(&mount.mount_point) || foreign) && seen.insert(path.clone()) {
                        uses.push(format!("mmap {path}"));
                    }
                }
            }
        }
        if !uses.is_empty() {
            let command = std::fs::read_to_string(base.join("comm")).map(|s| s.trim().to_owned()).unwrap_or_default();
            let cmdline = std::fs::read(base.join("cmdline"))
                .map(|b| {
                    b.split(|c| *c == 0)
                        .filter(|a| !a.is_empty())
                        .map(|a| String::from_utf8_lossy(a))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            out.push(Holder { pid, command, cmdline, uses });
        }
    }
    out
}

/// Processes (other than this one) with one of the block devices `devs` (`major:minor`) open,
/// from `/proc/<pid>/fd/*`: a plain open, which an exclusive open does not notice.
pub fn openers(machine: &Machine, devs: &[String]) -> Vec<Holder> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let me = std::process::id();
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(&machine.proc) else { return out };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let mut uses = Vec::new();
        for fd in std::fs::read_dir(entry.path().join("fd")).into_iter().flatten().flatten() {
            let Ok(meta) = std::fs::metadata(fd.path()) else { continue };
            let dev = format!("{}:{}", nix::sys::stat::major(meta.rdev()), nix::sys::stat::minor(meta.rdev()));
            if meta.file_type().is_block_device() && devs.contains(&dev) {
                let what = std::fs::read_link(fd.path()).map(|p| p.display().to_string()).unwrap_or_default();
                uses.push(format!("fd {} {what}", fd.file_name().to_string_lossy()));
            }
        }
        if !uses.is_empty() {
            let command =
                std::fs::read_to_string(entry.path().join("comm")).map(|s| s.trim().to_owned()).unwrap_or_default();
            out.push(Holder { pid, command, cmdline: String::new(), uses });
        }
    }
    out
}

/// Loop devices whose backing file lies below `mount_point`.
fn loop_backings(machine: &Machine, mount_point: &str) -> Vec<Holder> {
    let prefix = if mount_point == "/" { "/".to_owned() } else { format!("{mount_point}/") };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(machine.sys.join("block")).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(file) = super::machine::read_trimmed(&entry.path().join("loop/backing_file")) {
            if file.starts_with(&prefix) {
                out.push(Holder {
                    pid: 0,
                    command: name.clone(),
                    cmdline: String::new(),
                    uses: vec![format!("loop device {name} backed by {file}")],
                });
            }
        }
    }
    out
}

/// One line naming the holders, for messages: `sleep (pid 42: cwd), mount /x/y on top`.
pub fn describe(holders: &[Holder]) -> String {
    holders
        .iter()
        .map(|h| {
            if h.pid == 0 {
                h.uses.join(", ")
            } else {
                format!("{} (pid {}: {})", h.command, h.pid, h.uses.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_devices_are_hex() {
        assert_eq!(maps_dev("fd:01").as_deref(), Some("253:1"));
        assert_eq!(maps_dev("08:11").as_deref(), Some("8:17"));
        assert_eq!(maps_dev("zz"), None);
    }

    #[test]
    fn this_process_holds_its_working_directory() {
        // The mount holding the test's working directory, found in our own mount table.
        let machine = Machine::default();
        let table = machine.mount_table().unwrap();
        let cwd = std::env::current_dir().unwrap();
        let (mnt_id, _) = locate(&cwd).unwrap();
        let entry = table.iter().find(|e| u64::from(e.mount_id) == mnt_id).unwrap();
        let found = holders(&machine, entry, &table, false);
        let me = found.iter().find(|h| h.pid == std::process::id()).expect("this process is listed");
        assert!(me.uses.iter().any(|u| u == "cwd"), "{me:?}");
        assert!(describe(&found).contains(&format!("pid {}", std::process::id())));
    }
}
