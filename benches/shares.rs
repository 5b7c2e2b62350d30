//! Share figures of issue #5.
//!
//! `cargo bench --bench shares` prints:
//! - parsing a 1 000-share smb.conf (parser alone, and the whole read: file, parse, 1 000 path
//!   resolutions) — target ≤ 10 ms;
//! - config file saved → SSE `share.updated` received, over 100 edits (half rename-over, half
//!   in place) with the default 500 ms debounce — target ≤ debounce + 20 ms at p99.
//!
//! "Saved" is the moment the write (or the rename) returned; "received" is when the SSE client
//! of a running agent parsed the event, so the figure covers inotify, the debounce, the re-read,
//! the state diff, journaling and the HTTP stream.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::shares::{save, Save, ShareDir};
use common::sse::SseClient;
use common::TestAgent;
use diskwatch::shares::smbconf::{self, IncludeResolver};
use diskwatch::shares::ShareError;

struct NoIncludes;

impl IncludeResolver for NoIncludes {
    fn read(&mut self, _: &Path, _: &str) -> Result<Option<String>, ShareError> {
        Ok(None)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{what}: n={} p50={:.3} ms p99={:.3} ms max={:.3} ms",
        samples.len(),
        percentile(&samples, 0.50).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
    );
}

fn thousand_shares(dir: &ShareDir) -> String {
    let mut text =
        String::from("[global]\n  workgroup = NAS\n  server role = standalone server\n  map to guest = bad user\n");
    for i in 0..1000 {
        let path = dir.data(&format!("srv/share{i}"));
        text.push_str(&format!(
            "\n# share {i}\n[share{i}]\n  comment = Share number {i}\n  path = {path}\n  read only = no\n  \
             browseable = yes\n  guest ok = {}\n  valid users = alice, bob, @staff\n  create mask = 0664\n",
            if i % 2 == 0 { "yes" } else { "no" }
        ));
    }
    text
}

fn bench_parse() {
    let dir = ShareDir::new();
    let text = thousand_shares(&dir);
    let file = dir.path("smb.conf");
    std::fs::write(&file, &text).unwrap();
    println!("smb.conf with 1000 shares: {} bytes", text.len());
    let mut parse = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        let conf = smbconf::parse(&text, &file, &mut NoIncludes).unwrap();
        parse.push(t.elapsed());
        assert_eq!(conf.shares.len(), 1000);
    }
    report("parse 1000-share smb.conf", parse);
    let mut full = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        let loaded = diskwatch::shares::load(std::slice::from_ref(&file), &[]);
        full.push(t.elapsed());
        assert_eq!(loaded.shares.unwrap().len(), 1000);
    }
    report("read+parse+resolve 1000-share smb.conf", full);
}

async fn bench_latency() {
    let dir = ShareDir::new();
    let data = dir.data("data");
    let conf = |i: u32| format!("[global]\n  workgroup = NAS\n[data]\n  path = {data}\n  comment = edit {i}\n");
    std::fs::write(dir.path("smb.conf"), conf(0)).unwrap();
    let debounce = diskwatch::config::SharesConfig::default().debounce;
    let agent = TestAgent::start(|c| dir.configure(c, debounce), vec![]).await;
    agent.wait_snapshot(Duration::from_secs(10), |s| s["shares"].as_array().is_some_and(|a| a.len() == 1)).await;
    let mut sse = SseClient::connect(&agent.url("/api/v1/events/stream?types=share.*"), None).await;
    let mut samples = Vec::new();
    for i in 1..=100u32 {
        let how = if i % 2 == 0 { Save::RenameOver } else { Save::InPlace };
        save(&dir.path("smb.conf"), conf(i).as_bytes(), how);
        let saved = Instant::now();
        let msg = sse.expect(Duration::from_secs(10)).await;
        samples.push(saved.elapsed());
        assert_eq!(msg.event, "share.updated");
        assert_eq!(msg.json()["data"]["share"]["comment"], format!("edit {i}"));
    }
    println!("debounce: {} ms (target: p99 <= {} ms)", debounce.as_millis(), debounce.as_millis() + 20);
    report("config saved -> SSE share.updated", samples);
    agent.stop().await;
}

fn main() {
    bench_parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(bench_latency());
}
