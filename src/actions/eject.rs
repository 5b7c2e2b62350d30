//! Ejecting a disk so that it can be pulled: refuse what must not go (the root or another
//! system filesystem, swap, an md/dm member, a busy mount, a disk that cannot be powered off),
//! unmount every mount of its partitions (deepest first), take every one of its block devices
//! exclusively (nothing else — another mount namespace, btrfs, a new automount — can hold or
//! grab it), flush them, and power it off the way `udisksctl power-off` does: a loop device
//! is detached (LOOP_CLR_FD); a SCSI disk is deleted (`device/delete`) and a USB one's port
//! is disabled (`remove` of the USB device) — only when every other disk behind that USB
//! device is unused ([`super::siblings`]). Each device opened is checked to be the one asked
//! about (its `major:minor`), and the power-off is written while the disk is still held, so
//! nothing (an automounter) can take it in between. Success means the kernel no longer lists
//! it.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::holders::{describe, holders};
use super::machine::{entry_on, file_dev, flush, open_exclusive, wait_gone, Failure, Machine, Progress, SYSTEM_MOUNTS};
use super::siblings;
use super::unmount::unmount_entry;
use crate::model::Disk;

/// How long the kernel gets to drop the device after the power-off.
const GONE_WAIT: Duration = Duration::from_secs(10);

/// How a disk is powered off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PowerOff {
    /// A loop device: detach its backing file.
    Loop,
    /// A SCSI (incl. USB mass storage, UAS, SATA through libata) disk: `delete` of the SCSI
    /// device, then, for USB, `remove` of the USB device (the port is disabled).
    Scsi { delete: PathBuf, usb_remove: Option<PathBuf> },
    /// A USB device without a SCSI layer in between.
    Usb { usb_remove: PathBuf },
}

/// Finds how `name` can be powered off, from its place in the sysfs device tree. Only
/// removable or USB disks (and loop devices) qualify: pulling an internal disk is not what
/// this button is for.
pub fn plan(sys: &Path, name: &str, removable: bool) -> Result<PowerOff, Failure> {
    if name.starts_with("loop") {
        return Ok(PowerOff::Loop);
    }
    let real = std::fs::canonicalize(sys.join("class/block").join(name))
        .map_err(|e| Failure::os(&format!("{name} in sysfs"), &e))?;
    let delete = real.parent().filter(|p| p.ends_with("block")).and_then(Path::parent).map(|d| d.join("delete"));
    let delete = delete.filter(|d| d.exists());
    // The nearest ancestor that is a USB device (not an interface): it has idVendor and busnum.
    let usb = real
        .ancestors()
        .find(|a| a.join("idVendor").exists() && a.join("busnum").exists() && a.join("devpath").exists());
    let usb_remove = usb.map(|u| u.join("remove")).filter(|r| r.exists());
    if !removable && usb.is_none() {
        return Err(Failure::new("not_removable", format!("{name} is neither removable nor on USB")));
    }
    match (delete, usb_remove) {
        (Some(delete), usb_remove) => Ok(PowerOff::Scsi { delete, usb_remove }),
        (None, Some(usb_remove)) => Ok(PowerOff::Usb { usb_remove }),
        (None, None) => Err(Failure::new("unsupported", format!("{name} has no way to be powered off in sysfs"))),
    }
}

pub fn eject(machine: &Machine, disk: &Disk, mount_root: &Path, progress: &mut Progress) -> Result<String, Failure> {
    let name = disk.kernel_name.as_str();
    let Some(disk_dev) = machine.block_dev(name) else {
        return Err(Failure::new("not_found", format!("{name} is gone")));
    };
    if disk_dev != disk.dev {
        return Err(Failure::new("changed", format!("{name} is now another device ({disk_dev}, was {})", disk.dev)));
    }
    let parts = machine.partitions(name);
    let mut names: Vec<String> = parts.clone();
    names.push(name.to_owned());
    let devs: Vec<String> = names
        .iter()
        .map(|n| machine.block_dev(n).ok_or_else(|| Failure::new("changed", format!("{n} vanished while ejecting"))))
        .collect::<Result<_, _>>()?;

    // 1. What must not go.
    let table = machine.mount_table()?;
    let mut mounts: Vec<(usize, &crate::mounts::mountinfo::Entry)> =
        table.iter().enumerate().filter(|(_, e)| entry_on(e, &devs)).collect();
    if mounts.iter().any(|(_, e)| e.mount_point == "/") {
        return Err(Failure::new("holds_root", format!("{name} holds the root filesystem")));
    }
    if let Some((_, e)) = mounts.iter().find(|(_, e)| SYSTEM_MOUNTS.contains(&e.mount_point.as_str())) {
        return Err(Failure::new("holds_system_mount", format!("{name} holds the system mount {}", e.mount_point)));
    }
    let power = plan(&machine.sys, name, disk.removable)?;
    let mount_devs: Vec<String> = mounts.iter().map(|(_, e)| e.dev.clone()).collect();
    if let Some(swap) = swap_on(machine, &devs, &mount_devs) {
        return Err(Failure::new("swap", format!("{name} holds the active swap {swap}")));
    }
    for n in &names {
        let held = machine.sysfs_holders(n);
        if !held.is_empty() {
            return Err(Failure::new(
                "array_member",
                format!("{n} is a member of {} (md or device-mapper)", held.join(", ")),
            ));
        }
    }
    // Other disks behind the same USB device lose power with the port: all unused (and held
    // from now until the port is off), or the eject is refused here.
    let usb = match &power {
        PowerOff::Scsi { usb_remove: Some(remove), .. } | PowerOff::Usb { usb_remove: remove } => remove.parent(),
        _ => None,
    };
    let cut: Vec<String> = usb.map(|u| siblings::usb_siblings(&machine.sys, u, name)).unwrap_or_default();
    let sibling_holds = siblings::claim(machine, name, &cut, &table)?;
    // 2. Busy mounts refuse the whole eject before anything is unmounted.
    let ours: Vec<u32> = mounts.iter().map(|(_, e)| e.mount_id).collect();
    let mut busy = Vec::new();
    for (_, e) in &mounts {
        for h in holders(machine, e, &table, true) {
            // A mount on top that is itself one of this disk's is unmounted first.
            let own_submount = h.pid == 0
                && table.iter().any(|s| s.parent_id == e.mount_id && ours.contains(&s.mount_id))
                && h.uses.iter().all(|u| u.starts_with("mount "));
            if !own_submount && !busy.contains(&h) {
                busy.push(h);
            }
        }
    }
    if !busy.is_empty() {
        return Err(Failure {
            reason: "busy",
            message: format!("{name} is in use, nothing was unmounted: {}", describe(&busy)),
            holders: busy,
        });
    }
    // 3. Unmount, deepest first, stacked mounts from the top.
    mounts.sort_by_key(|(i, e)| (std::cmp::Reverse(e.mount_point.matches('/').count()), std::cmp::Reverse(*i)));
    for (_, e) in &mounts {
        unmount_entry(machine, e, &table, mount_root, progress)?;
    }
    // 4. Take every partition, then the disk, exclusively and flush it. The disk stays
    // claimed until the power-off: while it is, no partition can be mounted or claimed
    // (the kernel refuses to claim a partition of a disk someone else holds).
    let mut disk_file: Option<File> = None;
    for (n, dev) in names.iter().zip(&devs) {
        let node = machine.node(n);
        let file = open_exclusive(&node).map_err(|e| {
            if e.raw_os_error() == Some(libc::EBUSY) {
                Failure::new(
                    "in_use",
                    format!("{n} is still in use (mounted in another namespace, or held by a filesystem or a device mapper)"),
                )
            } else {
                Failure::os(&format!("open {}", node.display()), &e)
            }
        })?;
        // The node must still be the device asked about: a name can be reused in between.
        if file_dev(&file).as_ref() != Some(dev) {
            return Err(Failure::new("changed", format!("{} is no longer the device {dev}", node.display())));
        }
        flush(&file).map_err(|e| Failure::os(&format!("flush {n}"), &e))?;
        if n == name {
            disk_file = Some(file);
        }
    }
    let Some(disk_file) = disk_file else { return Err(Failure::new("error", "the disk was not opened")) };
    if file_dev(&disk_file).as_deref() != Some(disk.dev.as_str()) {
        return Err(Failure::new("changed", format!("{name} is no longer the device {}", disk.dev)));
    }
    let also = if cut.is_empty() { String::new() } else { format!(", also cutting unused {}", cut.join(", ")) };
    // 5. Power off.
    match power {
        PowerOff::Loop => {
            // LOOP_CLR_FD = 0x4C01. With our descriptor still open the kernel clears the
            // device when we close it (autoclear), so no one can open it in between.
            // SAFETY: LOOP_CLR_FD takes no argument; the descriptor is open for the call.
            let rc = unsafe { libc::ioctl(disk_file.as_raw_fd(), 0x4C01 as _, 0) };
            if rc < 0 {
                return Err(Failure::os(&format!("detach {name}"), &std::io::Error::last_os_error()));
            }
            drop(disk_file);
            if !wait_gone(&machine.block(name).join("loop/backing_file"), GONE_WAIT) {
                return Err(Failure::new("error", format!("{name} was told to detach but still has its backing file")));
            }
            Ok(format!("{name} detached; unmounted {}", list(&progress.unmounted)))
        }
        PowerOff::Scsi { delete, usb_remove } => {
            // Deleted while still held: the kernel removes a device that is open (the holder
            // then gets errors), and no one can claim it between our close and the delete.
            write_one(&delete)?;
            if let Some(remove) = &usb_remove {
                // The port goes off after the SCSI device is gone; a hub that has already
                // dropped the device takes the write as a no-op.
                if remove.exists() {
                    write_one(remove)?;
                }
            }
            drop(disk_file);
            drop(sibling_holds);
            gone(machine, name)?;
            let how =
                if usb_remove.is_some() { format!("USB port powered off{also}") } else { "SCSI device deleted".into() };
            Ok(format!("{name} powered off ({how}); unmounted {}", list(&progress.unmounted)))
        }
        PowerOff::Usb { usb_remove } => {
            write_one(&usb_remove)?;
            drop(disk_file);
            drop(sibling_holds);
            gone(machine, name)?;
            Ok(format!("{name} powered off (USB port powered off{also}); unmounted {}", list(&progress.unmounted)))
        }
    }
}

fn list(points: &[String]) -> String {
    if points.is_empty() {
        "nothing".to_owned()
    } else {
        points.join(", ")
    }
}

fn write_one(path: &Path) -> Result<(), Failure> {
    std::fs::write(path, "1").map_err(|e| Failure::os(&format!("write 1 to {}", path.display()), &e))
}

fn gone(machine: &Machine, name: &str) -> Result<(), Failure> {
    if wait_gone(&machine.block(name), GONE_WAIT) {
        Ok(())
    } else {
        Err(Failure::new("error", format!("{name} was powered off but the kernel still lists it")))
    }
}

/// The active swap area on one of `devs`, or a swap file on one of the disk's filesystems.
fn swap_on(machine: &Machine, devs: &[String], mount_devs: &[String]) -> Option<String> {
    let text = std::fs::read_to_string(machine.proc.join("swaps")).ok()?;
    text.lines().skip(1).find_map(|line| {
        let file = crate::text::unescape(line.split_whitespace().next()?).into_owned();
        let meta = std::fs::metadata(&file).ok()?;
        let on_it = if std::os::unix::fs::FileTypeExt::is_block_device(&meta.file_type()) {
            devs.contains(&format!("{}:{}", nix::sys::stat::major(meta.rdev()), nix::sys::stat::minor(meta.rdev())))
        } else {
            mount_devs.contains(&format!("{}:{}", nix::sys::stat::major(meta.dev()), nix::sys::stat::minor(meta.dev())))
        };
        on_it.then_some(file)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A copy of the sysfs layout of a USB stick behind a usb-storage bridge (paths as on a
    /// Debian 12 laptop: `readlink -f /sys/class/block/sdb`), and of a SATA disk.
    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let usb = root.join("devices/pci0000:00/0000:00:14.0/usb2/2-1");
        let scsi = usb.join("2-1:1.0/host6/target6:0:0/6:0:0:0");
        std::fs::create_dir_all(scsi.join("block/sdb")).unwrap();
        for f in ["idVendor", "busnum", "devpath", "remove"] {
            std::fs::write(usb.join(f), "").unwrap();
        }
        // The root hub is a USB device too; the nearest one must be chosen.
        for f in ["idVendor", "busnum", "devpath", "remove"] {
            std::fs::write(root.join("devices/pci0000:00/0000:00:14.0/usb2").join(f), "").unwrap();
        }
        std::fs::write(scsi.join("delete"), "").unwrap();
        let sata = root.join("devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0");
        std::fs::create_dir_all(sata.join("block/sda")).unwrap();
        std::fs::write(sata.join("delete"), "").unwrap();
        std::fs::create_dir_all(root.join("class/block")).unwrap();
        std::os::unix::fs::symlink(scsi.join("block/sdb"), root.join("class/block/sdb")).unwrap();
        std::os::unix::fs::symlink(sata.join("block/sda"), root.join("class/block/sda")).unwrap();
        dir
    }

    #[test]
    fn usb_disks_are_deleted_then_their_port_disabled() {
        let dir = tree();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let plan = plan(&root, "sdb", false).unwrap();
        let usb = root.join("devices/pci0000:00/0000:00:14.0/usb2/2-1");
        assert_eq!(
            plan,
            PowerOff::Scsi {
                delete: usb.join("2-1:1.0/host6/target6:0:0/6:0:0:0/delete"),
                usb_remove: Some(usb.join("remove"))
            }
        );
    }

    /// sdb of a dual-bay dock ([`super::siblings`]' tree) as the agent knows it.
    fn dock_disk() -> Disk {
        serde_json::from_value(serde_json::json!({
            "id": "usb-Dock_Bay1-0:0", "stable": true, "kernel_name": "sdb", "devpath": "/devices/x/sdb",
            "devnode": "/dev/sdb", "dev": "8:16", "bus": "usb", "size_bytes": 1, "removable": false,
            "rotational": true, "read_only": false, "partitions": [], "members": [], "holders": [],
            "mounts": [], "arrays": []
        }))
        .unwrap()
    }

    #[test]
    fn eject_behind_a_shared_port_is_refused_naming_the_sibling_in_use() {
        let (dir, machine) = super::super::siblings::tests::dock(false);
        std::fs::write(
            machine.proc.join("thread-self/mountinfo"),
            "90 29 8:33 / /media/photos rw,nosuid,nodev shared:50 - ext4 /dev/sdc1 rw\n",
        )
        .unwrap();
        let mut progress = Progress::default();
        let refused = eject(&machine, &dock_disk(), &dir.path().join("media"), &mut progress).unwrap_err();
        assert_eq!(refused.reason, "shared_port", "{}", refused.message);
        assert!(refused.message.contains("sdc: mounted at /media/photos"), "{}", refused.message);
        assert!(progress.unmounted.is_empty());
        // The name now belongs to another device: refused before anything else.
        let mut moved = dock_disk();
        moved.dev = "8:80".into();
        assert_eq!(eject(&machine, &moved, dir.path(), &mut progress).unwrap_err().reason, "changed");
    }

    #[test]
    fn internal_disks_are_refused_and_hot_swap_ones_deleted() {
        let dir = tree();
        assert_eq!(plan(dir.path(), "sda", false).unwrap_err().reason, "not_removable");
        assert!(matches!(plan(dir.path(), "sda", true).unwrap(), PowerOff::Scsi { usb_remove: None, .. }));
        assert_eq!(plan(dir.path(), "loop3", false).unwrap(), PowerOff::Loop);
    }
}
