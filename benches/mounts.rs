//! Mounts benchmark: mount syscall → SSE `mount.mounted` latency over 200 mounts, one re-read
//! and diff of a 5 000-mount table, and (with `--idle SECS`) the agent's idle CPU with 1 000
//! mounts and a 30 s usage interval.
//!
//! Runs in a private mount namespace of its own (root needed), so the host's table never sees
//! the benchmark's mounts. `cargo bench --bench mounts [-- --idle 300]`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use common::sse::SseClient;
use common::TestAgent;
use diskwatch::config::MountsConfig;
use diskwatch::mounts::differ::Differ;
use diskwatch::mounts::filter::Filter;
use diskwatch::mounts::mounts_from;
use diskwatch::state::{Fact, State, StateConfig};
use nix::mount::{mount, umount2, MntFlags, MsFlags};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{what}: n={} p50={:?} p90={:?} p99={:?} max={:?}",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.9),
        percentile(&samples, 0.99),
        samples[samples.len() - 1]
    );
}

fn tmpfs(target: &Path) {
    std::fs::create_dir_all(target).expect("mount point");
    mount(Some("dwbench"), target, Some("tmpfs"), MsFlags::empty(), Some("size=64k")).expect("mount tmpfs");
}

/// User + system CPU of the whole process (all threads), from /proc/self/stat in USER_HZ
/// ticks, which the kernel reports as 100 per second on every architecture Linux supports.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').expect("comm field") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    ticks as f64 / 100.0
}

/// Parse + filter + State::apply of a 5 000-line table where one mount changes each time,
/// first from an in-memory text, then from the kernel's own table (read included).
fn reread_and_diff(base: &Path) {
    let filter = Filter::new(&MountsConfig::default()).expect("default filter");
    let config = StateConfig { node_id: "bench".into(), ..StateConfig::default() };
    let mut state = State::new(config.clone(), 0);
    let line = |i: usize| {
        format!("{} 28 0:{} / /mnt/bench/m{i:05} rw,relatime shared:9 - tmpfs tmpfs rw,size=64k\n", 100 + i, 100 + i)
    };
    let mut text: String = (0..5000).map(line).collect();
    let mut differ = Differ::new();
    differ.diff(&text, &filter);
    state.apply(Fact::Mounts { mounts: differ.mounts().cloned().collect(), initial: true }, SystemTime::now());
    let mut samples = Vec::new();
    for round in 0..300 {
        // Toggle one extra mount in and out so every round has a real difference.
        if round % 2 == 0 {
            text.push_str("9999 28 0:9999 / /mnt/bench/extra rw - tmpfs tmpfs rw\n");
        } else {
            text.truncate(text.len() - "9999 28 0:9999 / /mnt/bench/extra rw - tmpfs tmpfs rw\n".len());
        }
        let t = Instant::now();
        let delta = differ.diff(&text, &filter);
        let events =
            state.apply(Fact::MountsChanged { upserts: delta.upserts, removed: delta.removed }, SystemTime::now());
        samples.push(t.elapsed());
        assert_eq!(events.len(), 1);
    }
    report("re-read+diff, 5000 mounts, in-memory text (parse+diff+State::apply)", samples);
    breakdown(&text, &filter, &mut differ, &mut state);

    let dir = base.join("table");
    for i in 0..5000 {
        tmpfs(&dir.join(format!("m{i:05}")));
    }
    let mut state = State::new(config, 0);
    let mut table = diskwatch::mounts::table::Table::new("/proc/self/mountinfo".into());
    let first = table.read(false).expect("read mountinfo").into_owned();
    let mut differ = Differ::new();
    differ.diff(&first, &filter);
    let mounts: Vec<_> = differ.mounts().cloned().collect();
    println!("kernel table: {} lines, {} mounts kept", first.lines().count(), mounts.len());
    state.apply(Fact::Mounts { mounts, initial: true }, SystemTime::now());
    let mut samples = Vec::new();
    let mut with_read = Vec::new();
    let extra = base.join("table-extra");
    for round in 0..100 {
        if round % 2 == 0 {
            tmpfs(&extra);
        } else {
            umount2(&extra, MntFlags::empty()).expect("umount");
        }
        let t = Instant::now();
        let text = table.read(false).expect("read mountinfo");
        let read = t.elapsed();
        let t2 = Instant::now();
        let delta = differ.diff(&text, &filter);
        let events =
            state.apply(Fact::MountsChanged { upserts: delta.upserts, removed: delta.removed }, SystemTime::now());
        samples.push(t2.elapsed());
        with_read.push(read + t2.elapsed());
        assert_eq!(events.len(), 1);
    }
    report("re-read+diff, 5000 real mounts: parse+diff+State::apply", samples);
    report("re-read+diff, 5000 real mounts: kernel read+parse+diff+State::apply", with_read);
    for i in 0..5000 {
        let _ = umount2(&dir.join(format!("m{i:05}")), MntFlags::MNT_DETACH);
    }
}

/// Where the time of one re-read goes, and what a whole-table fact would cost instead.
fn breakdown(text: &str, filter: &Filter, differ: &mut Differ, state: &mut State) {
    let (mut diff, mut apply, mut whole) = (Vec::new(), Vec::new(), Vec::new());
    let extra = "9999 28 0:9999 / /mnt/bench/extra rw - tmpfs tmpfs rw\n";
    for round in 0..50 {
        let owned;
        let text = if round % 2 == 0 {
            owned = format!("{text}{extra}");
            owned.as_str()
        } else {
            text
        };
        let t = Instant::now();
        let delta = differ.diff(text, filter);
        diff.push(t.elapsed());
        let t = Instant::now();
        state.apply(Fact::MountsChanged { upserts: delta.upserts, removed: delta.removed }, SystemTime::now());
        apply.push(t.elapsed());
        let t = Instant::now();
        let (mounts, _) = mounts_from(text, filter);
        state.apply(Fact::Mounts { mounts, initial: false }, SystemTime::now());
        whole.push(t.elapsed());
    }
    report("  of which parse+filter+diff (Differ::diff)", diff);
    report("  of which State::apply(MountsChanged)", apply);
    report("  for comparison, whole-table parse + State::apply(Mounts)", whole);
}

async fn latency(base: &Path) {
    let agent = TestAgent::start(
        |c| {
            c.mounts.enabled = true;
            c.mounts.usage_interval = Duration::from_secs(30);
        },
        vec![],
    )
    .await;
    let mut sse = SseClient::connect(&agent.url("/api/v1/events/stream?types=mount.mounted"), None).await;
    let dir = base.join("latency");
    let mut samples = Vec::new();
    for i in 0..220 {
        let target = dir.join(format!("m{i:03}"));
        std::fs::create_dir_all(&target).expect("mount point");
        mount(Some("dwbench"), &target, Some("tmpfs"), MsFlags::empty(), Some("size=64k")).expect("mount tmpfs");
        let t = Instant::now();
        let want = target.to_str().expect("utf-8");
        loop {
            let msg = sse.expect(Duration::from_secs(10)).await;
            if msg.json()["data"]["mount"]["mount_point"] == want {
                break;
            }
        }
        // The first 20 warm up connections and caches.
        if i >= 20 {
            samples.push(t.elapsed());
        }
        // Let the usage sample of the new mount settle, as between real mounts.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    report("mount syscall returned → SSE mount.mounted received", samples);
    for i in 0..220 {
        let _ = umount2(&dir.join(format!("m{i:03}")), MntFlags::MNT_DETACH);
    }
    agent.stop().await;
}

async fn idle(base: &Path, secs: u64) {
    let dir = base.join("idle");
    for i in 0..1000 {
        tmpfs(&dir.join(format!("m{i:04}")));
    }
    let agent = TestAgent::start(
        |c| {
            c.mounts.enabled = true;
            c.mounts.usage_interval = Duration::from_secs(30);
        },
        vec![],
    )
    .await;
    let prefix = dir.to_str().expect("utf-8").to_owned();
    agent
        .wait_snapshot(Duration::from_secs(60), |s| {
            s["mounts"]
                .as_array()
                .map(|m| {
                    m.iter()
                        .filter(|m| {
                            m["mount_point"].as_str().is_some_and(|p| p.starts_with(&prefix)) && !m["usage"].is_null()
                        })
                        .count()
                })
                .unwrap_or(0)
                == 1000
        })
        .await;
    // Settle: the start-up sampling is done; measure the steady state.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = cpu_seconds();
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let used = cpu_seconds() - before;
    let minutes = t.elapsed().as_secs_f64() / 60.0;
    println!(
        "idle, 1000 mounts, usage_interval 30s: {used:.4} CPU-s (user+sys) over {:.1} s = {:.4} CPU-s/min",
        t.elapsed().as_secs_f64(),
        used / minutes
    );
    agent.stop().await;
    for i in 0..1000 {
        let _ = umount2(&dir.join(format!("m{i:04}")), MntFlags::MNT_DETACH);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let idle_secs = args.iter().position(|a| a == "--idle").and_then(|i| args.get(i + 1)).and_then(|s| s.parse().ok());
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("the mounts benchmark needs root (it mounts tmpfs in a private mount namespace)");
        std::process::exit(1);
    }
    // Still single-threaded here, so the whole process moves to the new namespace.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare the mount namespace");
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .expect("make / private");
    let base = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    {
        // The table registers with the runtime's reactor.
        let _enter = rt.enter();
        reread_and_diff(base.path());
    }
    rt.block_on(latency(base.path()));
    match idle_secs {
        Some(secs) => rt.block_on(idle(base.path(), secs)),
        None => println!("idle CPU: skipped (pass `-- --idle 300` to measure over 5 minutes)"),
    }
}
