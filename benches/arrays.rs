//! Arrays benchmark:
//! - btrfs: a raid1 on two loop devices with one member detached; `mount -o degraded` → SSE
//!   `array.degraded` latency, over repeated degraded mounts (root needed);
//! - md: a fixture tree whose mdstat is rewritten (clean ↔ faulty member) → SSE event latency,
//!   and the time of one re-read of mdstat and the md attributes (what follows the wake);
//! - with `--idle SECS`: the agent's idle CPU with 4 md arrays against the same agent without
//!   the arrays source.
//!
//! `cargo bench --bench arrays [-- --rounds 30 --idle 60]`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::sse::SseClient;
use common::{sh, LoopDevice, TestAgent};
use diskwatch::arrays::{ArraysConfig, Scanner};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mdstat");

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

/// User + system CPU of the whole process, from /proc/self/stat (USER_HZ = 100).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    let rest = &stat[stat.rfind(')').expect("comm field") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    ticks as f64 / 100.0
}

/// Waits for the next message of `kind`.
async fn until(sse: &mut SseClient, kind: &str) {
    sse.expect_type(kind, Duration::from_secs(20)).await;
}

async fn btrfs_degraded(rounds: usize) {
    let _lock = common::machine_lock();
    let empty = tempfile::tempdir().expect("tempdir");
    let a = LoopDevice::new(300, &[]);
    let mut b = LoopDevice::new(300, &[]);
    sh("mkfs.btrfs", &["-q", "-f", "-d", "raid1", "-m", "raid1", &a.device, &b.device]);
    b.detach();
    let point = empty.path().join("pool");
    std::fs::create_dir_all(&point).expect("mount point");
    let point_str = point.to_str().expect("utf-8").to_owned();
    let agent = TestAgent::start(
        |c| {
            c.arrays.enabled = true;
            c.arrays.mdstat = empty.path().join("mdstat");
            c.arrays.sysfs = empty.path().to_path_buf();
            c.arrays.zpool = String::new();
        },
        vec![],
    )
    .await;
    let mut sse =
        SseClient::connect(&agent.url("/api/v1/events/stream?types=array.degraded,array.removed"), None).await;
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        // Read-only: a degraded raid1 can be mounted so any number of times.
        let status = Command::new("mount").args(["-o", "degraded,ro", &a.device, &point_str]).status().expect("mount");
        let mounted = Instant::now();
        assert!(status.success(), "degraded mount failed");
        until(&mut sse, "array.degraded").await;
        samples.push(mounted.elapsed());
        sh("umount", &[&point_str]);
        until(&mut sse, "array.removed").await;
    }
    report("btrfs degraded mount returned → SSE array.degraded", samples);
    agent.stop().await;
}

/// A fixture tree with md1 (procfs sysfs sample) and mdstat.
fn md_tree(dir: &Path) -> (PathBuf, PathBuf) {
    let sysfs = dir.join("sys");
    let block = sysfs.join("block");
    std::fs::create_dir_all(&block).expect("mkdir");
    let status = Command::new("cp")
        .arg("-a")
        .arg(Path::new(FIXTURES).join("procfs/sys/block/md1"))
        .arg(&block)
        .status()
        .expect("cp");
    assert!(status.success());
    (dir.join("mdstat"), sysfs)
}

const CLEAN: &str = "Personalities : [raid1]\nmd1 : active raid1 sdj[1] sdi[0]\n      312319552 blocks [2/2] [UU]\n\nunused devices: <none>\n";
const FAULTY: &str =
    "Personalities : [raid1]\nmd1 : active raid1 sdj[1](F) sdi[0]\n      312319552 blocks [2/1] [U_]\n\nunused devices: <none>\n";

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

async fn md_fixture(rounds: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mdstat, sysfs) = md_tree(dir.path());
    let md = sysfs.join("block/md1/md");
    write_atomically(&mdstat, CLEAN);
    // What follows a wake: one re-read of mdstat and the md attributes, and the Array built.
    let config = ArraysConfig {
        mdstat: mdstat.clone(),
        sysfs: sysfs.clone(),
        btrfs: dir.path().join("btrfs"),
        zpool: String::new(),
        ..ArraysConfig::default()
    };
    let mut scanner = Scanner::new(config.clone());
    let mut scans = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let t = Instant::now();
        scanner.scan_kernel();
        scans.push(t.elapsed());
    }
    assert_eq!(scanner.arrays().len(), 1);
    report("md re-read after a wake (mdstat + md1 attributes → Array)", scans);

    let agent = TestAgent::start(
        |c| {
            c.arrays = ArraysConfig { enabled: true, ..config };
        },
        vec![],
    )
    .await;
    let mut sse =
        SseClient::connect(&agent.url("/api/v1/events/stream?types=array.degraded,array.recovered"), None).await;
    let mut samples = Vec::with_capacity(rounds * 2);
    for _ in 0..rounds {
        std::fs::write(md.join("dev-sdj/state"), "faulty\n").expect("write");
        std::fs::write(md.join("degraded"), "1\n").expect("write");
        let t = Instant::now();
        write_atomically(&mdstat, FAULTY);
        until(&mut sse, "array.degraded").await;
        samples.push(t.elapsed());
        std::fs::write(md.join("dev-sdj/state"), "in_sync\n").expect("write");
        std::fs::write(md.join("degraded"), "0\n").expect("write");
        let t = Instant::now();
        write_atomically(&mdstat, CLEAN);
        until(&mut sse, "array.recovered").await;
        samples.push(t.elapsed());
    }
    report("md fixture rewrite (inotify wake) → SSE array.degraded / array.recovered", samples);
    agent.stop().await;
}

/// Idle CPU of an agent with 4 md arrays (the real 4-array sample) against one without. The
/// mount table is a still copy: other work on this shared machine mounts and unmounts all the
/// time, and each change would wake the source.
async fn idle(secs: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mdstat = dir.path().join("mdstat");
    std::fs::copy(Path::new(FIXTURES).join("pymdstat/mdstat.04"), &mdstat).expect("copy");
    let mountinfo = dir.path().join("mountinfo");
    std::fs::copy("/proc/self/mountinfo", &mountinfo).expect("copy mountinfo");
    let mut results = Vec::new();
    for with_arrays in [false, true] {
        let mdstat = mdstat.clone();
        let mountinfo = mountinfo.clone();
        let btrfs = dir.path().join("btrfs");
        let sysfs = dir.path().join("sys");
        let agent = TestAgent::start(
            move |c| {
                c.arrays.enabled = with_arrays;
                c.arrays.mdstat = mdstat;
                c.arrays.sysfs = sysfs;
                c.arrays.btrfs = btrfs;
                c.arrays.mountinfo = mountinfo;
                c.arrays.zpool = String::new();
            },
            vec![],
        )
        .await;
        if with_arrays {
            let snap = agent
                .wait_snapshot(Duration::from_secs(5), |s| s["arrays"].as_array().is_some_and(|a| a.len() == 4))
                .await;
            assert_eq!(snap["arrays"].as_array().map(Vec::len), Some(4));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (cpu, wall) = (cpu_seconds(), Instant::now());
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let used = cpu_seconds() - cpu;
        let label = if with_arrays { "with 4 md arrays" } else { "without the arrays source" };
        println!(
            "idle, {label}: {used:.3} CPU-s over {:.1} s = {:.4} CPU-s/min",
            wall.elapsed().as_secs_f64(),
            used * 60.0 / wall.elapsed().as_secs_f64()
        );
        results.push(used);
        agent.stop().await;
    }
    println!("idle CPU difference (with − without): {:+.3} CPU-s over {secs} s", results[1] - results[0]);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|s| s.parse::<u64>().ok())
    };
    let rounds = arg("--rounds").unwrap_or(30) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    if nix::unistd::Uid::effective().is_root() && Command::new("mkfs.btrfs").arg("--version").output().is_ok() {
        rt.block_on(btrfs_degraded(rounds));
    } else {
        println!("btrfs: skipped (needs root and btrfs-progs)");
    }
    rt.block_on(md_fixture(rounds * 5));
    match arg("--idle") {
        Some(secs) => rt.block_on(idle(secs)),
        None => println!("idle CPU: skipped (pass `-- --idle 60` to measure over a minute per agent)"),
    }
}
