//! MQTT sink figures against a real Mosquitto on a loopback port:
//! 1. event → broker subscriber latency (p50/p99/max) at a fixed rate;
//! 2. full re-announce of a 20 disk / 60 mount / 20 share topology;
//! 3. peak resident memory through a broker outage with events flowing.
//!
//! `cargo bench --bench mqtt -- [--events N] [--rate R] [--outage-secs S]`
//! (defaults 1000 events at 100/s, a 20 s outage; use --outage-secs 600 for ten minutes).
//! `--broker-nodelay 1` starts Mosquitto with `set_tcp_nodelay true` (its default is false,
//! and Nagle on the broker's writes to the subscriber then paces QoS 1 bursts by delayed ACKs).

#[path = "../tests/common/mosquitto.rs"]
#[allow(dead_code)]
mod mosquitto;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diskwatch::config::Config;
use diskwatch::mqtt::discovery::plan;
use diskwatch::mqtt::retained::Retainer;
use diskwatch::mqtt::topics::Naming;
use diskwatch::service::{start, RunOptions, Running};
use diskwatch::state::Fact;
use mosquitto::{Mosquitto, Recorder};
use tokio_util::sync::CancellationToken;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn agent(broker: &Mosquitto, state_dir: &std::path::Path) -> (Running, CancellationToken) {
    let mut config = Config { state_dir: state_dir.to_path_buf(), node_id: "bench".into(), ..Config::default() };
    config.mqtt.enabled = true;
    config.mqtt.url = broker.url();
    config.udev.enabled = false;
    config.mounts.enabled = false;
    config.shares.enabled = false;
    let token = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options = RunOptions { listener: Some(listener), no_builtin_sources: true, ..Default::default() };
    (start(config, token.clone(), options).await.unwrap(), token)
}

fn big_topology() -> Vec<Fact> {
    let mut disks = Vec::new();
    let mut parts = Vec::new();
    let mut mounts = Vec::new();
    let mut shares = Vec::new();
    for d in 0..20u32 {
        let id = format!("wwn-0x50000{d:04}");
        disks.push(mosquitto::disk(&id, &format!("sd{d}"), &format!("8:{}", d * 16), 4 << 40));
        for p in 1..=3u32 {
            let dev = format!("8:{}", d * 16 + p);
            let pid = format!("{id}-part{p}");
            parts.push(mosquitto::partition(&pid, &id, &format!("sd{d}{p}"), &dev, &format!("Vol{d}_{p}")));
            let point = format!("/srv/d{d}/p{p}");
            mounts.push(mosquitto::mount(&point, &format!("/dev/sd{d}{p}"), &dev, 10.0 + p as f64));
            if p == 1 {
                shares.push(mosquitto::share(&format!("share{d}"), &format!("{point}/data")));
            }
        }
    }
    vec![
        Fact::BlockDevices { disks, partitions: parts, initial: false },
        Fact::Mounts { mounts, initial: false },
        Fact::Shares { shares, initial: false },
    ]
}

async fn latency(broker: &Mosquitto, events: u64, rate: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (running, token) = agent(broker, dir.path()).await;
    let rec = Recorder::start(broker.port, "bench-latency", &["diskwatch/bench/events"]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let interval = Duration::from_micros(1_000_000 / rate.max(1));
    let mut tick = tokio::time::interval(interval);
    for i in 0..events {
        tick.tick().await;
        let message = format!("tick {i}");
        sent.lock().unwrap().insert(message.clone(), Instant::now());
        running.facts.send(Fact::SourceFailed { source: "bench".into(), message }).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !rec.latest("diskwatch/bench/events").is_some_and(|p| p.contains(&format!("\"tick {}\"", events - 1)))
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent = sent.lock().unwrap().clone();
    let mut lat: Vec<Duration> = rec
        .all()
        .iter()
        .filter_map(|m| {
            let v: serde_json::Value = serde_json::from_str(&m.payload).ok()?;
            let t = sent.get(v["data"]["message"].as_str()?)?;
            Some(m.at.duration_since(*t))
        })
        .collect();
    lat.sort();
    println!(
        "latency: {} events at {rate}/s, received {}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (target p99 <= 10 ms)",
        events,
        lat.len(),
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    token.cancel();
    running.wait().await;
}

async fn reannounce(broker: &Mosquitto) {
    let dir = tempfile::tempdir().unwrap();
    let (running, token) = agent(broker, dir.path()).await;
    for fact in big_topology() {
        running.facts.send(fact).await.unwrap();
    }
    // QoS 1 as the discovery configs ask of Home Assistant (a QoS 0 subscriber sends no
    // PUBACKs, and Mosquitto's Nagle-paced writes to it then wait on delayed ACKs).
    let filters = ["homeassistant/#", "diskwatch/bench/#"];
    let rec = Recorder::start_with(broker.port, "bench-announce", &filters, true, rumqttc::QoS::AtLeastOnce).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let snap = running.agent.snapshot();
    // The pure part: payloads for the whole topology and the full message list.
    let naming = Naming::new(&diskwatch::mqtt::config::MqttConfig::default(), "bench");
    let rounds = 50;
    let t = Instant::now();
    let mut n = 0;
    for _ in 0..rounds {
        let mut r = Retainer::default();
        n = r.update(plan(&snap, &naming, None), 0, true).len();
    }
    let build = t.elapsed() / rounds;
    // End to end: HA says online; after the agent's random delay, time from the first to the
    // last message of the re-announce at a subscriber on the broker.
    let before = rec.len();
    rec.client.publish("homeassistant/status", rumqttc::QoS::AtLeastOnce, false, "online").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while rec.len() < before + n + 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let msgs = rec.all();
    // The recorder also sees its own `online` on homeassistant/status: the re-announce starts after it.
    let fresh: Vec<_> = msgs[before..].iter().filter(|m| m.topic != "homeassistant/status").collect();
    let span = match (fresh.first(), fresh.last()) {
        (Some(a), Some(b)) => b.at.duration_since(a.at),
        _ => Duration::ZERO,
    };
    println!(
        "re-announce: {} disks, {} mounts, {} shares = {n} retained messages; building {:.2} ms; \
         delivered to a subscriber in {:.1} ms ({} received; target <= 200 ms)",
        snap.disks.len(),
        snap.mounts.len(),
        snap.shares.len(),
        build.as_secs_f64() * 1e3,
        span.as_secs_f64() * 1e3,
        fresh.len()
    );
    token.cancel();
    running.wait().await;
}

async fn outage(broker: &mut Mosquitto, secs: u64, rate: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (running, token) = agent(broker, dir.path()).await;
    for fact in big_topology() {
        running.facts.send(fact).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_kib();
    broker.kill();
    let mut peak = before;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    let end = Instant::now() + Duration::from_secs(secs);
    let mut i = 0u64;
    let mut sample = Instant::now();
    while Instant::now() < end {
        tick.tick().await;
        let message = format!("outage {i}");
        i += 1;
        running.facts.send(Fact::SourceFailed { source: "bench".into(), message }).await.unwrap();
        if sample.elapsed() > Duration::from_millis(100) {
            peak = peak.max(rss_kib());
            sample = Instant::now();
        }
    }
    peak = peak.max(rss_kib());
    broker.restart();
    let rec = Recorder::start(broker.port, "bench-outage", &["diskwatch/bench/availability"]).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while rec.latest("diskwatch/bench/availability").as_deref() != Some("online") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let queue = diskwatch::mqtt::config::MqttConfig::default().queue_size;
    println!(
        "outage: {secs} s broker outage, {i} events at {rate}/s (queue_size {queue}): RSS before {} KiB, \
         peak {} KiB (+{} KiB); reconnected after restart: {}",
        before,
        peak,
        peak.saturating_sub(before),
        rec.latest("diskwatch/bench/availability").as_deref() == Some("online")
    );
    token.cancel();
    running.wait().await;
}

fn main() {
    let events = arg("--events", 1000);
    let rate = arg("--rate", 100);
    let outage_secs = arg("--outage-secs", 20);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let mut extra = String::new();
        if arg("--broker-nodelay", 0) == 1 {
            extra.push_str("set_tcp_nodelay true\n");
        }
        // Mosquitto delivers at most this many QoS 1 messages to a subscriber before its PUBACKs
        // (default 20): with a subscriber that cannot set TCP_NODELAY this paces bursts.
        let inflight = arg("--broker-inflight", 20);
        extra.push_str(&format!("max_inflight_messages {inflight}\n"));
        let extra = extra.as_str();
        let mut broker = Mosquitto::start_configured(false, extra);
        println!("broker: mosquitto on 127.0.0.1:{} {}", broker.port, extra.trim());
        latency(&broker, events, rate).await;
        reannounce(&broker).await;
        outage(&mut broker, outage_secs, rate).await;
    });
}
