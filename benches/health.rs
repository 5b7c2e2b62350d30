//! Health, activity and history benchmark (issue 10's figures):
//! - a poll round over 24 disks (12 spinning with I/O, 12 in standby) with smartctl replaced by
//!   tests/fixtures/smartctl/recorder.sh: agent CPU per round, smartctl runs per disk;
//! - I/O sampling of 50 disks: CPU per sample and per minute at a 10 s interval;
//! - history of 200 objects × 3 metrics × 7 days at 5 min: resident bytes, one-object query time,
//!   save/load time and file size;
//! - the real binary with every part on (default configuration: udev, mounts, shares, health
//!   with Debian's smartctl, activity, history, MQTT retrying an absent broker): idle RSS with an
//!   empty history and with a full 200 × 3 × 7-day history loaded from state_dir, and
//!   `GET /api/v1/history` latency for one object over HTTP.
//!
//! `cargo bench --bench health`. The sysfs trees are fakes in a temp dir (the counters files
//! have the kernel's format); only the agent's own CPU is counted, not the recorder's.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use diskwatch::activity::Sampler;
use diskwatch::health::poller::{Poller, Target};
use diskwatch::history::{persist, Metric, Store};
use diskwatch::smartctl::Smartctl;

/// User + system CPU of the whole process, from /proc/self/stat (USER_HZ = 100).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    let rest = &stat[stat.rfind(')').expect("comm field") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    ticks as f64 / 100.0
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = statm.split_whitespace().nth(1).expect("rss field").parse().expect("rss");
    pages * 4096
}

fn write_stat(dir: &Path, ios: u64) {
    std::fs::write(dir.join("stat"), format!("{ios} 0 {} 0 {ios} 0 {} 0 0 {ios} 0 0 0 0 0 0 0\n", ios * 8, ios * 8))
        .expect("write stat");
}

/// A fake `<root>/block/<name>` with one partition and runtime PM `active`.
fn fake_disk(root: &Path, name: &str) -> PathBuf {
    let disk = root.join("block").join(name);
    let part = disk.join(format!("{name}1"));
    std::fs::create_dir_all(&part).expect("mkdir");
    std::fs::create_dir_all(disk.join("device/power")).expect("mkdir");
    std::fs::write(disk.join("device/power/runtime_status"), "active\n").expect("write");
    std::fs::write(part.join("partition"), "1\n").expect("write");
    write_stat(&disk, 100);
    write_stat(&part, 100);
    part
}

async fn poll_rounds() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smartctl");
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    std::fs::copy(fixtures.join("recorder.sh"), bin.join("smartctl")).expect("copy recorder");
    std::fs::write(bin.join("fixtures"), fixtures.to_string_lossy().as_bytes()).expect("write");
    let replays = [
        "ata-hdd-wd140edfz.json",
        "sata-ssd-samsung-860evo.json",
        "nvme-corsair-mp510.json",
        "sas-seagate-st1200mm0088.json",
        "usb-jmicron-hitachi-failing.json",
        "ata-hdd-st3500418as-realloc-1.json",
    ];
    let sys = tmp.path().join("sys");
    let mut map = String::new();
    let mut targets = Vec::new();
    let mut active_parts = Vec::new();
    for i in 0..24 {
        let name = format!("sd{}", (b'a' + i as u8) as char);
        let part = fake_disk(&sys, &name);
        let mode = if i < 12 { replays[i % replays.len()] } else { "standby" };
        if i < 12 {
            active_parts.push(part);
        }
        map.push_str(&format!("/dev/{name} {mode}\n"));
        targets.push(Target { id: format!("disk-{name}"), kernel_name: name.clone(), devnode: format!("/dev/{name}") });
    }
    std::fs::write(bin.join("map"), map).expect("write map");
    let smartctl = Smartctl::new(bin.join("smartctl"), Duration::from_secs(10), None);
    let mut poller = Poller::new(smartctl, sys.clone());
    poller.set_targets(targets);
    let (_, first) = poller.round(None).await;
    println!(
        "poll round 1 (24 disks, cold): smart_reads={} power_checks={} asleep={} errors={}",
        first.smart_reads, first.power_checks, first.asleep, first.errors
    );
    let log = bin.join("argv.log");
    std::fs::write(&log, "").expect("truncate log");
    let rounds = 40;
    let mut totals = diskwatch::health::poller::RoundStats::default();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    for r in 0..rounds {
        // The spinning disks had I/O since the last round; the sleeping ones had none.
        for p in &active_parts {
            write_stat(p, 200 + r);
        }
        let (_, s) = poller.round(None).await;
        totals.smart_reads += s.smart_reads;
        totals.power_checks += s.power_checks;
        totals.asleep += s.asleep;
        totals.errors += s.errors;
    }
    let cpu = cpu_seconds() - cpu0;
    let wall = t0.elapsed();
    let logged = std::fs::read_to_string(&log).expect("read log");
    let standby_runs =
        logged.lines().filter(|l| (12..24).any(|i| l.ends_with(&format!("/dev/sd{}", (b'a' + i) as char)))).count();
    let max_per_disk = (0..24u8)
        .map(|i| logged.lines().filter(|l| l.ends_with(&format!("/dev/sd{}", (b'a' + i) as char))).count())
        .max()
        .unwrap_or(0);
    println!(
        "poll rounds 2..{} (24 disks: 12 with I/O, 12 in standby): agent CPU per round = {:.1} ms (process utime+stime over {rounds} rounds), wall per round = {:.1} ms",
        rounds + 1,
        cpu * 1000.0 / rounds as f64,
        wall.as_secs_f64() * 1000.0 / rounds as f64
    );
    println!(
        "  smartctl runs: smart_reads={} power_checks={} for standby disks={} (asleep skips={}), max runs per disk per round = {:.2}, errors={}",
        totals.smart_reads,
        totals.power_checks,
        standby_runs,
        totals.asleep,
        max_per_disk as f64 / rounds as f64,
        totals.errors
    );
    // All 24 active but idle: only power checks.
    let idle_map: String =
        (0..24u8).map(|i| format!("/dev/sd{} ata-hdd-wd140edfz.json\n", (b'a' + i) as char)).collect();
    std::fs::write(bin.join("map"), idle_map).expect("write map");
    for i in 0..24u8 {
        let name = format!("sd{}", (b'a' + i) as char);
        write_stat(&sys.join("block").join(&name).join(format!("{name}1")), 10_000);
    }
    poller.round(None).await; // SMART read after the new I/O (and wakes the standby ones)
    let cpu0 = cpu_seconds();
    let mut idle = diskwatch::health::poller::RoundStats::default();
    for _ in 0..rounds {
        let (_, s) = poller.round(None).await;
        idle.smart_reads += s.smart_reads;
        idle.power_checks += s.power_checks;
    }
    let cpu = cpu_seconds() - cpu0;
    println!(
        "poll rounds, 24 active idle disks: agent CPU per round = {:.1} ms, smart_reads={} power_checks={} over {rounds} rounds",
        cpu * 1000.0 / rounds as f64,
        idle.smart_reads,
        idle.power_checks
    );
}

fn activity() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let names: Vec<String> = (0..50).map(|i| format!("sd{i:02}")).collect();
    for n in &names {
        fake_disk(tmp.path(), n);
    }
    let ids: Vec<String> = names.iter().map(|n| format!("disk-{n}")).collect();
    let mut sampler = Sampler::new(tmp.path());
    let samples = 600;
    let start = Instant::now();
    let cpu0 = cpu_seconds();
    let mut out = 0;
    for s in 0..samples {
        out += sampler
            .sample(
                ids.iter().map(String::as_str).zip(names.iter().map(String::as_str)),
                start + Duration::from_secs(10 * s),
            )
            .len();
    }
    let cpu = cpu_seconds() - cpu0;
    let per_sample = cpu / samples as f64;
    println!(
        "activity: 50 disks, {samples} samples: CPU per sample = {:.3} ms, at 10 s interval = {:.4} CPU-s/min ({out} readings)",
        per_sample * 1000.0,
        per_sample * 6.0
    );
}

fn history() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let resolution = 300;
    let slots = 7 * 24 * 3600 / resolution as usize;
    let rss0 = rss_bytes();
    let mut store = Store::new(resolution, slots);
    let metrics = [Metric::Temperature, Metric::ReadRate, Metric::WriteRate];
    let now = 1_800_000_000u64;
    let start = now - (slots as u64) * resolution;
    for o in 0..200 {
        let object = format!("disk-ata-WDC_WD40EFRX-68N32N0_WD-WCC7K{o:07}");
        for (k, m) in metrics.iter().enumerate() {
            for b in 0..slots as u64 {
                store.add(&object, *m, start + b * resolution, (o * 7 + k * 13 + b as usize % 50) as f64);
            }
        }
    }
    store.flush();
    let rss1 = rss_bytes();
    println!(
        "history: 200 objects x 3 metrics x {slots} slots: resident +{:.2} MB (slot data {:.2} MB)",
        (rss1.saturating_sub(rss0)) as f64 / 1e6,
        (200 * 3 * slots * 2) as f64 / 1e6
    );
    let object = "disk-ata-WDC_WD40EFRX-68N32N0_WD-WCC7K0000123";
    let n = 2000;
    let t = Instant::now();
    let mut points = 0;
    for i in 0..n {
        points += store.query(object, metrics[i % 3], start).len();
    }
    let per = t.elapsed() / n as u32;
    println!("history: one object x 7 days query = {per:?} ({} points)", points / n);
    let day = Instant::now();
    let last_day = store.query(object, Metric::Temperature, now - 86_400).len();
    println!("history: one object x 24 h query = {:?} ({last_day} points)", day.elapsed());
    let path = tmp.path().join("history.bin");
    let t = Instant::now();
    persist::save(&mut store, &path).expect("save");
    let saved = t.elapsed();
    let size = std::fs::metadata(&path).expect("stat").len();
    let mut back = Store::new(resolution, slots);
    let t = Instant::now();
    persist::load(&mut back, &path).expect("load");
    println!("history: save (fsynced) = {saved:?}, load = {:?}, file = {:.2} MB", t.elapsed(), size as f64 / 1e6);
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// One plain HTTP/1.1 GET; returns the status line and the body length.
fn get(port: u16, path: &str) -> Option<(String, usize)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_nodelay(true).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nhost: b\r\nconnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.lines().next()?.to_owned();
    let body = text.split_once("\r\n\r\n").map_or(0, |(_, b)| b.len());
    Some((status, body))
}

fn spawn_agent(port: u16, state: &Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_diskwatch"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("DISKWATCH_STATE_DIR", state)
        .env("DISKWATCH_LOG_LEVEL", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn diskwatch")
}

fn stop(mut child: std::process::Child) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let _ = child.wait();
}

fn idle_rss(state: &Path, label: &str) {
    let port = free_port();
    let child = spawn_agent(port, state);
    let began = Instant::now();
    while get(port, "/api/v1/health").is_none() {
        std::thread::sleep(Duration::from_millis(5));
        assert!(began.elapsed() < Duration::from_secs(10), "agent did not start");
    }
    std::thread::sleep(Duration::from_secs(5));
    println!("binary idle RSS, all parts on, {label}: {:.1} MiB", rss_kib(child.id()) as f64 / 1024.0);
    stop(child);
}

fn binary_figures() {
    let empty = tempfile::tempdir().expect("tempdir");
    idle_rss(empty.path(), "empty history");
    // A full history as the default [history] (7 days at 5 min) keeps it: 200 objects x 3 metrics.
    let full = tempfile::tempdir().expect("tempdir");
    let slots = 2016usize;
    let mut store = Store::new(300, slots);
    let now = diskwatch::history::unix_now();
    let start = now - slots as u64 * 300;
    for o in 0..200 {
        for (k, m) in [Metric::Temperature, Metric::ReadRate, Metric::WriteRate].into_iter().enumerate() {
            for b in 0..slots as u64 {
                store.add(&format!("disk-{o:03}"), m, start + b * 300, (o + k + b as usize % 40) as f64);
            }
        }
    }
    persist::save(&mut store, &full.path().join(diskwatch::history::FILE)).expect("save");
    drop(store);
    let port = free_port();
    let child = spawn_agent(port, full.path());
    while get(port, "/api/v1/health").is_none() {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_secs(5));
    println!(
        "binary idle RSS, all parts on, 200 x 3 x 7-day history loaded: {:.1} MiB",
        rss_kib(child.id()) as f64 / 1024.0
    );
    let mut times = Vec::new();
    let mut size = 0;
    for i in 0..300 {
        let t = Instant::now();
        let (status, body) =
            get(port, &format!("/api/v1/history?metric=temperature&object=disk-{:03}", i % 200)).expect("GET");
        times.push(t.elapsed());
        assert!(status.contains("200"), "{status}");
        size = body;
    }
    times.sort();
    println!(
        "GET /api/v1/history one object x 7 days (2016 points, {size} bytes), 300 requests, new connection each: p50 {:?}, p99 {:?}, max {:?}",
        times[times.len() / 2],
        times[times.len() * 99 / 100],
        times[times.len() - 1]
    );
    stop(child);
}

#[tokio::main]
async fn main() {
    poll_rounds().await;
    activity();
    history();
    binary_figures();
}
