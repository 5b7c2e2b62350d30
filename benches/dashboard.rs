//! Dashboard first paint in headless Chromium with 50 disks / 100 partitions /
//! 200 mounts fed as facts to an in-process agent; prints p50/p99 of the time
//! from navigation start to the first render of the topology and to the first
//! contentful paint, and the page size.
//!
//! `cargo bench --bench dashboard`; `cargo bench --bench dashboard -- --docs-screenshot`
//! (root) writes docs/dashboard.png instead.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::dashboard::{artifacts_dir, topology, Browser};
use common::TestAgent;
use diskwatch::state::Fact;

const RUNS: usize = 25;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
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

/// The README's screenshot: a running agent (udev in kernel mode, the mount table, usage,
/// activity, history at 1 s) watching real loop disks with ext4 filesystems mounted and written
/// to; what this kernel cannot show (md, SMART of a loop disk) is fed as facts: a raid1 of two
/// loop disks rebuilding, and the disks' temperatures. Needs root.
async fn docs_screenshot() {
    use common::{machine_lock, sh, LoopDevice, MountGuard};
    let _lock = machine_lock();
    std::fs::create_dir_all("/srv").expect("/srv");
    let work = tempfile::Builder::new().prefix("nas-").tempdir_in("/srv").expect("tempdir");
    let root = work.path().to_path_buf();
    let media = LoopDevice::new(200, &[190]);
    let backup = LoopDevice::new(120, &[110]);
    let usb = LoopDevice::new(64, &[56]);
    let (mirror_a, mirror_b) = (LoopDevice::new(32, &[]), LoopDevice::new(32, &[]));
    for (dev, label) in [(&media, "Media"), (&backup, "Backup"), (&usb, "SANDISK")] {
        sh("mkfs.ext4", &["-q", "-F", "-L", label, &dev.partition(1)]);
    }
    let config_root = root.clone();
    let agent = TestAgent::start(
        move |c| {
            c.node_id = "nas".into();
            c.udev.enabled = true;
            c.udev.source = diskwatch::config::UdevMode::Kernel;
            c.udev.include = vec!["loop*".into()];
            c.udev.exclude = vec!["*".into()];
            c.mounts.enabled = true;
            // Only the filesystems made here (not the machine's own).
            c.mounts.exclude_paths = vec!["/".into(), "/**".into()];
            c.mounts.include_paths = vec![format!("{}/**", config_root.display())];
            c.mounts.usage_interval = Duration::from_secs(1);
            c.activity.enabled = true;
            c.activity.interval = Duration::from_secs(1);
            c.history.enabled = true;
            c.history.resolution = Duration::from_secs(1);
        },
        vec![],
    )
    .await;
    let _mounts = [
        MountGuard::new(&media.partition(1), &root.join("srv/media"), Some("ext4"), None),
        MountGuard::new(&backup.partition(1), &root.join("srv/backup"), Some("ext4"), None),
        MountGuard::new(&usb.partition(1), &root.join("media/usb"), Some("ext4"), None),
    ];
    let ours = root.display().to_string();
    agent
        .wait_snapshot(Duration::from_secs(15), |s| {
            s["mounts"].as_array().is_some_and(|m| {
                m.iter().filter(|m| m["mount_point"].as_str().is_some_and(|p| p.starts_with(&ours))).count() == 3
            })
        })
        .await;
    let ids: Vec<(String, String)> = agent
        .get_json("/api/v1/disks")
        .await
        .as_array()
        .expect("disks")
        .iter()
        .map(|d| (d["kernel_name"].as_str().unwrap_or("").to_owned(), d["id"].as_str().unwrap_or("").to_owned()))
        .collect();
    let id_of = |dev: &LoopDevice| ids.iter().find(|(n, _)| *n == dev.name()).map(|(_, id)| id.clone()).expect("disk");
    // The mirror, rebuilding onto its second member.
    let mut array = diskwatch::arrays::Array::new(
        diskwatch::arrays::ArrayKind::Md,
        "md0",
        Some("0fbf5f2c-add2-43c2-bd78-a4be3ab709ef".into()),
    );
    array.level = Some("raid1".into());
    array.raid_disks = Some(2);
    array.devnode = Some("/dev/md0".into());
    array.state = diskwatch::arrays::ArrayState::Recovering;
    array.degraded_count = 1;
    array.sync_action = Some("recover".into());
    array.sync_percent = Some(42.5);
    array.sync_eta_seconds = Some(1260);
    let mut rebuilding =
        diskwatch::arrays::ArrayMember::new(Some(mirror_b.name()), diskwatch::arrays::MemberRole::Spare, Some(1));
    rebuilding.rebuilding = true;
    array.members = vec![
        diskwatch::arrays::ArrayMember::new(Some(mirror_a.name()), diskwatch::arrays::MemberRole::Active, Some(0)),
        rebuilding,
    ];
    // As found at start-up (a rebuild, not a new array's first sync).
    agent.facts.send(Fact::Arrays { arrays: vec![array], initial: true }).await.expect("send");
    // Eight seconds of writes and temperatures, so the history has points to draw.
    for second in 0..8u64 {
        sh(
            "dd",
            &[
                "if=/dev/urandom",
                &format!("of={}/srv/media/film{second}", root.display()),
                "bs=1M",
                "count=12",
                "oflag=direct",
                "status=none",
            ],
        );
        for (n, dev) in [&media, &backup, &usb, &mirror_a, &mirror_b].into_iter().enumerate() {
            let health = serde_json::json!({
                "passed": true, "temperature_c": 33 + n as u64 * 3 + second % 3, "power_on_hours": 21_000 - n as u64 * 4_000,
                "power_cycles": 140, "reallocated_sectors": 0, "pending_sectors": 0, "uncorrectable": 0,
                "checked_at": "2026-12-03T10:00:00Z", "source": "smartctl"
            });
            agent
                .facts
                .send(Fact::DiskHealth {
                    id: id_of(dev),
                    power_state: diskwatch::model::PowerState::Active,
                    health: Some(serde_json::from_value(health).expect("health")),
                    note: None,
                })
                .await
                .expect("send");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    sh("sync", &[]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let url = agent.url("/");
    tokio::task::spawn_blocking(move || {
        let mut browser = Browser::launch();
        browser.cmd(&format!("goto {url}"));
        browser.cmd("wait [data-array-id] [data-sync]");
        // The sparklines are fetched 2 s after the page loads.
        std::thread::sleep(Duration::from_secs(4));
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
    if std::env::args().any(|a| a == "--docs-screenshot") {
        runtime.block_on(docs_screenshot());
    } else {
        runtime.block_on(first_paint());
    }
}
