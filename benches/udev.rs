//! Block-device source figures against the real kernel (root):
//! hot-plug latency (losetup attach returned → SSE disk.added) in kernel and
//! udev mode, coldplug enumeration time, and resident memory growth over
//! 1000 attach/detach cycles. Run with `cargo bench --bench udev`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use common::sse::SseClient;
use common::udevd::Udevd;
use common::{machine_lock, sh, TestAgent};
use diskwatch::config::{Config, UdevMode};
use diskwatch::text::KernelNameFilter;
use diskwatch::udev::sysfs::Sysfs;
use diskwatch::udev::tracker::{PropSource, Tracker};
use diskwatch::udev::UdevSource;

const WAIT: Duration = Duration::from_secs(15);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{what}: n={} p50={:.3} ms p90={:.3} ms p99={:.3} ms max={:.3} ms",
        samples.len(),
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.9)),
        ms(percentile(&samples, 0.99)),
        ms(*samples.last().unwrap())
    );
}

async fn agent(mode: UdevMode, ring_size: usize) -> TestAgent {
    let mut udev = Config::default().udev;
    udev.source = mode;
    udev.include = vec!["loop*".into()];
    let source = UdevSource::new(udev);
    let stats = source.stats();
    let agent = TestAgent::start(|c| c.events.ring_size = ring_size, vec![Box::new(source)]).await;
    while !stats.is_ready() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    agent
}

/// Waits for `kind` about disk `name` on the stream.
async fn wait_for(sse: &mut SseClient, kind: &str, name: &str) {
    loop {
        let msg = sse.expect(WAIT).await;
        if msg.event == kind && msg.json()["data"]["disk"]["kernel_name"] == name {
            return;
        }
    }
}

/// `cycles` attach/detach cycles of `image`; returns attach→disk.added latencies.
async fn cycles(agent: &TestAgent, image: &Path, cycles: usize) -> Vec<Duration> {
    let mut sse = SseClient::connect(&agent.url("/api/v1/events/stream?types=disk.added,disk.removed"), None).await;
    let img = image.to_str().unwrap();
    let mut out = Vec::with_capacity(cycles);
    for _ in 0..cycles {
        let dev = sh("losetup", &["-f", "--show", img]);
        let started = Instant::now();
        let name = dev.trim_start_matches("/dev/").to_owned();
        wait_for(&mut sse, "disk.added", &name).await;
        out.push(started.elapsed());
        sh("losetup", &["-d", &dev]);
        wait_for(&mut sse, "disk.removed", &name).await;
    }
    out
}

fn coldplug_figures() {
    // A realistic table: every block device plus eight loop disks with two partitions each.
    let devices: Vec<common::LoopDevice> = (0..8).map(|_| common::LoopDevice::new(8, &[2, 2])).collect();
    let filter = KernelNameFilter::new(&["loop*".into()], &[]).unwrap();
    let mut samples = Vec::new();
    let mut count = 0;
    for _ in 0..50 {
        let mut tracker = Tracker::new(Sysfs::new("/sys"), filter.clone(), PropSource::Kernel);
        let started = Instant::now();
        let _fact = tracker.enumerate(true);
        samples.push(started.elapsed());
        count = tracker.len();
    }
    report(&format!("coldplug enumeration, kernel mode with blkid probes ({count} devices)"), samples);
    drop(devices);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("udev bench needs root (loop devices, udevd)");
        return;
    }
    let _lock = machine_lock();
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("bench.img");
    File::create(&image).unwrap().set_len(16 << 20).unwrap();

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at start: {}", load.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    coldplug_figures();

    let kernel = agent(UdevMode::Kernel, 10_000).await;
    cycles(&kernel, &image, 5).await; // warm-up
    report("kernel mode: losetup attach returned -> SSE disk.added", cycles(&kernel, &image, 100).await);
    kernel.stop().await;

    {
        let udevd = Udevd::start();
        let udev = agent(UdevMode::Udev, 10_000).await;
        cycles(&udev, &image, 5).await;
        report("udev mode: losetup attach returned -> SSE disk.added", cycles(&udev, &image, 100).await);
        udev.stop().await;
        drop(udevd);
    }

    // A small ring so held events reach their steady state during warm-up.
    let mem = agent(UdevMode::Kernel, 100).await;
    cycles(&mem, &image, 200).await;
    // Two rounds: allocator arenas and buffers settle in the first; a leak grows in both.
    for round in 1..=2 {
        let before = diskwatch::metrics::resident_bytes().unwrap_or(0);
        let started = Instant::now();
        cycles(&mem, &image, 1000).await;
        let after = diskwatch::metrics::resident_bytes().unwrap_or(0);
        println!(
            "resident memory over 1000 attach/detach cycles, round {round} (kernel mode, {:.1} s): before={} KiB after={} KiB growth={} KiB",
            started.elapsed().as_secs_f64(),
            before / 1024,
            after / 1024,
            (after as i64 - before as i64) / 1024
        );
    }
    mem.stop().await;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at end: {}", load.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
}
