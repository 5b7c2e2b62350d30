//! Unit tests of discovery payload building on a small hand-made topology.

use serde_json::Value;

use super::*;
use crate::model::{Partition, Protocol, Usage};
use crate::mqtt::config::MqttConfig;

pub(crate) fn disk() -> Disk {
    Disk {
        id: "wwn-0x5000".into(),
        stable: true,
        kernel_name: "sdb".into(),
        devpath: "/devices/x/sdb".into(),
        devnode: "/dev/sdb".into(),
        dev: "8:16".into(),
        vendor: Some("WDC".into()),
        model: Some("WD40EFRX".into()),
        serial: Some("S1".into()),
        wwn: Some("0x5000".into()),
        bus: Some("ata".into()),
        size_bytes: 4_000_000_000_000,
        removable: false,
        rotational: true,
        read_only: false,
        partition_table: Some("gpt".into()),
        fs_type: None,
        fs_label: None,
        fs_uuid: None,
        members: vec![],
        holders: vec![],
        partitions: vec!["p-1".into()],
        mounts: vec![],
        power_state: None,
        health: None,
        health_note: None,
        io: None,
        arrays: Vec::new(),
    }
}

pub(crate) fn snapshot() -> Snapshot {
    let partition = Partition {
        id: "p-1".into(),
        stable: true,
        kernel_name: "sdb1".into(),
        devpath: "/devices/x/sdb/sdb1".into(),
        devnode: "/dev/sdb1".into(),
        dev: "8:17".into(),
        disk_id: "wwn-0x5000".into(),
        number: 1,
        size_bytes: 1 << 40,
        read_only: false,
        fs_type: Some("ext4".into()),
        fs_label: Some("Data".into()),
        fs_uuid: Some("u-1".into()),
        part_label: None,
        part_uuid: Some("p-1".into()),
        mounts: vec!["mnt_data".into()],
        arrays: Vec::new(),
    };
    let mount = |id: &str, point: &str, source: &str, disk: Option<&str>| Mount {
        id: id.into(),
        mount_point: point.into(),
        source: source.into(),
        dev: "8:17".into(),
        fs_type: "ext4".into(),
        options: vec!["rw".into()],
        super_options: vec![],
        read_only: false,
        root: "/".into(),
        network: false,
        partition_id: disk.map(|_| "p-1".to_owned()),
        disk_id: disk.map(str::to_owned),
        shares: vec![],
        usage: Some(Usage {
            total_bytes: 100,
            used_bytes: 40,
            available_bytes: 60,
            percent: 40.0,
            inodes_total: 10,
            inodes_used: 1,
            inodes_free: 9,
        }),
        stale: false,
        forecast: None,
        array_id: None,
    };
    let share = Share {
        id: "smb-media".into(),
        protocol: Protocol::Smb,
        name: "media".into(),
        path: "/mnt/data/media".into(),
        enabled: true,
        read_only: false,
        guest_ok: false,
        browseable: true,
        users: vec![],
        comment: None,
        special: None,
        clients: vec![],
        config_file: "/etc/samba/smb.conf".into(),
        resolved_path: "/mnt/data/media".into(),
        path_exists: true,
        mount_id: Some("mnt_data".into()),
        partition_id: Some("p-1".into()),
        disk_id: Some("wwn-0x5000".into()),
        available: true,
    };
    Snapshot {
        node_id: "nas1".into(),
        last_event_id: 7,
        disks: vec![disk()],
        partitions: vec![partition],
        mounts: vec![
            mount("mnt_data", "/mnt/data", "/dev/sdb1", Some("wwn-0x5000")),
            mount("srv", "/srv", "tmpfs", None),
        ],
        shares: vec![share],
        sources: vec![],
        arrays: vec![],
    }
}

fn naming(mode: DiscoveryMode) -> Naming {
    let config = MqttConfig { discovery: mode, ..MqttConfig::default() };
    Naming::new(&config, "nas1")
}

fn find<'a>(msgs: &'a [Retained], topic: &str) -> &'a Retained {
    msgs.iter().find(|m| m.topic == topic).unwrap_or_else(|| panic!("no {topic}"))
}

fn json(m: &Retained) -> Value {
    serde_json::from_str(&m.payload).unwrap()
}

#[test]
fn states_and_availability_for_every_object() {
    let msgs = plan(&snapshot(), &naming(DiscoveryMode::Device));
    let disk = json(find(&msgs, "diskwatch/nas1/disk/wwn-0x5000/state"));
    assert_eq!(disk["size_bytes"], 4_000_000_000_000u64);
    assert_eq!(find(&msgs, "diskwatch/nas1/partition/p-1/availability").payload, "online");
    assert_eq!(json(find(&msgs, "diskwatch/nas1/mount/srv/state"))["mount_point"], "/srv");
    assert_eq!(find(&msgs, "diskwatch/nas1/share/smb-media/availability").object, "share/smb-media");
    let host = json(find(&msgs, "diskwatch/nas1/state"));
    assert_eq!(
        (host["disks"].as_u64(), host["mounts"].as_u64(), host["last_event_id"].as_u64()),
        (Some(1), Some(2), Some(7))
    );
}

#[test]
fn device_discovery_links_devices_and_names_entities() {
    let msgs = plan(&snapshot(), &naming(DiscoveryMode::Device));
    let configs: Vec<&Retained> = msgs.iter().filter(|m| m.topic.starts_with("homeassistant/")).collect();
    // host, one disk, two mounts, one share
    assert_eq!(configs.len(), 5);
    let disk = json(find(&msgs, "homeassistant/device/diskwatch_nas1_disk_wwn-0x5000/config"));
    assert_eq!(disk["device"]["via_device"], "diskwatch_nas1");
    assert_eq!(disk["device"]["name"], "WD40EFRX (sdb)");
    assert_eq!(disk["cmps"]["connected"]["platform"], "binary_sensor");
    assert_eq!(
        disk["cmps"]["connected"]["default_entity_id"],
        "binary_sensor.diskwatch_nas1_disk_wwn_0x5000_connected"
    );
    assert_eq!(disk["cmps"]["size"]["device_class"], "data_size");
    assert_eq!(disk["cmps"]["size"]["entity_category"], "diagnostic");
    // The size goes unavailable with the disk; "connected" shows off instead.
    assert_eq!(disk["cmps"]["size"]["availability"].as_array().unwrap().len(), 2);
    assert_eq!(disk["cmps"]["connected"]["availability"].as_array().unwrap().len(), 1);
    let data = json(find(&msgs, "homeassistant/device/diskwatch_nas1_mount_mnt_data/config"));
    assert_eq!(data["device"]["identifiers"][0], "diskwatch_nas1_disk_wwn-0x5000");
    assert_eq!(data["cmps"]["used"]["name"], "Data (sdb1) used");
    assert_eq!(data["cmps"]["used"]["unit_of_measurement"], "%");
    assert_eq!(data["cmps"]["read_only"]["device_class"], "problem");
    assert_eq!(data["cmps"]["used"]["availability_mode"], "all");
    let srv = json(find(&msgs, "homeassistant/device/diskwatch_nas1_mount_srv/config"));
    assert_eq!(srv["device"]["identifiers"][0], "diskwatch_nas1", "a mount without a disk sits on the host");
    assert_eq!(srv["cmps"]["free"]["name"], "/srv (tmpfs) free");
    let share = json(find(&msgs, "homeassistant/device/diskwatch_nas1_share_smb-media/config"));
    assert_eq!(share["device"]["identifiers"][0], "diskwatch_nas1_disk_wwn-0x5000");
    let host = json(find(&msgs, "homeassistant/device/diskwatch_nas1/config"));
    let types = host["cmps"]["storage_event"]["event_types"].as_array().unwrap();
    assert!(types.iter().any(|t| t == "disk.added"));
    assert_eq!(host["origin"]["name"], "diskwatch");
    // unique ids are unique across the whole plan
    let mut ids: Vec<String> = configs
        .iter()
        .flat_map(|m| {
            json(m)["cmps"].as_object().unwrap().values().map(|c| c["unique_id"].to_string()).collect::<Vec<_>>()
        })
        .collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n);
}

#[test]
fn component_discovery_has_one_topic_per_entity() {
    let msgs = plan(&snapshot(), &naming(DiscoveryMode::Component));
    let used = json(find(&msgs, "homeassistant/sensor/diskwatch_nas1_mount_mnt_data/used/config"));
    assert_eq!(used["state_class"], "measurement");
    assert_eq!(used["device"]["identifiers"][0], "diskwatch_nas1_disk_wwn-0x5000");
    assert!(used.get("platform").is_none());
    let event = json(find(&msgs, "homeassistant/event/diskwatch_nas1/storage_event/config"));
    assert_eq!(event["state_topic"], "diskwatch/nas1/events");
    let count = msgs.iter().filter(|m| m.topic.starts_with("homeassistant/")).count();
    // host 7, disk 2, mounts 2x4, share 1
    assert_eq!(count, 7 + 2 + 8 + 1);
}

#[test]
fn labels_and_slugs() {
    assert_eq!(entity_slug("diskwatch_nas-1__disk_A.B_"), "diskwatch_nas_1_disk_a_b");
    let mut d = disk();
    d.model = None;
    assert_eq!(disk_label(&d), "sdb");
}

#[test]
fn arrays_get_state_degraded_and_progress_entities_on_the_host() {
    use crate::arrays::{Array, ArrayKind, ArrayState};
    let mut s = snapshot();
    let mut array = Array::new(ArrayKind::Btrfs, "pool", Some("8a0e6f3c-0000-4000-8000-000000000001".into()));
    array.level = Some("raid1".into());
    array.state = ArrayState::Degraded;
    s.arrays.push(array);
    let msgs = plan(&s, &naming(DiscoveryMode::Device));
    let state = json(find(&msgs, "diskwatch/nas1/array/btrfs-8a0e6f3c-0000-4000-8000-000000000001/state"));
    assert_eq!(state["state"], "degraded");
    let config = json(find(
        &msgs,
        "homeassistant/device/diskwatch_nas1_array_btrfs-8a0e6f3c-0000-4000-8000-000000000001/config",
    ));
    assert_eq!(config["device"]["identifiers"][0], "diskwatch_nas1", "arrays live on the host device");
    assert_eq!(config["cmps"]["state"]["device_class"], "enum");
    assert_eq!(config["cmps"]["state"]["options"].as_array().map(Vec::len), Some(7));
    assert_eq!(config["cmps"]["state"]["name"], "btrfs pool raid1 state");
    assert_eq!(config["cmps"]["degraded"]["device_class"], "problem");
    assert_eq!(config["cmps"]["degraded"]["platform"], "binary_sensor");
    assert_eq!(config["cmps"]["sync"]["unit_of_measurement"], "%");
    assert_eq!(config["cmps"]["sync"]["availability"].as_array().map(Vec::len), Some(2));
}
