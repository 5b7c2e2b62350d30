//! Dashboard first paint in headless Chromium with 50 disks / 100 partitions /
//! 200 mounts fed as facts to an in-process agent; prints p50/p99 of the time
//! from navigation start to the first render of the topology and to the first
//! contentful paint, and the page size.
//!
//! `cargo bench --bench dashboard` (add `-- --docs-screenshot` to also write docs/dashboard.png).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::dashboard::{artifacts_dir, disk, mount, partition, topology, usage, Browser};
use common::TestAgent;
use diskwatch::model::{Protocol, Share};
use diskwatch::state::Fact;

const RUNS: usize = 25;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn share(name: &str, path: &str, enabled: bool, exists: bool) -> Share {
    Share {
        id: Share::make_id(Protocol::Smb, name),
        protocol: Protocol::Smb,
        name: name.into(),
        path: path.into(),
        enabled,
        read_only: false,
        guest_ok: false,
        browseable: true,
        users: vec![],
        comment: None,
        special: None,
        clients: vec![],
        config_file: "/etc/samba/smb.conf".into(),
        resolved_path: path.into(),
        path_exists: exists,
        mount_id: None,
        partition_id: None,
        disk_id: None,
        available: false,
    }
}

async fn first_paint() {
    let agent = TestAgent::start(|_| {}, vec![]).await;
    let (disks, partitions, mounts) = topology(50, 200);
    let usages: Vec<_> = mounts.iter().map(|m| (m.id.clone(), m.usage.clone())).collect();
    agent.facts.send(Fact::BlockDevices { disks, partitions, initial: true }).await.expect("send");
    agent.facts.send(Fact::Mounts { mounts, initial: true }).await.expect("send");
    for (id, usage) in usages {
        agent.facts.send(Fact::MountUsage { id, usage, stale: false }).await.expect("send");
    }
    agent
        .wait_snapshot(Duration::from_secs(10), |s| {
            s["mounts"].as_array().is_some_and(|m| m.len() == 200 && m.iter().all(|m| !m["usage"].is_null()))
        })
        .await;
    let page = reqwest::get(agent.url("/")).await.expect("GET /").bytes().await.expect("body");
    let snapshot = reqwest::get(agent.url("/api/v1/snapshot")).await.expect("GET").bytes().await.expect("body");

    let url = agent.url("/");
    let results = tokio::task::spawn_blocking(move || {
        let mut browser = Browser::launch();
        // One warm-up load: the first start of Chromium's renderer is not the page's cost.
        browser.cmd(&format!("paint {url}"));
        let mut runs = Vec::new();
        for _ in 0..RUNS {
            let value: serde_json::Value = serde_json::from_str(&browser.cmd(&format!("paint {url}"))).expect("json");
            runs.push(value);
        }
        browser.cmd(&format!("goto {url}"));
        browser.cmd("wait [data-mount-id=\"srv_volume199\"] [data-usage]");
        browser.cmd(&format!("screenshot {}", artifacts_dir().join("dashboard-50x200.png").display()));
        runs
    })
    .await
    .expect("browser task");
    let disks_shown = results[0]["disks"].as_u64().unwrap_or(0);
    let mounts_shown = results[0]["mounts"].as_u64().unwrap_or(0);
    assert_eq!((disks_shown, mounts_shown), (50, 200), "the page did not render the whole topology");
    let mut render: Vec<f64> = results.iter().map(|r| r["render"].as_f64().unwrap_or(f64::NAN)).collect();
    let mut fcp: Vec<f64> = results.iter().map(|r| r["fcp"].as_f64().unwrap_or(f64::NAN)).collect();
    render.sort_by(f64::total_cmp);
    fcp.sort_by(f64::total_cmp);
    println!("dashboard first paint, 50 disks / 100 partitions / 200 mounts, {RUNS} loads in headless Chromium:");
    println!(
        "  topology rendered: p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms  (budget 500 ms)",
        percentile(&render, 50.0),
        percentile(&render, 99.0),
        render[render.len() - 1]
    );
    println!("  first contentful paint: p50 {:.0} ms  p99 {:.0} ms", percentile(&fcp, 50.0), percentile(&fcp, 99.0));
    println!("  page size: {} bytes (budget 102400); snapshot JSON: {} bytes", page.len(), snapshot.len());
    agent.stop().await;
}

/// A small, realistic topology for the README's screenshot.
async fn docs_screenshot() {
    let agent = TestAgent::start(|c| c.node_id = "nas".into(), vec![]).await;
    let mut disks = vec![disk(0), disk(1), disk(2)];
    disks[0].model = Some("WDC WD40EFRX-68N32N0".into());
    disks[1].model = Some("Samsung SSD 870 EVO".into());
    disks[2].vendor = Some("SanDisk".into());
    disks[2].model = Some("Ultra Fit".into());
    disks[2].bus = Some("usb".into());
    disks[2].removable = true;
    let parts =
        vec![partition(&disks[0], 1), partition(&disks[1], 1), partition(&disks[1], 2), partition(&disks[2], 1)];
    let mut mounts = vec![
        mount(&parts[0], "/srv/media"),
        mount(&parts[1], "/"),
        mount(&parts[2], "/srv/backup"),
        mount(&parts[3], "/media/usb"),
    ];
    mounts[3].read_only = true;
    mounts[3].options = vec!["ro".into()];
    let shares = vec![
        share("Media", "/srv/media/films", true, true),
        share("Backup", "/srv/backup", true, true),
        share("Old", "/srv/old", true, false),
    ];
    agent.facts.send(Fact::BlockDevices { disks, partitions: parts, initial: true }).await.expect("send");
    agent.facts.send(Fact::Mounts { mounts: mounts.clone(), initial: true }).await.expect("send");
    agent.facts.send(Fact::Shares { shares, initial: true }).await.expect("send");
    for (m, pct) in mounts.iter().zip([71.0, 38.0, 93.0, 12.0]) {
        agent
            .facts
            .send(Fact::MountUsage { id: m.id.clone(), usage: Some(usage(pct)), stale: false })
            .await
            .expect("send");
    }
    agent.wait_snapshot(Duration::from_secs(5), |s| s["shares"].as_array().is_some_and(|s| s.len() == 3)).await;
    let url = agent.url("/");
    let facts = agent.facts.clone();
    let id = mounts[2].id.clone();
    tokio::task::spawn_blocking(move || {
        let mut browser = Browser::launch();
        browser.cmd(&format!("goto {url}"));
        browser.cmd("wait [data-share-id]");
        // A few live events for the log.
        facts.blocking_send(Fact::MountUsage { id, usage: Some(usage(96.0)), stale: false }).expect("send");
        browser.cmd("wait [aria-valuenow=\"96.0\"]");
        let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.png");
        browser.cmd(&format!("screenshot {}", out.display()));
        println!("wrote {}", out.display());
    })
    .await
    .expect("browser task");
    agent.stop().await;
}

fn main() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    runtime.block_on(first_paint());
    if std::env::args().any(|a| a == "--docs-screenshot") {
        runtime.block_on(docs_screenshot());
    }
}
