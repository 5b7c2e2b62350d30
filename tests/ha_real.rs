//! What a Home Assistant user sees, asked of a real Home Assistant Core (the current release,
//! in the chroot scripts/ha-venv makes) through its own websocket API: the agent with a real
//! loop disk, its mounted filesystem and a Samba share under it, announced over a real
//! Mosquitto. Devices and names as Home Assistant lists them, states equal to the agent's
//! snapshot, availability after umount, unplug and agent stop, everything back after a
//! Home Assistant restart, removed objects gone after their delay, and nothing about the
//! agent in Home Assistant's warnings. Prints the timings (docs/mqtt.md quotes them).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

use common::ha::{ha_chroot, HaClient, HomeAssistant};
use common::mosquitto::{Mosquitto, Recorder};
use common::TestAgent;
use diskwatch::mqtt::discovery::entity_slug;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

fn unix_now() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// One entity as the user should see it: its friendly name and its state.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    name: String,
    state: String,
}

/// `round(bytes / 1e9, 3)` as Home Assistant shows the rendered number.
fn gb(bytes: u64) -> String {
    number((bytes as f64 / 1e9 * 1000.0).round() / 1000.0)
}

/// A number as Python's str() writes a float rendered by a template ("0.067", "40.0").
fn number(x: f64) -> String {
    let s = format!("{x}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

fn on_off(b: bool) -> String {
    (if b { "on" } else { "off" }).to_owned()
}

/// Every enabled entity the snapshot calls for, by entity id, with the name and state Home
/// Assistant must show. Host entities are named after the host device ("diskwatch test").
fn expected(snap: &Value) -> BTreeMap<String, Seen> {
    let mut want = BTreeMap::new();
    let mut put = |id: String, name: String, state: String| {
        want.insert(id, Seen { name, state });
    };
    let host = "diskwatch test";
    let count = |k: &str| snap[k].as_array().unwrap().len().to_string();
    for (key, label) in [("disks", "Disks"), ("mounts", "Mounts"), ("shares", "Shares")] {
        put(format!("sensor.diskwatch_test_{key}"), format!("{host} {label}"), count(key));
    }
    for d in snap["disks"].as_array().unwrap() {
        let slug = entity_slug(&format!("diskwatch_test_disk_{}", d["id"].as_str().unwrap()));
        let label = diskwatch::mqtt::discovery::disk_label(&serde_json::from_value(d.clone()).unwrap());
        put(format!("binary_sensor.{slug}_connected"), format!("{label} Connected"), "on".into());
        put(format!("sensor.{slug}_size"), format!("{label} Size"), gb(d["size_bytes"].as_u64().unwrap()));
        // Health entities only for values the disk has given (none for a disk without SMART).
        let h = &d["health"];
        if let Some(t) = h["temperature_c"].as_f64() {
            put(format!("sensor.{slug}_temperature"), format!("{label} Temperature"), number(t));
        }
        if let Some(passed) = h["passed"].as_bool() {
            put(format!("binary_sensor.{slug}_smart_problem"), format!("{label} SMART"), on_off(!passed));
        }
        if let Some(p) = d["power_state"].as_str().filter(|p| *p != "unknown") {
            put(format!("sensor.{slug}_power_state"), format!("{label} Power state"), p.to_owned());
        }
        if let Some(hours) = h["power_on_hours"].as_u64() {
            put(format!("sensor.{slug}_power_on_hours"), format!("{label} Power-on hours"), hours.to_string());
        }
        if d["io"].is_object() {
            for (key, name, field) in [("read", "Read", "read_bytes_per_s"), ("write", "Write", "write_bytes_per_s")] {
                let rate = number((d["io"][field].as_f64().unwrap() / 1e6 * 1000.0).round() / 1000.0);
                put(format!("sensor.{slug}_{key}_rate"), format!("{label} {name} rate"), rate);
            }
        }
    }
    let typed: diskwatch::model::Snapshot = serde_json::from_value(snap.clone()).unwrap();
    for (m, typed_mount) in snap["mounts"].as_array().unwrap().iter().zip(&typed.mounts) {
        let slug = entity_slug(&format!("diskwatch_test_mount_{}", m["id"].as_str().unwrap()));
        // (Spelled out for the test's own mount below: "DwData (<mount point>)".)
        let label = diskwatch::mqtt::discovery::mount_label(typed_mount, &typed);
        put(format!("binary_sensor.{slug}_mounted"), format!("{label} Mounted"), "on".into());
        put(format!("binary_sensor.{slug}_read_only"), format!("{label} Read-only"), on_off(m["read_only"] == true));
        let usage = &m["usage"];
        put(
            format!("sensor.{slug}_used"),
            format!("{label} Used"),
            number((usage["percent"].as_f64().unwrap() * 10.0).round() / 10.0),
        );
        put(format!("sensor.{slug}_free"), format!("{label} Free"), gb(usage["available_bytes"].as_u64().unwrap()));
    }
    for s in snap["shares"].as_array().unwrap() {
        let slug = entity_slug(&format!("diskwatch_test_share_{}", s["id"].as_str().unwrap()));
        let name = format!("{host} SMB share {}", s["name"].as_str().unwrap());
        put(format!("binary_sensor.{slug}_available"), name, on_off(s["available"] == true));
    }
    want
}

/// What Home Assistant shows for the entities in `want`.
fn seen(states: &BTreeMap<String, (String, Value)>, want: &BTreeMap<String, Seen>) -> BTreeMap<String, Seen> {
    want.keys()
        .filter_map(|id| {
            let (state, attrs) = states.get(id)?;
            let name = attrs["friendly_name"].as_str().unwrap_or_default().to_owned();
            Some((id.clone(), Seen { name, state: state.clone() }))
        })
        .collect()
}

/// Polls Home Assistant until it shows exactly what the agent's snapshot (fetched anew each
/// time: usage moves) calls for, or fails with the difference; returns when it first did.
async fn until_seen(ha: &mut HaClient, agent: &TestAgent, what: &str) -> Instant {
    let deadline = Instant::now() + WAIT;
    loop {
        let want = expected(&agent.get_json("/api/v1/snapshot").await);
        let got = seen(&ha.states().await, &want);
        if got == want {
            return Instant::now();
        }
        if Instant::now() > deadline {
            let wrong: Vec<_> =
                want.iter().filter(|(id, w)| got.get(*id) != Some(w)).map(|(id, w)| (id, w, got.get(id))).collect();
            panic!("{what}: Home Assistant differs (entity, wanted, shown): {wrong:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Home Assistant's devices of this agent: identifier → device.
async fn devices(ha: &mut HaClient) -> BTreeMap<String, Value> {
    let list = ha.call(json!({"type": "config/device_registry/list"})).await;
    let mut out = BTreeMap::new();
    for d in list.as_array().unwrap() {
        for ident in d["identifiers"].as_array().unwrap() {
            if ident[0] == "mqtt" && ident[1].as_str().unwrap().starts_with("diskwatch_test") {
                out.insert(ident[1].as_str().unwrap().to_owned(), d.clone());
            }
        }
    }
    out
}

/// Home Assistant's entity registry entries of this agent, by entity id.
async fn registry(ha: &mut HaClient) -> BTreeMap<String, Value> {
    let list = ha.call(json!({"type": "config/entity_registry/list"})).await;
    list.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["platform"] == "mqtt" && e["unique_id"].as_str().is_some_and(|u| u.starts_with("diskwatch_test")))
        .map(|e| (e["entity_id"].as_str().unwrap().to_owned(), e.clone()))
        .collect()
}

/// Lines of Home Assistant's log about the agent or MQTT that a user would find as a
/// warning or error (and the device-name notice HA logs at info level).
fn complaints(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            let lower = l.to_lowercase();
            let serious = l.contains(" WARNING ") || l.contains(" ERROR ") || l.contains(" CRITICAL ");
            let ours = lower.contains("mqtt") || lower.contains("diskwatch") || lower.contains("template");
            (serious && ours) || l.contains("always needs to include a name")
        })
        .collect()
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistant_shows_every_object_named_and_current() {
    if !common::require_root("home_assistant_shows_every_object_named_and_current") {
        return;
    }
    let Some(root) = ha_chroot() else { return };
    let _lock = common::machine_lock();
    let broker = Mosquitto::start();
    let mut home = HomeAssistant::start(&root, broker.port);
    let mut ha = home.client().await;

    // A loop disk with a labelled ext4 partition, mounted, and a Samba share on it.
    let mut dev = common::LoopDevice::new(64, &[32]);
    let name = dev.name();
    common::sh("mkfs.ext4", &["-q", "-F", "-L", "DwData", &dev.partition(1)]);
    let work = tempfile::tempdir().unwrap();
    let target = work.path().join("mnt");
    let point = target.to_str().unwrap().to_owned();
    let mut mount = common::MountGuard::new(&dev.partition(1), &target, Some("ext4"), None);
    std::fs::create_dir_all(target.join("media")).unwrap();
    let smb = work.path().join("smb.conf");
    std::fs::write(&smb, format!("[media]\n   path = {point}/media\n   read only = no\n")).unwrap();
    // smartctl replaced by the recorder (tests/fixtures/smartctl): the loop disk answers as a
    // real WD140EDFZ; any other disk (the machine's virtio disk) as one smartctl cannot open.
    let smartctl = work.path().join("smartctl");
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smartctl");
    std::fs::copy(fixtures.join("recorder.sh"), &smartctl).unwrap();
    std::fs::write(work.path().join("fixtures"), fixtures.to_str().unwrap()).unwrap();
    std::fs::write(work.path().join("map"), format!("{} ata-hdd-wd140edfz.json\n", dev.device)).unwrap();

    let wire = Recorder::start(broker.port, "t-wire", &["homeassistant/#", "diskwatch/#"]).await;
    let started = Instant::now();
    let started_unix = unix_now();
    let agent = TestAgent::start(
        |c| {
            c.mqtt.enabled = true;
            c.mqtt.url = broker.url();
            c.mqtt.remove_after_removable = Duration::from_secs(3);
            c.udev.enabled = true;
            c.udev.source = diskwatch::config::UdevMode::Kernel;
            c.udev.include = vec!["loop*".into()];
            c.mounts.enabled = true;
            c.mounts.include_paths = vec![format!("{point}*")];
            c.shares.enabled = true;
            c.shares.samba = vec![smb.clone()];
            c.shares.nfs = vec![];
            c.health.enabled = true;
            c.health.smartctl = smartctl.clone();
            c.health.include = vec!["loop*".into()];
            c.activity.enabled = true;
        },
        vec![],
    )
    .await;
    // Ready: every source's start-up facts applied (the health source's first round included).
    let ready = Instant::now();
    // Everything the agent knows at its start (storage, usage, shares), shown in Home Assistant.
    let snap = agent
        .wait_snapshot(WAIT, |s| {
            s["mounts"].as_array().unwrap().iter().any(|m| m["usage"].is_object() && m["disk_id"].is_string())
                && s["shares"].as_array().unwrap().iter().any(|s| s["available"] == true)
                && s["disks"].as_array().unwrap().iter().any(|d| d["kernel_name"] == name.as_str())
        })
        .await;
    let all_available = until_seen(&mut ha, &agent, "after the agent's start").await;
    let (start_to_ready, ready_to_available) = (ready - started, all_available - ready);
    // The first SMART reading: its entities appear, created on their values.
    let read = |s: &Value| {
        s["disks"].as_array().unwrap().iter().any(|d| d["kernel_name"] == name.as_str() && d["health"].is_object())
    };
    let health_shown = if read(&snap) {
        None
    } else {
        agent.wait_snapshot(WAIT, read).await;
        let at = Instant::now();
        Some(until_seen(&mut ha, &agent, "after the first SMART reading").await - at)
    };
    let snap = agent.get_json("/api/v1/snapshot").await;
    let want = expected(&snap);
    // The SMART entity's first states in Home Assistant, after the agent's start: it has its
    // value the moment it exists (never `unknown` first, waiting for the next state publish).
    let loop_id = snap["disks"].as_array().unwrap().iter().find(|d| d["kernel_name"] == name.as_str()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let smart = format!("binary_sensor.{}_smart_problem", entity_slug(&format!("diskwatch_test_disk_{loop_id}")));
    let smart_states: Vec<(Option<String>, f64)> = ha
        .changes
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.entity_id == smart && c.at >= started_unix)
        .map(|c| (c.state.clone(), c.at - started_unix))
        .collect();
    eprintln!("agent start -> {smart} states in HA: {smart_states:?}");
    let first_seen = |entity: &str| {
        ha.changes
            .lock()
            .unwrap()
            .iter()
            .find(|c| c.entity_id == entity && c.at >= started_unix)
            .map(|c| c.at - started_unix)
    };
    let size_entity = format!("sensor.{}_size", entity_slug(&format!("diskwatch_test_disk_{loop_id}")));
    eprintln!(
        "agent start -> ready {:.2} s; -> disk size entity in HA {:?}; -> SMART entity in HA {:?}",
        (ready - started).as_secs_f64(),
        first_seen(&size_entity),
        first_seen(&smart)
    );
    let smart_shown = smart_states.iter().find(|(s, _)| s.as_deref() == Some("off")).map(|(_, at)| *at);
    // Created from the first config that holds it: not left out by Home Assistant (a device
    // config arriving while the previous one is still being set up loses its new components)
    // until the agent happened to publish that config again (20 s later, before the fix).
    let disk_config = wire
        .all()
        .into_iter()
        .filter(|m| m.topic == format!("homeassistant/device/diskwatch_test_disk_{loop_id}/config"))
        .map(|m| (m.payload.contains("\"smart_problem\""), (m.at - started).as_secs_f64()))
        .collect::<Vec<_>>();
    let with_smart = disk_config.iter().position(|(smart, _)| *smart).expect("a config with the SMART entity");
    let created = smart_states.first().expect("the SMART entity in HA").1;
    if let Some((_, again)) = disk_config.get(with_smart + 1) {
        assert!(
            created < *again,
            "the SMART entity was created only when its config was published again: {smart_states:?}, \
             configs (has SMART, s after start): {disk_config:?}"
        );
    }

    // The names as Home Assistant shows them, spelled out for this loop disk.
    let loop_disk = snap["disks"].as_array().unwrap().iter().find(|d| d["kernel_name"] == name.as_str()).unwrap();
    let disk_slug = entity_slug(&format!("diskwatch_test_disk_{}", loop_disk["id"].as_str().unwrap()));
    let mount_id = diskwatch::model::mount_id(&point);
    let mount_slug = entity_slug(&format!("diskwatch_test_mount_{mount_id}"));
    assert_eq!(want[&format!("binary_sensor.{disk_slug}_connected")].name, format!("{name} Connected"));
    assert_eq!(want[&format!("sensor.{disk_slug}_temperature")].name, format!("{name} Temperature"));
    assert_eq!(want[&format!("binary_sensor.{disk_slug}_smart_problem")].state, "off", "the replayed drive passed");
    // The virtio disk has no SMART: no health entity that would stay unknown.
    let vda: Vec<&String> = want
        .keys()
        .filter(|k| k.contains("virtio") && (k.contains("smart") || k.contains("temperature") || k.contains("power")))
        .collect();
    assert!(vda.is_empty(), "{vda:?}");
    assert_eq!(want[&format!("sensor.{mount_slug}_used")].name, format!("DwData ({point}) Used"));
    assert_eq!(want["binary_sensor.diskwatch_test_share_smb_media_available"].name, "diskwatch test SMB share media");

    // One device per disk and mount plus the host, named; mounts under their disk.
    let devs = devices(&mut ha).await;
    let disk_ident = format!("diskwatch_test_disk_{}", loop_disk["id"].as_str().unwrap());
    let mount_ident = format!("diskwatch_test_mount_{mount_id}");
    let snap = agent.get_json("/api/v1/snapshot").await;
    let mut want_devices: BTreeSet<String> = BTreeSet::from(["diskwatch_test".to_owned()]);
    for (kind, list) in [("disk", "disks"), ("mount", "mounts")] {
        let ids = snap[list].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap().to_owned());
        want_devices.extend(ids.map(|id| format!("diskwatch_test_{kind}_{id}")));
    }
    assert_eq!(devs.keys().cloned().collect::<BTreeSet<_>>(), want_devices, "one device per object");
    assert_eq!(devs["diskwatch_test"]["name"], "diskwatch test");
    assert_eq!(devs[&disk_ident]["name"], name.as_str());
    assert_eq!(devs[&disk_ident]["via_device_id"], devs["diskwatch_test"]["id"]);
    assert_eq!(devs[&mount_ident]["name"], format!("DwData ({point})"));
    assert_eq!(devs[&mount_ident]["model"], format!("ext4 on {name}p1"));
    assert_eq!(devs[&mount_ident]["via_device_id"], devs[&disk_ident]["id"], "the mount under its disk");
    eprintln!("Home Assistant's device list:");
    for d in devs.values() {
        eprintln!("  {} | {} | {}", d["name"], d["manufacturer"], d["model"]);
    }
    // Categories as registered: sizes diagnostic, the event id and partition count disabled.
    let reg = registry(&mut ha).await;
    assert_eq!(reg[&format!("sensor.{disk_slug}_size")]["entity_category"], "diagnostic");
    assert_eq!(reg["sensor.diskwatch_test_last_event_id"]["disabled_by"], "integration");
    assert_eq!(reg["sensor.diskwatch_test_partitions"]["disabled_by"], "integration");
    assert_eq!(reg[&format!("sensor.{mount_slug}_used")]["device_id"], devs[&mount_ident]["id"]);
    let share_reg = &reg["binary_sensor.diskwatch_test_share_smb_media_available"];
    assert_eq!(share_reg["device_id"], devs["diskwatch_test"]["id"], "shares on the host");
    // The last event is known (retained with the host state).
    let states = ha.states().await;
    let (last, attrs) = &states["sensor.diskwatch_test_last_event"];
    assert!(!["unknown", "unavailable"].contains(&last.as_str()), "last event {last}");
    assert!(attrs["id"].is_string(), "{attrs}");

    // Home Assistant restarts: everything back, with the last event, from the retained
    // messages and the agent's re-announce after HA's birth message.
    let births = Recorder::start(broker.port, "t-birth", &["homeassistant/status"]).await;
    ha.close().await;
    home.restart();
    let restarted = home.started_at;
    let mut ha = home.client().await;
    let back = until_seen(&mut ha, &agent, "after Home Assistant's restart").await;
    let birth = births.all().into_iter().rev().find(|m| m.payload == "online" && !m.retain).map(|m| m.at);
    let states = ha.states().await;
    assert!(!["unknown", "unavailable"].contains(&states["sensor.diskwatch_test_last_event"].0.as_str()));

    // Unmounted: the mount's figures unavailable, "Mounted" off, the share unavailable.
    let before_umount = unix_now();
    mount.unmount();
    let used = format!("sensor.{mount_slug}_used");
    let mounted = format!("binary_sensor.{mount_slug}_mounted");
    let share = "binary_sensor.diskwatch_test_share_smb_media_available";
    let deadline = Instant::now() + WAIT;
    while ha.changed_at(&used, "unavailable", before_umount).is_none()
        || ha.changed_at(&mounted, "off", before_umount).is_none()
        || ha.changed_at(share, "off", before_umount).is_none()
    {
        assert!(Instant::now() < deadline, "umount not shown: {:#?}", ha.changes.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let umount_ms = (ha.changed_at(&used, "unavailable", before_umount).unwrap() - before_umount) * 1000.0;

    // Unplugged: "Connected" off, its size unavailable; then, after remove_after_removable
    // (3 s here), the disk's and the mount's devices and entities leave Home Assistant.
    let before_detach = unix_now();
    dev.detach();
    let connected = format!("binary_sensor.{disk_slug}_connected");
    let size = format!("sensor.{disk_slug}_size");
    let deadline = Instant::now() + WAIT;
    while ha.changed_at(&connected, "off", before_detach).is_none()
        || ha.changed_at(&size, "unavailable", before_detach).is_none()
    {
        assert!(Instant::now() < deadline, "unplug not shown: {:#?}", ha.changes.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let unplug_ms = (ha.changed_at(&connected, "off", before_detach).unwrap() - before_detach) * 1000.0;
    let deadline = Instant::now() + WAIT;
    let removed_after = loop {
        let devs = devices(&mut ha).await;
        let reg = registry(&mut ha).await;
        let left: Vec<&String> = reg.keys().filter(|e| e.contains(&disk_slug) || e.contains(&mount_slug)).collect();
        if !devs.contains_key(&disk_ident) && !devs.contains_key(&mount_ident) && left.is_empty() {
            assert!(devs.contains_key("diskwatch_test"), "the host stays");
            break unix_now() - before_detach;
        }
        assert!(Instant::now() < deadline, "removed objects stay in Home Assistant: {left:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // The agent stops: every entity left unavailable.
    let before_stop = unix_now();
    agent.stop().await;
    let deadline = Instant::now() + WAIT;
    let stopped_ms = loop {
        let states = ha.states().await;
        let ours: Vec<(&String, &String)> =
            states.iter().filter(|(id, _)| id.contains("diskwatch_test")).map(|(id, (s, _))| (id, s)).collect();
        if !ours.is_empty() && ours.iter().all(|(_, s)| s.as_str() == "unavailable") {
            break (unix_now() - before_stop) * 1000.0;
        }
        assert!(Instant::now() < deadline, "still available after the agent stopped: {ours:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    ha.close().await;
    home.stop();
    let log = home.log();
    let complaints = complaints(&log);
    assert!(complaints.is_empty(), "Home Assistant complained:\n{}", complaints.join("\n"));

    eprintln!(
        "Home Assistant {}: {} entities, {} devices of the agent",
        common::ha::ha_version(),
        want.len(),
        want_devices.len()
    );
    eprintln!(
        "agent start -> ready: {}; ready -> all entities shown with the snapshot's states: {}",
        secs(start_to_ready),
        secs(ready_to_available)
    );
    eprintln!(
        "HA restart -> all back: {} after HA's process start, {} after its birth message",
        secs(back - restarted),
        birth.map_or("?".into(), |b| secs(back.saturating_duration_since(b)))
    );
    if let Some(at) = smart_shown {
        eprintln!("agent start -> SMART entity's state shown in HA: {at:.2} s");
    }
    if let Some(shown) = health_shown {
        eprintln!("first SMART reading in the snapshot -> its entities shown: {}", secs(shown));
    }
    eprintln!("umount -> mount figures unavailable: {umount_ms:.0} ms (HA's time_fired)");
    eprintln!("loop detach -> Connected off: {unplug_ms:.0} ms");
    eprintln!("loop detach -> disk and mount removed from HA (remove_after_removable 3 s): {removed_after:.1} s");
    eprintln!("agent stop -> all unavailable: {stopped_ms:.0} ms (polled every 20 ms)");
}
