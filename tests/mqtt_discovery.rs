//! What Home Assistant is told, end to end: the retained discovery and states on a real
//! Mosquitto must equal the agent's snapshot after a first start (each source made slow in
//! turn), a broker restart and Home Assistant's birth message; retention clears survive an
//! outage; a large re-announce through a congested connection arrives exactly once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use common::mosquitto::{self, Mosquitto, Recorder};
use common::TestAgent;
use diskwatch::model::Snapshot;
use diskwatch::sources::{Source, SourceContext, SourceFuture};
use diskwatch::state::Fact;

const WAIT: Duration = Duration::from_secs(30);

/// A source that starts `delay` late: the broker connection wins the race against it.
struct Slow {
    inner: Box<dyn Source>,
    delay: Duration,
}

impl Source for Slow {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn required(&self) -> bool {
        self.inner.required()
    }

    fn run(self: Box<Self>, ctx: SourceContext) -> SourceFuture {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            self.inner.run(ctx).await;
        })
    }
}

/// Nine Samba shares over directories that exist.
fn nine_shares(dir: &Path) -> std::path::PathBuf {
    let mut conf = String::from("[global]\n   workgroup = WORKGROUP\n\n");
    for i in 1..=9 {
        let path = dir.join(format!("share{i}"));
        std::fs::create_dir_all(&path).unwrap();
        conf.push_str(&format!("[share{i}]\n   path = {}\n   read only = no\n\n", path.display()));
    }
    let file = dir.join("smb.conf");
    std::fs::write(&file, conf).unwrap();
    file
}

/// The real sources as the agent builds them, `slow` (by name) started late.
fn real_sources(smb_conf: &Path, slow: &str) -> Vec<Box<dyn Source>> {
    let udev = diskwatch::config::UdevConfig { source: diskwatch::config::UdevMode::Kernel, ..Default::default() };
    let shares =
        diskwatch::config::SharesConfig { samba: vec![smb_conf.to_path_buf()], nfs: vec![], ..Default::default() };
    let sources: Vec<Box<dyn Source>> = vec![
        Box::new(diskwatch::udev::UdevSource::new(udev)),
        Box::new(diskwatch::mounts::MountsSource::new(Default::default())),
        Box::new(diskwatch::shares::SharesSource::new(shares)),
    ];
    sources
        .into_iter()
        .map(|inner| {
            let delay = if inner.name() == slow { Duration::from_millis(1500) } else { Duration::ZERO };
            Box::new(Slow { inner, delay }) as Box<dyn Source>
        })
        .collect()
}

/// The Home Assistant devices the snapshot calls for: the host and one per disk, mount, share.
fn expected_devices(snap: &Snapshot) -> BTreeSet<String> {
    let mut want = BTreeSet::from(["homeassistant/device/diskwatch_test/config".to_owned()]);
    for d in &snap.disks {
        want.insert(format!("homeassistant/device/diskwatch_test_disk_{}/config", d.id));
    }
    for m in &snap.mounts {
        want.insert(format!("homeassistant/device/diskwatch_test_mount_{}/config", m.id));
    }
    for s in &snap.shares {
        want.insert(format!("homeassistant/device/diskwatch_test_share_{}/config", s.id));
    }
    want
}

/// The retained state topics the snapshot calls for, with their objects' ids.
fn expected_states(snap: &Snapshot) -> BTreeSet<String> {
    let mut want = BTreeSet::new();
    want.extend(snap.disks.iter().map(|d| format!("diskwatch/test/disk/{}/state", d.id)));
    want.extend(snap.partitions.iter().map(|p| format!("diskwatch/test/partition/{}/state", p.id)));
    want.extend(snap.mounts.iter().map(|m| format!("diskwatch/test/mount/{}/state", m.id)));
    want.extend(snap.shares.iter().map(|s| format!("diskwatch/test/share/{}/state", s.id)));
    want
}

/// Waits until the broker's retained discovery and state topics are exactly what the snapshot
/// calls for (no extra, none missing), or fails with the difference.
async fn assert_broker_matches_snapshot(broker: &Mosquitto, agent: &TestAgent, when: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let snap = agent.running.as_ref().expect("running").agent.snapshot();
        let held = mosquitto::retained(broker.port, &["homeassistant/#", "diskwatch/test/+/+/state"]).await;
        let devices: BTreeSet<String> = held.keys().filter(|t| t.starts_with("homeassistant/")).cloned().collect();
        let states: BTreeSet<String> = held.keys().filter(|t| t.starts_with("diskwatch/")).cloned().collect();
        let (want_devices, want_states) = (expected_devices(&snap), expected_states(&snap));
        let whole_machine = !snap.disks.is_empty() && snap.shares.len() == 9;
        if devices == want_devices && states == want_states && whole_machine {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let missing: Vec<_> = want_devices.difference(&devices).chain(want_states.difference(&states)).collect();
            let extra: Vec<_> = devices.difference(&want_devices).chain(states.difference(&want_states)).collect();
            panic!(
                "{when}: broker differs from the snapshot or the snapshot misses the machine ({} disks, {} shares); \
                 missing {missing:#?}, extra {extra:#?}",
                snap.disks.len(),
                snap.shares.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_announces_every_object_whichever_source_is_slow() {
    if !common::require_root("first_start_announces_every_object_whichever_source_is_slow") {
        return;
    }
    let _lock = common::machine_lock();
    for slow in ["udev", "mounts", "shares"] {
        let mut broker = Mosquitto::start();
        let dir = tempfile::tempdir().unwrap();
        let smb = nine_shares(dir.path());
        let url = broker.url();
        let agent = TestAgent::start(
            |c| {
                c.mqtt.enabled = true;
                c.mqtt.url = url;
            },
            real_sources(&smb, slow),
        )
        .await;
        assert_broker_matches_snapshot(&broker, &agent, &format!("first start, {slow} slow")).await;

        broker.kill();
        broker.restart();
        assert_broker_matches_snapshot(&broker, &agent, &format!("after a broker restart, {slow} slow")).await;

        let ha = Recorder::start(broker.port, "ha", &["diskwatch/test/availability"]).await;
        ha.client.publish("homeassistant/status", rumqttc::QoS::AtLeastOnce, false, "online").await.unwrap();
        assert_broker_matches_snapshot(&broker, &agent, &format!("after HA's birth, {slow} slow")).await;
        agent.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_expired_during_an_outage_leave_no_ghost_discovery() {
    // Persistent: retained messages survive the broker's SIGKILL, as on a real installation.
    let mut broker = Mosquitto::start_with(true);
    let url = broker.url();
    let agent = TestAgent::start(
        |c| {
            c.mqtt.enabled = true;
            c.mqtt.url = url;
            c.mqtt.remove_after_fixed = Duration::from_secs(1);
        },
        vec![],
    )
    .await;
    let disk = mosquitto::disk("wwn-0x5000c500ghost", "sdg", "8:96", 1 << 40);
    agent.facts.send(Fact::BlockDevices { disks: vec![disk], partitions: vec![], initial: false }).await.unwrap();
    let config = "homeassistant/device/diskwatch_test_disk_wwn-0x5000c500ghost/config";
    let seen = Recorder::start(broker.port, "seen", &[config]).await;
    seen.wait_for(WAIT, "the disk's discovery", |m| m.iter().any(|r| r.topic == config)).await;
    // Past the broker's 1 s autosave, so the discovery is on its disk.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    broker.kill();
    // Unplugged while the broker is away, and expired (retention 1 s) before it returns.
    agent.facts.send(Fact::BlockDevices { disks: vec![], partitions: vec![], initial: false }).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    broker.restart();
    let ha = Recorder::start(broker.port, "ha", &["homeassistant/status"]).await;
    ha.client.publish("homeassistant/status", rumqttc::QoS::AtLeastOnce, false, "online").await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let held = mosquitto::retained(broker.port, &["homeassistant/#", "diskwatch/test/disk/#"]).await;
        let ghosts: Vec<&String> = held.keys().filter(|t| t.contains("ghost")).collect();
        if ghosts.is_empty() && held.contains_key("homeassistant/device/diskwatch_test/config") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "ghost topics stay retained: {ghosts:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The clears were acknowledged: the memory no longer lists them.
    let memory = std::fs::read_to_string(agent.state_dir.path().join("mqtt-objects.json")).unwrap();
    assert!(!memory.contains("ghost"), "{memory}");
    agent.stop().await;
}

/// A relay between agent and broker whose receive side is a 4 KiB socket read slowly, so the
/// agent's writes stall part-way, as on a congested link.
async fn congested_relay(broker_port: u16) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(16).unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(upstream) = tokio::net::TcpStream::connect(("127.0.0.1", broker_port)).await else { continue };
            let (mut cr, mut cw) = client.into_split();
            let (mut ur, mut uw) = upstream.into_split();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = cr.read(&mut buf).await {
                    if n == 0 || uw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            });
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut ur, &mut cw).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_reannounce_through_a_congested_link_arrives_exactly_once() {
    let broker = Mosquitto::start();
    let relay = congested_relay(broker.port).await;
    let agent = TestAgent::start(
        |c| {
            c.mqtt.enabled = true;
            c.mqtt.url = format!("mqtt://127.0.0.1:{relay}");
        },
        vec![],
    )
    .await;
    // 1 700 shares: a config, a state and an availability each, 5 100 retained messages.
    let shares: Vec<_> = (0..1700).map(|i| mosquitto::share(&format!("s{i:04}"), &format!("/srv/s{i}"))).collect();
    agent.facts.send(Fact::Shares { shares, initial: false }).await.unwrap();
    let filters = ["homeassistant/device/+/config", "diskwatch/test/share/+/+"];
    let first = Recorder::start(broker.port, "first", &filters).await;
    first.wait_for(WAIT * 2, "the first announce", |m| m.len() >= 5100).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let rec = Recorder::start(broker.port, "reannounce", &filters).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let retained_seen = rec.len();
    rec.client.publish("homeassistant/status", rumqttc::QoS::AtLeastOnce, false, "online").await.unwrap();
    rec.wait_for(WAIT * 2, "the re-announce", |m| m.iter().filter(|r| !r.retain).count() >= 5100).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for m in rec.all().iter().skip(retained_seen).filter(|r| !r.retain) {
        *counts.entry(m.topic.clone()).or_default() += 1;
    }
    let total: usize = counts.values().sum();
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(
        counts.len() >= 5100 && total == counts.len(),
        "{total} messages on {} topics; e.g. {twice:?}",
        counts.len()
    );
    let metrics = reqwest::get(agent.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("diskwatch_mqtt_connections_total 1\n"), "reconnected:\n{metrics}");
    agent.stop().await;
}
