//! The MQTT sink against a real Mosquitto: Home Assistant schema validation,
//! a loop device's life, broker outages, HA restarts and removal retention.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::ha::{ha_python, ha_python_old, run_validator};
use common::mosquitto::{self, Mosquitto, Recorder};
use common::TestAgent;
use diskwatch::config::{Config, DiscoveryMode};
use diskwatch::state::Fact;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

fn mqtt_config(config: &mut Config, broker: &Mosquitto) {
    config.mqtt.enabled = true;
    config.mqtt.url = broker.url();
}

/// A disk with one labelled partition mounted at /mnt/data, a tmpfs on /srv, a share under /mnt/data.
async fn feed_topology(agent: &TestAgent) {
    let disk = mosquitto::disk("wwn-0x5000c500a", "sdx", "8:240", 4 << 40);
    let part = mosquitto::partition("part-1", "wwn-0x5000c500a", "sdx1", "8:241", "Data");
    agent.facts.send(Fact::BlockDevices { disks: vec![disk], partitions: vec![part], initial: false }).await.unwrap();
    let mounts = vec![mosquitto::mount("/mnt/data", "/dev/sdx1", "8:241", 42.5), {
        let mut m = mosquitto::mount("/srv", "tmpfs", "0:99", 3.0);
        m.fs_type = "tmpfs".into();
        m
    }];
    agent.facts.send(Fact::Mounts { mounts, initial: false }).await.unwrap();
    let shares = vec![mosquitto::share("media", "/mnt/data/media")];
    agent.facts.send(Fact::Shares { shares, initial: false }).await.unwrap();
}

/// A degraded raid1 rebuilding onto sdz: every array entity has a value to show.
async fn feed_array(agent: &TestAgent) {
    use diskwatch::arrays::{Array, ArrayKind, ArrayMember, ArrayState, MemberRole};
    let mut array = Array::new(ArrayKind::Md, "md0", Some("0fbf5f2c-add2-43c2-bd78-a4be3ab709ef".into()));
    array.level = Some("raid1".into());
    array.raid_disks = Some(2);
    array.members = vec![
        ArrayMember::new(Some("sdx".into()), MemberRole::Active, Some(0)),
        ArrayMember::new(Some("sdz".into()), MemberRole::Spare, Some(1)),
    ];
    array.members[1].rebuilding = true;
    array.degraded_count = 1;
    array.state = ArrayState::Recovering;
    array.sync_action = Some("recover".into());
    array.sync_percent = Some(42.5);
    agent.facts.send(Fact::Arrays { arrays: vec![array], initial: true }).await.unwrap();
}

#[tokio::test]
async fn discovery_payloads_pass_home_assistant_schemas() {
    let Some(python) = ha_python() else { return };
    let old = ha_python_old();
    for mode in [DiscoveryMode::Device, DiscoveryMode::Component] {
        let broker = Mosquitto::start();
        let agent = TestAgent::start(
            |c| {
                mqtt_config(c, &broker);
                c.mqtt.discovery = mode;
            },
            vec![],
        )
        .await;
        feed_topology(&agent).await;
        feed_array(&agent).await;
        let rec = Recorder::start(broker.port, "t-schema", &["homeassistant/#"]).await;
        // host, disk, two mounts, share, array (device form); their entities (component form:
        // mounts and the degraded array with their attention sensor and acknowledge button)
        let expected = match mode {
            DiscoveryMode::Device => 6,
            DiscoveryMode::Component => 7 + 2 + 2 * 6 + 1 + 5,
        };
        rec.wait_for(WAIT, "all discovery configs", |m| {
            m.iter().map(|r| r.topic.as_str()).collect::<std::collections::BTreeSet<_>>().len() >= expected
        })
        .await;
        let configs = mosquitto::retained(broker.port, &["homeassistant/#"]).await;
        assert_eq!(configs.len(), expected, "{mode:?}: {:#?}", configs.keys());
        run_validator(&python, &configs, agent.state_dir.path());
        // The older release too (2025.4.4, after the stated minimum of either form).
        if let Some(old) = &old {
            run_validator(old, &configs, agent.state_dir.path());
        }
        agent.stop().await;
    }
}

fn running_agent(agent: &TestAgent) -> &diskwatch::Agent {
    &agent.running.as_ref().expect("running").agent
}

/// Event ids as received, in arrival order.
fn event_ids(messages: &[mosquitto::Received], topic: &str) -> Vec<u64> {
    messages
        .iter()
        .filter(|m| m.topic == topic)
        .map(|m| serde_json::from_str::<Value>(&m.payload).unwrap()["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

/// Retained state topics on the broker must equal what the agent's snapshot says.
async fn assert_states_match_snapshot(broker: &Mosquitto, agent: &TestAgent) {
    let snap = running_agent(agent).snapshot();
    let mut want = BTreeMap::new();
    for d in &snap.disks {
        want.insert(format!("diskwatch/test/disk/{}/state", d.id), serde_json::to_value(d).unwrap());
    }
    for p in &snap.partitions {
        want.insert(format!("diskwatch/test/partition/{}/state", p.id), serde_json::to_value(p).unwrap());
    }
    for m in &snap.mounts {
        want.insert(format!("diskwatch/test/mount/{}/state", m.id), serde_json::to_value(m).unwrap());
    }
    for s in &snap.shares {
        want.insert(format!("diskwatch/test/share/{}/state", s.id), serde_json::to_value(s).unwrap());
    }
    let got: BTreeMap<String, Value> = mosquitto::retained(broker.port, &["diskwatch/test/+/+/state"])
        .await
        .into_iter()
        .map(|(t, p)| (t, serde_json::from_str(&p).unwrap()))
        .collect();
    assert_eq!(got, want, "retained states differ from the snapshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_loses_no_event_and_states_converge() {
    let mut broker = Mosquitto::start_with(true);
    let agent = TestAgent::start(|c| mqtt_config(c, &broker), vec![]).await;
    feed_topology(&agent).await;
    let events_topic = "diskwatch/test/events";
    let avail = "diskwatch/test/availability";
    let rec =
        Recorder::start_with(broker.port, "t-outage", &[events_topic, avail], false, rumqttc::QoS::AtLeastOnce).await;
    rec.wait_for(WAIT, "agent online", |m| m.iter().any(|r| r.topic == avail && r.payload == "online")).await;
    let start_seq = running_agent(&agent).log.last_seq();
    // Let the broker save the recorder's session before it is killed.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let facts = agent.facts.clone();
    let ticks = |range: std::ops::Range<u32>| {
        let facts = facts.clone();
        async move {
            for i in range {
                facts.send(Fact::SourceFailed { source: "pulse".into(), message: format!("tick {i}") }).await.unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    ticks(0..30).await;
    broker.kill();
    let killed_at_seq = running_agent(&agent).log.last_seq();
    ticks(30..90).await;
    // States change during the outage: the broker must end up with the new ones.
    let mount_id = "mnt_data".to_owned();
    let usage = mosquitto::mount("/mnt/data", "/dev/sdx1", "8:241", 91.0).usage;
    agent.facts.send(Fact::MountUsage { id: mount_id, usage, stale: false }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = running_agent(&agent).sink_statuses().into_iter().find(|s| s.name == "mqtt").unwrap().status;
    assert_ne!(status, diskwatch::agent::SinkState::Connected, "health shows the broker down");
    broker.restart();
    ticks(90..120).await;
    let end_seq = running_agent(&agent).log.last_seq();
    assert!(end_seq >= start_seq + 121, "the agent produced the events ({start_seq}..{end_seq})");

    let expected: Vec<u64> = (start_seq + 1..=end_seq).collect();
    rec.wait_for(Duration::from_secs(30), "every event after the outage", |m| {
        let mut ids = event_ids(m, events_topic);
        ids.dedup();
        ids.retain(|id| *id > start_seq);
        ids.ends_with(&[end_seq])
    })
    .await;
    let received = event_ids(&rec.all(), events_topic);
    let mut seen = std::collections::HashSet::new();
    let mut duplicates = 0;
    let mut unique = Vec::new();
    for id in received.iter().copied().filter(|id| *id > start_seq) {
        if seen.insert(id) {
            unique.push(id);
        } else {
            duplicates += 1;
        }
    }
    eprintln!(
        "outage: {} events ({} during the outage), {} QoS 1 duplicates dropped by CloudEvent id",
        expected.len(),
        end_seq - killed_at_seq,
        duplicates
    );
    assert_eq!(unique, expected, "events lost or out of order");
    // The agent said online again after the restart (the broker's persisted copy does not count).
    rec.wait_for(WAIT, "online after restart", |m| {
        m.iter().filter(|r| r.topic == avail && r.payload == "online").count() >= 2
    })
    .await;
    assert_eq!(
        running_agent(&agent).sink_statuses().iter().find(|s| s.name == "mqtt").unwrap().status,
        diskwatch::agent::SinkState::Connected
    );
    assert_states_match_snapshot(&broker, &agent).await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_will_marks_the_agent_offline_then_online_again() {
    let broker = Mosquitto::start();
    let agent = TestAgent::start(|c| mqtt_config(c, &broker), vec![]).await;
    let avail = "diskwatch/test/availability";
    let rec = Recorder::start(broker.port, "t-will", &[avail]).await;
    rec.wait_for(WAIT, "online", |m| m.iter().any(|r| r.payload == "online")).await;
    // A client taking over the agent's client id cuts the agent off without a DISCONNECT:
    // the broker publishes its will. The intruder then vanishes without a will of its own.
    let mut options = rumqttc::MqttOptions::new("diskwatch-test", "127.0.0.1", broker.port);
    options.set_keep_alive(Duration::from_secs(5));
    let (_client, mut eventloop) = rumqttc::AsyncClient::new(options, 10);
    loop {
        if let rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)) = eventloop.poll().await.expect("connect") {
            break;
        }
    }
    drop(eventloop);
    rec.wait_for(WAIT, "the will (offline) then online", |m| {
        let payloads: Vec<&str> = m.iter().map(|r| r.payload.as_str()).collect();
        payloads.iter().position(|p| *p == "offline").is_some_and(|i| payloads[i..].contains(&"online"))
    })
    .await;
    // A clean stop says offline too.
    agent.stop().await;
    rec.wait_for(WAIT, "offline at shutdown", |m| m.last().is_some_and(|r| r.payload == "offline")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistant_online_triggers_a_full_reannounce() {
    let broker = Mosquitto::start();
    let agent = TestAgent::start(|c| mqtt_config(c, &broker), vec![]).await;
    feed_topology(&agent).await;
    let rec =
        Recorder::start(broker.port, "t-ha", &["homeassistant/device/+/config", "diskwatch/test/+/+/state"]).await;
    rec.wait_for(WAIT, "initial discovery", |m| {
        m.iter().filter(|r| r.topic.starts_with("homeassistant/")).count() >= 5
    })
    .await;
    // Let the retained copies and any first announce settle, then count only what follows.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rec.len();
    rec.client.publish("homeassistant/status", rumqttc::QoS::AtLeastOnce, false, "online").await.unwrap();
    rec.wait_for(WAIT, "re-announced discovery and states", |m| {
        let fresh = &m[before..];
        let configs: std::collections::BTreeSet<&str> =
            fresh.iter().filter(|r| r.topic.starts_with("homeassistant/")).map(|r| r.topic.as_str()).collect();
        let states = fresh.iter().filter(|r| r.topic.ends_with("/state")).count();
        configs.len() == 5 && states >= 5
    })
    .await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_objects_go_offline_at_once_and_are_cleared_after_retention() {
    let broker = Mosquitto::start();
    let state_dir = tempfile::tempdir().unwrap();
    let dir = state_dir.path().to_path_buf();
    let configure = |c: &mut Config| {
        mqtt_config(c, &broker);
        c.state_dir = dir.clone();
        // The disk and its mount are fixed, the tmpfs on /srv goes with the short delay.
        c.mqtt.remove_after_fixed = Duration::from_secs(2);
        c.mqtt.remove_after_removable = Duration::from_secs(1);
    };
    let agent = TestAgent::start(configure, vec![]).await;
    feed_topology(&agent).await;
    let rec = Recorder::start(broker.port, "t-retention", &["diskwatch/test/#"]).await;
    let disk_avail = "diskwatch/test/disk/wwn-0x5000c500a/availability";
    rec.wait_for(WAIT, "disk online", |m| m.iter().any(|r| r.topic == disk_avail && r.payload == "online")).await;
    // The disk goes: the share stays (unavailable); the disk, its partition and mount go offline.
    agent.facts.send(Fact::BlockDevices { disks: vec![], partitions: vec![], initial: false }).await.unwrap();
    agent.facts.send(Fact::Mounts { mounts: vec![], initial: false }).await.unwrap();
    rec.wait_for(Duration::from_secs(1), "disk offline at once", |m| {
        m.iter().any(|r| r.topic == disk_avail && r.payload == "offline")
    })
    .await;
    let held = mosquitto::retained(broker.port, &["homeassistant/#"]).await;
    assert!(held.contains_key("homeassistant/device/diskwatch_test_disk_wwn-0x5000c500a/config"), "kept in retention");
    // Stop before the retention ends: the restarted agent must remember and clear them.
    agent.stop().await;
    let agent = TestAgent::start(configure, vec![]).await;
    let shares = vec![mosquitto::share("media", "/mnt/data/media")];
    agent.facts.send(Fact::Shares { shares, initial: false }).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let held = mosquitto::retained(broker.port, &["homeassistant/#", "diskwatch/test/#"]).await;
        let orphans: Vec<&String> = held
            .keys()
            .filter(|t| {
                t.contains("wwn-0x5000c500a") || t.contains("mnt_data") || t.contains("part-1") || t.contains("_srv")
            })
            .collect();
        if orphans.is_empty() {
            assert!(
                held.contains_key("homeassistant/device/diskwatch_test_share_smb-media/config"),
                "live objects stay"
            );
            assert!(held.contains_key("homeassistant/device/diskwatch_test/config"));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still retained after the retention: {orphans:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    agent.stop().await;
}

fn sysfs(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}")).trim().to_owned()
}

/// The id of the object of `kind` (`disks`, `partitions`) with this kernel name, once the agent has it.
async fn id_of(agent: &TestAgent, kind: &str, kernel_name: &str) -> String {
    let snap = agent
        .wait_snapshot(WAIT, |s| s[kind].as_array().unwrap().iter().any(|o| o["kernel_name"] == kernel_name))
        .await;
    let found = snap[kind].as_array().unwrap().iter().find(|o| o["kernel_name"] == kernel_name).unwrap().clone();
    found["id"].as_str().unwrap().to_owned()
}

/// A loop device's life through the real udev (kernel mode) and mount-table sources, as
/// Home Assistant sees it on the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_device_plugged_mounted_unmounted_unplugged() {
    if !common::require_root("loop_device_plugged_mounted_unmounted_unplugged") {
        return;
    }
    let _lock = common::machine_lock();
    let broker = Mosquitto::start();
    let work = tempfile::tempdir().unwrap();
    let target = work.path().join("mnt");
    let point = target.to_str().unwrap().to_owned();
    let agent = TestAgent::start(
        |c| {
            mqtt_config(c, &broker);
            c.udev.enabled = true;
            c.udev.source = diskwatch::config::UdevMode::Kernel;
            c.udev.include = vec!["loop*".into()];
            c.mounts.enabled = true;
            c.mounts.include_paths = vec![format!("{point}*")];
            c.mounts.usage_interval = Duration::from_millis(200);
        },
        vec![],
    )
    .await;
    let rec = Recorder::start(broker.port, "t-loop", &["diskwatch/test/#", "homeassistant/#"]).await;

    // Plugged: a real loop device with one ext4 partition, seen by the kernel-mode udev source.
    let mut dev = common::LoopDevice::new(64, &[32]);
    let name = dev.name();
    let part_name = format!("{name}p1");
    common::sh("mkfs.ext4", &["-q", "-F", "-L", "DwData", &dev.partition(1)]);
    let size = sysfs(&format!("/sys/class/block/{name}/size")).parse::<u64>().unwrap() * 512;
    let disk_id = id_of(&agent, "disks", &name).await;
    let part_id = id_of(&agent, "partitions", &part_name).await;
    let disk_avail = format!("diskwatch/test/disk/{disk_id}/availability");
    let disk_config = format!("homeassistant/device/diskwatch_test_disk_{disk_id}/config");
    rec.wait_for(WAIT, "disk discovered", |m| m.iter().any(|r| r.topic == disk_config)).await;
    // The disk's state is retained when it is announced and again once its partition is known.
    let disk_state = format!("diskwatch/test/disk/{disk_id}/state");
    let deadline = std::time::Instant::now() + WAIT;
    let (held, state) = loop {
        let held = mosquitto::retained(broker.port, &["diskwatch/test/#", "homeassistant/#"]).await;
        let state: Value = held.get(&disk_state).and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default();
        if state["partitions"][0] == part_id.as_str() || std::time::Instant::now() > deadline {
            break (held, state);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(held[&disk_avail], "online");
    assert_eq!(state["size_bytes"], size, "the size the kernel reports");
    assert_eq!(state["partitions"][0], part_id.as_str(), "{state:#}");

    // Mounted: the mount-table source sees it and samples its usage.
    let mut guard = common::MountGuard::new(&dev.partition(1), &target, Some("ext4"), None);
    let vfs = nix::sys::statvfs::statvfs(target.as_path()).unwrap();
    let total = vfs.blocks() * vfs.fragment_size();
    let mount_id = diskwatch::model::mount_id(&point);
    let mount_avail = format!("diskwatch/test/mount/{mount_id}/availability");
    let mount_config = format!("homeassistant/device/diskwatch_test_mount_{mount_id}/config");
    rec.wait_for(WAIT, "mount discovered", |m| m.iter().any(|r| r.topic == mount_config)).await;
    let state_topic = format!("diskwatch/test/mount/{mount_id}/state");
    rec.wait_for(WAIT, "mount usage", |m| {
        m.iter()
            .any(|r| r.topic == state_topic && serde_json::from_str::<Value>(&r.payload).unwrap()["usage"].is_object())
    })
    .await;
    // The config with the usage entities follows (a config changed again is held back for
    // mqtt::retained::CONFIG_GAP_MS after the first).
    rec.wait_for(WAIT, "mount usage entities", |m| {
        m.iter().any(|r| r.topic == mount_config && r.payload.contains("\"used\""))
    })
    .await;
    let held = mosquitto::retained(broker.port, &["diskwatch/test/#", "homeassistant/#"]).await;
    assert_eq!(held[&mount_avail], "online");
    let config: Value = serde_json::from_str(&held[&mount_config]).unwrap();
    assert_eq!(config["device"]["via_device"], format!("diskwatch_test_disk_{disk_id}"), "mount under its disk");
    assert_eq!(config["device"]["name"], format!("DwData ({point})"));
    assert_eq!(config["device"]["model"], format!("ext4 on {part_name}"));
    assert_eq!(config["cmps"]["used"]["name"], "Used");
    let state: Value = serde_json::from_str(&held[&state_topic]).unwrap();
    assert_eq!(state["partition_id"], part_id.as_str());
    assert_eq!(state["usage"]["total_bytes"], total, "statvfs of the real filesystem");

    // Unmounted: the mount's availability flips, its discovery stays (retention).
    guard.unmount();
    rec.wait_for(WAIT, "mount offline", |m| m.iter().any(|r| r.topic == mount_avail && r.payload == "offline")).await;
    let held = mosquitto::retained(broker.port, &["diskwatch/test/#", "homeassistant/#"]).await;
    assert_eq!(held[&mount_avail], "offline");
    assert_eq!(held[&disk_avail], "online");
    assert!(held.contains_key(&mount_config));

    // Unplugged.
    dev.detach();
    rec.wait_for(WAIT, "disk offline", |m| m.iter().any(|r| r.topic == disk_avail && r.payload == "offline")).await;
    let held = mosquitto::retained(broker.port, &["diskwatch/test/#"]).await;
    assert_eq!(held[&disk_avail], "offline");
    assert_eq!(held[&format!("diskwatch/test/partition/{part_id}/availability")], "offline");
    agent.stop().await;
}
