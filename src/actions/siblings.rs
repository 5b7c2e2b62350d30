//! Disks that share a USB device with the one being ejected: the other slots of a card
//! reader, the other bay of a dual-bay dock (two LUNs, or two SCSI hosts, behind one USB
//! device). Disabling the USB device's port cuts them all, so an eject goes ahead only when
//! every sibling is unused — not mounted, not held (md, device-mapper), not open — and holds
//! each of them exclusively until the port is off, so nothing can start using one in between.
//! udisks2 checks a drive's siblings the same way before its power-off.

use std::fs::File;
use std::path::Path;

use super::holders::{describe, openers};
use super::machine::{entry_on, open_exclusive, read_trimmed, Failure, Machine};
use crate::mounts::mountinfo::Entry;

/// Whole disks (not partitions) whose device lies below the USB device `usb`, other than
/// `name`, by kernel name.
pub fn usb_siblings(sys: &Path, usb: &Path, name: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(sys.join("class/block"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let other = entry.file_name().to_string_lossy().into_owned();
            let real = std::fs::canonicalize(entry.path()).ok()?;
            let whole_disk = !real.join("partition").exists();
            (other != name && whole_disk && real.starts_with(usb)).then_some(other)
        })
        .collect();
    out.sort();
    out
}

/// What uses one sibling (its partitions included): mounts, holders, processes; empty when
/// unused.
fn uses(machine: &Machine, sibling: &str, table: &[Entry]) -> Vec<String> {
    let mut names = machine.partitions(sibling);
    names.push(sibling.to_owned());
    let devs: Vec<String> = names.iter().filter_map(|n| machine.block_dev(n)).collect();
    let mut out: Vec<String> =
        table.iter().filter(|e| entry_on(e, &devs)).map(|e| format!("mounted at {}", e.mount_point)).collect();
    for n in &names {
        let held = machine.sysfs_holders(n);
        if !held.is_empty() {
            out.push(format!("{n} held by {}", held.join(", ")));
        }
    }
    let open = openers(machine, &devs);
    if !open.is_empty() {
        out.push(format!("open by {}", describe(&open)));
    }
    out
}

/// Checks that every sibling of `name` is unused and claims each of them (partitions first)
/// exclusively: the claims must be kept until the port is off. Refuses with `shared_port`,
/// naming every sibling and what uses it, when one is in use.
pub fn claim(machine: &Machine, name: &str, siblings: &[String], table: &[Entry]) -> Result<Vec<File>, Failure> {
    let refuse = |detail: String| {
        Failure::new(
            "shared_port",
            format!(
                "{name} shares its USB port with {}: powering the port off would cut {}; eject refused, \
                 nothing was unmounted ({detail})",
                siblings.join(", "),
                if siblings.len() == 1 { "it" } else { "them" }
            ),
        )
    };
    let in_use: Vec<String> = siblings
        .iter()
        .filter_map(|s| {
            let u = uses(machine, s, table);
            (!u.is_empty()).then(|| format!("{s}: {}", u.join(", ")))
        })
        .collect();
    if !in_use.is_empty() {
        return Err(refuse(in_use.join("; ")));
    }
    let mut holds = Vec::new();
    for sibling in siblings {
        let mut names = machine.partitions(sibling);
        names.push(sibling.clone());
        for n in names {
            // An empty slot of a card reader (no medium: size 0) cannot be opened, and has
            // nothing to lose.
            if read_trimmed(&machine.block(&n).join("size")).as_deref() == Some("0") {
                continue;
            }
            let file = open_exclusive(&machine.node(&n)).map_err(|e| refuse(format!("{n}: {e}")))?;
            holds.push(file);
        }
    }
    Ok(holds)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A dual-bay USB dock as the kernel lays it out: one USB device `2-1`, its mass-storage
    /// interface `2-1:1.0`, one SCSI host with two LUNs (`6:0:0:0` sdb, `6:0:0:1` sdc with a
    /// partition sdc1), and with `two_hosts` a second interface `2-1:1.1` / host7 holding sdd
    /// (the UAS/multi-interface form). Plus an unrelated USB stick sde on `2-2`.
    pub(crate) fn dock(two_hosts: bool) -> (tempfile::TempDir, Machine) {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let sys = root.join("sys");
        let bus = sys.join("devices/pci0000:00/0000:00:14.0/usb2");
        let usb = bus.join("2-1");
        let mut disks = vec![
            ("sdb", "8:16", usb.join("2-1:1.0/host6/target6:0:0/6:0:0:0"), vec![]),
            ("sdc", "8:32", usb.join("2-1:1.0/host6/target6:0:0/6:0:0:1"), vec![("sdc1", "8:33")]),
            ("sde", "8:64", bus.join("2-2/2-2:1.0/host8/target8:0:0/8:0:0:0"), vec![]),
        ];
        if two_hosts {
            disks.push(("sdd", "8:48", usb.join("2-1:1.1/host7/target7:0:0/7:0:0:0"), vec![]));
        }
        for dev in [&bus, &usb, &bus.join("2-2")] {
            std::fs::create_dir_all(dev).unwrap();
            for f in ["idVendor", "busnum", "devpath", "remove"] {
                std::fs::write(dev.join(f), "").unwrap();
            }
        }
        std::fs::create_dir_all(sys.join("class/block")).unwrap();
        std::fs::create_dir_all(root.join("dev")).unwrap();
        std::fs::create_dir_all(root.join("proc/thread-self")).unwrap();
        std::fs::write(root.join("proc/thread-self/mountinfo"), "").unwrap();
        for (name, dev, scsi, parts) in disks {
            let block = scsi.join("block").join(name);
            std::fs::create_dir_all(block.join("holders")).unwrap();
            std::fs::write(block.join("dev"), format!("{dev}\n")).unwrap();
            std::fs::write(scsi.join("delete"), "").unwrap();
            std::os::unix::fs::symlink(&block, sys.join("class/block").join(name)).unwrap();
            std::fs::write(root.join("dev").join(name), "").unwrap();
            for (part, pdev) in parts {
                let p = block.join(part);
                std::fs::create_dir_all(p.join("holders")).unwrap();
                std::fs::write(p.join("partition"), "1\n").unwrap();
                std::fs::write(p.join("dev"), format!("{pdev}\n")).unwrap();
                std::os::unix::fs::symlink(&p, sys.join("class/block").join(part)).unwrap();
                std::fs::write(root.join("dev").join(part), "").unwrap();
            }
        }
        let machine = Machine { proc: root.join("proc"), sys, dev: root.join("dev") };
        (dir, machine)
    }

    fn usb_of(machine: &Machine) -> std::path::PathBuf {
        machine.sys.join("devices/pci0000:00/0000:00:14.0/usb2/2-1")
    }

    #[test]
    fn the_disks_behind_one_usb_device_are_siblings() {
        let (_dir, machine) = dock(false);
        assert_eq!(usb_siblings(&machine.sys, &usb_of(&machine), "sdb"), vec!["sdc"]);
        let (_dir, machine) = dock(true);
        assert_eq!(usb_siblings(&machine.sys, &usb_of(&machine), "sdb"), vec!["sdc", "sdd"], "two hosts, one port");
        let stick = machine.sys.join("devices/pci0000:00/0000:00:14.0/usb2/2-2");
        assert!(usb_siblings(&machine.sys, &stick, "sde").is_empty(), "a stick alone on its port");
    }

    #[test]
    fn unused_siblings_are_claimed_used_ones_refuse_naming_them() {
        let (_dir, machine) = dock(true);
        let siblings = usb_siblings(&machine.sys, &usb_of(&machine), "sdb");
        let holds = claim(&machine, "sdb", &siblings, &[]).expect("all unused");
        assert_eq!(holds.len(), 3, "sdc1, sdc, sdd");
        drop(holds);
        let table = crate::mounts::mountinfo::parse(
            "90 29 8:33 / /media/photos rw,nosuid,nodev shared:50 - ext4 /dev/sdc1 rw\n",
        )
        .0;
        let refused = claim(&machine, "sdb", &siblings, &table).expect_err("sdc1 is mounted");
        assert_eq!(refused.reason, "shared_port");
        assert!(refused.message.contains("sdc, sdd"), "{}", refused.message);
        assert!(refused.message.contains("sdc: mounted at /media/photos"), "{}", refused.message);
        // An empty card-reader slot (size 0, its node cannot be opened) is no obstacle.
        std::fs::write(machine.block("sdd").join("size"), "0\n").unwrap();
        std::fs::remove_file(machine.dev.join("sdd")).unwrap();
        assert_eq!(claim(&machine, "sdb", &siblings, &[]).expect("an empty slot").len(), 2, "sdc1, sdc");
        std::os::unix::fs::symlink("../../md0", machine.block("sdd").join("holders/md0")).unwrap();
        let refused = claim(&machine, "sdb", &siblings, &[]).expect_err("sdd is an md member");
        assert!(refused.message.contains("sdd held by md0"), "{}", refused.message);
    }
}
