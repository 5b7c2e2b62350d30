//! `diskwatch snapshot` and `diskwatch events` run as the real binary against
//! an in-process agent fed facts.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::dashboard::{disk, mount, partition, usage};
use common::TestAgent;
use diskwatch::state::Fact;

const BIN: &str = env!("CARGO_BIN_EXE_diskwatch");

fn diskwatch(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).env_remove("DISKWATCH_HTTP__LISTEN").output().expect("run diskwatch")
}

async fn agent_with_a_mounted_disk() -> TestAgent {
    let agent = TestAgent::start(|_| {}, vec![]).await;
    let d = disk(1);
    let p = partition(&d, 1);
    let m = mount(&p, "/mnt/data");
    agent.facts.send(Fact::BlockDevices { disks: vec![d], partitions: vec![p], initial: true }).await.expect("send");
    agent.facts.send(Fact::Mounts { mounts: vec![m.clone()], initial: true }).await.expect("send");
    agent.facts.send(Fact::MountUsage { id: m.id, usage: Some(usage(25.0)), stale: false }).await.expect("send");
    agent.wait_snapshot(Duration::from_secs(5), |s| s["mounts"][0]["usage"]["percent"].as_f64() == Some(25.0)).await;
    agent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_prints_a_table_and_json() {
    let agent = agent_with_a_mounted_disk().await;
    let url = agent.url("");
    let out = tokio::task::spawn_blocking(move || diskwatch(&["snapshot", "--url", &url])).await.expect("join");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(table.starts_with("node test  last event "), "{table}");
    assert!(table.contains("DISKS (1)") && table.contains("PARTITIONS (1)") && table.contains("MOUNTS (1)"), "{table}");
    let header = table.lines().find(|l| l.contains("MOUNT POINT")).expect("mount header");
    let row = table.lines().find(|l| l.contains("/mnt/data")).expect("mount row");
    assert_eq!(header.find("SOURCE"), row.find("/dev/sdb1"), "columns line up:\n{table}");
    assert!(row.contains("1.0 TiB") && row.contains("25%") && row.trim_end().ends_with("rw"), "{row}");
    let disk_row = table.lines().find(|l| l.trim_start().starts_with("sdb ")).expect("disk row");
    assert!(disk_row.contains("4.0 TiB") && disk_row.contains("ATA FAKE DISK 1"), "{disk_row}");

    let url = agent.url("");
    let out =
        tokio::task::spawn_blocking(move || diskwatch(&["snapshot", "--json", "--url", &url])).await.expect("join");
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["mounts"][0]["mount_point"], "/mnt/data");
    assert_eq!(json["mounts"][0]["partition_id"], json["partitions"][0]["id"]);
    agent.stop().await;
}

#[test]
fn snapshot_reports_an_unreachable_agent() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let out = diskwatch(&["snapshot", "--url", &format!("http://127.0.0.1:{port}")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach the agent"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_follow_tails_the_stream_with_a_type_filter() {
    let agent = agent_with_a_mounted_disk().await;
    let mut child = Command::new(BIN)
        .args(["events", "--follow", "--types", "mount.*", "--url", &agent.url("")])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn diskwatch events");
    let stdout = child.stdout.take().expect("stdout");
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    // Wait until the client is connected, so the events below are live ones.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let connected = async {
        loop {
            let text = reqwest::get(agent.url("/metrics")).await.expect("metrics").text().await.expect("text");
            if text.lines().any(|l| l.starts_with("diskwatch_sse_clients") && !l.ends_with(" 0")) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "the CLI never connected:\n{text}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    connected.await;

    let d2 = disk(2);
    let p2 = partition(&d2, 1);
    agent.facts.send(Fact::DiskUpsert(d2.clone())).await.expect("send");
    agent.facts.send(Fact::PartitionUpsert(p2.clone())).await.expect("send");
    let d1 = disk(1);
    let m1 = mount(&partition(&d1, 1), "/mnt/data");
    let m2 = mount(&p2, "/mnt/usb");
    agent.facts.send(Fact::Mounts { mounts: vec![m1.clone(), m2], initial: false }).await.expect("send");
    agent.facts.send(Fact::Mounts { mounts: vec![m1], initial: false }).await.expect("send");

    let mut got = Vec::new();
    while got.len() < 2 {
        let line = tokio::time::timeout_at(deadline, lines.recv())
            .await
            .unwrap_or_else(|_| panic!("no more lines; so far {got:#?}"))
            .expect("the CLI ended");
        got.push(line);
    }
    assert!(got[0].contains("mount.mounted") && got[0].contains("mount/mnt_usb"), "{got:#?}");
    assert!(got[1].contains("mount.unmounted") && got[1].contains("mount/mnt_usb"), "{got:#?}");
    assert!(got.iter().all(|l| !l.contains("disk.") && !l.contains("partition.")), "the filter leaked: {got:#?}");
    // Its fields are: time, id, type, subject.
    let fields: Vec<&str> = got[0].split_whitespace().collect();
    assert!(fields[0].ends_with('Z') && fields[1].parse::<u64>().is_ok(), "{}", got[0]);

    // Stop it as a user would (SIGINT to the process this test started): a clean exit.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::SIGINT).expect("kill");
    let status = tokio::task::spawn_blocking(move || child.wait()).await.expect("join").expect("wait");
    assert!(status.success(), "{status}");

    // Without --follow: the recent history, filtered.
    let url = agent.url("");
    let out = tokio::task::spawn_blocking(move || diskwatch(&["events", "--types", "disk.*", "--url", &url]))
        .await
        .expect("join");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("disk.added") && !text.contains("mount."), "{text}");
    agent.stop().await;
}
