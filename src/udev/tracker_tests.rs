//! Tests of the tracker against fake sysfs trees.

use super::*;
use crate::udev::probe::TableEntry;
use std::fs;
use std::path::Path;

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

/// A fake sysfs with an attached loop disk `loop90` (partitions p1, p2) and a detached `loop91`.
fn fake() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    fs::create_dir_all(r.join("class/block")).unwrap();
    for (name, rel, uevent) in [
        ("loop90", "devices/virtual/block/loop90", "MAJOR=7\nMINOR=90\nDEVNAME=loop90\nDEVTYPE=disk\n"),
        (
            "loop90p1",
            "devices/virtual/block/loop90/loop90p1",
            "MAJOR=259\nMINOR=90\nDEVNAME=loop90p1\nDEVTYPE=partition\nPARTN=1\n",
        ),
        (
            "loop90p2",
            "devices/virtual/block/loop90/loop90p2",
            "MAJOR=259\nMINOR=91\nDEVNAME=loop90p2\nDEVTYPE=partition\nPARTN=2\n",
        ),
        ("loop91", "devices/virtual/block/loop91", "MAJOR=7\nMINOR=91\nDEVNAME=loop91\nDEVTYPE=disk\n"),
        ("sda", "devices/virtual/block/sda", "MAJOR=8\nMINOR=0\nDEVNAME=sda\nDEVTYPE=disk\n"),
    ] {
        write(r, &format!("{rel}/uevent"), uevent);
        write(r, &format!("{rel}/size"), "2048\n");
        std::os::unix::fs::symlink(r.join(rel), r.join("class/block").join(name)).unwrap();
    }
    write(r, "devices/virtual/block/loop90/loop/backing_file", "/x.img\n");
    t
}

fn tracker(root: &Path) -> Tracker {
    let filter = KernelNameFilter::new(&["loop9*".into()], &["loop*".into(), "sd*".into()]).unwrap();
    Tracker::new(Sysfs::new(root), filter, PropSource::Udev)
}

#[test]
fn enumeration_reports_present_filtered_devices() {
    let t = fake();
    let mut tr = tracker(t.path());
    let Fact::BlockDevices { disks, partitions, initial } = tr.enumerate(true) else { panic!() };
    assert!(initial);
    assert_eq!(disks.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), vec!["dev-loop90"]);
    let mut parts: Vec<_> = partitions.iter().map(|p| (p.id.clone(), p.disk_id.clone())).collect();
    parts.sort();
    assert_eq!(
        parts,
        vec![("dev-loop90-part1".into(), "dev-loop90".into()), ("dev-loop90-part2".into(), "dev-loop90".into())]
    );
    assert_eq!(tr.len(), 3);
}

#[test]
fn attach_and_detach_of_a_loop_slot() {
    let t = fake();
    let mut tr = tracker(t.path());
    tr.enumerate(true);
    let mut out = Vec::new();
    tr.handle(Action::Change, "/devices/virtual/block/loop91", None, &mut out);
    assert!(out.is_empty(), "a detached slot is no disk");
    write(t.path(), "devices/virtual/block/loop91/loop/backing_file", "/y.img\n");
    tr.handle(Action::Change, "/devices/virtual/block/loop91", None, &mut out);
    assert!(matches!(&out[..], [Fact::DiskUpsert(d)] if d.id == "dev-loop91"));
    out.clear();
    assert!(!tr.presence_changed("/devices/virtual/block/loop91"));
    fs::remove_file(t.path().join("devices/virtual/block/loop91/loop/backing_file")).unwrap();
    assert!(tr.presence_changed("/devices/virtual/block/loop91"));
    tr.handle(Action::Change, "/devices/virtual/block/loop91", None, &mut out);
    assert!(matches!(&out[..], [Fact::DiskRemoved { id }] if id == "dev-loop91"));
}

#[test]
fn kernel_mode_announces_a_new_disk_before_probing_it() {
    let t = fake();
    let filter = KernelNameFilter::new(&["loop9*".into()], &[]).unwrap();
    let mut tr = Tracker::new(Sysfs::new(t.path()), filter, PropSource::Kernel);
    tr.enumerate(true);
    write(t.path(), "devices/virtual/block/loop91/loop/backing_file", "/y.img\n");
    let mut out = Vec::new();
    tr.handle(Action::Change, "/devices/virtual/block/loop91", None, &mut out);
    assert!(matches!(&out[..], [Fact::DiskUpsert(d)] if d.id == "dev-loop91"));
    out.clear();
    tr.probe_pending(&mut out);
    assert!(matches!(&out[..], [Fact::DiskUpsert(d)] if d.id == "dev-loop91"), "the probed upsert follows");
    out.clear();
    tr.probe_pending(&mut out);
    assert!(out.is_empty(), "each new disk is probed once");
    // A known disk is probed in line: no second round.
    tr.handle(Action::Change, "/devices/virtual/block/loop91", None, &mut out);
    out.clear();
    tr.probe_pending(&mut out);
    assert!(out.is_empty());
}

#[test]
fn a_first_probe_finishing_after_a_re_read_is_dropped() {
    let t = fake();
    let filter = KernelNameFilter::new(&["loop9*".into()], &[]).unwrap();
    let mut tr = Tracker::new(Sysfs::new(t.path()), filter, PropSource::Kernel);
    tr.enumerate(true);
    write(t.path(), "devices/virtual/block/loop91/loop/backing_file", "/y.img\n");
    let mut out = Vec::new();
    tr.handle(Action::Change, "/devices/virtual/block/loop91", None, &mut out);
    // The first probe runs while the loop goes on; a change re-reads the disk meanwhile.
    let in_flight = tr.take_unprobed();
    assert_eq!(in_flight.len(), 1);
    tr.handle(Action::Change, "/devices/virtual/block/loop91", None, &mut out);
    out.clear();
    let stale = in_flight.into_iter().map(|d| (d, props_of(&[("ID_PART_TABLE_TYPE", "gpt")]))).collect();
    tr.finish_probe(stale, &mut out);
    assert!(out.is_empty(), "an older probe must not overwrite the re-read: {out:?}");
    // A probe still current applies.
    let (disk, _) = add_loop(t.path(), "loop93", 93);
    tr.handle(Action::Add, &disk, None, &mut out);
    out.clear();
    let current = tr.take_unprobed().into_iter().map(|d| (d, props_of(&[("ID_PART_TABLE_TYPE", "gpt")]))).collect();
    tr.finish_probe(current, &mut out);
    assert!(
        matches!(&out[..], [Fact::DiskUpsert(d)] if d.kernel_name == "loop93" && d.partition_table.as_deref() == Some("gpt")),
        "{out:?}"
    );
}

#[test]
fn kernel_mode_announces_a_partition_its_kept_table_names_then_probes_it() {
    let t = fake();
    let filter = KernelNameFilter::new(&["loop9*".into()], &[]).unwrap();
    let mut tr = Tracker::new(Sysfs::new(t.path()), filter, PropSource::Kernel);
    tr.enumerate(true);
    let (disk, part) = add_loop(t.path(), "loop93", 93);
    write(t.path(), &format!("{}/stat", disk.trim_start_matches('/')), "1 0 8 0 5 0 40 0 0 0 0 0 0 0 0 0 0\n");
    let mut out = Vec::new();
    tr.handle(Action::Add, &disk, None, &mut out);
    let uuid = "6a1d0b5e-1111-4a2b-9c3d-000000000001";
    let entry = TableEntry { number: 1, uuid: Some(uuid.into()), name: Some("alpha".into()) };
    let writes = tr.tables.writes(&disk);
    tr.tables.keep(&disk, writes, &(Some("gpt".into()), vec![entry]));
    out.clear();
    tr.handle(Action::Add, &part, None, &mut out);
    assert!(
        matches!(&out[..], [Fact::PartitionUpsert(p)] if p.id == uuid && p.fs_type.is_none()),
        "announced from the table, before its own probe: {out:?}"
    );
    let pending = tr.take_unprobed();
    assert!(pending.iter().any(|d| d.devpath == part), "its filesystem probe follows");
    out.clear();
    let probed = pending.into_iter().map(|d| (d, props_of(&[("ID_FS_TYPE", "ext4")]))).collect();
    tr.finish_probe(probed, &mut out);
    assert!(
        out.iter()
            .any(|f| matches!(f, Fact::PartitionUpsert(p) if p.id == uuid && p.fs_type.as_deref() == Some("ext4"))),
        "{out:?}"
    );
}

#[test]
fn removals_use_the_remembered_id() {
    let t = fake();
    let mut tr = tracker(t.path());
    tr.enumerate(true);
    let mut out = Vec::new();
    tr.handle(Action::Remove, "/devices/virtual/block/loop90/loop90p1", None, &mut out);
    assert!(matches!(&out[..], [Fact::PartitionRemoved { id }] if id == "dev-loop90-part1"));
    out.clear();
    tr.handle(Action::Remove, "/devices/virtual/block/loop90", None, &mut out);
    assert!(matches!(&out[..], [Fact::DiskRemoved { id }] if id == "dev-loop90"));
    assert!(tr.is_empty(), "the disk's partitions are forgotten with it");
    out.clear();
    tr.handle(Action::Remove, "/devices/virtual/block/loop90", None, &mut out);
    assert!(out.is_empty());
}

#[test]
fn a_late_change_does_not_revive_a_removed_device() {
    let t = fake();
    let mut tr = tracker(t.path());
    tr.enumerate(true);
    let p1 = "/devices/virtual/block/loop90/loop90p1";
    let mut out = Vec::new();
    // The sysfs entry is still there when the remove event is read.
    tr.handle(Action::Remove, p1, None, &mut out);
    out.clear();
    tr.handle(Action::Change, p1, None, &mut out);
    assert!(out.is_empty(), "revived: {out:?}");
    tr.handle(Action::Add, p1, None, &mut out);
    assert!(matches!(&out[..], [Fact::PartitionUpsert(p)] if p.kernel_name == "loop90p1"));
}

#[test]
fn an_id_change_removes_the_old_id() {
    let t = fake();
    let mut tr = tracker(t.path());
    tr.enumerate(true);
    let mut out = Vec::new();
    let props: Props = [("ID_FS_UUID", "fresh-uuid"), ("ID_FS_TYPE", "ext4")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tr.handle(Action::Change, "/devices/virtual/block/loop90/loop90p2", Some(&props), &mut out);
    assert!(matches!(&out[0], Fact::PartitionRemoved { id } if id == "dev-loop90-part2"));
    assert!(
        matches!(&out[1], Fact::PartitionUpsert(p) if p.id == "fresh-uuid" && p.fs_type.as_deref() == Some("ext4"))
    );
}

#[test]
fn an_array_coming_and_going_refreshes_its_members_holders() {
    let t = fake();
    let r = t.path();
    let mut tr = tracker(r);
    tr.enumerate(true);
    let md = "devices/virtual/block/loop95";
    write(r, &format!("{md}/uevent"), "MAJOR=9\nMINOR=0\nDEVNAME=loop95\nDEVTYPE=disk\n");
    write(r, &format!("{md}/loop/backing_file"), "/z.img\n");
    fs::create_dir_all(r.join(format!("{md}/slaves/loop90p1"))).unwrap();
    fs::create_dir_all(r.join("devices/virtual/block/loop90/loop90p1/holders/loop95")).unwrap();
    std::os::unix::fs::symlink(r.join(md), r.join("class/block/loop95")).unwrap();
    let mut out = Vec::new();
    tr.handle(Action::Add, &format!("/{md}"), None, &mut out);
    assert!(matches!(&out[0], Fact::DiskUpsert(d) if d.members == vec!["loop90p1"]));
    assert!(matches!(&out[1], Fact::PartitionUpsert(p) if p.kernel_name == "loop90p1"), "{out:?}");
    out.clear();
    fs::remove_dir(r.join("devices/virtual/block/loop90/loop90p1/holders/loop95")).unwrap();
    tr.handle(Action::Remove, &format!("/{md}"), None, &mut out);
    assert!(matches!(&out[0], Fact::DiskRemoved { id } if id == "dev-loop95"));
    assert!(matches!(&out[1], Fact::PartitionUpsert(p) if p.kernel_name == "loop90p1"), "{out:?}");
}

fn props_of(kv: &[(&str, &str)]) -> Props {
    kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Adds an attached loop disk `name` with one partition to the fake sysfs.
fn add_loop(root: &Path, name: &str, minor: u32) -> (String, String) {
    let rel = format!("devices/virtual/block/{name}");
    write(root, &format!("{rel}/uevent"), &format!("MAJOR=7\nMINOR={minor}\nDEVNAME={name}\nDEVTYPE=disk\n"));
    write(root, &format!("{rel}/size"), "2048\n");
    write(root, &format!("{rel}/loop/backing_file"), "/clone.img\n");
    let part = format!("{name}p1");
    write(
        root,
        &format!("{rel}/{part}/uevent"),
        &format!("MAJOR=259\nMINOR={minor}\nDEVNAME={part}\nDEVTYPE=partition\nPARTN=1\n"),
    );
    write(root, &format!("{rel}/{part}/size"), "1024\n");
    std::os::unix::fs::symlink(root.join(&rel), root.join("class/block").join(name)).unwrap();
    std::os::unix::fs::symlink(root.join(format!("{rel}/{part}")), root.join("class/block").join(&part)).unwrap();
    (format!("/{rel}"), format!("/{rel}/{part}"))
}

#[test]
fn twin_partitions_are_kept_apart_and_removed_by_device_path() {
    let t = fake();
    let (_, first) = add_loop(t.path(), "loop92", 92);
    let (_, second) = add_loop(t.path(), "loop93", 93);
    let mut tr = tracker(t.path());
    tr.enumerate(true);
    // A cloned disk: both partitions carry the same partition and filesystem UUIDs.
    let clone = props_of(&[("ID_PART_ENTRY_UUID", "c10e-1"), ("ID_FS_UUID", "f5-1"), ("ID_FS_TYPE", "ext4")]);
    let mut out = Vec::new();
    tr.handle(Action::Change, &first, Some(&clone), &mut out);
    assert!(
        matches!(&out[..], [Fact::PartitionRemoved { .. }, Fact::PartitionUpsert(p)] if p.id == "c10e-1" && p.stable)
    );
    out.clear();
    tr.handle(Action::Change, &second, Some(&clone), &mut out);
    match &out[..] {
        [Fact::PartitionRemoved { id }, Fact::PartitionUpsert(twin), Fact::PartitionUpsert(first)] => {
            assert_eq!(id, "dev-loop93-part1");
            assert_eq!(
                (twin.id.as_str(), twin.stable, twin.kernel_name.as_str()),
                ("c10e-1-loop93p1", false, "loop93p1")
            );
            assert_eq!((first.id.as_str(), first.stable, first.kernel_name.as_str()), ("c10e-1", false, "loop92p1"));
        }
        other => panic!("{other:?}"),
    }
    out.clear();
    // Unplugging the twin removes the twin, and the first is stable again.
    tr.handle(Action::Remove, &second, None, &mut out);
    match &out[..] {
        [Fact::PartitionRemoved { id }, Fact::PartitionUpsert(first)] => {
            assert_eq!(id, "c10e-1-loop93p1");
            assert_eq!((first.id.as_str(), first.stable), ("c10e-1", true));
        }
        other => panic!("{other:?}"),
    }
    // Back, then the first goes: the twin keeps its id, unstable (a restart may rename it).
    out.clear();
    tr.handle(Action::Add, &second, Some(&clone), &mut out);
    out.clear();
    tr.handle(Action::Remove, &first, None, &mut out);
    assert!(matches!(&out[..], [Fact::PartitionRemoved { id }] if id == "c10e-1"), "{out:?}");
}

#[test]
fn twin_disks_with_one_serial_are_kept_apart() {
    let t = fake();
    let (a, _) = add_loop(t.path(), "loop92", 92);
    let (b, _) = add_loop(t.path(), "loop93", 93);
    let mut tr = tracker(t.path());
    tr.enumerate(true);
    let stick = props_of(&[("ID_BUS", "usb"), ("ID_SERIAL", "Generic_Flash_0001"), ("ID_SERIAL_SHORT", "0001")]);
    let mut out = Vec::new();
    tr.handle(Action::Change, &a, Some(&stick), &mut out);
    tr.handle(Action::Change, &b, Some(&stick), &mut out);
    let upserts: Vec<(String, bool)> = out
        .iter()
        .filter_map(|f| match f {
            Fact::DiskUpsert(d) => Some((d.id.clone(), d.stable)),
            _ => None,
        })
        .collect();
    assert_eq!(
        upserts,
        vec![
            ("usb-Generic_Flash_0001".into(), true),
            ("usb-Generic_Flash_0001-loop93".into(), false),
            ("usb-Generic_Flash_0001".into(), false),
        ]
    );
    // The twin's partition hangs under the twin's id.
    let twin_part = out.iter().find_map(|f| match f {
        Fact::PartitionUpsert(p) if p.kernel_name == "loop93p1" => Some(p.disk_id.clone()),
        _ => None,
    });
    assert_eq!(twin_part.as_deref(), Some("usb-Generic_Flash_0001-loop93"));
    out.clear();
    tr.handle(Action::Remove, &b, None, &mut out);
    assert!(matches!(&out[0], Fact::DiskRemoved { id } if id == "usb-Generic_Flash_0001-loop93"), "{out:?}");
    assert!(out.iter().any(|f| matches!(f, Fact::DiskUpsert(d) if d.id == "usb-Generic_Flash_0001" && d.stable)));
    assert!(!out.iter().any(|f| matches!(f, Fact::DiskRemoved { id } if id == "usb-Generic_Flash_0001")));
}

#[test]
fn filtered_devices_are_ignored() {
    let t = fake();
    let mut tr = tracker(t.path());
    let mut out = Vec::new();
    tr.handle(Action::Add, "/devices/virtual/block/sda", None, &mut out);
    assert!(out.is_empty());
}

#[test]
fn a_disk_held_asleep_stays_unprobed_through_changes_until_a_size_change_write_or_removal() {
    let t = fake();
    let filter = KernelNameFilter::new(&["loop9*".into()], &[]).unwrap();
    let mut tr = Tracker::new(Sysfs::new(t.path()), filter, PropSource::Kernel);
    tr.enumerate(true);
    let (disk, part) = ("/devices/virtual/block/loop90", "/devices/virtual/block/loop90/loop90p1");
    assert_eq!(tr.disk_of(part).as_deref(), Some(disk));
    assert!(!tr.hold_asleep(part), "only disks are held");
    assert!(tr.hold_asleep(disk));
    assert!(!tr.hold_asleep(disk), "held once");
    let mut out = Vec::new();
    // A plain change (udevadm trigger) of the disk or a partition: still asleep.
    tr.handle(Action::Change, disk, None, &mut out);
    tr.handle(Action::Change, part, None, &mut out);
    assert!(tr.asleep().contains(disk));
    // A new size is a new medium: the disk spun up for it.
    write(t.path(), "devices/virtual/block/loop90/size", "4096\n");
    tr.handle(Action::Change, disk, None, &mut out);
    assert!(!tr.asleep().contains(disk));
    // A write to a partition wakes its disk.
    assert!(tr.hold_asleep(disk));
    assert!(tr.wake_disk_of(part));
    assert!(!tr.asleep().contains(disk));
    // A removed disk is forgotten asleep too: the next one under that name is a new disk.
    assert!(tr.hold_asleep(disk));
    tr.handle(Action::Remove, disk, None, &mut out);
    assert!(tr.asleep().is_empty());
}
