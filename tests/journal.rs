//! The journal survives SIGKILL: history intact up to the last complete
//! record, and the sequence continues without reusing an id.
//!
//! The writer is this same test binary re-executed as a child process running
//! the ignored test `journal_writer_child`, which pumps events until killed.

mod common;

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::facts::disk;
use common::TestAgent;
use diskwatch::config::Config;
use diskwatch::service::{start, RunOptions};
use diskwatch::state::Fact;
use tokio_util::sync::CancellationToken;

const CHILD_DIR: &str = "DISKWATCH_TEST_JOURNAL_DIR";

/// Not a test of its own: the process the SIGKILL test kills. Run only when
/// that test starts it (it is ignored otherwise, and refuses to run without its directory).
#[tokio::test]
#[ignore = "child process of sigkill_mid_write_keeps_history_and_sequence"]
async fn journal_writer_child() {
    let dir = std::env::var(CHILD_DIR).expect("started by sigkill_mid_write_keeps_history_and_sequence");
    let mut config = common::test_config(Path::new(&dir));
    config.events.journal_max_bytes = 256 * 1024;
    let token = CancellationToken::new();
    let running = start(config, token, RunOptions::default()).await.expect("agent starts");
    let mut i = 0u64;
    loop {
        running.facts.send(Fact::DiskUpsert(disk("pump", 1_000 + i))).await.expect("core alive");
        i += 1;
        if i % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
}

fn journal_lines(dir: &Path) -> Vec<u64> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("events.jsonl"))
        .collect();
    // Oldest rotation first: events.jsonl.2, events.jsonl.1, events.jsonl.
    files.sort_by_key(|p| std::cmp::Reverse(p.extension().and_then(|e| e.to_str()?.parse::<u32>().ok()).unwrap_or(0)));
    let mut seqs = Vec::new();
    for file in files {
        for line in std::io::BufReader::new(std::fs::File::open(file).unwrap()).lines() {
            let line = line.unwrap();
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                seqs.push(v["id"].as_str().unwrap().parse().unwrap());
            }
        }
    }
    seqs
}

#[tokio::test]
async fn sigkill_mid_write_keeps_history_and_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["journal_writer_child", "--exact", "--ignored", "--nocapture"])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let journal = dir.path().join("events.jsonl");
    let deadline = Instant::now() + Duration::from_secs(30);
    // Let it write (and rotate at least once), then kill it without warning.
    while !dir.path().join("events.jsonl.1").exists() {
        assert!(Instant::now() < deadline, "child never wrote its journal");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    assert!(journal.exists());

    let before = journal_lines(dir.path());
    assert!(before.len() > 100, "child wrote {} events", before.len());
    let last = *before.last().unwrap();
    let first = before[0];
    assert_eq!(before, (first..=last).collect::<Vec<_>>(), "complete records are contiguous");

    // Restart on the same state dir.
    let mut config: Config = common::test_config(dir.path());
    config.events.journal_max_bytes = 256 * 1024;
    let agent = {
        let token = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running =
            start(config, token.clone(), RunOptions { listener: Some(listener), ..Default::default() }).await.unwrap();
        (running, token)
    };
    let base = format!("http://{}", agent.0.local_addr);
    let history: serde_json::Value = reqwest::get(format!("{base}/api/v1/events?after_id={}&limit=10", last - 3))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<u64> =
        history["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().parse().unwrap()).collect();
    assert_eq!(&ids[..3], &[last - 2, last - 1, last], "history intact up to the last complete record");
    assert_eq!(ids[3], last + 1, "the restart's agent.started continues the sequence");
    agent.0.facts.send(Fact::DiskUpsert(disk("after", 1))).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let snap: serde_json::Value =
            reqwest::get(format!("{base}/api/v1/snapshot")).await.unwrap().json().await.unwrap();
        if snap["last_event_id"] == last + 2 {
            break;
        }
        assert!(Instant::now() < deadline, "sequence did not continue: {}", snap["last_event_id"]);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    agent.1.cancel();
    agent.0.wait().await;
    let after = journal_lines(dir.path());
    let tail: Vec<u64> = after.iter().copied().filter(|s| *s > last).collect();
    assert_eq!(tail, [last + 1, last + 2, last + 3], "agent.started, disk.added, agent.stopping; no id reused");
}

#[tokio::test]
async fn history_survives_a_clean_restart() {
    let mut agent = TestAgent::start(|_| {}, vec![]).await;
    agent.facts.send(Fact::DiskUpsert(disk("a", 1))).await.unwrap();
    agent.wait_snapshot(Duration::from_secs(5), |s| s["last_event_id"] == 2).await;
    let dir = agent.state_dir.path().to_path_buf();
    agent.token.cancel();
    agent.running.take().unwrap().wait().await;
    let config = common::test_config(&dir);
    let token = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running =
        start(config, token.clone(), RunOptions { listener: Some(listener), ..Default::default() }).await.unwrap();
    let url = format!("http://{}/api/v1/events", running.local_addr);
    let page: serde_json::Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    let kinds: Vec<&str> = page["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["agent.started", "disk.added", "agent.stopping", "agent.started"]);
    token.cancel();
    running.wait().await;
    drop(agent);
}
