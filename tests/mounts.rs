//! The mounts source against the real kernel: tmpfs and ext4-on-loop mounts, bind mounts,
//! remounts, a 1 000-mount run in a private mount namespace, and a filesystem whose statfs hangs.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::fuse::BlockingFuse;
use common::sse::{Message, SseClient};
use common::{machine_lock, require_root, sh, LoopDevice, MountGuard, TestAgent};
use diskwatch::model::mount_id;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

/// Skips messages until a `kind` event about the mount at `mount_point` arrives.
async fn expect_mount(sse: &mut SseClient, kind: &str, mount_point: &Path) -> Message {
    expect_mount_where(sse, kind, mount_point, |_| true).await
}

/// Like [`expect_mount`], for an event whose mount also satisfies `check`.
async fn expect_mount_where(
    sse: &mut SseClient,
    kind: &str,
    mount_point: &Path,
    check: impl Fn(&Value) -> bool,
) -> Message {
    let deadline = tokio::time::Instant::now() + WAIT;
    let want = mount_point.to_str().unwrap();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let msg = sse.expect(left).await;
        if msg.event == kind && msg.json()["data"]["mount"]["mount_point"] == want && check(&mount_of(&msg)) {
            return msg;
        }
    }
}

fn mount_of(msg: &Message) -> Value {
    msg.json()["data"]["mount"].clone()
}

async fn mounts_agent(configure: impl FnOnce(&mut diskwatch::config::Config)) -> TestAgent {
    TestAgent::start(
        |c| {
            c.mounts.enabled = true;
            configure(c);
        },
        vec![],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tmpfs_mount_bind_remount_and_umount_with_spaces() {
    if !require_root("tmpfs_mount_bind_remount_and_umount_with_spaces") {
        return;
    }
    let _lock = machine_lock();
    let dir = tempfile::tempdir().unwrap();
    let agent = mounts_agent(|c| c.mounts.usage_interval = Duration::from_secs(3600)).await;
    let mut sse = SseClient::connect(&agent.url("/api/v1/events/stream?types=mount.*"), None).await;

    // A mount point with spaces in its path.
    let target = dir.path().join("my data dir");
    let mut tmpfs = MountGuard::new("dwtest", &target, Some("tmpfs"), Some("size=4m"));
    let msg = expect_mount(&mut sse, "mount.mounted", &target).await;
    let m = mount_of(&msg);
    assert_eq!(m["id"], mount_id(target.to_str().unwrap()));
    assert_eq!(msg.json()["subject"], format!("mount/{}", m["id"].as_str().unwrap()));
    assert_eq!(m["fs_type"], "tmpfs");
    assert_eq!(m["source"], "dwtest");
    assert_eq!(m["read_only"], false);
    assert_eq!(m["network"], false);
    assert_eq!(m["root"], "/");
    let tmpfs_dev = m["dev"].as_str().unwrap().to_owned();
    // Sampled at once, not at the next (hour-long) interval.
    let id = m["id"].as_str().unwrap().to_owned();
    agent
        .wait_snapshot(WAIT, |s| {
            s["mounts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["id"] == id.as_str() && x["usage"]["total_bytes"] == 4 << 20)
        })
        .await;

    // A bind mount of a subdirectory: same device, its own root.
    std::fs::create_dir(target.join("sub dir")).unwrap();
    let bind_target = dir.path().join("bound");
    let mut bind = MountGuard::new(target.join("sub dir").to_str().unwrap(), &bind_target, None, Some("bind"));
    let m = mount_of(&expect_mount(&mut sse, "mount.mounted", &bind_target).await);
    assert_eq!(m["dev"], tmpfs_dev.as_str());
    assert_eq!(m["root"], "/sub dir");
    assert_eq!(m["fs_type"], "tmpfs");

    // Read-only bind remount: only the per-mount flag changes.
    sh("mount", &["-o", "remount,bind,ro", bind_target.to_str().unwrap()]);
    let msg = expect_mount(&mut sse, "mount.remounted", &bind_target).await;
    assert_eq!(mount_of(&msg)["read_only"], true);
    let changed = msg.json()["data"]["changed"].clone();
    assert!(changed.as_array().unwrap().iter().any(|c| c == "read_only"), "{changed}");

    bind.unmount();
    let m = mount_of(&expect_mount(&mut sse, "mount.unmounted", &bind_target).await);
    assert_eq!(m["read_only"], true, "last state of a removed mount");
    tmpfs.unmount();
    expect_mount(&mut sse, "mount.unmounted", &target).await;
    let snap = agent.get_json("/api/v1/mounts").await;
    let points: Vec<&str> = snap.as_array().unwrap().iter().map(|m| m["mount_point"].as_str().unwrap()).collect();
    assert!(!points.iter().any(|p| p.starts_with(dir.path().to_str().unwrap())), "{points:?}");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext4_on_loop_mounted_twice_remounted_ro_and_linked_to_its_disk() {
    if !require_root("ext4_on_loop_mounted_twice_remounted_ro_and_linked_to_its_disk") {
        return;
    }
    let _lock = machine_lock();
    let dir = tempfile::tempdir().unwrap();
    let disk = LoopDevice::new(64, &[]);
    sh("mkfs.ext4", &["-q", "-F", &disk.device]);
    let dev = common::dev_of(&disk.device);
    let agent = mounts_agent(|c| c.mounts.usage_interval = Duration::from_secs(3600)).await;
    // The block-device source is not part of this test: tell the core about the loop disk.
    agent
        .facts
        .send(diskwatch::state::Fact::DiskUpsert(common::facts::whole_disk(
            &format!("dev-{}", disk.name()),
            &disk.name(),
            &dev,
        )))
        .await
        .unwrap();
    let mut sse = SseClient::connect(&agent.url("/api/v1/events/stream?types=mount.*"), None).await;

    let first = dir.path().join("first");
    let second = dir.path().join("second");
    let mut a = MountGuard::new(&disk.device, &first, Some("ext4"), None);
    let m = mount_of(&expect_mount(&mut sse, "mount.mounted", &first).await);
    assert_eq!(m["dev"], dev.as_str());
    assert_eq!(m["source"], disk.device.as_str());
    assert_eq!(m["fs_type"], "ext4");
    assert_eq!(m["disk_id"], format!("dev-{}", disk.name()));
    let mut b = MountGuard::new(&disk.device, &second, Some("ext4"), None);
    let m = mount_of(&expect_mount(&mut sse, "mount.mounted", &second).await);
    assert_eq!(m["dev"], dev.as_str(), "same device mounted twice");
    let disk_json = agent.get_json(&format!("/api/v1/disks/dev-{}", disk.name())).await;
    let ids = disk_json["mounts"].as_array().unwrap();
    assert_eq!(ids.len(), 2, "{disk_json}");

    // Usage of a fresh ext4 filesystem arrives without waiting for the interval.
    let first_id = mount_id(first.to_str().unwrap());
    let snap = agent
        .wait_snapshot(WAIT, |s| {
            s["mounts"].as_array().unwrap().iter().any(|x| x["id"] == first_id.as_str() && !x["usage"].is_null())
        })
        .await;
    let usage = &snap["mounts"].as_array().unwrap().iter().find(|x| x["id"] == first_id.as_str()).unwrap()["usage"];
    let used = usage["used_bytes"].as_f64().unwrap();
    let avail = usage["available_bytes"].as_f64().unwrap();
    assert!((usage["percent"].as_f64().unwrap() - used / (used + avail) * 100.0).abs() < 1e-9, "{usage}");
    assert!(usage["inodes_total"].as_u64().unwrap() > 0);

    // rw → ro: the classic failing-disk sign.
    sh("mount", &["-o", "remount,ro", first.to_str().unwrap()]);
    let msg = expect_mount(&mut sse, "mount.remounted", &first).await;
    let m = mount_of(&msg);
    assert_eq!(m["read_only"], true);
    assert!(m["options"].as_array().unwrap().iter().any(|o| o == "ro"), "{m}");
    let changed = msg.json()["data"]["changed"].clone();
    assert!(changed.as_array().unwrap().iter().any(|c| c == "read_only"), "{changed}");
    // The superblock is shared: the second mount is read-only too now.
    let m = mount_of(&expect_mount(&mut sse, "mount.remounted", &second).await);
    assert_eq!(m["read_only"], true);

    b.unmount();
    expect_mount(&mut sse, "mount.unmounted", &second).await;
    a.unmount();
    let m = mount_of(&expect_mount(&mut sse, "mount.unmounted", &first).await);
    assert_eq!(m["dev"], dev.as_str());
    agent.stop().await;
}

/// 1 000 tmpfs mounts made and removed in a private mount namespace, so the host's table never
/// sees them: the agent runs in a thread that left the host's namespace and reads that
/// thread's mountinfo.
#[test]
fn thousand_mounts_in_a_private_namespace() {
    if !require_root("thousand_mounts_in_a_private_namespace") {
        return;
    }
    let _lock = machine_lock();
    let base = tempfile::tempdir().unwrap();
    let base_path = base.path().to_path_buf();
    let inner = base_path.clone();
    let result = std::thread::spawn(move || {
        use nix::mount::{mount, umount2, MntFlags, MsFlags};
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare the mount namespace");
        // Nothing done here may propagate back to the host.
        mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
            .expect("make / private");
        let tid = nix::unistd::gettid();
        // Runtime threads are started from this thread, so they share its namespace.
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let agent = mounts_agent(|c| {
                c.mounts.mountinfo = format!("/proc/{tid}/mountinfo").into();
                c.mounts.usage_interval = Duration::from_secs(3600);
            })
            .await;
            let under = |s: &Value| -> Vec<String> {
                s["mounts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|m| m["mount_point"].as_str().unwrap().starts_with(inner.to_str().unwrap()))
                    .map(|m| m["mount_point"].as_str().unwrap().to_owned())
                    .collect()
            };
            let mut expected = Vec::new();
            for i in 0..1000 {
                let target = inner.join(format!("m{i:04}"));
                std::fs::create_dir(&target).unwrap();
                mount(Some("dwscale"), &target, Some("tmpfs"), MsFlags::empty(), Some("size=64k")).unwrap();
                expected.push(target.to_str().unwrap().to_owned());
            }
            let snap = agent
                .wait_snapshot(Duration::from_secs(60), |s| {
                    let mut got = under(s);
                    got.sort();
                    got == expected
                })
                .await;
            let ours: Vec<&Value> = snap["mounts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["mount_point"].as_str().unwrap().starts_with(inner.to_str().unwrap()))
                .collect();
            assert!(ours.iter().all(|m| m["fs_type"] == "tmpfs" && m["source"] == "dwscale"));
            let ids: std::collections::HashSet<&str> = ours.iter().map(|m| m["id"].as_str().unwrap()).collect();
            assert_eq!(ids.len(), 1000, "distinct ids");
            for target in &expected {
                umount2(target.as_str(), MntFlags::empty()).unwrap();
            }
            agent.wait_snapshot(Duration::from_secs(60), |s| under(s).is_empty()).await;
            agent.stop().await;
        });
    })
    .join();
    // The host's own table never held any of them.
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!host.contains(base_path.to_str().unwrap()), "a test mount leaked into the host's table");
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_statfs_marks_stale_and_nothing_else_waits() {
    if !require_root("hung_statfs_marks_stale_and_nothing_else_waits") {
        return;
    }
    let _lock = machine_lock();
    let dir = tempfile::tempdir().unwrap();
    let timeout = Duration::from_millis(500);
    let agent = mounts_agent(|c| {
        c.mounts.usage_interval = Duration::from_millis(200);
        c.mounts.usage_timeout = timeout;
    })
    .await;
    let mut sse = SseClient::connect(&agent.url("/api/v1/events/stream?types=mount.*"), None).await;
    let other_target = dir.path().join("other");
    let _other = MountGuard::new("dwother", &other_target, Some("tmpfs"), Some("size=4m"));
    expect_mount(&mut sse, "mount.mounted", &other_target).await;
    let fuse = BlockingFuse::mount(&dir.path().join("dead"));
    let m = mount_of(&expect_mount(&mut sse, "mount.mounted", &fuse.target).await);
    assert_eq!(m["fs_type"], "fuse.diskwatchtest");
    assert_eq!(m["network"], true);
    let fuse_id = m["id"].as_str().unwrap().to_owned();
    let other_id = mount_id(other_target.to_str().unwrap());
    // While the server answers, usage comes through (1000 blocks of 4 KiB, 500 free).
    agent
        .wait_snapshot(WAIT, |s| {
            s["mounts"].as_array().unwrap().iter().any(|x| x["id"] == fuse_id.as_str() && x["usage"]["percent"] == 50.0)
        })
        .await;

    fuse.hang();
    let hung_at = Instant::now();
    let msg = expect_mount_where(&mut sse, "mount.usage", &fuse.target, |m| m["stale"] == true).await;
    let stale_after = hung_at.elapsed();
    assert_eq!(mount_of(&msg)["stale"], true);
    assert_eq!(msg.json()["data"]["changed"], serde_json::json!(["stale"]));
    eprintln!("stale reported {stale_after:?} after the server stopped answering (timeout {timeout:?})");
    assert!(stale_after >= timeout, "stale before the timeout ran out: {stale_after:?}");

    // The API answers meanwhile.
    for path in ["/api/v1/health", "/api/v1/mounts"] {
        let t = Instant::now();
        let resp = reqwest::get(agent.url(path)).await.unwrap();
        let elapsed = t.elapsed();
        assert_eq!(resp.status(), 200, "{path}");
        let body: Value = resp.json().await.unwrap();
        eprintln!("{path} answered in {elapsed:?} while a mount hangs");
        assert!(elapsed < Duration::from_secs(2), "{path} took {elapsed:?}");
        if path == "/api/v1/mounts" {
            let m = body.as_array().unwrap().iter().find(|m| m["id"] == fuse_id.as_str()).unwrap();
            assert_eq!(m["stale"], true);
        }
    }

    // Other mounts' usage still updates: fill a quarter of the other tmpfs.
    std::fs::write(other_target.join("fill"), vec![7u8; 1 << 20]).unwrap();
    let msg = expect_mount_where(&mut sse, "mount.usage", &other_target, |m| {
        m["usage"]["used_bytes"].as_u64() >= Some(1 << 20)
    })
    .await;
    let m = mount_of(&msg);
    assert_eq!(m["id"], other_id.as_str());
    assert!(m["usage"]["percent"].as_f64().unwrap() >= 25.0, "{m}");
    assert_eq!(m["stale"], false);

    // Several intervals passed, yet the hung mount has exactly one query outstanding.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(fuse.pending(), 1, "a second query was started for a hung mount");

    fuse.release();
    let msg = expect_mount_where(&mut sse, "mount.usage", &fuse.target, |m| m["stale"] == false).await;
    let m = mount_of(&msg);
    assert_eq!(m["stale"], false);
    assert_eq!(m["usage"]["percent"], 50.0);
    drop(fuse);
    agent.stop().await;
}

/// A mount table that vanishes fails the source (health 503, it is required) and its
/// return recovers it. No root needed: a plain file stands in for mountinfo.
#[tokio::test]
async fn vanished_mount_table_fails_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("mountinfo");
    std::fs::write(&table, "28 1 8:2 / / rw,relatime - ext4 /dev/sda2 rw\n").unwrap();
    let agent = mounts_agent(|c| {
        c.mounts.mountinfo = table.clone();
        c.mounts.reread_interval = Duration::from_millis(50);
        c.mounts.usage_interval = Duration::from_secs(3600);
    })
    .await;
    agent.wait_snapshot(WAIT, |s| s["mounts"].as_array().unwrap().iter().any(|m| m["id"] == "root")).await;
    let mut sse = SseClient::connect(&agent.url("/api/v1/events/stream?types=source.*,mount.*"), None).await;

    std::fs::remove_file(&table).unwrap();
    let msg = sse.expect_type("source.failed", WAIT).await;
    assert_eq!(msg.json()["data"]["source"], "mounts");
    assert!(msg.json()["data"]["message"].as_str().unwrap().contains("mountinfo"), "path in the message");
    let health = reqwest::get(agent.url("/api/v1/health")).await.unwrap();
    assert_eq!(health.status(), 503);

    std::fs::write(
        &table,
        "28 1 8:2 / / rw,relatime - ext4 /dev/sda2 rw\n40 28 8:17 / /mnt/new\\040disk rw - ext4 /dev/sdb1 rw\n",
    )
    .unwrap();
    let msg = sse.expect_type("source.recovered", WAIT).await;
    assert_eq!(msg.json()["data"]["source"], "mounts");
    let msg = sse.expect_type("mount.mounted", WAIT).await;
    assert_eq!(msg.json()["data"]["mount"]["mount_point"], "/mnt/new disk");
    assert_eq!(reqwest::get(agent.url("/api/v1/health")).await.unwrap().status(), 200);
    agent.stop().await;
}
