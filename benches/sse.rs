//! SSE fan-out, memory and start-up figures of issue #2.
//!
//! `cargo bench --bench sse` prints:
//! - emit→receive latency (p50/p99/max) for 100 clients at 1 000 events/s;
//! - deliveries per second to 1 000 clients;
//! - resident memory of the real binary idle and with 1 000 SSE clients;
//! - start-up to serving HTTP of the real binary.
//!
//! "Emit" is the moment the fact is handed to the core, so the figure
//! includes applying it, journaling and fan-out.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diskwatch::config::Config;
use diskwatch::model::Disk;
use diskwatch::service::{start, RunOptions};
use diskwatch::state::Fact;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

fn disk(size: u64) -> Disk {
    Disk {
        id: "bench".into(),
        stable: true,
        kernel_name: "sdb".into(),
        devpath: "/devices/pci0000:00/ata2/block/sdb".into(),
        devnode: "/dev/sdb".into(),
        dev: "8:16".into(),
        vendor: Some("ATA".into()),
        model: Some("WDC_WD40EFRX".into()),
        serial: Some("WD-WCC4E1234567".into()),
        firmware: None,
        wwn: Some("0x50014ee2b5f3a1c7".into()),
        bus: Some("ata".into()),
        size_bytes: size,
        removable: false,
        rotational: true,
        read_only: false,
        partition_table: Some("gpt".into()),
        fs_type: None,
        fs_label: None,
        fs_uuid: None,
        members: vec![],
        holders: vec![],
        partitions: vec![],
        mounts: vec![],
        power_state: None,
        health: None,
        health_note: None,
        io: None,
        sleep: None,
        self_test: None,
        arrays: Vec::new(),
        attention: None,
    }
}

fn bench_config(dir: &Path) -> Config {
    let mut config = Config { state_dir: dir.to_path_buf(), node_id: "bench".into(), ..Config::default() };
    config.mqtt.enabled = false;
    config.udev.enabled = false;
    config.mounts.enabled = false;
    config.shares.enabled = false;
    config.events.client_buffer = 8192;
    config.events.ring_size = 20_000;
    config
}

/// A raw SSE client: connects, then records the receive time of every event id.
async fn client(addr: SocketAddr, base: u64, sent: Arc<Vec<AtomicU64>>, epoch: Instant, lat: bool) -> (Vec<u64>, u64) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /api/v1/events/stream?types=disk.* HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .expect("request");
    let mut buf = vec![0u8; 256 * 1024];
    let mut carry: Vec<u8> = Vec::new();
    let mut latencies = Vec::new();
    let mut received = 0u64;
    // Highest event covered, by delivery or by a resync's snapshot.
    let mut progress = 0u64;
    let mut last_id = 0u64;
    let want = sent.len() as u64;
    while progress < want {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let now = epoch.elapsed().as_nanos() as u64;
        carry.extend_from_slice(&buf[..n]);
        let mut start = 0;
        while let Some(pos) = carry[start..].iter().position(|&b| b == b'\n') {
            let line = &carry[start..start + pos];
            if line == b"event: resync" {
                progress = progress.max(last_id.saturating_sub(base));
            } else if let Some(id) = line.strip_prefix(b"id: ") {
                let seq: u64 = std::str::from_utf8(id).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
                last_id = seq;
                if seq > base && seq - base <= want {
                    received += 1;
                    progress = progress.max(seq - base);
                    if lat {
                        let at = sent[(seq - base - 1) as usize].load(Ordering::Relaxed);
                        latencies.push(now.saturating_sub(at));
                    }
                }
            }
            start += pos + 1;
        }
        carry.drain(..start);
    }
    (latencies, received)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1e6
}

/// Runs `events` events through an in-process agent to `clients` raw SSE clients.
fn fanout(clients: usize, events: u64, rate: Option<u64>, latency: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    let client_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    let token = CancellationToken::new();
    let running = agent_rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let options = RunOptions { listener: Some(listener), ..Default::default() };
        let running = start(bench_config(dir.path()), token.clone(), options).await.expect("start");
        running.facts.send(Fact::DiskUpsert(disk(0))).await.expect("send");
        running
    });
    let addr = running.local_addr;
    std::thread::sleep(Duration::from_millis(200));
    let base = running.agent.state().last_seq();
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..events).map(|_| AtomicU64::new(0)).collect());
    let epoch = Instant::now();
    let handles: Vec<_> =
        (0..clients).map(|_| client_rt.spawn(client(addr, base, sent.clone(), epoch, latency))).collect();
    while running.agent.log.subscribers() < clients {
        std::thread::sleep(Duration::from_millis(10));
    }
    let facts = running.facts.clone();
    let began = Instant::now();
    agent_rt.block_on(async {
        let period = rate.map(|r| Duration::from_secs_f64(1.0 / r as f64));
        for i in 0..events {
            if let Some(p) = period {
                let due = began + p * i as u32;
                tokio::time::sleep_until(due.into()).await;
            }
            sent[i as usize].store(epoch.elapsed().as_nanos() as u64, Ordering::Relaxed);
            facts.send(Fact::DiskUpsert(disk(i + 1))).await.expect("send");
        }
    });
    let mut all = Vec::new();
    let mut delivered = 0u64;
    client_rt.block_on(async {
        for h in handles {
            let (lat, n) =
                tokio::time::timeout(Duration::from_secs(120), h).await.expect("clients finish").expect("join");
            all.extend(lat);
            delivered += n;
        }
    });
    let elapsed = began.elapsed();
    let resyncs = running
        .agent
        .metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix("diskwatch_sse_resyncs_total ").map(str::to_owned));
    token.cancel();
    agent_rt.block_on(running.wait());
    all.sort_unstable();
    if latency {
        println!(
            "fan-out {clients} clients, {events} events at {}/s: emit->receive p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({} deliveries, resyncs {})",
            rate.unwrap_or(0),
            percentile(&all, 0.50),
            percentile(&all, 0.99),
            percentile(&all, 1.0),
            all.len(),
            resyncs.unwrap_or_default()
        );
    } else {
        println!(
            "fan-out {clients} clients, {events} events as fast as possible: {delivered} deliveries in {:.2} s = {:.0} deliveries/s (resyncs {})",
            elapsed.as_secs_f64(),
            delivered as f64 / elapsed.as_secs_f64(),
            resyncs.unwrap_or_default()
        );
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn spawn_agent(port: u16, state: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_diskwatch"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("DISKWATCH_STATE_DIR", state)
        .env("DISKWATCH_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn diskwatch")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn healthy(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.write_all(b"GET /api/v1/health HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.starts_with("HTTP/1.1 200")
}

fn stop(mut child: Child) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let _ = child.wait();
}

/// The real binary (release build, default configuration but for its state dir and port).
fn binary_figures(quick: bool) {
    let runs = if quick { 3 } else { 30 };
    let mut startups = Vec::new();
    for _ in 0..runs {
        let state = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let began = Instant::now();
        let child = spawn_agent(port, state.path());
        while !healthy(port) {
            std::thread::sleep(Duration::from_micros(200));
            assert!(began.elapsed() < Duration::from_secs(10), "agent did not start");
        }
        startups.push(began.elapsed().as_micros() as u64 * 1000);
        stop(child);
    }
    startups.sort_unstable();
    println!(
        "start-up to serving HTTP ({runs} runs): p50 {:.1} ms, max {:.1} ms",
        percentile(&startups, 0.5),
        percentile(&startups, 1.0)
    );

    let state = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let child = spawn_agent(port, state.path());
    while !healthy(port) {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_secs(if quick { 1 } else { 3 }));
    println!("resident memory idle: {:.1} MiB", rss_kib(child.id()) as f64 / 1024.0);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    let n = if quick { 50 } else { 1000 };
    let streams = rt.block_on(async {
        let mut streams = Vec::new();
        for _ in 0..n {
            let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
            s.write_all(b"GET /api/v1/events/stream?snapshot=true HTTP/1.1\r\nhost: localhost\r\n\r\n")
                .await
                .expect("write");
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            streams.push(s);
        }
        streams
    });
    std::thread::sleep(Duration::from_secs(1));
    println!("resident memory with {n} SSE clients: {:.1} MiB", rss_kib(child.id()) as f64 / 1024.0);
    drop(streams);
    stop(child);
}

fn main() {
    // `cargo test --benches` runs this without --bench: a quick smoke run then.
    let quick = !std::env::args().any(|a| a == "--bench");
    if quick {
        fanout(10, 200, Some(1000), true);
        fanout(20, 500, None, false);
    } else {
        fanout(100, 5_000, Some(1_000), true);
        fanout(1_000, 2_000, None, false);
    }
    binary_figures(quick);
}
