//! Soak: drives ≥ 100 000 real events through the release agent binary
//! (kernel-mode udev, the mount table, usage sampling) with an SSE client and
//! the MQTT sink (a Mosquitto started here) attached, samples the agent's
//! resident memory, then resumes a second client 50 000 events back (served
//! from the journal) and checks it for gaps and duplicates. A second part
//! kills the agent with SIGKILL mid-write and measures the journal's loss
//! window: what a power loss at that instant would take (events written but
//! not yet fsynced).
//!
//! Events come from the kernel through the binary, nothing is fed in: rounds
//! of `--mounts` tmpfs mounted and unmounted (mount.mounted / mount.unmounted),
//! a tmpfs whose usage the bench moves every round (mount.usage), and every
//! `--plug-every` rounds a loop device attached and detached (disk.added /
//! disk.removed). The bench runs in a private mount namespace, so its mounts
//! never show outside; the loop devices take the machine-wide test lock.
//!
//! `cargo bench --bench soak -- [--events N] [--mounts K] [--plug-every P] [--kills R]`
//! (defaults 100 000 events, 25 mounts per round, a plug cycle every 10 rounds, 10 kills).
//! `DISKWATCH_AGENT_BIN=path` runs another build of the agent: to compare two builds, or to
//! measure the shipped binary (`cargo build --release`; the one cargo builds for this bench has
//! the dev-dependencies' features unified in and is about 0.5 MB larger). Needs root.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::mosquitto::Mosquitto;
use common::sse::SseClient;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

const WAIT: Duration = Duration::from_secs(30);

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// A `/proc/<pid>/status` memory line in KiB.
fn status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// What the resident memory is made of: heap and stacks (anonymous) and mapped file pages (the
/// binary's and libraries' code).
fn rss_parts(pid: u32) -> String {
    format!(
        "anonymous {} KiB, file {} KiB, {} threads",
        status_kib(pid, "RssAnon:"),
        status_kib(pid, "RssFile:"),
        status_kib(pid, "Threads:")
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The release agent, stopped by its PID (SIGTERM, or SIGKILL in the loss test) on drop.
struct Agent {
    child: Option<Child>,
    port: u16,
    stderr: PathBuf,
}

impl Agent {
    fn start(dir: &Path, extra_config: &str, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let state = dir.join("state");
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "node_id = \"soak\"\nstate_dir = \"{}\"\nlog_level = \"warn\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n{extra_config}",
                state.display()
            ),
        )
        .unwrap();
        let stderr = dir.join("agent.log");
        // DISKWATCH_AGENT_BIN: another build of the agent, to compare builds (before / after a change).
        let bin = std::env::var_os("DISKWATCH_AGENT_BIN")
            .map_or_else(|| env!("CARGO_BIN_EXE_diskwatch").into(), PathBuf::from);
        let child = Command::new(bin)
            .args(["--config", config.to_str().unwrap()])
            .env_remove("DISKWATCH_AGENT_BIN")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("run the release agent");
        let agent = Self { child: Some(child), port, stderr };
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "agent did not start: {}", agent.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        agent
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn signal(&mut self, signal: nix::sys::signal::Signal) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal);
            let _ = child.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
    }
}

/// A tmpfs this bench mounted; unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Self {
        std::fs::create_dir_all(path).unwrap();
        mount(Some("tmpfs"), path, Some("tmpfs"), MsFlags::empty(), Some(format!("size={size}").as_str()))
            .unwrap_or_else(|e| panic!("mount tmpfs on {}: {e}", path.display()));
        Self(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

/// What the attached SSE client saw.
#[derive(Default)]
struct Seen {
    last_id: AtomicU64,
    events: AtomicU64,
    mounted: AtomicU64,
    unmounted: AtomicU64,
    disk_added: AtomicU64,
    disk_removed: AtomicU64,
    gaps: AtomicU64,
    resyncs: AtomicU64,
}

async fn follow(url: String, seen: Arc<Seen>) {
    let mut sse = SseClient::connect(&url, None).await;
    while let Some(msg) = sse.next().await {
        let Some(id) = msg.id.as_deref().and_then(|i| i.parse::<u64>().ok()) else { continue };
        match msg.event.as_str() {
            "resync" => {
                seen.resyncs.fetch_add(1, Ordering::Relaxed);
            }
            "mount.mounted" => {
                seen.mounted.fetch_add(1, Ordering::Relaxed);
            }
            "mount.unmounted" => {
                seen.unmounted.fetch_add(1, Ordering::Relaxed);
            }
            "disk.added" => {
                seen.disk_added.fetch_add(1, Ordering::Relaxed);
            }
            "disk.removed" => {
                seen.disk_removed.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        let last = seen.last_id.swap(id, Ordering::Relaxed);
        if last != 0 && id != last + 1 {
            seen.gaps.fetch_add(1, Ordering::Relaxed);
        }
        seen.events.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts the agent's event messages on the broker.
async fn mqtt_counter(port: u16, count: Arc<AtomicU64>) {
    let mut options = rumqttc::MqttOptions::new("soak-counter", "127.0.0.1", port);
    options.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 1000);
    client.subscribe("diskwatch/soak/events", rumqttc::QoS::AtLeastOnce).await.unwrap();
    loop {
        match eventloop.poll().await {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(_))) => {
                count.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn wait_until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

fn mb(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

async fn soak(target: u64, per_round: usize, plug_every: u64) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start();
    let base = dir.path().join("mnt");
    let image = dir.path().join("plug.img");
    std::fs::File::create(&image).unwrap().set_len(8 << 20).unwrap();
    let config = format!(
        "[udev]\nsource = \"kernel\"\ninclude = [\"loop*\"]\n\
         [mounts]\nmountinfo = \"/proc/self/mountinfo\"\nusage_interval = \"100ms\"\ninclude_paths = [\"{base}/**\"]\n\
         [shares]\nenabled = false\n\
         [mqtt]\nurl = \"{url}\"\n",
        base = base.display(),
        url = broker.url()
    );
    let usage = Tmpfs::mount(&base.join("usage"), "4m");
    let agent = Agent::start(dir.path(), &config, &[]);
    let pid = agent.pid();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start_rss = rss_kib(pid);
    let mqtt = Arc::new(AtomicU64::new(0));
    tokio::spawn(mqtt_counter(broker.port, mqtt.clone()));
    let seen = Arc::new(Seen::default());
    tokio::spawn(follow(agent.url("/api/v1/events/stream"), seen.clone()));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mqtt_before = mqtt.load(Ordering::Relaxed);
    let snapshot: serde_json::Value = reqwest::get(agent.url("/api/v1/snapshot")).await.unwrap().json().await.unwrap();
    let first_id = snapshot["last_event_id"].as_u64().unwrap();
    println!(
        "soak: release agent pid {pid}, {per_round} tmpfs mounts per round, a plug cycle every {plug_every} rounds, \
         usage sampled every 100 ms; SSE client and MQTT (Mosquitto on port {}) attached",
        broker.port
    );
    println!("RSS at start: {start_rss} KiB ({:.1} MB; {})", mb(start_rss), rss_parts(pid));
    let mut series: Vec<(u64, u64)> = vec![(0, start_rss)];
    let mut next_sample = 5_000;
    let started = Instant::now();
    let mut round = 0u64;
    let mut plugs = 0u64;
    let mut expected_mounted = 0u64;
    let mut expected_added = 0u64;
    let blob = vec![0x5au8; 3 << 20];
    while seen.events.load(Ordering::Relaxed) < target {
        round += 1;
        // Usage moves by ~60 points each round: the next sample reports it.
        let size = if round % 2 == 0 { 512 << 10 } else { 3 << 20 };
        std::fs::write(usage.0.join("fill"), &blob[..size]).unwrap();
        let mounts: Vec<Tmpfs> = (0..per_round).map(|i| Tmpfs::mount(&base.join(format!("m{i}")), "1m")).collect();
        expected_mounted += per_round as u64;
        wait_until("mount.mounted", || seen.mounted.load(Ordering::Relaxed) >= expected_mounted).await;
        drop(mounts);
        wait_until("mount.unmounted", || seen.unmounted.load(Ordering::Relaxed) >= expected_mounted).await;
        if plug_every > 0 && round % plug_every == 0 {
            let _lock = common::machine_lock();
            let dev = common::sh("losetup", &["-f", "--show", image.to_str().unwrap()]);
            expected_added += 1;
            wait_until("disk.added", || seen.disk_added.load(Ordering::Relaxed) >= expected_added).await;
            common::sh("losetup", &["-d", &dev]);
            wait_until("disk.removed", || seen.disk_removed.load(Ordering::Relaxed) >= expected_added).await;
            plugs += 1;
        }
        let n = seen.events.load(Ordering::Relaxed);
        if n >= next_sample {
            series.push((n, rss_kib(pid)));
            next_sample += 5_000;
        }
    }
    let elapsed = started.elapsed();
    let total = seen.events.load(Ordering::Relaxed);
    let last_id = seen.last_id.load(Ordering::Relaxed);
    // The MQTT subscriber counts what reaches the broker (QoS 1) after it subscribed.
    let deadline = Instant::now() + WAIT;
    while mqtt.load(Ordering::Relaxed) - mqtt_before < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let end_rss = rss_kib(pid);
    println!("RSS at the end: {end_rss} KiB ({:.1} MB; {})", mb(end_rss), rss_parts(pid));
    if std::env::var_os("SOAK_SMAPS").is_some() {
        // The largest resident mappings, for finding where memory went.
        let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
        let mut maps: Vec<(u64, String)> = Vec::new();
        let mut name = String::new();
        for line in smaps.lines() {
            if line.split_whitespace().next().is_some_and(|f| f.contains('-') && !f.ends_with(':')) {
                name = line.split_whitespace().skip(5).collect::<Vec<_>>().join(" ");
                let range = line.split_whitespace().next().unwrap_or_default().to_owned();
                name = format!("{range} {name}");
            } else if let Some(kib) = line.strip_prefix("Rss:") {
                let kib: u64 = kib.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0);
                maps.push((kib, name.clone()));
            }
        }
        maps.sort_by_key(|m| std::cmp::Reverse(m.0));
        for (kib, name) in maps.iter().take(15) {
            println!("  smaps {kib:>6} KiB {name}");
        }
    }
    series.push((total, end_rss));
    // The agent trims its heap once it has been quiet a second (src/heap.rs): what it holds at rest.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let rest_rss = rss_kib(pid);
    println!("RSS 2.5 s after the flood: {rest_rss} KiB ({:.1} MB; {})", mb(rest_rss), rss_parts(pid));
    println!(
        "drove {total} events in {:.1} s ({:.0}/s): {round} mount rounds, {plugs} plug cycles; \
         SSE client: {} gaps, {} resyncs; MQTT subscriber received {}",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        seen.gaps.load(Ordering::Relaxed),
        seen.resyncs.load(Ordering::Relaxed),
        mqtt.load(Ordering::Relaxed) - mqtt_before
    );
    println!("RSS series (events -> KiB):");
    for (events, kib) in &series {
        println!("  {events:>7} {kib:>6} KiB  {:5.1} MB", mb(*kib));
    }
    let metrics = reqwest::get(agent.url("/metrics")).await.unwrap().text().await.unwrap();
    for line in metrics.lines().filter(|l| l.starts_with("diskwatch_event_ring")) {
        println!("  {line}");
    }
    let at = |n: u64| series.iter().find(|(e, _)| *e >= n).map_or(end_rss, |(_, k)| *k);
    let (half, full) = (at(target / 2), at(target));
    let flat = full.abs_diff(half);
    let memory_ok = full <= 12 * 1024 && flat <= 1024;
    println!(
        "verdict memory: RSS after {target} events {:.1} MB (goal <= 12 MB), {:+.2} MB between event {} and {target} \
         (goal within 1 MB): {}",
        mb(full),
        (full as f64 - half as f64) / 1024.0,
        target / 2,
        if memory_ok { "PASS" } else { "FAIL" }
    );

    // Resume 50 000 events back: older than the ring, so served from the journal.
    let back = 50_000.min(last_id - first_id);
    let from = last_id - back;
    let t0 = Instant::now();
    let mut client = SseClient::connect(&agent.url("/api/v1/events/stream"), Some(from)).await;
    let first = client.expect(WAIT).await;
    let first_latency = t0.elapsed();
    let mut expected = from + 1;
    let (mut gaps, mut duplicates, mut count) = (0u64, 0u64, 0u64);
    let mut msg = first;
    loop {
        let id: u64 = msg.id.as_deref().and_then(|i| i.parse().ok()).unwrap_or(0);
        if msg.event == "resync" {
            println!("resume: got a resync ({}) instead of history", msg.json()["reason"]);
            gaps += 1;
            break;
        }
        match id.cmp(&expected) {
            std::cmp::Ordering::Less => duplicates += 1,
            std::cmp::Ordering::Greater => gaps += id - expected,
            std::cmp::Ordering::Equal => {}
        }
        count += 1;
        expected = id.max(expected - 1) + 1;
        if id >= last_id {
            break;
        }
        msg = client.expect(WAIT).await;
    }
    let replay = t0.elapsed();
    let resume_ok = first_latency <= Duration::from_millis(50) && gaps == 0 && duplicates == 0 && count == back;
    println!(
        "resume from id {from} ({back} events back, from the journal): first event after {:.2} ms (goal <= 50 ms), \
         {count} events in {:.2} s, {gaps} missing, {duplicates} duplicates: {}",
        first_latency.as_secs_f64() * 1e3,
        replay.as_secs_f64(),
        if resume_ok { "PASS" } else { "FAIL" }
    );
    let rss_after_resume = rss_kib(pid);
    println!("RSS after the resume: {rss_after_resume} KiB ({:.1} MB)", mb(rss_after_resume));
    drop(agent);
    drop(usage);
    memory_ok && resume_ok
}

/// One SIGKILL in a write loop: returns (events written but not fsynced, their time span in ms).
fn kill_once(dir: &Path, sync: &str, after: Duration) -> (u64, u64) {
    let base = dir.join("mnt");
    let config = format!(
        "log_format = \"json\"\n[udev]\nenabled = false\n[mounts]\nmountinfo = \"/proc/self/mountinfo\"\ninclude_paths = [\"{}/**\"]\n[shares]\nenabled = false\n[mqtt]\nenabled = false\n[events]\njournal_sync = \"{sync}\"\n",
        base.display()
    );
    let mut agent = Agent::start(dir, &config, &[("RUST_LOG", "warn,diskwatch::journal_sync=debug")]);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let base = base.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mounts: Vec<Tmpfs> = (0..20).map(|i| Tmpfs::mount(&base.join(format!("k{i}")), "1m")).collect();
                std::thread::sleep(Duration::from_millis(2));
                drop(mounts);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    std::thread::sleep(after);
    let killed_at = SystemTime::now();
    agent.signal(nix::sys::signal::Signal::SIGKILL);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    // JSON log lines: `..."synced_through":1234...`, written after each fsync returned.
    let synced: u64 = agent
        .log()
        .lines()
        .filter_map(|l| l.split("\"synced_through\":").nth(1))
        .filter_map(|v| v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .max()
        .unwrap_or(0);
    let mut written: Vec<(u64, SystemTime)> = Vec::new();
    for name in ["events.jsonl.3", "events.jsonl.2", "events.jsonl.1", "events.jsonl"] {
        let Ok(text) = std::fs::read_to_string(dir.join("state").join(name)) else { continue };
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
            let id = v["id"].as_str().and_then(|i| i.parse().ok()).unwrap_or(0);
            let time = v["time"].as_str().and_then(|t| humantime::parse_rfc3339_weak(t).ok()).unwrap_or(killed_at);
            written.push((id, time));
        }
    }
    let unsynced: Vec<&(u64, SystemTime)> = written.iter().filter(|(id, _)| *id > synced).collect();
    let span = unsynced.first().map_or(0, |(_, t)| killed_at.duration_since(*t).unwrap_or_default().as_millis() as u64);
    (unsynced.len() as u64, span)
}

fn loss_window(kills: u64) {
    for sync in ["1s", "batch"] {
        let mut results = Vec::new();
        for k in 0..kills {
            let dir = tempfile::tempdir().unwrap();
            // Kill at a different phase of the fsync interval each time.
            let after = Duration::from_millis(1500 + k * 1000 / kills.max(1) + k * 37 % 100);
            results.push(kill_once(dir.path(), sync, after));
        }
        let events: Vec<u64> = results.iter().map(|r| r.0).collect();
        let spans: Vec<u64> = results.iter().map(|r| r.1).collect();
        println!(
            "journal loss window, journal_sync = {sync:?}, {kills} SIGKILLs in a write loop: events written but not \
             yet fsynced at the kill (lost on a power loss): max {} (mean {:.0}); their span up to the kill: max {} ms (mean {:.0} ms)",
            events.iter().max().unwrap_or(&0),
            events.iter().sum::<u64>() as f64 / kills.max(1) as f64,
            spans.iter().max().unwrap_or(&0),
            spans.iter().sum::<u64>() as f64 / kills.max(1) as f64,
        );
    }
}

fn main() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("soak bench needs root (mounts, loop devices)");
        return;
    }
    // A private mount namespace, entered while this process has one thread: the agent
    // inherits it, and no mount of this bench shows outside.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare the mount namespace");
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .expect("make mounts private");
    let target = arg("--events", 100_000);
    let per_round = arg("--mounts", 25) as usize;
    let plug_every = arg("--plug-every", 10);
    let kills = arg("--kills", 10);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at start: {}", load.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    let ok = runtime.block_on(soak(target, per_round, plug_every));
    if kills > 0 {
        loss_window(kills);
    }
    println!("soak verdict: {}", if ok { "PASS" } else { "FAIL" });
}
