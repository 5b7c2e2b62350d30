//! Actions benchmark: eject of a loop disk with two mounted ext4 partitions, from the POST
//! to the `action.succeeded` event on an SSE stream (unmount both, exclusive open and flush,
//! LOOP_CLR_FD, the device gone), through the in-process agent with the real udev (kernel
//! mode) and mount sources. Root needed. `cargo bench --bench actions [-- --runs N]`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{sh, LoopDevice, MountGuard, TestAgent};
use diskwatch::config::Secret;
use diskwatch::model::ActionKind;
use futures_util::StreamExt;
use serde_json::Value;

const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn snapshot(agent: &TestAgent) -> Value {
    let client = reqwest::Client::new();
    let req = client.get(agent.url("/api/v1/snapshot")).header("authorization", format!("Bearer {TOKEN}"));
    req.send().await.expect("snapshot").json().await.expect("JSON")
}

/// Waits until the agent lists the disk `kernel` and `mounts` mounts below `dir`; the disk id.
async fn seen(agent: &TestAgent, kernel: &str, dir: &str, mounts: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let snap = snapshot(agent).await;
        let disk = snap["disks"].as_array().unwrap().iter().find(|d| d["kernel_name"] == kernel).cloned();
        let n = snap["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["mount_point"].as_str().unwrap().starts_with(dir))
            .count();
        if let (Some(d), true) = (disk, n == mounts) {
            return d["id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "the agent never saw {kernel} with {mounts} mounts");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("actions bench: needs root (loop devices, mounts)");
        std::process::exit(1);
    }
    let _lock = common::machine_lock();
    let work = tempfile::tempdir().expect("tempdir");
    let token_file = work.path().join("api-token");
    std::fs::write(&token_file, TOKEN).expect("token file");
    let root = work.path().to_path_buf();
    let agent = TestAgent::start(
        |c| {
            c.http.auth_token_file = token_file.clone();
            c.http.auth_token = Some(Secret::new(TOKEN));
            c.actions.enabled = true;
            c.actions.allow = vec![ActionKind::Eject];
            c.udev.enabled = true;
            c.udev.source = diskwatch::config::UdevMode::Kernel;
            c.udev.include = vec!["loop*".into()];
            c.mounts.enabled = true;
            c.mounts.include_paths = vec![format!("{}*", root.display())];
        },
        vec![],
    )
    .await;
    let client = reqwest::Client::new();
    let stream = client
        .get(agent.url("/api/v1/events/stream?types=action.*"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .expect("SSE");
    let mut stream = stream.bytes_stream();
    let mut buf = String::new();
    let mut samples = Vec::new();
    for run in 0..runs {
        let dir = root.join(format!("run{run}"));
        let dev = LoopDevice::new(40, &[16, 16]);
        let mut guards = Vec::new();
        for n in 1..=2u32 {
            sh("mkfs.ext4", &["-q", "-F", &dev.partition(n)]);
            guards.push(MountGuard::new(&dev.partition(n), &dir.join(format!("p{n}")), Some("ext4"), None));
        }
        // Some data to flush, as after copying files to a stick.
        for n in 1..=2u32 {
            std::fs::write(dir.join(format!("p{n}/data")), vec![0x5a; 1 << 20]).expect("write");
        }
        let disk_id = seen(&agent, &dev.name(), dir.to_str().unwrap(), 2).await;
        let started = Instant::now();
        let resp = client
            .post(agent.url(&format!("/api/v1/disks/{disk_id}/eject")))
            .header("authorization", format!("Bearer {TOKEN}"))
            .send()
            .await
            .expect("POST");
        assert_eq!(resp.status().as_u16(), 202);
        let id = resp.json::<Value>().await.expect("JSON")["id"].as_str().unwrap().to_owned();
        'wait: loop {
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) else { continue };
                let event: Value = serde_json::from_str(data).expect("event JSON");
                if event["data"]["action"]["id"] == id.as_str() {
                    assert_eq!(event["type"], "action.succeeded", "{event:#}");
                    break 'wait;
                }
            }
            let chunk = stream.next().await.expect("stream open").expect("chunk");
            buf.push_str(&String::from_utf8_lossy(&chunk));
        }
        samples.push(started.elapsed());
        drop(guards);
        drop(dev);
    }
    samples.sort();
    println!(
        "eject of a loop disk with two mounted ext4 partitions (1 MiB written to each), POST → action.succeeded: \
         n={} p50={:?} p99={:?} min={:?} max={:?}",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples[0],
        samples[samples.len() - 1]
    );
    agent.stop().await;
}
