//! Unit tests of discovery payload building on a small hand-made topology.

use serde_json::Value;

use super::*;
use crate::model::{Partition, Protocol, Share, Usage};
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
        firmware: Some("80.00A80".into()),
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
        sleep: None,
        self_test: None,
        arrays: Vec::new(),
        attention: None,
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
        attention: None,
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
    let msgs = plan(&snapshot(), &naming(DiscoveryMode::Device), None);
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
    let msgs = plan(&snapshot(), &naming(DiscoveryMode::Device), None);
    let configs: Vec<&Retained> = msgs.iter().filter(|m| m.topic.starts_with("homeassistant/")).collect();
    // host, one disk, two mounts, one share
    assert_eq!(configs.len(), 5);
    let disk = json(find(&msgs, "homeassistant/device/diskwatch_nas1_disk_wwn-0x5000/config"));
    assert_eq!(disk["device"]["via_device"], "diskwatch_nas1");
    assert_eq!(disk["device"]["name"], "WD40EFRX (sdb)");
    assert_eq!(disk["device"]["manufacturer"], "WDC");
    assert_eq!(disk["device"]["serial_number"], "S1");
    assert_eq!(disk["device"]["sw_version"], "80.00A80");
    assert_eq!(disk["cmps"]["connected"]["name"], "Connected", "HA puts the device name in front");
    assert_eq!(disk["cmps"]["connected"]["platform"], "binary_sensor");
    assert_eq!(
        disk["cmps"]["connected"]["default_entity_id"],
        "binary_sensor.diskwatch_nas1_disk_wwn_0x5000_connected"
    );
    assert_eq!(disk["cmps"]["size"]["device_class"], "data_size");
    assert_eq!(disk["cmps"]["size"]["unit_of_measurement"], "GB");
    assert_eq!(disk["cmps"]["size"]["suggested_display_precision"], 1);
    assert_eq!(disk["cmps"]["size"]["entity_category"], "diagnostic");
    // The size goes unavailable with the disk; "connected" shows off instead.
    assert_eq!(disk["cmps"]["size"]["availability"].as_array().unwrap().len(), 2);
    assert_eq!(disk["cmps"]["connected"]["availability"].as_array().unwrap().len(), 1);
    let data = json(find(&msgs, "homeassistant/device/diskwatch_nas1_mount_mnt_data/config"));
    // A mount is a device of its own, under its disk.
    assert_eq!(data["device"]["identifiers"][0], "diskwatch_nas1_mount_mnt_data");
    assert_eq!(data["device"]["name"], "Data (/mnt/data)");
    assert_eq!(data["device"]["model"], "ext4 on sdb1");
    assert_eq!(data["device"]["via_device"], "diskwatch_nas1_disk_wwn-0x5000");
    assert_eq!(data["cmps"]["used"]["name"], "Used");
    assert_eq!(data["cmps"]["used"]["unit_of_measurement"], "%");
    assert_eq!(data["cmps"]["read_only"]["device_class"], "problem");
    assert_eq!(data["cmps"]["used"]["availability_mode"], "all");
    let srv = json(find(&msgs, "homeassistant/device/diskwatch_nas1_mount_srv/config"));
    assert_eq!(srv["device"]["via_device"], "diskwatch_nas1", "a mount without a disk sits under the host");
    assert_eq!(srv["device"]["name"], "/srv");
    assert_eq!(srv["cmps"]["free"]["name"], "Free");
    // A share is a service of the host: its entity is on the host device, described alike.
    let share = json(find(&msgs, "homeassistant/device/diskwatch_nas1_share_smb-media/config"));
    let host = json(find(&msgs, "homeassistant/device/diskwatch_nas1/config"));
    assert_eq!(share["device"], host["device"]);
    assert_eq!(share["cmps"]["available"]["name"], "SMB share media");
    // Every device block is named (Home Assistant asks for a name in each).
    for m in &configs {
        assert!(json(m)["device"]["name"].is_string(), "{}", m.topic);
    }
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
    let msgs = plan(&snapshot(), &naming(DiscoveryMode::Component), None);
    let used = json(find(&msgs, "homeassistant/sensor/diskwatch_nas1_mount_mnt_data/used/config"));
    assert_eq!(used["state_class"], "measurement");
    assert_eq!(used["device"]["via_device"], "diskwatch_nas1_disk_wwn-0x5000");
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
    let msgs = plan(&s, &naming(DiscoveryMode::Device), None);
    let state = json(find(&msgs, "diskwatch/nas1/array/btrfs-8a0e6f3c-0000-4000-8000-000000000001/state"));
    assert_eq!(state["state"], "degraded");
    let config = json(find(
        &msgs,
        "homeassistant/device/diskwatch_nas1_array_btrfs-8a0e6f3c-0000-4000-8000-000000000001/config",
    ));
    assert_eq!(config["device"]["via_device"], "diskwatch_nas1", "arrays are devices under the host");
    assert_eq!(config["device"]["name"], "btrfs pool raid1");
    assert_eq!(config["cmps"]["state"]["device_class"], "enum");
    assert_eq!(config["cmps"]["state"]["options"].as_array().map(Vec::len), Some(7));
    assert_eq!(config["cmps"]["state"]["name"], "State");
    assert_eq!(config["cmps"]["degraded"]["device_class"], "problem");
    assert_eq!(config["cmps"]["degraded"]["platform"], "binary_sensor");
    assert_eq!(config["cmps"]["sync"]["unit_of_measurement"], "%");
    assert_eq!(config["cmps"]["sync"]["availability"].as_array().map(Vec::len), Some(2));
}

fn cmps(msgs: &[Retained], topic: &str) -> serde_json::Map<String, Value> {
    json(find(msgs, topic))["cmps"].as_object().unwrap().clone()
}

#[test]
fn health_entities_appear_only_with_their_values() {
    use crate::model::{Health, HealthSource, PowerState};
    let topic = "homeassistant/device/diskwatch_nas1_disk_wwn-0x5000/config";
    let mut s = snapshot();
    // Health watched, but SMART unavailable: the power mode is unknown for ever, nothing read.
    s.disks[0].power_state = Some(PowerState::Unknown);
    s.disks[0].health_note = Some("SMART unavailable: no SMART support".into());
    let keys = |s: &Snapshot| -> Vec<String> {
        cmps(&plan(s, &naming(DiscoveryMode::Device), None), topic).keys().cloned().collect()
    };
    assert_eq!(keys(&s), ["connected", "size"]);
    // A temperature from hwmon only: that entity alone.
    let mut health = Health {
        passed: None,
        temperature_c: Some(41.0),
        power_on_hours: None,
        power_cycles: None,
        reallocated_sectors: None,
        pending_sectors: None,
        uncorrectable: None,
        nvme_percentage_used: None,
        nvme_critical_warning: None,
        nvme_media_errors: None,
        checked_at: "2026-12-03T10:00:00Z".into(),
        source: HealthSource::Hwmon,
        ..Health::default()
    };
    s.disks[0].health = Some(Box::new(health.clone()));
    assert_eq!(keys(&s), ["connected", "size", "temperature"]);
    // A full SMART reading, the disk awake.
    health.passed = Some(true);
    health.power_on_hours = Some(1200);
    s.disks[0].health = Some(Box::new(health));
    s.disks[0].power_state = Some(PowerState::Active);
    let all = cmps(&plan(&s, &naming(DiscoveryMode::Device), None), topic);
    let mut names: Vec<(&str, &str)> = all.iter().map(|(k, c)| (k.as_str(), c["name"].as_str().unwrap())).collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("connected", "Connected"),
            ("power_on_hours", "Power-on hours"),
            ("power_state", "Power state"),
            ("size", "Size"),
            ("smart_problem", "SMART"),
            ("temperature", "Temperature"),
        ]
    );
    assert_eq!(all["power_on_hours"]["entity_category"], "diagnostic");
    assert_eq!(all["temperature"]["suggested_display_precision"], 0);
    // Each follows the disk's availability.
    assert!(all
        .values()
        .filter(|c| c["name"] != "Connected")
        .all(|c| c["availability"].as_array().unwrap().len() == 2));
}

#[test]
fn mounts_without_usage_get_no_usage_entities() {
    let mut s = snapshot();
    s.mounts[1].usage = None;
    let msgs = plan(&s, &naming(DiscoveryMode::Device), None);
    let keys: Vec<String> =
        cmps(&msgs, "homeassistant/device/diskwatch_nas1_mount_srv/config").keys().cloned().collect();
    assert_eq!(keys, ["mounted", "read_only"]);
}

#[test]
fn the_last_event_is_retained_with_the_host_state() {
    let last = LastEvent::from_json(
        r#"{"specversion":"1.0","id":"42","type":"mount.unmounted","subject":"mount/mnt_data","time":"2026-12-03T10:00:00Z","data":{}}"#,
    )
    .unwrap();
    let msgs = plan(&snapshot(), &naming(DiscoveryMode::Device), Some(&last));
    let host = json(find(&msgs, "diskwatch/nas1/state"));
    assert_eq!(host["last_event"]["type"], "mount.unmounted");
    assert_eq!(host["last_event"]["id"], "42");
    let sensor = &cmps(&msgs, "homeassistant/device/diskwatch_nas1/config")["last_event"];
    assert_eq!(sensor["state_topic"], "diskwatch/nas1/state", "read from the retained state");
    // Before any event: null, and the sensor's template says None (unknown) for it.
    let host = json(find(&plan(&snapshot(), &naming(DiscoveryMode::Device), None), "diskwatch/nas1/state"));
    assert!(host["last_event"].is_null());
}

#[test]
fn diagnostic_and_rarely_useful_entities_are_marked() {
    let msgs = plan(&snapshot(), &naming(DiscoveryMode::Device), None);
    let host = cmps(&msgs, "homeassistant/device/diskwatch_nas1/config");
    assert_eq!(host["last_event_id"]["entity_category"], "diagnostic");
    assert_eq!(host["last_event_id"]["enabled_by_default"], false);
    assert_eq!(host["partitions"]["enabled_by_default"], false);
    assert_eq!(host["disks"]["entity_category"], "diagnostic");
    assert!(host["disks"].get("enabled_by_default").is_none());
    assert!(host["storage_event"].get("entity_category").is_none());
}

#[test]
fn objects_on_loop_and_usb_disks_are_removable() {
    let mut s = snapshot();
    let fixed = plan(&s, &naming(DiscoveryMode::Device), None);
    // Only the tmpfs on /srv (on no disk) goes soon.
    let soon: Vec<&str> = fixed.iter().filter(|m| m.removable).map(|m| m.object.as_str()).collect();
    assert!(soon.iter().all(|o| *o == "mount/srv") && !soon.is_empty(), "{soon:?}");
    s.mounts[1].network = true;
    assert!(plan(&s, &naming(DiscoveryMode::Device), None).iter().all(|m| !m.removable), "network mounts stay");
    s.disks[0].bus = Some("usb".into());
    let usb = plan(&s, &naming(DiscoveryMode::Device), None);
    let removable: std::collections::BTreeSet<&str> =
        usb.iter().filter(|m| m.removable).map(|m| m.object.as_str()).collect();
    assert_eq!(
        removable.into_iter().collect::<Vec<_>>(),
        ["disk/wwn-0x5000", "mount/mnt_data", "partition/p-1", "share/smb-media"],
    );
}

#[test]
fn days_until_full_appears_with_a_forecast() {
    let mut s = snapshot();
    let topic = "homeassistant/device/diskwatch_nas1_mount_srv/config";
    let keys = |s: &Snapshot| -> Vec<String> {
        cmps(&plan(s, &naming(DiscoveryMode::Device), None), topic).keys().cloned().collect()
    };
    assert!(!keys(&s).contains(&"days_until_full".to_owned()), "no forecast yet: no entity");
    s.mounts[1].forecast = Some(crate::model::Forecast {
        full_in_seconds: Some(3 * 86_400),
        low_seconds: Some(2 * 86_400),
        high_seconds: Some(5 * 86_400),
        basis_seconds: 86_400,
        bytes_per_day: 1_000_000_000,
    });
    let all = cmps(&plan(&s, &naming(DiscoveryMode::Device), None), topic);
    let c = &all["days_until_full"];
    assert_eq!(c["name"], "Days until full");
    assert_eq!(c["unit_of_measurement"], "d");
    assert_eq!(c["device_class"], "duration");
    assert_eq!(c["availability_mode"], "all");
}

#[test]
fn self_test_sensors_and_the_short_test_button() {
    use crate::model::selftest::{LastTest, RunningTest, SelfTest, SelfTestKind, SelfTestResult};
    let mut s = snapshot();
    let topic = "homeassistant/device/diskwatch_nas1_disk_wwn-0x5000/config";
    let mut n = naming(DiscoveryMode::Device);
    n.actions = vec![ActionKind::SelfTest];
    let keys = |s: &Snapshot, n: &Naming| -> Vec<String> { cmps(&plan(s, n, None), topic).keys().cloned().collect() };
    assert_eq!(keys(&s, &n), ["connected", "size"], "no record: no self-test entities");
    s.disks[0].self_test = Some(Box::new(SelfTest {
        running: Some(RunningTest { kind: SelfTestKind::Long, percent_remaining: Some(60) }),
        last: Some(LastTest {
            kind: SelfTestKind::Short,
            result: SelfTestResult::Failed,
            at_hours: Some(16402),
            lba_first_error: Some(494591083),
        }),
        next_due: None,
    }));
    assert_eq!(keys(&s, &n), ["connected", "last_self_test", "self_test", "self_test_progress", "size"]);
    assert_eq!(
        keys(&s, &naming(DiscoveryMode::Device)),
        ["connected", "last_self_test", "self_test_progress", "size"],
        "the button only with the action allowed"
    );
    let all = cmps(&plan(&s, &n, None), topic);
    assert_eq!(all["last_self_test"]["name"], "Last self-test");
    assert_eq!(all["last_self_test"]["options"], serde_json::json!(["passed", "failed", "aborted", "interrupted"]));
    assert_eq!(all["self_test_progress"]["name"], "Self-test progress");
    assert_eq!(all["self_test"]["name"], "Run short self-test");
    assert_eq!(all["self_test"]["command_topic"], "diskwatch/nas1/disk/wwn-0x5000/self_test/set");
    assert!(all["self_test"]["availability"].as_array().unwrap().len() == 2);
}

#[test]
fn mounts_and_arrays_get_attention_and_an_acknowledge_button_with_a_verdict() {
    use crate::arrays::{Array, ArrayKind, ArrayState};
    use crate::model::attention::Attention;
    let mut s = snapshot();
    let mut array = Array::new(ArrayKind::Md, "md0", Some("0fbf5f2c-add2-43c2-bd78-a4be3ab709ef".into()));
    array.state = ArrayState::Degraded;
    s.arrays.push(array);
    let naming = naming(DiscoveryMode::Device);
    let mount_topic = "homeassistant/device/diskwatch_nas1_mount_srv/config";
    let array_id = s.arrays[0].id.clone();
    let array_topic = format!("homeassistant/device/diskwatch_nas1_array_{array_id}/config");
    for topic in [mount_topic, array_topic.as_str()] {
        let keys = cmps(&plan(&s, &naming, None), topic);
        assert!(!keys.contains_key("acknowledge") && !keys.contains_key("attention"), "no verdict yet: {topic}");
    }
    let verdict: Attention =
        serde_json::from_value(serde_json::json!({"level": "failing", "reasons": [], "assessed_at": "t"})).unwrap();
    s.mounts[1].attention = Some(Box::new(verdict.clone()));
    s.arrays[0].attention = Some(Box::new(verdict));
    let msgs = plan(&s, &naming, None);
    for (topic, kind, id) in [(mount_topic, "mount", "srv"), (array_topic.as_str(), "array", array_id.as_str())] {
        let all = cmps(&msgs, topic);
        let button = &all["acknowledge"];
        assert_eq!(button["platform"], "button");
        let command = button["command_topic"].as_str().unwrap();
        assert_eq!(command, format!("diskwatch/nas1/{kind}/{id}/acknowledge/set"));
        assert_eq!(naming.parse_acknowledge(command), Some((kind, id)), "the sink finds the object again");
        assert_eq!(all["attention"]["device_class"], "enum");
        assert_eq!(all["attention"]["availability"].as_array().map(Vec::len), Some(2), "unavailable with the object");
    }
}
