//! The block-device source against the real kernel (root): hot-plug of a loop
//! device with two partitions in kernel and udev mode, coldplug with and
//! without --emit-initial, and convergence after a netlink overflow.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::sse::{Message, SseClient};
use common::udevd::{attached_loops, fs_uuid, Udevd};
use common::{machine_lock, require_root, sh, LoopDevice, MountGuard, TestAgent};
use diskwatch::config::{Config, UdevMode};
use diskwatch::udev::{UdevSource, UdevStats};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);

/// Starts an agent with a udev source following loop devices in `mode`.
async fn start_agent(mode: UdevMode, configure: impl FnOnce(&mut Config)) -> (TestAgent, Arc<UdevStats>) {
    let mut udev = Config::default().udev;
    udev.source = mode;
    udev.include = vec!["loop*".into()];
    let mut config = Config { udev, ..Config::default() };
    configure(&mut config);
    let source = UdevSource::new(config.udev.clone());
    let stats = source.stats();
    let emit_initial = config.emit_initial;
    let agent = TestAgent::start(|c| c.emit_initial = emit_initial, vec![Box::new(source)]).await;
    let deadline = Instant::now() + WAIT;
    while !stats.is_ready() {
        assert!(Instant::now() < deadline, "the udev source never finished coldplug");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(stats.mode(), Some(mode));
    (agent, stats)
}

/// The object (disk or partition) an event carries.
fn object(msg: &Message) -> Value {
    let v = msg.json();
    let data = &v["data"];
    if data.get("disk").is_some() {
        data["disk"].clone()
    } else {
        data["partition"].clone()
    }
}

/// The next disk/partition event about `disk` (the loop device) or its partitions.
async fn next_about(sse: &mut SseClient, disk: &str) -> (String, Value) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let msg = sse.expect(left).await;
        let obj = object(&msg);
        let name = obj["kernel_name"].as_str().unwrap_or_default().to_owned();
        if name == disk || name.strip_prefix(disk).is_some_and(|rest| rest.starts_with('p')) {
            return (msg.event, obj);
        }
    }
}

fn partition_named<'a>(snap: &'a Value, name: &str) -> Option<&'a Value> {
    snap["partitions"].as_array()?.iter().find(|p| p["kernel_name"] == name)
}

fn disk_named<'a>(snap: &'a Value, name: &str) -> Option<&'a Value> {
    snap["disks"].as_array()?.iter().find(|d| d["kernel_name"] == name)
}

async fn hotplug(mode: UdevMode, test: &str) {
    if !require_root(test) {
        return;
    }
    let _lock = machine_lock();
    let udevd = (mode == UdevMode::Udev).then(Udevd::start);
    let (agent, _stats) = start_agent(mode, |_| {}).await;
    let mut sse = SseClient::connect(&agent.url("/api/v1/events/stream?types=disk.*,partition.*"), None).await;

    let mut lo = LoopDevice::new(64, &[20, 20]);
    let name = lo.name();
    let (kind, disk) = next_about(&mut sse, &name).await;
    assert_eq!(kind, "disk.added", "first event for {name}: {disk}");
    assert_eq!(disk["kernel_name"], name.as_str());
    assert_eq!(disk["size_bytes"], 64u64 << 20);
    let mut added = Vec::new();
    while added.len() < 2 {
        let (kind, obj) = next_about(&mut sse, &name).await;
        match kind.as_str() {
            "partition.added" => added.push(obj["kernel_name"].as_str().unwrap().to_owned()),
            "disk.changed" | "partition.changed" => {}
            other => panic!("unexpected {other} before both partitions were added: {obj}"),
        }
    }
    added.sort();
    assert_eq!(added, vec![format!("{name}p1"), format!("{name}p2")]);

    sh("mkfs.ext4", &["-q", "-F", "-L", "alpha", &lo.partition(1)]);
    sh("mkfs.ext4", &["-q", "-F", "-L", "beta", &lo.partition(2)]);
    if let Some(u) = &udevd {
        u.settle();
    }
    let mnt = tempfile::tempdir().unwrap();
    let mut mount = MountGuard::new(&lo.partition(1), &mnt.path().join("alpha"), None, None);
    let (uuid1, uuid2) = (fs_uuid(&lo.partition(1)), fs_uuid(&lo.partition(2)));
    let (p1, p2) = (format!("{name}p1"), format!("{name}p2"));
    let snap = agent
        .wait_snapshot(WAIT, |s| {
            let ok = |p: &str, label: &str, uuid: &str| {
                partition_named(s, p)
                    .is_some_and(|p| p["fs_type"] == "ext4" && p["fs_label"] == label && p["fs_uuid"] == uuid)
            };
            ok(&p1, "alpha", &uuid1) && ok(&p2, "beta", &uuid2)
        })
        .await;
    let part = partition_named(&snap, &p1).unwrap();
    let disk = disk_named(&snap, &name).expect("disk in snapshot");
    assert_eq!(part["disk_id"], disk["id"]);
    assert!(part["part_uuid"].is_string(), "GPT entry uuid: {part}");
    assert_eq!(disk["partition_table"], "gpt");

    mount.unmount();
    lo.detach();
    let mut removed = Vec::new();
    let mut seen = Vec::new();
    while removed.len() < 3 {
        let (kind, obj) = next_about(&mut sse, &name).await;
        seen.push(format!("{kind} {} {}", obj["kernel_name"], obj["id"]));
        if kind.ends_with(".removed") {
            removed.push(obj["kernel_name"].as_str().unwrap().to_owned());
        }
    }
    removed.sort();
    assert_eq!(removed, vec![name.clone(), p1.clone(), p2.clone()], "events after detach: {seen:#?}");
    let snap = agent.get_json("/api/v1/snapshot").await;
    assert!(disk_named(&snap, &name).is_none() && partition_named(&snap, &p1).is_none());
    agent.stop().await;
    drop(udevd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_mode_hotplug_mkfs_mount_detach() {
    hotplug(UdevMode::Kernel, "kernel_mode_hotplug_mkfs_mount_detach").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udev_mode_hotplug_mkfs_mount_detach() {
    hotplug(UdevMode::Udev, "udev_mode_hotplug_mkfs_mount_detach").await;
}

/// Events in the agent's history about `name` or its partitions.
async fn history_about(agent: &TestAgent, name: &str) -> Vec<String> {
    let page = agent.get_json("/api/v1/events?types=disk.*,partition.*&limit=10000").await;
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            let d = &e["data"];
            let obj = if d.get("disk").is_some() { &d["disk"] } else { &d["partition"] };
            let n = obj["kernel_name"].as_str().unwrap_or_default();
            n == name || n.strip_prefix(name).is_some_and(|r| r.starts_with('p'))
        })
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

async fn coldplug(emit_initial: bool, test: &str) {
    if !require_root(test) {
        return;
    }
    let _lock = machine_lock();
    let lo = LoopDevice::new(64, &[20, 20]);
    sh("mkfs.ext4", &["-q", "-F", "-L", "cold", &lo.partition(2)]);
    let name = lo.name();
    let (agent, _stats) = start_agent(UdevMode::Kernel, |c| c.emit_initial = emit_initial).await;
    let snap = agent.wait_snapshot(WAIT, |s| partition_named(s, &format!("{name}p2")).is_some()).await;
    assert!(disk_named(&snap, &name).is_some());
    let p2 = partition_named(&snap, &format!("{name}p2")).unwrap();
    assert_eq!(p2["fs_label"], "cold");
    assert_eq!(p2["fs_uuid"], fs_uuid(&lo.partition(2)).as_str());
    assert!(partition_named(&snap, &format!("{name}p1")).unwrap()["fs_type"].is_null());
    let mut history = history_about(&agent, &name).await;
    history.sort();
    if emit_initial {
        assert_eq!(history, vec!["disk.added", "partition.added", "partition.added"]);
    } else {
        assert!(history.is_empty(), "coldplug must not announce devices: {history:?}");
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coldplug_is_silent() {
    coldplug(false, "coldplug_is_silent").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coldplug_with_emit_initial_announces() {
    coldplug(true, "coldplug_with_emit_initial_announces").await;
}

/// A current-thread runtime: while the test runs its blocking storm, the
/// agent cannot read its socket, so the tiny buffer must overflow.
#[tokio::test(flavor = "current_thread")]
async fn overflow_resyncs_to_the_truth() {
    if !require_root("overflow_resyncs_to_the_truth") {
        return;
    }
    let _lock = machine_lock();
    let (agent, stats) = start_agent(UdevMode::Kernel, |c| c.udev.receive_buffer = 1).await;
    let mut kept = Vec::new();
    for i in 0..50 {
        let mut lo = LoopDevice::new(8, &[2, 2]);
        if i % 10 == 0 {
            kept.push(lo);
        } else {
            lo.detach();
        }
    }
    let deadline = Instant::now() + WAIT;
    let snap = loop {
        // Read each time: a detach while a probe (ours, udevd's) holds the device open is
        // completed by the kernel only when it is closed (autoclear), after losetup returned.
        let want: Vec<String> = attached_loops();
        let snap = agent.get_json("/api/v1/snapshot").await;
        let mut have: Vec<String> = snap["disks"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["kernel_name"].as_str())
            .filter(|n| n.starts_with("loop"))
            .map(str::to_owned)
            .collect();
        have.sort();
        if have == want && stats.resyncs() > 0 {
            break snap;
        }
        assert!(Instant::now() < deadline, "state {have:?} never matched /sys {want:?} (resyncs {})", stats.resyncs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(stats.resyncs() >= 1, "the overflow was noticed and resynced");
    let metrics = reqwest::get(agent.url("/metrics")).await.unwrap().text().await.unwrap();
    let counted = metrics.lines().find_map(|l| l.strip_prefix("diskwatch_udev_resyncs_total ")).unwrap_or("0");
    assert_ne!(counted, "0", "the resync shows in /metrics: {metrics}");
    for lo in &kept {
        let name = lo.name();
        assert!(disk_named(&snap, &name).is_some());
        assert!(partition_named(&snap, &format!("{name}p2")).is_some(), "partitions of {name} after resync");
    }
    drop(kept);
    agent.stop().await;
}

/// A loop device over a copy of another's content (`dd` of the device), so both carry the same
/// GPT (disk and partition UUIDs) and the same filesystem UUID: a cloned disk. Detached on drop.
struct ClonedLoop {
    device: String,
    _dir: tempfile::TempDir,
}

impl ClonedLoop {
    fn of(source: &LoopDevice) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("clone.img");
        sh("dd", &[&format!("if={}", source.device), &format!("of={}", image.display()), "bs=1M", "status=none"]);
        let device = sh("losetup", &["-f", "--show", "-P", image.to_str().unwrap()]);
        // This kernel has no partition-table parsers: add the partitions by hand.
        let _ = std::process::Command::new("partx").args(["-a", &device]).output();
        Self { device, _dir: dir }
    }

    fn name(&self) -> String {
        self.device.trim_start_matches("/dev/").to_owned()
    }

    fn detach(&mut self) {
        if !self.device.is_empty() {
            let _ = std::process::Command::new("losetup").args(["-d", &self.device]).output();
            self.device.clear();
        }
    }
}

impl Drop for ClonedLoop {
    fn drop(&mut self) {
        self.detach();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloned_disk_is_kept_apart_and_unplugging_it_leaves_the_original() {
    if !require_root("a_cloned_disk_is_kept_apart_and_unplugging_it_leaves_the_original") {
        return;
    }
    let _lock = machine_lock();
    let (agent, _stats) = start_agent(UdevMode::Kernel, |_| {}).await;
    let original = LoopDevice::new(32, &[20]);
    sh("mkfs.ext4", &["-q", "-F", "-L", "twin", &original.partition(1)]);
    let (orig_part, uuid) = (format!("{}p1", original.name()), fs_uuid(&original.partition(1)));
    let snap = agent
        .wait_snapshot(WAIT, |s| partition_named(s, &orig_part).is_some_and(|p| p["fs_uuid"] == uuid.as_str()))
        .await;
    let first_id = partition_named(&snap, &orig_part).unwrap()["id"].as_str().unwrap().to_owned();

    let before_clone = snap["last_event_id"].as_u64().unwrap();
    let mut clone = ClonedLoop::of(&original);
    let clone_part = format!("{}p1", clone.name());
    assert_eq!(fs_uuid(&format!("{}p1", clone.device)), uuid, "the clone carries the same filesystem UUID");
    let snap = agent
        .wait_snapshot(WAIT, |s| {
            partition_named(s, &clone_part).is_some_and(|p| p["fs_uuid"] == uuid.as_str())
                && partition_named(s, &orig_part).is_some_and(|p| p["stable"] == false)
        })
        .await;
    let orig = partition_named(&snap, &orig_part).unwrap();
    let twin = partition_named(&snap, &clone_part).unwrap();
    assert_eq!(orig["id"], first_id.as_str(), "the first keeps its id: {orig}");
    assert_eq!(twin["id"], format!("{first_id}-{clone_part}").as_str(), "{twin}");
    assert_eq!(twin["stable"], false);
    assert_eq!(orig["part_uuid"], twin["part_uuid"], "same GPT entry UUID on both");
    assert_ne!(orig["disk_id"], twin["disk_id"]);
    let same_uuid = snap["partitions"].as_array().unwrap().iter().filter(|p| p["fs_uuid"] == uuid.as_str()).count();
    assert_eq!(same_uuid, 2, "both listed");

    // Unplugging the clone removes the clone only; the original is stable again.
    let clone_disk = clone.name();
    clone.detach();
    let snap = agent
        .wait_snapshot(WAIT, |s| {
            disk_named(s, &clone_disk).is_none()
                && partition_named(s, &clone_part).is_none()
                && partition_named(s, &orig_part).is_some_and(|p| p["stable"] == true)
        })
        .await;
    assert_eq!(partition_named(&snap, &orig_part).unwrap()["id"], first_id.as_str());
    assert!(disk_named(&snap, &original.name()).is_some());
    let page = agent.get_json(&format!("/api/v1/events?types=partition.removed&after_id={before_clone}")).await;
    let removed: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["partition"]["kernel_name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(removed, vec![clone_part.as_str()], "only the clone's partition was removed");
    agent.stop().await;
}

/// A disk's table is read once for partitions added one after another, and only while the disk
/// is not written: after the GPT is rewritten with new entry UUIDs, partitions added again carry
/// the new ones (kernel mode; the partitions are added with BLKPG through partx).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_mode_partitions_follow_a_rewritten_table() {
    if !require_root("kernel_mode_partitions_follow_a_rewritten_table") {
        return;
    }
    let _lock = machine_lock();
    let (agent, _stats) = start_agent(UdevMode::Kernel, |_| {}).await;
    let lo = LoopDevice::new(64, &[20, 20]);
    let name = lo.name();
    let (p1, p2) = (format!("{name}p1"), format!("{name}p2"));
    let snap = agent
        .wait_snapshot(WAIT, |s| {
            [&p1, &p2].iter().all(|p| partition_named(s, p).is_some_and(|p| p["part_uuid"].is_string()))
        })
        .await;
    let old = partition_named(&snap, &p1).unwrap()["part_uuid"].clone();
    let (new1, new2) = ("6a1d0b5e-1111-4a2b-9c3d-000000000001", "6a1d0b5e-2222-4a2b-9c3d-000000000002");
    let script = format!("label: gpt\nsize=20MiB, uuid={new1}\nsize=20MiB, uuid={new2}\n");
    let mut child = std::process::Command::new("sfdisk")
        .args(["--quiet", "--no-reread", "--no-tell-kernel", &lo.device])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "sfdisk failed");
    sh("partx", &["-d", &lo.device]);
    sh("partx", &["-a", &lo.device]);
    let snap = agent
        .wait_snapshot(WAIT, |s| {
            partition_named(s, &p1).is_some_and(|p| p["part_uuid"] == new1)
                && partition_named(s, &p2).is_some_and(|p| p["part_uuid"] == new2)
        })
        .await;
    assert_ne!(partition_named(&snap, &p1).unwrap()["part_uuid"], old);
    agent.stop().await;
}
