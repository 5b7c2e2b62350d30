//! The dashboard in headless Chromium against a running agent: objects appear,
//! get usage bars and disappear without a reload.
//!
//! Two modes: an in-process agent fed facts (runs everywhere), and the real
//! binary with the udev and mounts sources watching a real loop device.

mod common;

use std::time::Duration;

use common::dashboard::{artifacts_dir, disk, mount, partition, usage, Browser};
use common::TestAgent;
use diskwatch::state::Fact;

#[tokio::test]
async fn dashboard_is_served_self_contained() {
    let agent = TestAgent::start(|_| {}, vec![]).await;
    let response = reqwest::get(agent.url("/")).await.expect("GET /");
    assert_eq!(response.status(), 200);
    let kind = response.headers()["content-type"].to_str().expect("ascii").to_owned();
    assert!(kind.starts_with("text/html"), "{kind}");
    let body = response.bytes().await.expect("body");
    assert!(body.len() <= 100 * 1024, "the page is {} bytes", body.len());
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("EventSource(\"api/v1/events/stream?snapshot=true\")"));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_follows_facts_live() {
    let agent = TestAgent::start(|_| {}, vec![]).await;
    let mut browser = Browser::launch();
    browser.cmd(&format!("goto {}", agent.url("/")));
    browser.cmd("wait #status[data-state=live]");

    // Plug a disk with a partition: it appears without a reload.
    let d = disk(1);
    let p = partition(&d, 1);
    agent.facts.send(Fact::DiskUpsert(d.clone())).await.expect("send");
    agent.facts.send(Fact::PartitionUpsert(p.clone())).await.expect("send");
    browser.cmd(&format!("wait [data-disk-id=\"{}\"] [data-partition-id=\"{}\"]", d.id, p.id));

    // Mount it: the mount shows under the partition with a usage bar.
    let m = mount(&p, "/mnt/usb");
    agent.facts.send(Fact::Mounts { mounts: vec![m.clone()], initial: false }).await.expect("send");
    agent
        .facts
        .send(Fact::MountUsage { id: m.id.clone(), usage: Some(usage(42.0)), stale: false })
        .await
        .expect("send");
    let bar =
        format!("[data-partition-id=\"{}\"] [data-mount-id=\"{}\"] [data-usage][aria-valuenow=\"42.0\"]", p.id, m.id);
    browser.cmd(&format!("wait {bar}"));
    let log = browser.cmd("text #log");
    assert!(log.contains("mount.mounted"), "the event log misses the mount: {log}");

    // Remount read-only: a warning; then the usage query times out: stale.
    let mut ro = m.clone();
    ro.read_only = true;
    ro.options = vec!["ro".into()];
    agent.facts.send(Fact::Mounts { mounts: vec![ro], initial: false }).await.expect("send");
    browser.cmd(&format!("wait [data-mount-id=\"{}\"] .badge.warn", m.id));
    agent.facts.send(Fact::MountUsage { id: m.id.clone(), usage: None, stale: true }).await.expect("send");
    browser.cmd(&format!("wait [data-mount-id=\"{}\"] .badge.bad", m.id));
    browser.cmd(&format!("screenshot {}", artifacts_dir().join("dashboard-facts.png").display()));

    // Unmount and unplug: everything goes away.
    agent.facts.send(Fact::Mounts { mounts: vec![], initial: false }).await.expect("send");
    browser.cmd(&format!("gone [data-mount-id=\"{}\"]", m.id));
    agent.facts.send(Fact::DiskRemoved { id: d.id.clone() }).await.expect("send");
    browser.cmd(&format!("gone [data-disk-id=\"{}\"]", d.id));
    assert_eq!(browser.cmd("errors"), "[]", "the page threw");
    drop(browser);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_reloads_state_on_resync() {
    // A tiny client buffer: a burst larger than it makes the server resync the page.
    let agent = TestAgent::start(|c| c.events.client_buffer = 4, vec![]).await;
    let mut browser = Browser::launch();
    browser.cmd(&format!("goto {}", agent.url("/")));
    browser.cmd("wait #status[data-state=live]");
    let (disks, partitions, mounts) = common::dashboard::topology(30, 0);
    for d in &disks {
        agent.facts.send(Fact::DiskUpsert(d.clone())).await.expect("send");
    }
    assert!(!partitions.is_empty() && mounts.is_empty());
    let last = disks.last().expect("disks");
    browser.cmd(&format!("wait [data-disk-id=\"{}\"]", last.id));
    let shown = browser.cmd("text #topology");
    for d in &disks {
        assert!(shown.contains(&d.devnode), "{} missing after the burst", d.devnode);
    }
    let log = browser.cmd("text #log");
    assert!(log.contains("resync"), "the burst did not resync the page: {log}");
    drop(browser);
    agent.stop().await;
}

/// On a phone-sized screen in dark mode: no sideways scrolling, dark colours,
/// labelled controls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_fits_a_phone_in_dark_mode() {
    let agent = TestAgent::start(|_| {}, vec![]).await;
    let (disks, partitions, mounts) = common::dashboard::topology(3, 6);
    let usages: Vec<_> = mounts.iter().map(|m| (m.id.clone(), m.usage.clone())).collect();
    agent.facts.send(Fact::BlockDevices { disks, partitions, initial: true }).await.expect("send");
    agent.facts.send(Fact::Mounts { mounts, initial: true }).await.expect("send");
    for (id, usage) in usages {
        agent.facts.send(Fact::MountUsage { id, usage, stale: false }).await.expect("send");
    }
    let mut browser = Browser::launch();
    browser.cmd("viewport 390 844");
    browser.cmd("scheme dark");
    browser.cmd(&format!("goto {}", agent.url("/")));
    browser.cmd("wait [data-mount-id=\"srv_volume005\"] [data-usage]");
    let overflow = browser.cmd("eval document.documentElement.scrollWidth - window.innerWidth");
    assert_eq!(overflow, "0", "the page scrolls sideways on a phone");
    let background = browser.cmd("eval getComputedStyle(document.body).backgroundColor");
    assert_eq!(background, "\"rgb(15, 18, 22)\"", "dark mode not applied");
    let unlabelled = browser
        .cmd("eval [...document.querySelectorAll('select,input')].filter(e => !e.labels || !e.labels.length).length");
    assert_eq!(unlabelled, "0", "a form control has no label");
    let live = browser.cmd("eval document.getElementById('log').getAttribute('aria-live')");
    assert_eq!(live, "\"polite\"");
    browser.cmd(&format!("screenshot {}", artifacts_dir().join("dashboard-phone-dark.png").display()));
    browser.cmd("scheme light");
    let background = browser.cmd("eval getComputedStyle(document.body).backgroundColor");
    assert_eq!(background, "\"rgb(246, 247, 249)\"", "light mode not applied");
    drop(browser);
    agent.stop().await;
}

/// Behind Home Assistant ingress the page lives below a path prefix
/// (`/api/hassio_ingress/<token>/`): with relative URLs everything still works,
/// and nothing is requested outside the prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_works_below_an_ingress_prefix() {
    use axum::ServiceExt;
    use tower::Layer;

    const PREFIX: &str = "/api/hassio_ingress/t0ken";
    let agent = TestAgent::start(|_| {}, vec![]).await;
    let inner = diskwatch::http::app(agent.running.as_ref().expect("running").agent.clone(), Default::default());
    let outside = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = outside.clone();
    let proxy = tower::util::MapRequestLayer::new(move |mut req: axum::extract::Request| {
        let path_and_query = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
        let rewritten = match path_and_query.strip_prefix(PREFIX) {
            Some(rest) if rest.starts_with('/') => rest.to_owned(),
            _ => {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                "/outside-the-ingress-prefix".to_owned()
            }
        };
        *req.uri_mut() = rewritten.parse().expect("uri");
        req
    })
    .layer(inner);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move { axum::serve(listener, proxy.into_make_service()).await });

    let mut browser = Browser::launch();
    browser.cmd(&format!("goto http://{addr}{PREFIX}/"));
    browser.cmd("wait #status[data-state=live]");
    let d = disk(3);
    agent.facts.send(Fact::DiskUpsert(d.clone())).await.expect("send");
    browser.cmd(&format!("wait [data-disk-id=\"{}\"]", d.id));
    assert_eq!(outside.load(std::sync::atomic::Ordering::SeqCst), 0, "the page requested a path outside the prefix");
    drop(browser);
    server.abort();
    agent.stop().await;
}

/// The real binary with the udev and mounts sources, a real loop device and a real mount.
#[test]
fn dashboard_follows_a_real_loop_device() {
    if !common::require_root("dashboard_follows_a_real_loop_device") {
        return;
    }
    let _lock = common::machine_lock();
    let state = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_diskwatch"))
        .args(["run", "--listen", &format!("127.0.0.1:{port}")])
        .env("DISKWATCH_STATE_DIR", state.path())
        .env("DISKWATCH_MQTT__ENABLED", "false")
        .env("DISKWATCH_SHARES__ENABLED", "false")
        .env("DISKWATCH_UDEV__INCLUDE", "[\"loop*\"]")
        .env("DISKWATCH_MOUNTS__USAGE_INTERVAL", "1s")
        .spawn()
        .expect("start diskwatch");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            // Only the agent this test started, by its PID.
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0.id() as i32), nix::sys::signal::SIGTERM);
            let _ = self.0.wait();
        }
    }
    let pid = child.id();
    let _agent = Kill(child);
    let url = format!("http://127.0.0.1:{port}/");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "diskwatch (pid {pid}) did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut browser = Browser::launch();
    browser.cmd(&format!("goto {url}"));
    browser.cmd("wait #status[data-state=live]");

    let mut dev = common::LoopDevice::new(64, &[48]);
    let name = dev.name();
    browser.cmd(&format!("wait [data-kernel=\"{name}\"]"));
    common::sh("mkfs.ext4", &["-q", "-F", &dev.partition(1)]);
    let target = state.path().join("mnt");
    let mut guard = common::MountGuard::new(&dev.partition(1), &target, Some("ext4"), None);
    let point = target.display().to_string();
    browser.cmd(&format!("wait [data-kernel=\"{name}\"] [data-mount-point=\"{point}\"] [data-usage]"));
    browser.cmd(&format!("screenshot {}", artifacts_dir().join("dashboard-loop.png").display()));
    guard.unmount();
    browser.cmd(&format!("gone [data-mount-point=\"{point}\"]"));
    dev.detach();
    browser.cmd(&format!("gone [data-kernel=\"{name}\"]"));
}
