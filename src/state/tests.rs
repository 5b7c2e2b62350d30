//! Unit tests of the state model: facts in, events out.

use std::time::SystemTime;

use super::*;
use crate::model::{Protocol, Usage};

fn disk(id: &str, dev: &str) -> Disk {
    Disk {
        id: id.into(),
        stable: true,
        kernel_name: "sdb".into(),
        devpath: "/devices/virtual/block/sdb".into(),
        devnode: "/dev/sdb".into(),
        dev: dev.into(),
        vendor: None,
        model: Some("Disk".into()),
        serial: Some("S1".into()),
        firmware: None,
        wwn: None,
        bus: Some("ata".into()),
        size_bytes: 1 << 30,
        removable: false,
        rotational: true,
        read_only: false,
        partition_table: Some("gpt".into()),
        fs_type: None,
        fs_label: None,
        fs_uuid: None,
        members: vec![],
        holders: vec![],
        partitions: vec![],
        mounts: vec![],
        power_state: None,
        health: None,
        health_note: None,
        io: None,
        sleep: None,
        self_test: None,
        arrays: Vec::new(),
        attention: None,
    }
}

fn partition(id: &str, disk_id: &str, dev: &str) -> Partition {
    Partition {
        id: id.into(),
        stable: true,
        kernel_name: "sdb1".into(),
        devpath: "/devices/virtual/block/sdb/sdb1".into(),
        devnode: "/dev/sdb1".into(),
        dev: dev.into(),
        disk_id: disk_id.into(),
        number: 1,
        size_bytes: 1 << 29,
        read_only: false,
        fs_type: None,
        fs_label: None,
        fs_uuid: None,
        part_label: None,
        part_uuid: None,
        mounts: vec![],
        arrays: Vec::new(),
    }
}

pub(super) fn mount(point: &str, dev: &str, options: &str) -> Mount {
    Mount {
        id: crate::model::mount_id(point),
        mount_point: point.into(),
        source: "/dev/sdb1".into(),
        dev: dev.into(),
        fs_type: "ext4".into(),
        options: options.split(',').map(str::to_owned).collect(),
        super_options: vec!["rw".into()],
        read_only: options.split(',').any(|o| o == "ro"),
        root: "/".into(),
        network: false,
        partition_id: None,
        disk_id: None,
        shares: vec![],
        usage: None,
        stale: false,
        forecast: None,
        array_id: None,
        attention: None,
    }
}

fn share(name: &str, path: &str, enabled: bool, exists: bool) -> Share {
    Share {
        id: Share::make_id(Protocol::Smb, name),
        protocol: Protocol::Smb,
        name: name.into(),
        path: path.into(),
        enabled,
        read_only: false,
        guest_ok: false,
        browseable: true,
        users: vec![],
        comment: None,
        special: None,
        clients: vec![],
        config_file: "/etc/samba/smb.conf".into(),
        resolved_path: path.into(),
        path_exists: exists,
        mount_id: None,
        partition_id: None,
        disk_id: None,
        available: false,
    }
}

fn usage(percent: f64) -> Usage {
    Usage {
        total_bytes: 100,
        used_bytes: percent as u64,
        available_bytes: 100 - percent as u64,
        percent,
        inodes_total: 10,
        inodes_used: 1,
        inodes_free: 9,
    }
}

fn types(events: &[CloudEvent]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

pub(super) fn state() -> State {
    State::new(StateConfig::default(), 0)
}

const T: SystemTime = SystemTime::UNIX_EPOCH;

#[test]
fn coldplug_is_silent_and_hotplug_is_not() {
    let mut s = state();
    let ev = s.apply(
        Fact::BlockDevices {
            disks: vec![disk("d1", "8:16")],
            partitions: vec![partition("p1", "d1", "8:17")],
            initial: true,
        },
        T,
    );
    assert!(ev.is_empty());
    assert_eq!(s.disk("d1").unwrap().partitions, vec!["p1"]);
    let ev = s.apply(Fact::DiskUpsert(disk("d2", "8:32")), T);
    assert_eq!(types(&ev), ["disk.added"]);
    assert_eq!(ev[0].id, "1");
    assert_eq!(ev[0].subject, "disk/d2");
}

#[test]
fn emit_initial_announces_coldplug() {
    let mut s = State::new(StateConfig { emit_initial: true, ..StateConfig::default() }, 0);
    let ev = s.apply(
        Fact::BlockDevices {
            disks: vec![disk("d1", "8:16")],
            partitions: vec![partition("p1", "d1", "8:17")],
            initial: true,
        },
        T,
    );
    assert_eq!(types(&ev), ["disk.added", "partition.added"]);
    assert_eq!(ev[0].data["disk"]["partitions"][0], "p1", "events carry the linked state");
}

#[test]
fn sequence_continues_from_given_number() {
    let mut s = State::new(StateConfig::default(), 41);
    let ev = s.apply(Fact::AgentStarted { version: "1".into() }, T);
    assert_eq!(ev[0].id, "42");
    assert_eq!(s.last_seq(), 42);
}

#[test]
fn changed_lists_fields_and_ignores_identical_upserts() {
    let mut s = state();
    s.apply(Fact::DiskUpsert(disk("d1", "8:16")), T);
    assert!(s.apply(Fact::DiskUpsert(disk("d1", "8:16")), T).is_empty());
    let mut resized = disk("d1", "8:16");
    resized.size_bytes *= 2;
    let ev = s.apply(Fact::DiskUpsert(resized), T);
    assert_eq!(types(&ev), ["disk.changed"]);
    assert_eq!(ev[0].data["changed"], serde_json::json!(["size_bytes"]));
}

#[test]
fn removing_a_disk_removes_its_partitions_first() {
    let mut s = state();
    s.apply(Fact::DiskUpsert(disk("d1", "8:16")), T);
    s.apply(Fact::PartitionUpsert(partition("p1", "d1", "8:17")), T);
    let ev = s.apply(Fact::DiskRemoved { id: "d1".into() }, T);
    assert_eq!(types(&ev), ["partition.removed", "disk.removed"]);
    assert_eq!(ev[1].data["disk"]["id"], "d1");
}

#[test]
fn block_device_resync_emits_exact_differences() {
    let mut s = state();
    s.apply(Fact::DiskUpsert(disk("d1", "8:16")), T);
    s.apply(Fact::DiskUpsert(disk("d2", "8:32")), T);
    let ev = s.apply(
        Fact::BlockDevices { disks: vec![disk("d2", "8:32"), disk("d3", "8:48")], partitions: vec![], initial: false },
        T,
    );
    assert_eq!(types(&ev), ["disk.removed", "disk.added"]);
}

#[test]
fn mounts_link_to_partitions_and_remounts_show_read_only() {
    let mut s = state();
    s.apply(Fact::DiskUpsert(disk("d1", "8:16")), T);
    s.apply(Fact::PartitionUpsert(partition("p1", "d1", "8:17")), T);
    let ev = s.apply(Fact::Mounts { mounts: vec![mount("/mnt/data", "8:17", "rw")], initial: false }, T);
    assert_eq!(types(&ev), ["mount.mounted"]);
    assert_eq!(ev[0].data["mount"]["partition_id"], "p1");
    assert_eq!(ev[0].data["mount"]["disk_id"], "d1");
    assert_eq!(s.partitions().next().unwrap().mounts, vec!["mnt_data"]);

    let ev = s.apply(Fact::Mounts { mounts: vec![mount("/mnt/data", "8:17", "ro")], initial: false }, T);
    assert_eq!(types(&ev), ["mount.remounted"]);
    assert_eq!(ev[0].data["mount"]["read_only"], true);
    assert_eq!(ev[0].data["changed"], serde_json::json!(["options", "read_only"]));

    let ev = s.apply(Fact::Mounts { mounts: vec![], initial: false }, T);
    assert_eq!(types(&ev), ["mount.unmounted"]);
    assert!(s.partitions().next().unwrap().mounts.is_empty());
}

#[test]
fn usage_events_on_threshold_step_and_stale() {
    let mut s = state();
    s.apply(Fact::Mounts { mounts: vec![mount("/mnt/data", "8:17", "rw")], initial: false }, T);
    let id = "mnt_data".to_string();
    let first = s.apply(Fact::MountUsage { id: id.clone(), usage: Some(usage(50.0)), stale: false }, T);
    assert_eq!(types(&first), ["mount.usage"], "first sample of a hot-plugged mount is announced");
    assert!(s.apply(Fact::MountUsage { id: id.clone(), usage: Some(usage(50.5)), stale: false }, T).is_empty());
    assert_eq!(
        types(&s.apply(Fact::MountUsage { id: id.clone(), usage: Some(usage(51.0)), stale: false }, T)),
        ["mount.usage"]
    );
    let mut fine = State::new(StateConfig { usage_step: 50.0, ..StateConfig::default() }, 0);
    fine.apply(Fact::Mounts { mounts: vec![mount("/m", "8:1", "rw")], initial: true }, T);
    assert!(
        fine.apply(Fact::MountUsage { id: "m".into(), usage: Some(usage(79.5)), stale: false }, T).is_empty(),
        "coldplug baseline is silent"
    );
    assert_eq!(
        types(&fine.apply(Fact::MountUsage { id: "m".into(), usage: Some(usage(80.2)), stale: false }, T)),
        ["mount.usage"],
        "80 % crossed"
    );
    let ev = fine.apply(Fact::MountUsage { id: "m".into(), usage: None, stale: true }, T);
    assert_eq!(ev[0].data["changed"], serde_json::json!(["stale"]));
    assert_eq!(ev[0].data["mount"]["stale"], true);
    assert_eq!(ev[0].data["mount"]["usage"]["percent"], 80.2, "last good usage kept while stale");
    let ev = fine.apply(Fact::MountUsage { id: "m".into(), usage: Some(usage(80.3)), stale: false }, T);
    assert_eq!(ev[0].data["changed"], serde_json::json!(["stale"]));
}

#[test]
fn share_availability_follows_its_mount() {
    let mut s = state();
    let root = mount("/", "254:1", "rw");
    let data = mount("/mnt/data", "8:17", "rw");
    s.apply(Fact::DiskUpsert(disk("d1", "8:16")), T);
    s.apply(Fact::PartitionUpsert(partition("p1", "d1", "8:17")), T);
    s.apply(Fact::Mounts { mounts: vec![root.clone(), data.clone()], initial: false }, T);
    let ev = s.apply(Fact::Shares { shares: vec![share("media", "/mnt/data/media", true, true)], initial: false }, T);
    assert_eq!(types(&ev), ["share.created"]);
    assert_eq!(ev[0].data["share"]["available"], true);
    assert_eq!(ev[0].data["share"]["disk_id"], "d1");
    assert_eq!(s.mounts().find(|m| m.id == "mnt_data").unwrap().shares, vec!["smb-media"]);

    let ev = s.apply(Fact::Mounts { mounts: vec![root.clone()], initial: false }, T);
    assert_eq!(types(&ev), ["mount.unmounted", "share.unavailable"], "the share stays bound to its gone mount");
    let ev = s.apply(Fact::Mounts { mounts: vec![root.clone(), data.clone()], initial: false }, T);
    assert_eq!(types(&ev), ["mount.mounted", "share.available"]);

    let ev = s.apply(Fact::Shares { shares: vec![share("media", "/mnt/data/media", false, true)], initial: false }, T);
    assert_eq!(types(&ev), ["share.disabled", "share.unavailable"]);
    let ev = s.apply(Fact::Shares { shares: vec![share("media", "/mnt/data/movies", false, true)], initial: false }, T);
    assert_eq!(types(&ev), ["share.updated"]);
    assert_eq!(ev[0].data["changed"], serde_json::json!(["path", "resolved_path"]));
    let ev = s.apply(Fact::Shares { shares: vec![], initial: false }, T);
    assert_eq!(types(&ev), ["share.deleted"]);
}

#[test]
fn source_health_events_only_on_transitions() {
    let mut s = state();
    s.apply(Fact::SourceRunning { source: "shares".into(), required: false }, T);
    let fail = Fact::SourceFailed { source: "shares".into(), message: "bad".into() };
    assert_eq!(types(&s.apply(fail.clone(), T)), ["source.failed"]);
    assert!(s.apply(fail, T).is_empty());
    assert_eq!(types(&s.apply(Fact::SourceRecovered { source: "shares".into() }, T)), ["source.recovered"]);
    assert!(s.apply(Fact::SourceRecovered { source: "shares".into() }, T).is_empty());
}

/// Every kind the state emits is in the catalogue, and every catalogue entry can be emitted:
/// a new `EventKind` needs a fact here that raises it.
#[test]
fn every_catalogue_kind_is_emitted_and_nothing_else() {
    use std::collections::BTreeSet;
    let mut s = state();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut run = |s: &mut State, fact: Fact| {
        for e in s.apply(fact, T) {
            seen.insert(e.kind.clone());
        }
    };
    let root = mount("/", "254:1", "rw");
    let data = mount("/mnt/data", "8:17", "rw");
    run(&mut s, Fact::AgentStarted { version: "1".into() });
    run(&mut s, Fact::SourceRunning { source: "shares".into(), required: false });
    run(&mut s, Fact::SourceFailed { source: "shares".into(), message: "bad".into() });
    run(&mut s, Fact::SourceRecovered { source: "shares".into() });
    run(&mut s, Fact::DiskUpsert(disk("d1", "8:16")));
    let mut bigger = disk("d1", "8:16");
    bigger.size_bytes *= 2;
    run(&mut s, Fact::DiskUpsert(bigger));
    let hot = |at: &str, passed: bool, t: f64| crate::model::Health {
        passed: Some(passed),
        temperature_c: Some(t),
        power_on_hours: None,
        power_cycles: None,
        reallocated_sectors: None,
        pending_sectors: None,
        uncorrectable: None,
        nvme_percentage_used: None,
        nvme_critical_warning: None,
        nvme_media_errors: None,
        checked_at: at.into(),
        source: crate::model::HealthSource::Smartctl,
        ..Default::default()
    };
    use crate::model::PowerState;
    let health = |p: PowerState, h| Fact::DiskHealth { id: "d1".into(), power_state: p, health: Some(h), note: None };
    run(&mut s, health(PowerState::Standby, hot("t0", true, 30.0)));
    run(&mut s, health(PowerState::Active, hot("t1", false, 55.0)));
    let woke = crate::model::sleep::Sleep {
        spin_ups_24h: 1,
        last_wake: Some(crate::model::sleep::Wake { at: "t1".into(), ..Default::default() }),
        ..Default::default()
    };
    run(&mut s, Fact::DiskSleep { id: "d1".into(), sleep: Box::new(woke), woken: true });
    {
        use crate::model::selftest::{LastTest, SelfTest, SelfTestKind, SelfTestNews, SelfTestResult};
        let started = SelfTestNews::Started { kind: SelfTestKind::Short, by: "schedule".into(), woke: false };
        let st = Some(Box::new(SelfTest::default()));
        run(&mut s, Fact::DiskSelfTest { id: "d1".into(), self_test: st.clone(), news: Some(started) });
        let last = LastTest {
            kind: SelfTestKind::Short,
            result: SelfTestResult::Passed,
            at_hours: None,
            lba_first_error: None,
        };
        run(&mut s, Fact::DiskSelfTest { id: "d1".into(), self_test: st, news: Some(SelfTestNews::Finished(last)) });
    }
    run(&mut s, Fact::PartitionUpsert(partition("p1", "d1", "8:17")));
    let mut labelled = partition("p1", "d1", "8:17");
    labelled.fs_label = Some("data".into());
    run(&mut s, Fact::PartitionUpsert(labelled));
    run(&mut s, Fact::Mounts { mounts: vec![root.clone(), data.clone()], initial: false });
    run(&mut s, Fact::MountsChanged { upserts: vec![mount("/mnt/data", "8:17", "ro")], removed: vec![] });
    run(&mut s, Fact::MountUsage { id: "mnt_data".into(), usage: Some(usage(50.0)), stale: false });
    run(&mut s, Fact::MountUsage { id: "mnt_data".into(), usage: Some(usage(85.0)), stale: false });
    run(&mut s, Fact::MountUsage { id: "mnt_data".into(), usage: Some(usage(99.0)), stale: false });
    run(&mut s, Fact::Shares { shares: vec![share("media", "/mnt/data/media", true, true)], initial: false });
    run(&mut s, Fact::Shares { shares: vec![share("media", "/mnt/data/media", false, true)], initial: false });
    run(&mut s, Fact::Shares { shares: vec![share("media", "/mnt/data/media", true, true)], initial: false });
    run(&mut s, Fact::Shares { shares: vec![share("media", "/mnt/data/movies", true, true)], initial: false });
    run(&mut s, Fact::Mounts { mounts: vec![root.clone()], initial: false });
    run(&mut s, Fact::Mounts { mounts: vec![root.clone(), data.clone()], initial: false });
    run(&mut s, Fact::Shares { shares: vec![], initial: false });
    {
        use crate::model::array::{Array, ArrayKind, ArrayMember, ArrayState, MemberRole};
        let md = |state: ArrayState, degraded: u32, mismatches: u64| {
            let mut a = Array::new(ArrayKind::Md, "md0", Some("u1".into()));
            a.level = Some("raid1".into());
            a.raid_disks = Some(2);
            a.members = vec![ArrayMember::new(Some("sdb".into()), MemberRole::Active, Some(0))];
            a.state = state;
            a.degraded_count = degraded;
            a.mismatch_count = Some(mismatches);
            Fact::Arrays { arrays: vec![a], initial: false }
        };
        run(&mut s, md(ArrayState::Clean, 0, 0));
        run(&mut s, md(ArrayState::Degraded, 1, 0));
        run(&mut s, md(ArrayState::Recovering, 1, 0));
        run(&mut s, md(ArrayState::Clean, 0, 0));
        run(&mut s, md(ArrayState::Clean, 0, 8));
        run(&mut s, md(ArrayState::Failed, 2, 8));
        run(&mut s, Fact::Arrays { arrays: vec![], initial: false });
    }
    run(&mut s, Fact::PartitionRemoved { id: "p1".into() });
    run(&mut s, Fact::DiskRemoved { id: "d1".into() });
    run(&mut s, Fact::ActionFinished(Box::new(action_record(true))));
    run(&mut s, Fact::ActionFinished(Box::new(action_record(false))));
    run(&mut s, Fact::AgentStopping { reason: "test".into() });
    for kind in &seen {
        assert!(crate::events::EventKind::from_wire(kind).is_some(), "{kind} is emitted but not in the catalogue");
    }
    let catalogue: BTreeSet<String> = crate::events::EventKind::ALL.iter().map(|k| k.wire().to_owned()).collect();
    let never: Vec<&String> = catalogue.difference(&seen).collect();
    assert!(never.is_empty(), "catalogue entries never emitted: {never:?}");
}

fn action_record(succeeded: bool) -> crate::model::ActionRecord {
    crate::model::ActionRecord {
        id: "1-1".into(),
        action: crate::model::ActionKind::Unmount,
        object: "mount/mnt_data".into(),
        requested_by: "mqtt".into(),
        succeeded,
        reason: (!succeeded).then(|| "busy".into()),
        message: if succeeded { "unmounted /mnt/data".into() } else { "/mnt/data is busy".into() },
        holders: if succeeded {
            vec![]
        } else {
            vec![crate::model::Holder {
                pid: 42,
                command: "sleep".into(),
                cmdline: "sleep 60".into(),
                uses: vec!["cwd".into()],
            }]
        },
        unmounted: vec![],
        mount_point: None,
        duration_ms: 3,
        late: false,
    }
}

/// An action's outcome is an event about the object acted on, with the whole record, and
/// changes nothing in the topology.
#[test]
fn action_outcomes_are_events_on_the_object() {
    let mut s = state();
    let generation = s.topology_generation();
    let events = s.apply(Fact::ActionFinished(Box::new(action_record(false))), T);
    assert_eq!(types(&events), ["action.failed"]);
    assert_eq!(events[0].subject, "mount/mnt_data");
    let data = serde_json::to_value(&events[0].data).unwrap();
    assert_eq!(data["action"]["reason"], "busy");
    assert_eq!(data["action"]["action"], "unmount");
    assert_eq!(data["action"]["holders"][0]["pid"], 42);
    assert_eq!(data["action"]["requested_by"], "mqtt");
    let events = s.apply(Fact::ActionFinished(Box::new(action_record(true))), T);
    assert_eq!(types(&events), ["action.succeeded"]);
    assert_eq!(s.topology_generation(), generation);
}

#[test]
fn arrays_link_members_and_mounts_both_ways() {
    use crate::model::array::{Array, ArrayKind, ArrayMember, ArrayState, MemberRole};
    let mut s = State::new(StateConfig::default(), 0);
    let d = disk("wwn-a", "8:0");
    let p = partition("p-a1", "wwn-a", "8:1");
    s.apply(Fact::BlockDevices { disks: vec![d], partitions: vec![p], initial: true }, T);
    let mut m = mount("/srv/pool", "8:1", "rw");
    m.fs_type = "btrfs".into();
    m.super_options = vec!["rw".into(), "degraded".into()];
    s.apply(Fact::Mounts { mounts: vec![m], initial: true }, T);
    let mut array = Array::new(ArrayKind::Btrfs, "pool", Some("f5".into()));
    array.state = ArrayState::Degraded;
    array.degraded_count = 1;
    array.members = vec![
        ArrayMember::new(Some("sdb1".into()), MemberRole::Active, Some(1)),
        ArrayMember::new(Some("sdc1".into()), MemberRole::Missing, Some(2)),
    ];
    let events = s.apply(Fact::Arrays { arrays: vec![array], initial: false }, T);
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    // SPEC §9: the degraded array needs its owner, and so does its member disk.
    assert_eq!(kinds, vec!["array.added", "array.degraded", "array.attention_changed", "disk.attention_changed"]);
    let member = s.disk_attention("wwn-a").expect("the member disk's verdict");
    assert_eq!(member.reasons[0].code, "array_member");
    let a = s.array("btrfs-f5").expect("array");
    assert_eq!(a.members[0].partition_id.as_deref(), Some("p-a1"));
    assert_eq!(a.members[0].disk_id.as_deref(), Some("wwn-a"));
    assert_eq!(a.members[1].disk_id, None, "a missing member links to nothing");
    assert_eq!(a.mounts, vec!["srv_pool".to_owned()]);
    assert!(a.degraded_mount);
    assert_eq!(s.partitions().next().expect("partition").arrays, vec!["btrfs-f5".to_owned()]);
    assert_eq!(s.mounts().next().expect("mount").array_id.as_deref(), Some("btrfs-f5"));
    // The event data carries the links.
    assert_eq!(events[0].data["array"]["mounts"][0], "srv_pool");
    let events = s.apply(Fact::Arrays { arrays: vec![], initial: false }, T);
    // The member disk's array reason ends with the array: back to ok, once.
    assert_eq!(
        events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        vec!["array.removed", "disk.attention_changed"]
    );
    assert_eq!(s.disk_attention("wwn-a").expect("verdict").level, crate::model::attention::Level::Ok);
    assert!(s.apply(Fact::Arrays { arrays: vec![], initial: false }, T).is_empty());
    assert!(s.partitions().next().expect("partition").arrays.is_empty());
    assert_eq!(s.mounts().next().expect("mount").array_id, None);
}
