//! The arrays source end to end: btrfs raid1 for real on loop devices (degraded mount, scrub
//! finding corruption, replace), and md against fixture trees rewritten step by step the way the
//! kernel rewrites /proc/mdstat and the md sysfs attributes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::sse::{Message, SseClient};
use common::{machine_lock, require_root, sh, LoopDevice, MountGuard, TestAgent};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);
const MDSTAT_FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mdstat");

fn array_of(msg: &Message) -> Value {
    msg.json()["data"]["array"].clone()
}

/// Waits for an event of `kind` about the array `id`, skipping others.
async fn expect_array(sse: &mut SseClient, kind: &str, id: &str) -> Message {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let msg = sse.expect_type(kind, left).await;
        if array_of(&msg)["id"] == id {
            return msg;
        }
    }
}

/// Asserts no `array.*` event arrives within `quiet`.
async fn expect_silence(sse: &mut SseClient, quiet: Duration) {
    if let Ok(Some(msg)) = tokio::time::timeout(quiet, sse.next()).await {
        panic!("unexpected event {} {}", msg.event, msg.data);
    }
}

fn member_names(array: &Value, role: &str) -> Vec<String> {
    array["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter(|m| m["role"] == role)
        .map(|m| m["kernel_name"].as_str().unwrap_or("").to_owned())
        .collect()
}

// ---------------------------------------------------------------- btrfs on loop devices

/// Finds `needle` in a file and returns its offset.
fn find_in_file(path: &Path, needle: &[u8]) -> Option<u64> {
    let data = std::fs::read(path).expect("read image");
    data.windows(needle.len()).position(|w| w == needle).map(|p| p as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn btrfs_raid1_degraded_scrub_and_replace_on_loop_devices() {
    if !require_root("btrfs_raid1_degraded_scrub_and_replace_on_loop_devices") {
        return;
    }
    let _lock = machine_lock();
    assert!(
        Command::new("mkfs.btrfs").arg("--version").output().is_ok_and(|o| o.status.success()),
        "mkfs.btrfs missing: scripts/setup installs btrfs-progs"
    );
    let empty = tempfile::tempdir().expect("tempdir");
    let agent = TestAgent::start(
        |c| {
            c.arrays.enabled = true;
            c.arrays.mdstat = empty.path().join("mdstat");
            c.arrays.sysfs = empty.path().to_path_buf();
            c.arrays.zpool = String::new();
            c.arrays.interval = Duration::from_millis(200);
            c.mounts.enabled = true;
        },
        vec![],
    )
    .await;
    let mut sse = SseClient::connect(&agent.url("/api/v1/events/stream?types=array.*"), None).await;
    let a = LoopDevice::new(300, &[]);
    let mut b = LoopDevice::new(300, &[]);
    sh("mkfs.btrfs", &["-q", "-f", "-d", "raid1", "-m", "raid1", &a.device, &b.device]);
    let fsid = sh("blkid", &["-s", "UUID", "-o", "value", &a.device]);
    let id = format!("btrfs-{fsid}");
    let dir = tempfile::tempdir().expect("tempdir");
    let point = dir.path().join("pool");
    let mut mount = MountGuard::new(&a.device, &point, Some("btrfs"), None);

    // Both members, as the kernel names them.
    let added = expect_array(&mut sse, "array.added", &id).await;
    let array = array_of(&added);
    let mut active = member_names(&array, "active");
    active.sort();
    let mut expected = vec![a.name(), b.name()];
    expected.sort();
    assert_eq!(active, expected, "{array:#}");
    assert_eq!(array["state"], "clean");
    assert_eq!(array["level"], "raid1");

    // Corrupt one copy of a file's blocks in member b's image; scrub finds (and repairs) it.
    let pattern: Vec<u8> = b"diskwatch-corruption-probe-0123456789abcdef".repeat(100);
    let mut content = Vec::new();
    while content.len() < (1 << 20) {
        content.extend_from_slice(&pattern);
    }
    std::fs::write(point.join("probe"), &content).expect("write probe");
    sh("sync", &[]);
    sh("btrfs", &["filesystem", "sync", point.to_str().expect("utf-8")]);
    let offset = find_in_file(&b.image, &pattern).expect("probe data on member b");
    {
        use std::os::unix::fs::FileExt;
        let image = std::fs::OpenOptions::new().write(true).open(&b.image).expect("open image");
        image.write_all_at(&vec![0u8; 64 << 10], offset).expect("corrupt image");
        image.sync_all().expect("sync image");
    }
    // The scrub exits non-zero when it found errors; the counters are what count.
    let _ = Command::new("btrfs").args(["scrub", "start", "-B", point.to_str().expect("utf-8")]).output();
    let changed = expect_array(&mut sse, "array.changed", &id).await;
    let fields: Vec<String> = serde_json::from_value(changed.json()["data"]["changed"].clone()).expect("changed");
    assert!(fields.contains(&"errors.corruption".to_owned()), "{fields:?}");
    let array = array_of(&changed);
    assert!(array["errors"]["corruption"].as_u64().unwrap_or(0) > 0, "{array:#}");
    let corrupt_member = array["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["errors"]["corruption"].as_u64().unwrap_or(0) > 0)
        .expect("a member with corruption");
    assert_eq!(corrupt_member["kernel_name"], b.name());

    // Unmount, detach member b, mount degraded: the array comes back naming b as missing.
    mount.unmount();
    expect_array(&mut sse, "array.removed", &id).await;
    let b_name = b.name();
    b.detach();
    let _degraded = MountGuard::new(&a.device, &point, Some("btrfs"), Some("degraded"));
    let msg = expect_array(&mut sse, "array.degraded", &id).await;
    let array = array_of(&msg);
    assert_eq!(array["state"], "degraded");
    assert_eq!(array["degraded_count"], 1);
    assert_eq!(member_names(&array, "missing"), vec![b_name.clone()], "{array:#}");
    // Linked both ways with the mount, which carries the degraded option.
    let snap = agent
        .wait_snapshot(WAIT, |s| {
            s["arrays"].as_array().into_iter().flatten().any(|a| a["id"] == id && a["degraded_mount"] == true)
        })
        .await;
    let array = snap["arrays"].as_array().expect("arrays").iter().find(|x| x["id"] == id).expect("array").clone();
    assert_eq!(array["mounts"].as_array().map(Vec::len), Some(1), "{array:#}");
    let rest = agent.get_json(&format!("/api/v1/arrays/{id}")).await;
    assert_eq!(rest["state"], "degraded");

    // A replacement device takes the missing one's place: redundancy restored.
    let c = LoopDevice::new(300, &[]);
    sh("btrfs", &["replace", "start", "-B", "-f", "2", &c.device, point.to_str().expect("utf-8")]);
    let msg = expect_array(&mut sse, "array.recovered", &id).await;
    let array = array_of(&msg);
    assert_eq!(array["state"], "clean", "{array:#}");
    assert!(member_names(&array, "active").contains(&c.name()), "{array:#}");
    agent.stop().await;
}

// ---------------------------------------------------------------- md fixture trees

/// Copies a fixture tree (files, directories and symlinks).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read fixture dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        let kind = entry.file_type().expect("type");
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).expect("link"), &target).expect("symlink");
        } else if kind.is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A fixture tree: `mdstat` and `sys/block/md*/md/…`, rewritten by the test as the kernel would.
struct MdTree {
    dir: tempfile::TempDir,
}

impl MdTree {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("proc")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("sys/block")).expect("mkdir");
        let tree = Self { dir };
        // No arrays yet: the real empty sample.
        tree.mdstat(&std::fs::read_to_string(format!("{MDSTAT_FIXTURES}/pymdstat/mdstat.01")).expect("fixture"));
        tree
    }
    fn mdstat_path(&self) -> PathBuf {
        self.dir.path().join("proc/mdstat")
    }
    fn sysfs(&self) -> PathBuf {
        self.dir.path().join("sys")
    }
    fn md(&self, name: &str) -> PathBuf {
        self.sysfs().join("block").join(name).join("md")
    }
    /// Replaces mdstat in one rename (the kernel's text is generated whole on each read).
    fn mdstat(&self, text: &str) {
        let tmp = self.dir.path().join("proc/.mdstat.new");
        std::fs::write(&tmp, text).expect("write mdstat");
        std::fs::rename(&tmp, self.mdstat_path()).expect("rename mdstat");
    }
    fn attr(&self, array: &str, rel: &str, value: &str) {
        let path = self.md(array).join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("mkdir");
        }
        std::fs::write(path, format!("{value}\n")).expect("write attribute");
    }
    fn install(&self, fixture: &str, as_name: &str) {
        copy_tree(
            &Path::new(MDSTAT_FIXTURES).join("procfs/sys/block").join(fixture),
            &self.sysfs().join("block").join(as_name),
        );
    }
}

/// mdstat text around one or more array blocks (head and tail lines of the real samples).
fn mdstat_with(blocks: &[&str]) -> String {
    let mut text = String::from("Personalities : [raid1] [raid6] [raid5] [raid4]\n");
    for block in blocks {
        text.push_str(block);
        text.push('\n');
    }
    text.push_str("unused devices: <none>\n");
    text
}

/// The md1 sample of the procfs fixtures (raid1 of sdi and sdj) in its mdstat form.
const MD1_CLEAN: &str = "md1 : active raid1 sdj[1] sdi[0]\n      312319552 blocks [2/2] [UU]\n";
const MD1_FAULTY: &str = "md1 : active raid1 sdj[1](F) sdi[0]\n      312319552 blocks [2/1] [U_]\n";
const MD1_ID: &str = "md-0fbf5f2c-add2-43c2-bd78-a4be3ab709ef";

fn md1_recovering(percent: f64) -> String {
    // The line md prints during recovery (procfs sample md6), at `percent`.
    let total = 312319552u64;
    let done = (total as f64 * percent / 100.0) as u64;
    format!(
        "md1 : active raid1 sdk[2] sdj[1](F) sdi[0]\n      312319552 blocks [2/1] [U_]\n      [=>...................]  recovery = {percent:.1}% ({done}/{total}) finish=17.0min speed=259783K/sec\n"
    )
}

async fn md_agent(tree: &MdTree) -> TestAgent {
    let mdstat = tree.mdstat_path();
    let sysfs = tree.sysfs();
    let btrfs = tree.dir.path().join("btrfs");
    TestAgent::start(
        move |c| {
            c.arrays.enabled = true;
            c.arrays.mdstat = mdstat;
            c.arrays.sysfs = sysfs;
            c.arrays.btrfs = btrfs;
            c.arrays.zpool = String::new();
            c.arrays.progress_interval = Duration::from_millis(100);
        },
        vec![],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md_raid1_fault_recovery_and_raid5_degraded_from_fixture_trees() {
    let tree = MdTree::new();
    let agent = md_agent(&tree).await;
    let mut sse = SseClient::connect(&agent.url("/api/v1/events/stream?types=array.*"), None).await;

    // A clean raid1 appears.
    tree.install("md1", "md1");
    tree.mdstat(&mdstat_with(&[MD1_CLEAN]));
    let msg = expect_array(&mut sse, "array.added", MD1_ID).await;
    let array = array_of(&msg);
    assert_eq!(array["state"], "clean");
    assert_eq!(array["level"], "raid1");
    assert_eq!(member_names(&array, "active"), vec!["sdi", "sdj"]);

    // sdj fails: md flags it faulty, counts the array degraded, and mdstat shows (F).
    tree.attr("md1", "dev-sdj/state", "faulty");
    tree.attr("md1", "degraded", "1");
    tree.mdstat(&mdstat_with(&[MD1_FAULTY]));
    let msg = expect_array(&mut sse, "array.degraded", MD1_ID).await;
    let array = array_of(&msg);
    assert_eq!(array["state"], "degraded");
    assert_eq!(member_names(&array, "faulty"), vec!["sdj"]);

    // A spare sdk is added and rebuilt onto: recovering, then progress at several percentages.
    tree.attr("md1", "dev-sdk/state", "spare");
    std::fs::remove_file(tree.md("md1").join("rd1")).expect("unlink rd1");
    std::os::unix::fs::symlink("dev-sdk", tree.md("md1").join("rd1")).expect("rd1 link");
    tree.attr("md1", "sync_completed", "0 / 624639104");
    tree.attr("md1", "sync_action", "recover");
    tree.mdstat(&mdstat_with(&[&md1_recovering(0.0)]));
    let msg = expect_array(&mut sse, "array.recovering", MD1_ID).await;
    let array = array_of(&msg);
    assert_eq!(array["state"], "recovering");
    let rebuilding: Vec<&Value> =
        array["members"].as_array().expect("members").iter().filter(|m| m["rebuilding"] == true).collect();
    assert_eq!(rebuilding.len(), 1);
    assert_eq!(rebuilding[0]["kernel_name"], "sdk");
    for percent in [12.5f64, 50.0, 87.5] {
        // At most one progress event a second: give each step its second.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let done = (624639104.0 * percent / 100.0) as u64;
        tree.attr("md1", "sync_completed", &format!("{done} / 624639104"));
        tree.mdstat(&mdstat_with(&[&md1_recovering(percent)]));
        let msg = expect_array(&mut sse, "array.changed", MD1_ID).await;
        let array = array_of(&msg);
        assert_eq!(array["sync_percent"].as_f64(), Some(percent), "{array:#}");
        let fields: Vec<String> = serde_json::from_value(msg.json()["data"]["changed"].clone()).expect("changed");
        assert!(fields.contains(&"sync_percent".to_owned()), "{fields:?}");
    }

    // The rebuild completes; the failed member is removed; md counts the array whole again.
    tree.attr("md1", "sync_action", "idle");
    tree.attr("md1", "sync_completed", "none");
    tree.attr("md1", "dev-sdk/state", "in_sync");
    std::fs::remove_dir_all(tree.md("md1").join("dev-sdj")).expect("remove sdj");
    tree.mdstat(&mdstat_with(&["md1 : active raid1 sdk[2] sdi[0]\n      312319552 blocks [2/2] [UU]\n"]));
    tree.attr("md1", "degraded", "0");
    let msg = expect_array(&mut sse, "array.recovered", MD1_ID).await;
    let array = array_of(&msg);
    assert_eq!(array["state"], "clean");
    assert_eq!(array["sync_percent"], Value::Null);

    // A degraded raid5 (faulty member, a spare standing by) appears next to it.
    tree.install("md5", "md5");
    let md5_block = "md5 : active raid5 sdaa[3](S) sdp[2](F) sdo[1] sdn[0]\n      1464725760 blocks level 5, 64k chunk, algorithm 2 [3/2] [UU_]\n";
    let md1_block = "md1 : active raid1 sdk[2] sdi[0]\n      312319552 blocks [2/2] [UU]\n";
    tree.mdstat(&mdstat_with(&[md5_block, md1_block]));
    let md5_id = "md-7615b98d-f2ba-4d99-bee8-6202d8e130b9";
    expect_array(&mut sse, "array.added", md5_id).await;
    let msg = expect_array(&mut sse, "array.degraded", md5_id).await;
    let array = array_of(&msg);
    assert_eq!(member_names(&array, "faulty"), vec!["sdp"]);
    assert_eq!(member_names(&array, "spare"), vec!["sdaa"]);

    // md1 is stopped into an inactive array.
    tree.attr("md1", "array_state", "inactive");
    tree.mdstat(&mdstat_with(&[md5_block, "md1 : inactive sdk[2](S) sdi[0](S)\n      312319552 blocks\n"]));
    let msg = expect_array(&mut sse, "array.changed", MD1_ID).await;
    assert_eq!(array_of(&msg)["state"], "inactive");

    let arrays = agent.get_json("/api/v1/arrays").await;
    assert_eq!(arrays.as_array().map(Vec::len), Some(2));
    let one = agent.get_json(&format!("/api/v1/arrays/{md5_id}")).await;
    assert_eq!(one["name"], "md5");
    let missing = reqwest::get(agent.url("/api/v1/arrays/md-nope")).await.expect("GET");
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.expect("error body");
    assert!(body["error"]["message"].as_str().unwrap_or("").contains("md-nope"), "{body}");
    let doc = agent.get_json("/api/v1/openapi.json").await;
    assert!(doc["paths"].get("/api/v1/arrays").is_some() && doc["paths"].get("/api/v1/arrays/{id}").is_some());
    assert!(doc["components"]["schemas"].get("Array").is_some());
    // The snapshot carries the arrays too.
    let snap = agent.get_json("/api/v1/snapshot").await;
    assert_eq!(snap["arrays"].as_array().map(Vec::len), Some(2));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md_bad_input_is_logged_and_the_last_good_state_kept() {
    let tree = MdTree::new();
    tree.install("md1", "md1");
    tree.mdstat(&mdstat_with(&[MD1_CLEAN]));
    let agent = md_agent(&tree).await;
    let snap = agent.wait_snapshot(WAIT, |s| s["arrays"].as_array().is_some_and(|a| a.len() == 1)).await;
    let good = snap["arrays"][0].clone();
    assert_eq!(good["id"], MD1_ID);
    let mut sse = SseClient::connect(&agent.url("/api/v1/events/stream?types=array.*"), None).await;

    let good_text = mdstat_with(&[MD1_CLEAN]);
    let bad_inputs = [
        // A read cut short: the real truncated sample.
        std::fs::read_to_string(format!("{MDSTAT_FIXTURES}/pymdstat/mdstat.16")).expect("fixture"),
        // A personality this parser does not know.
        good_text.replace("active raid1", "active raid7"),
        // An array with no members.
        good_text.replace("md1 : active raid1 sdj[1] sdi[0]", "md1 : active raid1"),
    ];
    for bad in &bad_inputs {
        tree.mdstat(bad);
        expect_silence(&mut sse, Duration::from_millis(400)).await;
        let rest = agent.get_json(&format!("/api/v1/arrays/{MD1_ID}")).await;
        assert_eq!(rest, good, "last good state kept after {bad:?}");
    }
    // An attribute that vanishes between the directory listing and its read.
    tree.mdstat(&good_text);
    std::fs::remove_file(tree.md("md1").join("degraded")).expect("remove");
    std::os::unix::fs::symlink("gone", tree.md("md1").join("degraded")).expect("dangling link");
    tree.attr("md1", "mismatch_cnt", "8");
    expect_silence(&mut sse, Duration::from_millis(400)).await;
    assert_eq!(agent.get_json(&format!("/api/v1/arrays/{MD1_ID}")).await, good);

    // Readable again: the changes go through.
    std::fs::remove_file(tree.md("md1").join("degraded")).expect("remove");
    tree.attr("md1", "degraded", "0");
    let msg = expect_array(&mut sse, "array.changed", MD1_ID).await;
    assert_eq!(array_of(&msg)["mismatch_count"], 8);
    tree.attr("md1", "degraded", "1");
    tree.attr("md1", "dev-sdj/state", "faulty");
    tree.mdstat(&mdstat_with(&[MD1_FAULTY]));
    expect_array(&mut sse, "array.degraded", MD1_ID).await;
    agent.stop().await;
}

/// A raid10 block of the procfs md10 (sdu, sdv | sdw, sdx) with the members in `failed` (F).
fn md10_block(failed: &[&str]) -> String {
    let members: Vec<String> = [("sdx", 3), ("sdw", 2), ("sdv", 1), ("sdu", 0)]
        .iter()
        .map(|(n, i)| format!("{n}[{i}]{}", if failed.contains(n) { "(F)" } else { "" }))
        .collect();
    let up: String = ["sdu", "sdv", "sdw", "sdx"].iter().map(|n| if failed.contains(n) { '_' } else { 'U' }).collect();
    format!(
        "md10 : active raid10 {}\n      1953260544 blocks super 1.2 512K chunks 2 near-copies [4/{}] [{up}]\n",
        members.join(" "),
        4 - failed.len()
    )
}

/// Fails one member the way md reports it: `dev-*/state`, `degraded`, then mdstat.
fn md10_fail(tree: &MdTree, failed: &[&str]) {
    tree.attr("md10", &format!("dev-{}/state", failed[failed.len() - 1]), "faulty");
    tree.attr("md10", "degraded", &failed.len().to_string());
    tree.mdstat(&mdstat_with(&[&md10_block(failed)]));
}

/// RAID10 of four: one disk lost per mirror pair is degraded (twice raised: each loss is news),
/// not failed; the second disk of a pair fails it. A raid6 rebuilding loses another member:
/// `array.degraded` again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md_each_further_loss_is_an_alarm_and_raid10_pairs_are_counted() {
    let tree = MdTree::new();
    tree.install("md10", "md10");
    tree.attr("md10", "layout", "258");
    tree.install("md6", "md6");
    let md6_recovering = "md6 : active raid6 sdt[4] sds[2] sdr[1] sdq[0]\n      1046528 blocks super 1.2 level 6, 512k chunk, algorithm 2 [4/3] [UUU_]\n      [===============>.....]  recovery = 75.0% (1569888/2093056) finish=0.1min speed=259783K/sec\n";
    tree.mdstat(&mdstat_with(&[&md10_block(&[]), md6_recovering]));
    let agent = md_agent(&tree).await;
    let snap = agent.wait_snapshot(WAIT, |s| s["arrays"].as_array().is_some_and(|a| a.len() == 2)).await;
    let md10_id = "md-0c15f7e7-b159-4b1f-a5cd-a79b5c04b6f5";
    let md6_id = "md-5f529b25-6efd-46e4-99a2-31f6f597be6b";
    let state_of = |id: &str| {
        snap["arrays"].as_array().expect("arrays").iter().find(|a| a["id"] == id).expect("array")["state"].clone()
    };
    assert_eq!(state_of(md10_id), "clean");
    assert_eq!(state_of(md6_id), "recovering", "found at start-up: a rebuild");
    let mut sse = SseClient::connect(&agent.url("/api/v1/events/stream?types=array.*"), None).await;

    md10_fail(&tree, &["sdu"]);
    let msg = expect_array(&mut sse, "array.degraded", md10_id).await;
    assert_eq!(array_of(&msg)["degraded_count"], 1);
    // The other pair's first disk: still every chunk has a copy. Degraded again, not failed.
    md10_fail(&tree, &["sdu", "sdw"]);
    let msg = expect_array(&mut sse, "array.degraded", md10_id).await;
    let array = array_of(&msg);
    assert_eq!(array["state"], "degraded", "{array:#}");
    assert_eq!(array["degraded_count"], 2);
    let fields: Vec<String> = serde_json::from_value(msg.json()["data"]["changed"].clone()).expect("changed");
    assert!(fields.contains(&"degraded_count".to_owned()), "{fields:?}");
    assert_eq!(member_names(&array, "faulty"), vec!["sdu", "sdw"]);
    // sdv, sdu's mirror: that pair is gone.
    md10_fail(&tree, &["sdu", "sdw", "sdv"]);
    let msg = expect_array(&mut sse, "array.failed", md10_id).await;
    assert_eq!(array_of(&msg)["state"], "failed");

    // The raid6 loses sdr while rebuilding onto sdt.
    tree.attr("md6", "dev-sdr/state", "faulty");
    tree.attr("md6", "degraded", "2");
    tree.mdstat(&mdstat_with(&[
        &md10_block(&["sdu", "sdw", "sdv"]),
        &md6_recovering.replace("sdr[1]", "sdr[1](F)").replace("[4/3] [UUU_]", "[4/2] [U_U_]"),
    ]));
    let msg = expect_array(&mut sse, "array.degraded", md6_id).await;
    let array = array_of(&msg);
    assert_eq!(array["degraded_count"], 2, "{array:#}");
    assert_eq!(member_names(&array, "faulty"), vec!["sdr"]);
    agent.stop().await;
}

/// A new raid4 seen first inactive (assembly) whose recovery onto its last disk then starts is
/// in its first sync: `array.added`, `array.changed`, no `array.degraded` or `array.recovering`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md_a_recovery_right_after_assembly_is_the_first_sync() {
    let tree = MdTree::new();
    let agent = md_agent(&tree).await;
    agent.wait_snapshot(WAIT, |s| s["arrays"].as_array().is_some_and(|a| a.is_empty())).await;
    let mut sse = SseClient::connect(&agent.url("/api/v1/events/stream?types=array.*"), None).await;
    let md4_id = "md-67f415d5-2c0c-4b69-8e0d-7e20ef553457";
    tree.install("md4", "md4");
    tree.attr("md4", "array_state", "inactive");
    for m in ["sdk", "sdl", "sdm"] {
        tree.attr("md4", &format!("dev-{m}/state"), "spare");
    }
    tree.mdstat(&mdstat_with(&["md4 : inactive sdm[2](S) sdl[1](S) sdk[0](S)\n      3139584 blocks super 1.2\n"]));
    let msg = expect_array(&mut sse, "array.added", md4_id).await;
    assert_eq!(array_of(&msg)["state"], "inactive");
    // md runs it: two members in sync, the third being recovered onto.
    tree.attr("md4", "dev-sdk/state", "in_sync");
    tree.attr("md4", "dev-sdl/state", "in_sync");
    tree.attr("md4", "degraded", "1");
    tree.attr("md4", "sync_completed", "0 / 2093056");
    tree.attr("md4", "sync_action", "recover");
    tree.attr("md4", "array_state", "active");
    tree.mdstat(&mdstat_with(&["md4 : active raid4 sdm[3] sdl[1] sdk[0]\n      2093056 blocks super 1.2 level 4, 512k chunk, algorithm 0 [3/2] [UU_]\n      [>....................]  recovery =  0.0% (0/1046528) finish=1.0min speed=17441K/sec\n"]));
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let msg = tokio::time::timeout(deadline.saturating_duration_since(tokio::time::Instant::now()), sse.next())
            .await
            .expect("the sync shows")
            .expect("stream open");
        assert!(!["array.degraded", "array.recovering"].contains(&msg.event.as_str()), "{} {}", msg.event, msg.data);
        let array = array_of(&msg);
        // md's attributes and mdstat change one after the other: a scan between them may
        // still see it inactive.
        if array["sync_action"] == "recover" && array["state"] != "inactive" {
            assert_eq!(array["state"], "resyncing", "{array:#}");
            assert_eq!(array["initial_sync"], true);
            break;
        }
    }
    expect_silence(&mut sse, Duration::from_millis(500)).await;
    agent.stop().await;
}

// ---------------------------------------------------------------- dashboard

/// A raid1 rebuilding onto sdz at `percent`.
fn rebuilding_raid1(percent: Option<f64>) -> diskwatch::arrays::Array {
    use diskwatch::arrays::{Array, ArrayKind, ArrayMember, ArrayState, MemberRole};
    let mut array = Array::new(ArrayKind::Md, "md0", Some("0fbf5f2c-add2-43c2-bd78-a4be3ab709ef".into()));
    array.level = Some("raid1".into());
    array.raid_disks = Some(2);
    array.devnode = Some("/dev/md0".into());
    array.members = vec![
        ArrayMember::new(Some("sdx".into()), MemberRole::Active, Some(0)),
        ArrayMember::new(Some("sdz".into()), MemberRole::Active, Some(1)),
    ];
    if let Some(percent) = percent {
        array.members[1].role = MemberRole::Spare;
        array.members[1].rebuilding = true;
        array.degraded_count = 1;
        array.state = ArrayState::Recovering;
        array.sync_action = Some("recover".into());
        array.sync_percent = Some(percent);
        array.sync_eta_seconds = Some(600);
    } else {
        array.state = ArrayState::Clean;
    }
    array
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_member_roles_and_rebuild_progress() {
    use common::dashboard::{artifacts_dir, Browser};
    use diskwatch::state::Fact;
    let agent = TestAgent::start(|_| {}, vec![]).await;
    let mut browser = Browser::launch();
    browser.cmd(&format!("goto {}", agent.url("/")));
    browser.cmd("wait #status[data-state=live]");
    // A clean mirror, then a rebuild onto a replaced member (a new array in its first sync
    // would show as resyncing, not recovering).
    let array = rebuilding_raid1(None);
    let id = array.id.clone();
    agent.facts.send(Fact::Arrays { arrays: vec![array], initial: false }).await.expect("send");
    browser.cmd(&format!("wait [data-array-id=\"{id}\"][data-state=clean]"));
    agent.facts.send(Fact::Arrays { arrays: vec![rebuilding_raid1(Some(42.5))], initial: false }).await.expect("send");
    browser
        .cmd(&format!("wait [data-array-id=\"{id}\"][data-state=recovering] [data-member=sdz][data-role=rebuilding]"));
    browser.cmd(&format!("wait [data-array-id=\"{id}\"] [data-member=sdx][data-role=active]"));
    browser.cmd(&format!("wait [data-array-id=\"{id}\"] [data-sync][aria-valuenow=\"42.5\"]"));
    browser.cmd(&format!("screenshot {}", artifacts_dir().join("dashboard-array.png").display()));
    // Progress events come at most once a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    agent.facts.send(Fact::Arrays { arrays: vec![rebuilding_raid1(Some(77.0))], initial: false }).await.expect("send");
    browser.cmd(&format!("wait [data-array-id=\"{id}\"] [data-sync][aria-valuenow=\"77.0\"]"));
    agent.facts.send(Fact::Arrays { arrays: vec![rebuilding_raid1(None)], initial: false }).await.expect("send");
    browser.cmd(&format!("wait [data-array-id=\"{id}\"][data-state=clean]"));
    browser.cmd(&format!("gone [data-array-id=\"{id}\"] [data-sync]"));
    let log = browser.cmd("text #log");
    assert!(log.contains("array.recovered"), "the event log misses the recovery: {log}");
    agent.facts.send(Fact::Arrays { arrays: vec![], initial: false }).await.expect("send");
    browser.cmd(&format!("gone [data-array-id=\"{id}\"]"));
    assert_eq!(browser.cmd("errors"), "[]", "the page threw");
    drop(browser);
    agent.stop().await;
}

/// A page opened after an alarm shows it: the events panel starts with the last events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_opens_with_the_last_events() {
    use common::dashboard::Browser;
    use diskwatch::state::Fact;
    let agent = TestAgent::start(|_| {}, vec![]).await;
    let mut degraded = rebuilding_raid1(None);
    degraded.state = diskwatch::arrays::ArrayState::Degraded;
    degraded.degraded_count = 1;
    degraded.members[1].role = diskwatch::arrays::MemberRole::Faulty;
    let id = degraded.id.clone();
    agent.facts.send(Fact::Arrays { arrays: vec![degraded], initial: false }).await.expect("send");
    agent.wait_snapshot(WAIT, |s| s["arrays"].as_array().is_some_and(|a| a.len() == 1)).await;
    let mut browser = Browser::launch();
    browser.cmd(&format!("goto {}", agent.url("/")));
    browser.cmd("wait #status[data-state=live]");
    browser.cmd("wait #log li[data-type=\"array.degraded\"]");
    let log = browser.cmd("text #log");
    assert!(log.contains(&format!("array/{id}")) && log.contains("array.added"), "{log}");
    // Newest first: the alarm above its array's appearance.
    assert!(log.find("array.degraded") < log.find("array.added"), "{log}");
    assert_eq!(browser.cmd("errors"), "[]", "the page threw");
    drop(browser);
    agent.stop().await;
}

// ---------------------------------------------------------------- ZFS (replayed)

/// No ZFS module exists here: a `zpool` stand-in replays the real output of OpenZFS's manual
/// and records its arguments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zfs_pools_from_a_replayed_zpool_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/arrays/zfs/zpool-status-manpage.json");
    let args = dir.path().join("args");
    let zpool = dir.path().join("zpool");
    std::fs::write(&zpool, format!("#!/bin/sh\necho \"$@\" >> '{}'\ncat '{}'\n", args.display(), fixture.display()))
        .expect("write stand-in");
    std::fs::set_permissions(&zpool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let empty = dir.path().join("none");
    let zpool_path = zpool.to_str().expect("utf-8").to_owned();
    let agent = TestAgent::start(
        move |c| {
            c.arrays.enabled = true;
            c.arrays.mdstat = empty.join("mdstat");
            c.arrays.sysfs = empty.clone();
            c.arrays.btrfs = empty;
            c.arrays.zpool = zpool_path;
        },
        vec![],
    )
    .await;
    let snap = agent.wait_snapshot(WAIT, |s| s["arrays"].as_array().is_some_and(|a| !a.is_empty())).await;
    let pool = &snap["arrays"][0];
    assert_eq!(pool["id"], "zfs-3920273586464696295");
    assert_eq!(pool["kind"], "zfs");
    assert_eq!(pool["level"], "raidz1");
    assert_eq!(pool["state"], "clean");
    assert_eq!(pool["members"].as_array().map(Vec::len), Some(6));
    let called = std::fs::read_to_string(&args).expect("zpool was run");
    assert_eq!(called.lines().next(), Some("status -j --json-int"));
    agent.stop().await;
}

// ---------------------------------------------------------------- POLLPRI on a kernfs file

/// md's attributes are kernfs files that notify with `sysfs_notify`; with no md driver here,
/// the same kernfs notification is raised by a cgroup's `cgroup.events` when a process
/// enters the cgroup. The watch set must wake on it through POLLPRI, not inotify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pollpri_wakes_on_a_kernfs_notification() {
    if !require_root("pollpri_wakes_on_a_kernfs_notification") {
        return;
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let root = mountinfo
        .lines()
        .find(|l| l.split(" - ").nth(1).is_some_and(|t| t.starts_with("cgroup2 ")))
        .and_then(|l| l.split_whitespace().nth(4))
        .map(PathBuf::from)
        .expect("a cgroup2 mount");
    struct Cgroup(PathBuf, Option<std::process::Child>);
    impl Drop for Cgroup {
        fn drop(&mut self) {
            if let Some(mut child) = self.1.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let mut cgroup = Cgroup(root.join(format!("diskwatch-arrays-test-{}", std::process::id())), None);
    std::fs::create_dir(&cgroup.0).expect("create cgroup");
    let events = cgroup.0.join("cgroup.events");
    let mut set = diskwatch::arrays::read::WatchSet::new();
    set.set(std::slice::from_ref(&events));
    assert_eq!(set.counts(), (1, 0), "kernfs files are polled, not watched with inotify");
    use diskwatch::arrays::read::AttrReader;
    assert!(set.read(&events).expect("read").contains("populated 0"));
    let child = Command::new("sleep").arg("30").spawn().expect("sleep");
    let pid = child.id();
    cgroup.1 = Some(child);
    std::fs::write(cgroup.0.join("cgroup.procs"), pid.to_string()).expect("move into cgroup");
    tokio::time::timeout(Duration::from_secs(5), set.changed()).await.expect("POLLPRI wake");
    assert!(set.read(&events).expect("read").contains("populated 1"));
}

/// A mount raises POLLPRI on the mount table: the wake that makes a mounted btrfs appear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_wakes_the_watched_mount_table() {
    if !require_root("a_mount_wakes_the_watched_mount_table") {
        return;
    }
    let _lock = machine_lock();
    let path = PathBuf::from("/proc/self/mountinfo");
    let mut set = diskwatch::arrays::read::WatchSet::new();
    set.set(std::slice::from_ref(&path));
    assert_eq!(set.counts(), (1, 0));
    use diskwatch::arrays::read::AttrReader;
    set.read(&path).expect("read");
    let dir = tempfile::tempdir().expect("tempdir");
    let _mount = MountGuard::new("dwarrays", &dir.path().join("t"), Some("tmpfs"), Some("size=64k"));
    tokio::time::timeout(Duration::from_secs(5), set.changed()).await.expect("POLLPRI wake after a mount");
    assert!(set.read(&path).expect("read").contains("dwarrays"));
}

/// The degraded mount alone (no re-read interval to fall back on) makes `array.degraded`, and
/// the unmount `array.removed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_degraded_mount_is_seen_through_the_mount_table_wake() {
    if !require_root("a_degraded_mount_is_seen_through_the_mount_table_wake") {
        return;
    }
    let _lock = machine_lock();
    let empty = tempfile::tempdir().expect("tempdir");
    let a = LoopDevice::new(300, &[]);
    let mut b = LoopDevice::new(300, &[]);
    sh("mkfs.btrfs", &["-q", "-f", "-d", "raid1", "-m", "raid1", &a.device, &b.device]);
    let fsid = sh("blkid", &["-s", "UUID", "-o", "value", &a.device]);
    b.detach();
    let agent = TestAgent::start(
        |c| {
            c.arrays.enabled = true;
            c.arrays.mdstat = empty.path().join("mdstat");
            c.arrays.sysfs = empty.path().to_path_buf();
            c.arrays.zpool = String::new();
            c.arrays.interval = Duration::from_secs(3600);
        },
        vec![],
    )
    .await;
    let mut sse =
        SseClient::connect(&agent.url("/api/v1/events/stream?types=array.degraded,array.removed"), None).await;
    let id = format!("btrfs-{fsid}");
    // Mounted and unmounted several times: the unmount shows on the mount table before the
    // filesystem leaves sysfs, and must still be seen without the re-read interval.
    for _ in 0..3 {
        let mut mount = MountGuard::new(&a.device, &empty.path().join("pool"), Some("btrfs"), Some("degraded,ro"));
        let msg = expect_array(&mut sse, "array.degraded", &id).await;
        assert_eq!(array_of(&msg)["degraded_count"], 1);
        mount.unmount();
        expect_array(&mut sse, "array.removed", &id).await;
    }
    agent.stop().await;
}
