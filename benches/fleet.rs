//! Many agents, one broker: real diskwatch processes (distinct node ids, state dirs and HTTP
//! ports) on one local Mosquitto, as a small office with a rack of NAS boxes would run them.
//!
//! Each agent reads its own mount table (a file listing mounts whose paths live on a tmpfs
//! this bench mounts, so usage is constant at idle) and its own smb.conf; udev is off (every
//! agent would report the same host disks). Measured and checked:
//! 1. start-up: time until every agent has announced (all its discovery and state topics seen);
//! 2. uniqueness: no unique_id, device identifier or topic shared by two agents;
//! 3. Home Assistant's schemas accept every agent's discovery (tests/ha_validate.py);
//! 4. HA birth (`homeassistant/status` = online): the re-announce storm, spread by the jitter:
//!    the broker's peak messages/s and the time until all agents re-announced;
//! 5. broker restart (SIGKILL, no persistence): all agents back online and the retained
//!    states equal to each agent's snapshot (over its HTTP API);
//! 6. per-agent broker traffic per hour at idle and during a plug storm (mounts appearing and
//!    disappearing every second), and idle messages per object per hour.
//!
//! Root is needed (the tmpfs). `cargo bench --bench fleet -- [--agents N] [--idle-secs S]
//! [--storm-secs S]` (defaults 50, 120, 60).

#[path = "../tests/common/mosquitto.rs"]
#[allow(dead_code)]
mod mosquitto;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mosquitto::{Mosquitto, Received, Recorder};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_diskwatch");
/// Mounts every agent always has, and the extra ones the plug storm toggles.
const MOUNTS: usize = 4;
const STORM_MOUNTS: usize = 3;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A tmpfs mounted for the bench's mount points; unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path) -> Self {
        let status = Command::new("mount").args(["-t", "tmpfs", "-o", "size=8m", "diskwatch-fleet"]).arg(dir).status();
        assert!(status.is_ok_and(|s| s.success()), "mounting a tmpfs needs root");
        Self(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

struct Agent {
    node: String,
    port: u16,
    mountinfo: PathBuf,
    child: Child,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// A mountinfo text: the base mounts, plus the storm mounts when `extra`.
fn mountinfo(root: &Path, agent: usize, extra: bool) -> String {
    let n = if extra { MOUNTS + STORM_MOUNTS } else { MOUNTS };
    (0..n)
        .map(|i| {
            format!(
                "{} 1 8:{} / {}/a{agent:02}/m{i} rw,relatime shared:{} - ext4 /dev/sd{}1 rw\n",
                100 + i,
                16 * i + 1,
                root.display(),
                i + 1,
                (b'b' + i as u8) as char,
            )
        })
        .collect()
}

fn start_agent(root: &Path, work: &Path, broker: u16, i: usize) -> Agent {
    let node = format!("fleet-{i:02}");
    let dir = work.join(&node);
    std::fs::create_dir_all(&dir).unwrap();
    for m in 0..MOUNTS + STORM_MOUNTS {
        std::fs::create_dir_all(root.join(format!("a{i:02}/m{m}/share"))).unwrap();
    }
    let mountinfo_path = dir.join("mountinfo");
    std::fs::write(&mountinfo_path, mountinfo(root, i, false)).unwrap();
    let smb = dir.join("smb.conf");
    std::fs::write(
        &smb,
        format!(
            "[global]\nworkgroup = FLEET\n[media]\npath = {r}/a{i:02}/m0/share\n[backup]\npath = {r}/a{i:02}/m1/share\nread only = yes\n",
            r = root.display()
        ),
    )
    .unwrap();
    let port = free_port();
    let config = format!(
        "node_id = \"{node}\"\nstate_dir = \"{state}\"\nlog_level = \"warn\"\n\
         [http]\nlisten = \"127.0.0.1:{port}\"\n[udev]\nenabled = false\n\
         [mounts]\nmountinfo = \"{mi}\"\nreread_interval = \"200ms\"\nusage_interval = \"30s\"\n\
         [shares]\nsamba = [\"{smb}\"]\nnfs = []\n\
         [mqtt]\nurl = \"mqtt://127.0.0.1:{broker}\"\n",
        state = dir.join("state").display(),
        mi = mountinfo_path.display(),
        smb = smb.display(),
    );
    let config_path = dir.join("config.toml");
    std::fs::write(&config_path, config).unwrap();
    let mut command = Command::new(BIN);
    // The agent reads DISKWATCH_* as configuration: the bench's own (DISKWATCH_HA_PYTHON) must not reach it.
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("DISKWATCH_")) {
        command.env_remove(k);
    }
    let child = command
        .args(["run", "--config", config_path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
        .spawn()
        .expect("start diskwatch");
    Agent { node, port, mountinfo: mountinfo_path, child }
}

/// Which agent a topic belongs to: `diskwatch/<node>/…` or a discovery topic naming
/// `diskwatch_<node>`.
fn owner(topic: &str) -> Option<String> {
    if let Some(rest) = topic.strip_prefix("diskwatch/") {
        return rest.split('/').next().map(str::to_owned);
    }
    let at = topic.find("diskwatch_fleet-")? + "diskwatch_".len();
    topic.get(at..at + "fleet-00".len()).map(str::to_owned)
}

/// The largest number of messages within any one second.
fn peak_per_second(times: &[Instant]) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort();
    let (mut best, mut start) = (0, 0);
    for end in 0..sorted.len() {
        while sorted[end].duration_since(sorted[start]) >= Duration::from_secs(1) {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

/// For each node, when the last of its `topics` was first seen at or after `since`.
fn announce_times(
    messages: &[Received],
    topics: &BTreeMap<String, BTreeSet<String>>,
    since: Instant,
) -> BTreeMap<String, Option<Instant>> {
    let mut first: HashMap<&str, Instant> = HashMap::new();
    for m in messages.iter().filter(|m| m.at >= since) {
        first.entry(m.topic.as_str()).or_insert(m.at);
    }
    topics
        .iter()
        .map(|(node, set)| {
            let times: Option<Vec<Instant>> = set.iter().map(|t| first.get(t.as_str()).copied()).collect();
            (node.clone(), times.and_then(|t| t.into_iter().max()))
        })
        .collect()
}

async fn wait_all_announced(
    rec: &Recorder,
    topics: &BTreeMap<String, BTreeSet<String>>,
    since: Instant,
    timeout: Duration,
) -> Duration {
    let deadline = Instant::now() + timeout;
    loop {
        let times = announce_times(&rec.all(), topics, since);
        if times.values().all(Option::is_some) {
            return times.values().flatten().max().map_or(Duration::ZERO, |t| t.duration_since(since));
        }
        let missing: Vec<&String> = times.iter().filter(|(_, t)| t.is_none()).map(|(n, _)| n).collect();
        assert!(Instant::now() < deadline, "not announced in {timeout:?}: {missing:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every string value under a key naming a topic (`*_topic`, abbreviated `*_t`, `~`).
fn topics_in(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if let (true, Some(s)) =
                    (k.ends_with("_topic") || k.ends_with("_t") || k == "~" || k == "t", v.as_str())
                {
                    out.insert(s.to_owned());
                }
                topics_in(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| topics_in(v, out)),
        _ => {}
    }
}

/// unique_ids (`unique_id` / `uniq_id`) and device identifiers in a discovery payload.
fn ids_in(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("unique_id" | "uniq_id", Value::String(s)) => out.push(format!("uid:{s}")),
                    ("identifiers" | "ids", Value::Array(ids)) => {
                        out.extend(ids.iter().filter_map(Value::as_str).map(|s| format!("dev:{s}")))
                    }
                    ("identifiers" | "ids", Value::String(s)) => out.push(format!("dev:{s}")),
                    _ => ids_in(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| ids_in(v, out)),
        _ => {}
    }
}

async fn snapshot(port: u16) -> Value {
    reqwest::get(format!("http://127.0.0.1:{port}/api/v1/snapshot")).await.unwrap().json().await.unwrap()
}

/// Retained `diskwatch/<node>/<kind>/<id>/state` of every available object equal to the
/// agent's snapshot objects; removed objects keep their last state, marked `offline`, until
/// `mqtt.remove_after_fixed` clears them.
async fn states_match(broker: u16, agents: &[Agent]) -> Result<usize, String> {
    // The last changes may still be on their way (usage sampled after a mount reappears):
    // compare until equal, for up to 10 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let result = states_match_once(broker, agents).await;
        if result.is_ok() || Instant::now() > deadline {
            return result;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn states_match_once(broker: u16, agents: &[Agent]) -> Result<usize, String> {
    let all = mosquitto::retained(broker, &["diskwatch/+/+/+/state", "diskwatch/+/+/+/availability"]).await;
    let retained: BTreeMap<&String, &String> = all
        .iter()
        .filter(|(t, _)| t.ends_with("/state"))
        .filter(|(t, _)| {
            let availability = format!("{}/availability", t.trim_end_matches("/state"));
            all.get(&availability).is_none_or(|a| a != "offline")
        })
        .collect();
    let mut compared = 0;
    for agent in agents {
        let snap = snapshot(agent.port).await;
        let mut want = BTreeMap::new();
        for (kind, list) in [("disk", "disks"), ("partition", "partitions"), ("mount", "mounts"), ("share", "shares")] {
            for object in snap[list].as_array().unwrap() {
                let id = object["id"].as_str().unwrap();
                want.insert(format!("diskwatch/{}/{kind}/{id}/state", agent.node), object.clone());
            }
        }
        let prefix = format!("diskwatch/{}/", agent.node);
        let got: BTreeMap<String, Value> = retained
            .iter()
            .filter(|(t, _)| t.starts_with(&prefix))
            .map(|(t, p)| ((*t).clone(), serde_json::from_str(p).unwrap_or(Value::Null)))
            .collect();
        if got != want {
            let differ = want.keys().filter(|k| got.get(*k) != want.get(*k)).count();
            return Err(format!(
                "{}: retained {} states, snapshot {} objects, {differ} differ",
                agent.node,
                got.len(),
                want.len()
            ));
        }
        compared += want.len();
    }
    Ok(compared)
}

fn per_agent_per_hour(messages: &[Received], from: Instant, to: Instant, nodes: usize) -> (f64, f64) {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for m in messages.iter().filter(|m| m.at >= from && m.at < to) {
        if let Some(node) = owner(&m.topic) {
            *counts.entry(node).or_default() += 1;
        }
    }
    let hours = to.duration_since(from).as_secs_f64() / 3600.0;
    let total: usize = counts.values().sum();
    let max = counts.values().copied().max().unwrap_or(0);
    (total as f64 / nodes as f64 / hours, max as f64 / hours)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let agents_n = arg("--agents", 50) as usize;
    let idle_secs = arg("--idle-secs", 120);
    let storm_secs = arg("--storm-secs", 60);
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("disks");
    std::fs::create_dir_all(&root).unwrap();
    let _tmpfs = Tmpfs::mount(&root);
    let mut broker = Mosquitto::start_configured(false, "max_queued_messages 100000\n");
    let rec = Recorder::start(broker.port, "fleet-recorder", &["diskwatch/#", "homeassistant/#"]).await;
    println!("fleet: {agents_n} agents, Mosquitto on port {}", broker.port);

    // 1. Start-up.
    let t0 = Instant::now();
    let agents: Vec<Agent> = (0..agents_n).map(|i| start_agent(&root, work.path(), broker.port, i)).collect();
    let spawned = t0.elapsed();
    // Settle: wait until the retained topic set stops growing, then take it as each node's set.
    let mut last = (0, Instant::now());
    loop {
        let n = rec.len();
        if n != last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(3) && n > 0 {
            break;
        }
        if t0.elapsed() > Duration::from_secs(180) {
            let log = std::fs::read_to_string(work.path().join("fleet-00/stderr.log")).unwrap_or_default();
            panic!("the fleet never settled: {n} messages so far; fleet-00 logged:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let retained = mosquitto::retained(broker.port, &["diskwatch/#", "homeassistant/#"]).await;
    let mut topics: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for topic in retained.keys() {
        if let Some(node) = owner(topic) {
            topics.entry(node).or_default().insert(topic.clone());
        }
    }
    assert_eq!(topics.len(), agents_n, "agents with retained topics: {:?}", topics.keys());
    let startup = wait_all_announced(&rec, &topics, t0, Duration::from_secs(10)).await;
    let startup_msgs: Vec<Instant> = rec.all().iter().map(|m| m.at).collect();
    let objects: BTreeMap<String, usize> = topics
        .iter()
        .map(|(n, set)| {
            (n.clone(), set.iter().filter(|t| t.ends_with("/state") && t.split('/').count() == 5).count() + 1)
        })
        .collect();
    println!(
        "start-up: {agents_n} processes spawned in {spawned:.2?}; all announced {startup:.2?} after the first spawn; \
         {} retained topics ({} per agent), {} objects per agent (host included); broker peak {} msg/s",
        retained.len(),
        retained.len() / agents_n,
        objects.values().next().copied().unwrap_or(0),
        peak_per_second(&startup_msgs),
    );

    // 2. Uniqueness across agents.
    let mut id_owner: HashMap<String, String> = HashMap::new();
    let mut topic_owner: HashMap<String, String> = HashMap::new();
    let mut discovery_msgs = Vec::new();
    let mut clashes = Vec::new();
    for (topic, payload) in retained.iter().filter(|(t, _)| t.starts_with("homeassistant/")) {
        let node = owner(topic).unwrap_or_default();
        let doc: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
        let (mut ids, mut used) = (Vec::new(), BTreeSet::new());
        ids_in(&doc, &mut ids);
        topics_in(&doc, &mut used);
        used.insert(topic.clone());
        // The shared topics every agent subscribes to or publishes on by design.
        used.remove("homeassistant/status");
        for id in ids.iter().filter(|id| id.starts_with("uid:")) {
            if let Some(other) = id_owner.insert(id.clone(), node.clone()) {
                clashes.push(format!("{id} in {other} and {node}"));
            }
        }
        for t in used {
            if let Some(other) = topic_owner.insert(t.clone(), node.clone()) {
                if other != node {
                    clashes.push(format!("topic {t} in {other} and {node}"));
                }
            }
        }
        discovery_msgs.push(serde_json::json!({"topic": topic, "payload": payload}));
    }
    let device_ids: BTreeSet<&String> = id_owner.keys().collect();
    println!(
        "uniqueness: {} unique_ids and {} topics across {} discovery messages; clashes: {}",
        device_ids.len(),
        topic_owner.len(),
        discovery_msgs.len(),
        if clashes.is_empty() { "none".to_owned() } else { clashes.join("; ") }
    );

    // 3. Home Assistant's own schemas.
    let python = std::env::var("DISKWATCH_HA_PYTHON").unwrap_or_else(|_| "/opt/diskwatch-ha-venv/bin/python".into());
    if Path::new(&python).exists() {
        let file = work.path().join("discovery.json");
        std::fs::write(&file, serde_json::to_string(&discovery_msgs).unwrap()).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ha_validate.py");
        let out = Command::new(&python).arg(&script).arg(&file).output().expect("run ha_validate.py");
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        println!(
            "validation: {} discovery messages of {agents_n} agents through Home Assistant's schemas: {}",
            discovery_msgs.len(),
            if out.status.success() { "all valid".to_owned() } else { format!("FAILED\n{text}") }
        );
    } else {
        println!("validation: skipped ({python} missing: run scripts/ha-venv)");
    }

    // 4. HA birth: the re-announce storm.
    let birth = Instant::now();
    rec.client.publish("homeassistant/status", rumqttc::QoS::AtLeastOnce, false, "online").await.unwrap();
    let reannounce = wait_all_announced(&rec, &topics, birth, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let storm: Vec<Instant> = rec.all().iter().filter(|m| m.at >= birth).map(|m| m.at).collect();
    println!(
        "HA birth: all {agents_n} re-announced within {reannounce:.2?}; {} messages, broker peak {} msg/s",
        storm.len(),
        peak_per_second(&storm)
    );

    // 5. Broker restart without persistence: every retained message is gone.
    broker.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let restart = Instant::now();
    broker.restart();
    let back = wait_all_announced(&rec, &topics, restart, Duration::from_secs(120)).await;
    let online = mosquitto::retained(broker.port, &["diskwatch/+/availability"]).await;
    let online_n = online.values().filter(|p| *p == "online").count();
    let restored: Vec<Instant> = rec.all().iter().filter(|m| m.at >= restart).map(|m| m.at).collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let matched = states_match(broker.port, &agents).await;
    println!(
        "broker restart: {online_n}/{agents_n} online, all re-announced {back:.2?} after the restart, broker peak {} msg/s; \
         retained states equal to the snapshots: {}",
        peak_per_second(&restored),
        match &matched {
            Ok(n) => format!("yes ({n} objects)"),
            Err(e) => format!("NO: {e}"),
        }
    );

    // 6. Idle traffic.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_from = Instant::now();
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let idle_to = Instant::now();
    let all = rec.all();
    let (idle_avg, idle_max) = per_agent_per_hour(&all, idle_from, idle_to, agents_n);
    let per_object = idle_avg / objects.values().next().copied().unwrap_or(1) as f64;
    println!(
        "idle ({idle_secs} s): {idle_avg:.1} messages per agent per hour (max {idle_max:.1}), \
         {per_object:.2} per object per hour"
    );

    // 7. Plug storm: on every agent, three mounts appear and disappear every second.
    let storm_from = Instant::now();
    let mut extra = false;
    while storm_from.elapsed() < Duration::from_secs(storm_secs) {
        extra = !extra;
        for (i, agent) in agents.iter().enumerate() {
            std::fs::write(&agent.mountinfo, mountinfo(&root, i, extra)).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for (i, agent) in agents.iter().enumerate() {
        std::fs::write(&agent.mountinfo, mountinfo(&root, i, false)).unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let storm_to = Instant::now();
    let all = rec.all();
    let (storm_avg, storm_max) = per_agent_per_hour(&all, storm_from, storm_to, agents_n);
    let storm_times: Vec<Instant> =
        all.iter().filter(|m| m.at >= storm_from && m.at < storm_to).map(|m| m.at).collect();
    println!(
        "plug storm ({storm_secs} s, {STORM_MOUNTS} mounts toggled every 0.5 s on every agent): \
         {storm_avg:.0} messages per agent per hour (max {storm_max:.0}), broker peak {} msg/s",
        peak_per_second(&storm_times)
    );
    let final_match = states_match(broker.port, &agents).await;
    println!(
        "after the storm: retained states equal to the snapshots: {}",
        match &final_match {
            Ok(n) => format!("yes ({n} objects)"),
            Err(e) => format!("NO: {e}"),
        }
    );
    drop(agents);
    drop(rec);
}
