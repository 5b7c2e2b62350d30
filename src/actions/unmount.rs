//! Unmounting: one mount, never lazily (a lazily detached filesystem lives on until its last
//! user lets go, so "unmounted" would not mean "safe to pull"); busy means failed, with the
//! processes holding it. The mount acted on is the one asked about: same device number, and
//! the same mount (by mount id) still on top of the mount point at the moment of the call.

use std::path::Path;

use nix::mount::{umount2, MntFlags};

use super::holders::{describe, holders, locate};
use super::machine::{Failure, Machine, Progress, SYSTEM_MOUNTS};
use crate::model::Mount;
use crate::mounts::mountinfo::Entry;

/// Unmounts the mount the agent knows as `mount` (found again, by its mount point, in the
/// current table: the topmost mount there).
pub fn unmount(
    machine: &Machine,
    mount: &Mount,
    mount_root: &Path,
    progress: &mut Progress,
) -> Result<String, Failure> {
    let table = machine.mount_table()?;
    let Some(entry) = table.iter().rev().find(|e| e.mount_point == mount.mount_point) else {
        return Err(Failure::new("not_mounted", format!("{} is not mounted", mount.mount_point)));
    };
    if entry.dev != mount.dev {
        return Err(Failure::new(
            "changed",
            format!("{} now holds another filesystem ({}, was {})", entry.mount_point, entry.dev, mount.dev),
        ));
    }
    if SYSTEM_MOUNTS.contains(&entry.mount_point.as_str()) {
        return Err(Failure::new(
            "holds_system_mount",
            format!("{} is a system mount point and is never unmounted", entry.mount_point),
        ));
    }
    unmount_entry(machine, entry, &table, mount_root, progress)?;
    Ok(format!("unmounted {}", entry.mount_point))
}

/// `umount2` without MNT_DETACH; EBUSY is reported with who holds the mount. A directory
/// below `mount_root` (made by the `mount` action) is removed afterwards.
pub fn unmount_entry(
    machine: &Machine,
    entry: &Entry,
    table: &[Entry],
    mount_root: &Path,
    progress: &mut Progress,
) -> Result<(), Failure> {
    // Right before the call: the mount on top of the point is still this one (another may have
    // been mounted over it, or it was replaced, since the table was read).
    match locate(Path::new(&entry.mount_point)) {
        Some((mnt_id, _)) if mnt_id == u64::from(entry.mount_id) => {}
        _ => {
            return Err(Failure::new(
                "changed",
                format!("{} is no longer the mount that was asked about", entry.mount_point),
            ))
        }
    }
    match umount2(Path::new(&entry.mount_point), MntFlags::UMOUNT_NOFOLLOW) {
        Ok(()) => {
            progress.unmounted.push(entry.mount_point.clone());
            let point = Path::new(&entry.mount_point);
            if point.starts_with(mount_root) && point != mount_root {
                // Only an empty directory goes; anything else was not ours.
                let _ = std::fs::remove_dir(point);
            }
            Ok(())
        }
        Err(nix::errno::Errno::EBUSY) => {
            let found = holders(machine, entry, table, false);
            let who = if found.is_empty() { "the kernel (no process found)".to_owned() } else { describe(&found) };
            Err(Failure {
                reason: "busy",
                message: format!("{} is busy: held by {who}", entry.mount_point),
                holders: found,
            })
        }
        Err(e) => Err(Failure::os(&format!("umount {}", entry.mount_point), &std::io::Error::from(e))),
    }
}
