//! Actions against the real kernel, through the real udev (kernel mode) and mount sources, the
//! HTTP routes with the token, and a real Mosquitto for Home Assistant's buttons: unmount,
//! a busy unmount naming its holder, eject of a loop disk with two mounted partitions, the
//! refusals (the root disk, a non-rotational spin-down), token and Host checks, and actions
//! turned off.

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use common::mosquitto::{self, Mosquitto, Recorder};
use common::{machine_lock, require_root, sh, LoopDevice, MountGuard, TestAgent};
use diskwatch::config::{Config, Secret};
use diskwatch::model::ActionKind;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);
const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Actions on (the given ones), the token set, udev (kernel mode, loop devices included)
/// and the mount table under `work` followed.
fn configure(c: &mut Config, work: &Path, allow: &[ActionKind]) {
    let token_file = work.join("api-token");
    std::fs::write(&token_file, TOKEN).unwrap();
    c.http.auth_token_file = token_file;
    c.http.auth_token = Some(Secret::new(TOKEN));
    c.actions.enabled = true;
    c.actions.allow = allow.to_vec();
    c.actions.mount_root = work.join("media");
    c.udev.enabled = true;
    c.udev.source = diskwatch::config::UdevMode::Kernel;
    c.udev.include = vec!["loop*".into()];
    c.mounts.enabled = true;
    c.mounts.include_paths = vec![format!("{}*", work.display())];
}

async fn post(agent: &TestAgent, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(agent.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("POST");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

/// Starts an action with the token; its id.
async fn act(agent: &TestAgent, path: &str) -> String {
    let (status, body) = post(agent, path, &[("authorization", &bearer())]).await;
    assert_eq!(status, 202, "{path}: {body}");
    body["id"].as_str().unwrap().to_owned()
}

/// The outcome event of action `id` (polled from the event history, with the token).
async fn outcome(agent: &TestAgent, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let page: Value = reqwest::Client::new()
            .get(agent.url("/api/v1/events?types=action.*&limit=10000"))
            .header("authorization", bearer())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(e) = page["events"].as_array().unwrap().iter().find(|e| e["data"]["action"]["id"] == id) {
            return e.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "no outcome for action {id}: {page:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn snapshot(agent: &TestAgent) -> Value {
    reqwest::Client::new()
        .get(agent.url("/api/v1/snapshot"))
        .header("authorization", bearer())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits until the agent lists an object of `kind` whose `field` is `value`; its id.
async fn id_where(agent: &TestAgent, kind: &str, field: &str, value: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let snap = snapshot(agent).await;
        if let Some(o) = snap[kind].as_array().unwrap().iter().find(|o| o[field] == value) {
            return o["id"].as_str().unwrap().to_owned();
        }
        assert!(tokio::time::Instant::now() < deadline, "no {kind} with {field} = {value}: {snap:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn mounted(point: &Path) -> bool {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let point = point.to_str().unwrap();
    table.lines().any(|l| l.split(' ').nth(4) == Some(point))
}

/// A loop disk with ext4 partitions of the given sizes, each mounted below `work`.
fn disk_with_mounts(work: &Path, sizes: &[u64]) -> (LoopDevice, Vec<MountGuard>) {
    let dev = LoopDevice::new(sizes.iter().sum::<u64>() + 8, sizes);
    let mut guards = Vec::new();
    for n in 1..=sizes.len() as u32 {
        sh("mkfs.ext4", &["-q", "-F", "-L", &format!("DwAct{n}"), &dev.partition(n)]);
        guards.push(MountGuard::new(&dev.partition(n), &work.join(format!("part{n}")), Some("ext4"), None));
    }
    (dev, guards)
}

/// A child process ended by its pid on drop.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmount_succeeds_and_a_busy_mount_fails_naming_its_holder() {
    if !require_root("unmount_succeeds_and_a_busy_mount_fails_naming_its_holder") {
        return;
    }
    let _lock = machine_lock();
    let work = tempfile::tempdir().unwrap();
    let agent = TestAgent::start(|c| configure(c, work.path(), &[ActionKind::Unmount]), vec![]).await;
    let (_dev, _guards) = disk_with_mounts(work.path(), &[16, 16]);
    let (busy_point, free_point) = (work.path().join("part1"), work.path().join("part2"));
    let busy_id = id_where(&agent, "mounts", "mount_point", busy_point.to_str().unwrap()).await;
    let free_id = id_where(&agent, "mounts", "mount_point", free_point.to_str().unwrap()).await;

    // Busy: a child process with its working directory inside.
    let child = ChildGuard(Command::new("sleep").arg("600").current_dir(&busy_point).spawn().unwrap());
    let id = act(&agent, &format!("/api/v1/mounts/{busy_id}/unmount")).await;
    let event = outcome(&agent, &id).await;
    assert_eq!(event["type"], "action.failed", "{event:#}");
    assert_eq!(event["subject"], format!("mount/{busy_id}"));
    let action = &event["data"]["action"];
    assert_eq!(action["reason"], "busy", "{action:#}");
    assert_eq!(action["requested_by"], "token:api-token");
    let holder = action["holders"].as_array().unwrap().iter().find(|h| h["pid"] == child.0.id()).expect("the child");
    assert_eq!(holder["command"], "sleep");
    assert!(holder["uses"].as_array().unwrap().iter().any(|u| u == "cwd"), "{holder}");
    assert!(action["message"].as_str().unwrap().contains(&format!("sleep (pid {}", child.0.id())), "{action}");
    assert!(mounted(&busy_point), "a busy mount stays mounted (never lazily detached)");
    drop(child);

    // Free: unmounted, and the mount table source sees it go.
    let id = act(&agent, &format!("/api/v1/mounts/{free_id}/unmount")).await;
    let event = outcome(&agent, &id).await;
    assert_eq!(event["type"], "action.succeeded", "{event:#}");
    assert_eq!(event["data"]["action"]["unmounted"][0], free_point.to_str().unwrap());
    assert!(!mounted(&free_point));
    let deadline = tokio::time::Instant::now() + WAIT;
    while snapshot(&agent).await["mounts"].as_array().unwrap().iter().any(|m| m["id"] == free_id.as_str()) {
        assert!(tokio::time::Instant::now() < deadline, "the agent still lists the unmounted mount");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A mount that is gone is a 404.
    let (status, _) = post(&agent, &format!("/api/v1/mounts/{free_id}/unmount"), &[("authorization", &bearer())]).await;
    assert_eq!(status, 404);
    agent.stop().await;
}

/// An unmount acts on the mount it was asked about: when another filesystem took the mount
/// point in between (its device number differs), nothing is unmounted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmount_checks_the_device_it_was_asked_about() {
    if !require_root("unmount_checks_the_device_it_was_asked_about") {
        return;
    }
    let _lock = machine_lock();
    let work = tempfile::tempdir().unwrap();
    let agent = TestAgent::start(|c| configure(c, work.path(), &[ActionKind::Unmount]), vec![]).await;
    let (_dev, mut guards) = disk_with_mounts(work.path(), &[16]);
    let point = work.path().join("part1");
    let id = id_where(&agent, "mounts", "mount_point", point.to_str().unwrap()).await;
    let asked: diskwatch::model::Mount = serde_json::from_value(
        snapshot(&agent).await["mounts"].as_array().unwrap().iter().find(|m| m["id"] == id.as_str()).unwrap().clone(),
    )
    .expect("a Mount");
    agent.stop().await;
    // The partition goes, another filesystem is mounted at its place.
    guards[0].unmount();
    let _other = MountGuard::new("dwother", &point, Some("tmpfs"), Some("size=64k"));
    let machine = diskwatch::actions::machine::Machine::default();
    let mut progress = diskwatch::actions::machine::Progress::default();
    let failure = diskwatch::actions::unmount::unmount(&machine, &asked, &work.path().join("media"), &mut progress)
        .expect_err("another filesystem is there now");
    assert_eq!(failure.reason, "changed", "{}", failure.message);
    assert!(progress.unmounted.is_empty());
    assert!(mounted(&point), "the other filesystem stays mounted");
}

/// An action whose outcome came after `actions.timeout` (reported failed, reason `timeout`)
/// publishes what it finally did, under the same id, marked late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_completing_after_its_timeout_publishes_its_late_outcome() {
    if !require_root("an_action_completing_after_its_timeout_publishes_its_late_outcome") {
        return;
    }
    let _lock = machine_lock();
    let work = tempfile::tempdir().unwrap();
    let agent = TestAgent::start(
        |c| {
            configure(c, work.path(), &[ActionKind::Unmount]);
            // Shorter than any unmount: the one below writes 32 MiB back first.
            c.actions.timeout = Duration::from_nanos(1);
        },
        vec![],
    )
    .await;
    let (_dev, _guards) = disk_with_mounts(work.path(), &[64]);
    let point = work.path().join("part1");
    std::fs::write(point.join("dirty"), vec![7u8; 32 << 20]).unwrap();
    let id = id_where(&agent, "mounts", "mount_point", point.to_str().unwrap()).await;
    let action = act(&agent, &format!("/api/v1/mounts/{id}/unmount")).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let events = loop {
        let page: Value = reqwest::Client::new()
            .get(agent.url("/api/v1/events?types=action.*&limit=10000"))
            .header("authorization", bearer())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ours: Vec<Value> = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["data"]["action"]["id"] == action.as_str())
            .cloned()
            .collect();
        if ours.len() >= 2 {
            break ours;
        }
        assert!(tokio::time::Instant::now() < deadline, "no late outcome: {ours:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(events[0]["type"], "action.failed", "{events:#?}");
    assert_eq!(events[0]["data"]["action"]["reason"], "timeout");
    assert_eq!(events[1]["type"], "action.succeeded", "{events:#?}");
    let late = &events[1]["data"]["action"];
    assert_eq!(late["late"], true);
    assert!(late["message"].as_str().unwrap().contains("completed late"), "{late}");
    assert_eq!(late["unmounted"][0], point.to_str().unwrap());
    assert!(!mounted(&point));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eject_of_a_loop_disk_unmounts_both_partitions_and_detaches_it() {
    if !require_root("eject_of_a_loop_disk_unmounts_both_partitions_and_detaches_it") {
        return;
    }
    let _lock = machine_lock();
    let work = tempfile::tempdir().unwrap();
    let agent = TestAgent::start(|c| configure(c, work.path(), &[ActionKind::Eject]), vec![]).await;
    let (dev, _guards) = disk_with_mounts(work.path(), &[16, 16]);
    let name = dev.name();
    let disk_id = id_where(&agent, "disks", "kernel_name", &name).await;
    for n in 1..=2 {
        id_where(&agent, "mounts", "mount_point", work.path().join(format!("part{n}")).to_str().unwrap()).await;
    }
    let id = act(&agent, &format!("/api/v1/disks/{disk_id}/eject")).await;
    let event = outcome(&agent, &id).await;
    assert_eq!(event["type"], "action.succeeded", "{event:#}");
    let mut unmounted: Vec<&str> =
        event["data"]["action"]["unmounted"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    unmounted.sort();
    let expected: Vec<String> = (1..=2).map(|n| work.path().join(format!("part{n}")).display().to_string()).collect();
    assert_eq!(unmounted, expected);
    for point in &expected {
        assert!(!mounted(Path::new(point)), "{point} still mounted");
    }
    assert!(!Path::new(&format!("/sys/block/{name}/loop/backing_file")).exists(), "{name} still attached");
    // The udev source sees the disk go.
    let deadline = tokio::time::Instant::now() + WAIT;
    while snapshot(&agent).await["disks"].as_array().unwrap().iter().any(|d| d["id"] == disk_id.as_str()) {
        assert!(tokio::time::Instant::now() < deadline, "the agent still lists the ejected disk");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    agent.stop().await;
}

/// The disk (not partition) kernel name holding `/`, from the mount table and sysfs.
fn root_disk() -> Option<String> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = table.lines().find(|l| l.split(' ').nth(4) == Some("/"))?;
    let dev = line.split(' ').nth(2)?;
    let link = std::fs::canonicalize(format!("/sys/dev/block/{dev}")).ok()?;
    let node = if link.join("partition").exists() { link.parent()?.to_path_buf() } else { link };
    Some(node.file_name()?.to_string_lossy().into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eject_of_the_disk_holding_root_is_refused() {
    if !require_root("eject_of_the_disk_holding_root_is_refused") {
        return;
    }
    let Some(root) = root_disk() else {
        assert!(!common::in_ci(), "/ is not on a block device here: the refusal cannot be tried");
        eprintln!("skipping: / is not on a block device");
        return;
    };
    let _lock = machine_lock();
    let work = tempfile::tempdir().unwrap();
    let agent = TestAgent::start(|c| configure(c, work.path(), &[ActionKind::Eject]), vec![]).await;
    let disk_id = id_where(&agent, "disks", "kernel_name", &root).await;
    let id = act(&agent, &format!("/api/v1/disks/{disk_id}/eject")).await;
    let event = outcome(&agent, &id).await;
    assert_eq!(event["type"], "action.failed", "{event:#}");
    assert_eq!(event["data"]["action"]["reason"], "holds_root", "{event:#}");
    assert_eq!(event["data"]["action"]["unmounted"], serde_json::json!([]));
    assert!(mounted(Path::new("/")));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_down_of_a_non_rotational_device_is_refused() {
    if !require_root("spin_down_of_a_non_rotational_device_is_refused") {
        return;
    }
    let _lock = machine_lock();
    let work = tempfile::tempdir().unwrap();
    let agent = TestAgent::start(|c| configure(c, work.path(), &[ActionKind::SpinDown]), vec![]).await;
    let dev = LoopDevice::new(16, &[]);
    let name = dev.name();
    let rotational = format!("/sys/block/{name}/queue/rotational");
    std::fs::write(&rotational, "0").unwrap();
    let disk_id = id_where(&agent, "disks", "kernel_name", &name).await;
    let id = act(&agent, &format!("/api/v1/disks/{disk_id}/spin_down")).await;
    let event = outcome(&agent, &id).await;
    assert_eq!(event["type"], "action.failed", "{event:#}");
    assert_eq!(event["data"]["action"]["reason"], "not_rotational", "{event:#}");
    // Rotational, but a loop device takes no ATA command: tried, and failed as unsupported.
    std::fs::write(&rotational, "1").unwrap();
    let id = act(&agent, &format!("/api/v1/disks/{disk_id}/spin_down")).await;
    let event = outcome(&agent, &id).await;
    assert_eq!(event["data"]["action"]["reason"], "unsupported", "{event:#}");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_is_read_only_below_mount_root_and_its_directory_goes_on_unmount() {
    if !require_root("mount_is_read_only_below_mount_root_and_its_directory_goes_on_unmount") {
        return;
    }
    let _lock = machine_lock();
    let work = tempfile::tempdir().unwrap();
    let agent =
        TestAgent::start(|c| configure(c, work.path(), &[ActionKind::Mount, ActionKind::Unmount]), vec![]).await;
    let dev = LoopDevice::new(24, &[16]);
    sh("mkfs.ext4", &["-q", "-F", "-L", "Photos 2026", &dev.partition(1)]);
    // The udev source probes the filesystem once it settles.
    let part_name = format!("{}p1", dev.name());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let snap = snapshot(&agent).await;
        let p = snap["partitions"].as_array().unwrap().iter().find(|p| p["kernel_name"] == part_name.as_str()).cloned();
        if p.is_some_and(|p| p["fs_type"] == "ext4") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no filesystem seen on {part_name}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let part_id = id_where(&agent, "partitions", "kernel_name", &part_name).await;
    // Read-write is refused unless allowed.
    let (status, body) = reqwest::Client::new()
        .post(agent.url(&format!("/api/v1/partitions/{part_id}/mount")))
        .header("authorization", bearer())
        .body(r#"{"read_write": true}"#)
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .unwrap();
    assert_eq!(status, 403, "{:?}", body.text().await);
    let id = act(&agent, &format!("/api/v1/partitions/{part_id}/mount")).await;
    let event = outcome(&agent, &id).await;
    assert_eq!(event["type"], "action.succeeded", "{event:#}");
    let point = work.path().join("media/Photos_2026");
    assert_eq!(event["data"]["action"]["mount_point"], point.to_str().unwrap());
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = table.lines().find(|l| l.split(' ').nth(4) == point.to_str()).expect("mounted");
    let options = line.split(' ').nth(5).unwrap();
    for o in ["ro", "nosuid", "nodev"] {
        assert!(options.split(',').any(|x| x == o), "{o} missing in {options}");
    }
    // Mounting it again is refused; unmounting removes the directory the mount made.
    let id = act(&agent, &format!("/api/v1/partitions/{part_id}/mount")).await;
    assert_eq!(outcome(&agent, &id).await["data"]["action"]["reason"], "already_mounted");
    let mount_id = id_where(&agent, "mounts", "mount_point", point.to_str().unwrap()).await;
    let id = act(&agent, &format!("/api/v1/mounts/{mount_id}/unmount")).await;
    assert_eq!(outcome(&agent, &id).await["type"], "action.succeeded");
    assert!(!point.exists(), "the mount's directory is removed");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_need_the_token_always_and_a_host_of_ours() {
    let work = tempfile::tempdir().unwrap();
    let agent = TestAgent::start(
        |c| {
            configure(c, work.path(), &ActionKind::ALL);
            c.udev.enabled = false;
            c.mounts.enabled = false;
        },
        vec![],
    )
    .await;
    let path = "/api/v1/disks/nope/eject";
    let wrong = format!("Bearer {}", TOKEN.replace('a', "b"));
    let (status, body) = post(&agent, path, &[]).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(post(&agent, path, &[("authorization", &wrong)]).await.0, 401);
    let (status, body) = post(&agent, path, &[("authorization", &bearer()), ("host", "evil.example")]).await;
    assert_eq!(status, 421, "{body}");
    assert_eq!(body["error"]["code"], "misdirected_request");
    // Past the checks: an unknown disk.
    assert_eq!(post(&agent, path, &[("authorization", &bearer())]).await.0, 404);
    // Every POST route of the OpenAPI document (a new one cannot be forgotten).
    let doc: Value = reqwest::Client::new()
        .get(agent.url("/api/v1/openapi.json"))
        .header("authorization", bearer())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let posts: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, ops)| ops.get("post").is_some())
        .map(|(p, _)| p.replace("{id}", "x"))
        .collect();
    // eject, spin_down, self_test, unmount, mount, and acknowledge of disks, mounts and arrays
    // (SPEC §9: token-guarded the same way).
    assert_eq!(posts.len(), 8, "{posts:?}");
    for p in &posts {
        assert_eq!(post(&agent, p, &[]).await.0, 401, "{p} without a token");
        assert_eq!(post(&agent, p, &[("authorization", &wrong)]).await.0, 401, "{p} with a wrong token");
        assert_eq!(post(&agent, p, &[("authorization", &bearer()), ("host", "evil.example")]).await.0, 421, "{p}");
        assert_eq!(post(&agent, p, &[("authorization", &bearer())]).await.0, 404, "{p} with the token");
    }
    // The dashboard's cookie alone is not enough (a form on another page of this host could
    // send it); with the header only a same-origin script can add, it is.
    let cookie = format!("diskwatch_token_0={TOKEN}");
    let (status, body) = post(&agent, path, &[("cookie", &cookie)]).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("X-Diskwatch-Action"), "{body}");
    assert_eq!(post(&agent, path, &[("cookie", &cookie), ("x-diskwatch-action", "1")]).await.0, 404);
    agent.stop().await;

    // Anonymous access (no token configured, or a network that needs none) does not reach actions.
    let agent = TestAgent::start(
        |c| {
            configure(c, work.path(), &ActionKind::ALL);
            c.http.auth_token = None;
            c.http.auth_token_file = Default::default();
            c.udev.enabled = false;
            c.mounts.enabled = false;
        },
        vec![],
    )
    .await;
    let (status, body) = post(&agent, path, &[]).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("http.auth_token_file"), "{body}");
    agent.stop().await;

    let agent = TestAgent::start(
        |c| {
            configure(c, work.path(), &ActionKind::ALL);
            c.http.anonymous_from = vec!["127.0.0.1".into()];
            c.udev.enabled = false;
            c.mounts.enabled = false;
        },
        vec![],
    )
    .await;
    let (status, body) = post(&agent, path, &[]).await;
    assert_eq!(status, 401, "anonymous_from does not cover actions: {body}");
    assert_eq!(post(&agent, path, &[("authorization", &bearer())]).await.0, 404);
    agent.stop().await;
}

/// The retained discovery config of `object` (`disk_<id>` / `mount_<id>`), once announced.
async fn discovery(broker: &Mosquitto, rec: &Recorder, object: &str) -> Value {
    let topic = format!("homeassistant/device/diskwatch_test_{object}/config");
    rec.wait_for(WAIT, &topic, |m| m.iter().any(|r| r.topic == topic)).await;
    let held = mosquitto::retained(broker.port, &["homeassistant/#"]).await;
    serde_json::from_str(&held[&topic]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_button_press_runs_the_action_and_its_outcome_arrives() {
    if !require_root("a_button_press_runs_the_action_and_its_outcome_arrives") {
        return;
    }
    let _lock = machine_lock();
    let broker = Mosquitto::start();
    let work = tempfile::tempdir().unwrap();
    let rec = Recorder::start(broker.port, "t-actions", &["diskwatch/test/#", "homeassistant/#"]).await;
    let (dev, _guards) = disk_with_mounts(work.path(), &[16, 16]);
    let (point, keep) = (work.path().join("part1"), work.path().join("part2"));
    // A retained PRESS left on the broker (by mistake) before the agent subscribes: delivered
    // from the retained store, it must never be taken for a press.
    let keep_id = diskwatch::model::mount_id(keep.to_str().unwrap());
    let keep_command = format!("diskwatch/test/mount/{keep_id}/unmount/set");
    rec.client.publish(keep_command.clone(), rumqttc::QoS::AtLeastOnce, true, "PRESS").await.unwrap();
    rec.wait_for(WAIT, "the retained PRESS", |m| m.iter().any(|r| r.topic == keep_command)).await;

    let agent = TestAgent::start(
        |c| {
            configure(c, work.path(), &[ActionKind::Unmount, ActionKind::Eject]);
            c.mqtt.enabled = true;
            c.mqtt.url = broker.url();
        },
        vec![],
    )
    .await;
    let disk_id = id_where(&agent, "disks", "kernel_name", &dev.name()).await;
    let mount_id = id_where(&agent, "mounts", "mount_point", point.to_str().unwrap()).await;
    let disk = discovery(&broker, &rec, &format!("disk_{disk_id}")).await;
    assert_eq!(disk["cmps"]["eject"]["platform"], "button");
    assert_eq!(disk["cmps"]["eject"]["command_topic"], format!("diskwatch/test/disk/{disk_id}/eject/set"));
    assert!(disk["cmps"].get("spin_down").is_none(), "spin_down is not allowed: no button");
    let mount = discovery(&broker, &rec, &format!("mount_{mount_id}")).await;
    let command = mount["cmps"]["unmount"]["command_topic"].as_str().unwrap().to_owned();
    assert_eq!(command, format!("diskwatch/test/mount/{mount_id}/unmount/set"));
    assert_eq!(mount["cmps"]["unmount"]["payload_press"], "PRESS");

    // What Home Assistant sends when the button is pressed.
    rec.client.publish(command.clone(), rumqttc::QoS::AtLeastOnce, false, "PRESS").await.unwrap();
    let outcome_on = |m: &[mosquitto::Received], subject: &str| {
        m.iter().filter(|r| r.topic == "diskwatch/test/events").find_map(|r| {
            let e: Value = serde_json::from_str(&r.payload).unwrap();
            (e["type"].as_str().unwrap().starts_with("action.") && e["subject"] == subject).then_some(e)
        })
    };
    let subject = format!("mount/{mount_id}");
    rec.wait_for(WAIT, "the action's outcome on the event stream", |m| outcome_on(m, &subject).is_some()).await;
    let event = outcome_on(&rec.all(), &subject).unwrap();
    assert_eq!(event["type"], "action.succeeded", "{event:#}");
    assert_eq!(event["data"]["action"]["requested_by"], "mqtt");
    assert!(!mounted(&point));
    assert!(mounted(&keep), "the retained PRESS ran an action");
    assert!(outcome_on(&rec.all(), &format!("mount/{keep_id}")).is_none());

    // A press for something that is not there is answered on the event stream too.
    rec.client
        .publish("diskwatch/test/mount/nope/unmount/set", rumqttc::QoS::AtLeastOnce, false, "PRESS")
        .await
        .unwrap();
    rec.wait_for(WAIT, "the refusal", |m| outcome_on(m, "mount/nope").is_some()).await;
    let event = outcome_on(&rec.all(), "mount/nope").unwrap();
    assert_eq!(event["type"], "action.failed");
    assert_eq!(event["data"]["action"]["reason"], "not_found");
    rec.client.publish(keep_command, rumqttc::QoS::AtLeastOnce, true, "").await.unwrap();
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_disabled_answer_403_and_announce_no_buttons() {
    let broker = Mosquitto::start();
    let work = tempfile::tempdir().unwrap();
    let agent = TestAgent::start(
        |c| {
            configure(c, work.path(), &ActionKind::ALL);
            c.actions.enabled = false;
            c.udev.enabled = false;
            c.mounts.enabled = false;
            c.mqtt.enabled = true;
            c.mqtt.url = broker.url();
        },
        vec![],
    )
    .await;
    let rec = Recorder::start(broker.port, "t-disabled", &["homeassistant/#"]).await;
    let mut usb = mosquitto::disk("usb-Stick_1", "sdz", "8:240", 16 << 30);
    usb.removable = true;
    usb.bus = Some("usb".into());
    usb.rotational = true;
    let part = mosquitto::partition("part-z1", "usb-Stick_1", "sdz1", "8:241", "Stick");
    let facts = diskwatch::state::Fact::BlockDevices { disks: vec![usb], partitions: vec![part], initial: false };
    agent.facts.send(facts).await.unwrap();
    let mount = mosquitto::mount("/media/stick", "/dev/sdz1", "8:241", 10.0);
    agent.facts.send(diskwatch::state::Fact::Mounts { mounts: vec![mount], initial: false }).await.unwrap();
    let disk = discovery(&broker, &rec, "disk_usb-Stick_1").await;
    let mount = discovery(&broker, &rec, "mount_media_stick").await;
    // (The acknowledge button of an object with a verdict is no action: it stays, SPEC §9.)
    for config in [&disk, &mount] {
        let platforms: Vec<&str> = config["cmps"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(key, _)| key.as_str() != "acknowledge")
            .map(|(_, c)| c["platform"].as_str().unwrap())
            .collect();
        assert!(!platforms.contains(&"button"), "{config:#}");
    }
    for path in [
        "/api/v1/disks/usb-Stick_1/eject",
        "/api/v1/disks/usb-Stick_1/spin_down",
        "/api/v1/mounts/media_stick/unmount",
        "/api/v1/partitions/part-z1/mount",
    ] {
        let (status, body) = post(&agent, path, &[("authorization", &bearer())]).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(body["error"]["code"], "forbidden");
    }
    agent.stop().await;
}

/// The Python with the `homeassistant` package (scripts/ha-venv), as tests/mqtt.rs finds it.
fn ha_python() -> Option<String> {
    let python = std::env::var("DISKWATCH_HA_PYTHON").unwrap_or_else(|_| "/opt/diskwatch-ha-venv/bin/python".into());
    if Path::new(&python).exists() {
        return Some(python);
    }
    assert!(!common::in_ci(), "{python} missing: CI must run scripts/ha-venv so discovery is validated");
    eprintln!("skipping Home Assistant schema validation: {python} missing (run scripts/ha-venv)");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn button_entities_pass_home_assistant_schemas() {
    let Some(python) = ha_python() else { return };
    for mode in [diskwatch::config::DiscoveryMode::Device, diskwatch::config::DiscoveryMode::Component] {
        let broker = Mosquitto::start();
        let work = tempfile::tempdir().unwrap();
        let agent = TestAgent::start(
            |c| {
                configure(c, work.path(), &ActionKind::ALL);
                c.udev.enabled = false;
                c.mounts.enabled = false;
                c.mqtt.enabled = true;
                c.mqtt.url = broker.url();
                c.mqtt.discovery = mode;
            },
            vec![],
        )
        .await;
        let rec = Recorder::start(broker.port, "t-schema", &["homeassistant/#"]).await;
        let mut usb = mosquitto::disk("usb-Stick_1", "sdz", "8:240", 16 << 30);
        usb.removable = true;
        usb.bus = Some("usb".into());
        usb.rotational = true;
        let part = mosquitto::partition("part-z1", "usb-Stick_1", "sdz1", "8:241", "Stick");
        let facts = diskwatch::state::Fact::BlockDevices { disks: vec![usb], partitions: vec![part], initial: false };
        agent.facts.send(facts).await.unwrap();
        let mount = mosquitto::mount("/media/stick", "/dev/sdz1", "8:241", 10.0);
        agent.facts.send(diskwatch::state::Fact::Mounts { mounts: vec![mount], initial: false }).await.unwrap();
        let buttons = |m: &[mosquitto::Received]| {
            m.iter()
                .filter(|r| r.payload.contains("\"command_topic\""))
                .map(|r| r.payload.matches("/set\"").count())
                .sum::<usize>()
        };
        // eject and spin down on the disk, unmount on the mount.
        rec.wait_for(WAIT, "three buttons", |m| buttons(m) >= 3).await;
        let configs = mosquitto::retained(broker.port, &["homeassistant/#"]).await;
        let list: Vec<Value> = configs.iter().map(|(t, p)| serde_json::json!({"topic": t, "payload": p})).collect();
        let file = work.path().join("discovery.json");
        std::fs::write(&file, serde_json::to_string(&list).unwrap()).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ha_validate.py");
        let out = Command::new(&python).arg(&script).arg(&file).output().expect("run ha_validate.py");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{mode:?}: Home Assistant rejected discovery payloads:\n{text}");
        // 7 host entities, 2 sensors and 2 buttons on the disk, 4 sensors and 1 button on the
        // mount, and its attention sensor and acknowledge button (SPEC §9).
        assert!(text.contains(" 18 entities, 0 errors"), "{text}");
        agent.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_buttons_ask_before_acting() {
    if !require_root("dashboard_buttons_ask_before_acting") {
        return;
    }
    let _lock = machine_lock();
    let work = tempfile::tempdir().unwrap();
    let agent =
        TestAgent::start(|c| configure(c, work.path(), &[ActionKind::Unmount, ActionKind::Eject]), vec![]).await;
    let (dev, _guards) = disk_with_mounts(work.path(), &[16]);
    let point = work.path().join("part1");
    let disk_id = id_where(&agent, "disks", "kernel_name", &dev.name()).await;
    let mount_id = id_where(&agent, "mounts", "mount_point", point.to_str().unwrap()).await;
    let mut browser = common::dashboard::Browser::launch();
    // The one-time token visit sets the cookie; the buttons' requests carry it and the header.
    browser.cmd(&format!("goto {}", agent.url(&format!("/?token={TOKEN}"))));
    browser.cmd("wait #status[data-state=live]");
    browser.cmd(&format!("wait [data-disk-id=\"{disk_id}\"] button[data-action=eject]"));
    let unmount = format!("[data-mount-id=\"{mount_id}\"] button[data-action=unmount]");
    browser.cmd(&format!("wait {unmount}"));
    assert_eq!(browser.cmd("eval document.querySelectorAll('button[data-action=spin_down]').length"), "0");

    // Cancel: nothing happens.
    browser.cmd(&format!("eval document.querySelector('{}').click()", unmount.replace('\'', "\\'")));
    browser.cmd("wait dialog#confirm[open]");
    let title = browser.cmd("text #confirm-title");
    assert!(title.contains(&format!("Unmount {}?", point.display())), "{title}");
    browser.cmd("eval document.querySelector('#confirm button[value=cancel]').click()");
    browser.cmd("gone dialog#confirm[open]");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(mounted(&point), "cancel ran the action");

    // Confirm: unmounted, and the outcome shows, even when it arrives over SSE before the
    // POST's 202 is read (the fetch answer is held back a second to make that order certain).
    browser.cmd(
        "eval (() => { const f = window.fetch; window.fetch = (u, o) => f(u, o).then((r) => \
         new Promise((ok) => setTimeout(() => ok(r), o && o.method === 'POST' ? 1000 : 0))); return 1; })()",
    );
    browser.cmd(&format!("eval document.querySelector('{}').click()", unmount.replace('\'', "\\'")));
    browser.cmd("wait dialog#confirm[open]");
    browser.cmd("eval document.querySelector('#confirm-ok').click()");
    browser.cmd("wait #action-note .badge.ok");
    let note = browser.cmd("text #action-note");
    assert!(note.contains(&format!("unmounted {}", point.display())), "{note}");
    assert!(!mounted(&point));
    browser.cmd(&format!("gone [data-mount-id=\"{mount_id}\"]"));
    browser.cmd(&format!("screenshot {}", common::dashboard::artifacts_dir().join("dashboard-actions.png").display()));
    assert_eq!(browser.cmd("errors"), "[]", "the page threw");
    drop(browser);
    agent.stop().await;
}

fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the add-on's run script as `check-config` (no Supervisor): (success, config, log).
fn addon_config(options: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("options.json"), options).unwrap();
    let out = Command::new("bash")
        .arg(repo().join("packaging/homeassistant/rootfs/run.sh"))
        .env("ADDON_OPTIONS", dir.path().join("options.json"))
        .env("ADDON_CONFIG_PATH", dir.path().join("diskwatch.toml"))
        .env("ADDON_STATE_DIR", dir.path().join("state"))
        .env("ADDON_BIN", env!("CARGO_BIN_EXE_diskwatch"))
        .env("ADDON_COMMAND", "check-config")
        .env_remove("SUPERVISOR_TOKEN")
        .output()
        .expect("run the add-on script");
    let config = std::fs::read_to_string(dir.path().join("diskwatch.toml")).unwrap_or_default();
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), config, log)
}

/// The add-on with actions is a second add-on made from the first: the plain one keeps only
/// SMART's SYS_RAWIO and writes actions off; the variant adds exactly the privileges and options.
#[test]
fn addon_with_actions_is_a_generated_variant_and_the_plain_one_stays_unprivileged() {
    let python = if Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" };
    let base = repo().join("packaging/homeassistant");
    let dir = tempfile::tempdir().unwrap();
    let variant = dir.path().join("diskwatch_actions");
    let out = Command::new(python).arg(base.join("actions_variant.py")).arg(&variant).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(python).arg(base.join("check_addon.py")).arg(&variant).output().unwrap();
    assert!(out.status.success(), "the variant is not a valid add-on: {}", String::from_utf8_lossy(&out.stderr));
    let base_yaml = std::fs::read_to_string(base.join("config.yaml")).unwrap();
    for key in ["host_pid:", "full_access:", "action_"] {
        // Keys, not the comment that says they are absent.
        assert!(!base_yaml.lines().any(|l| l.trim_start().starts_with(key)), "the plain add-on has {key}");
    }
    // SMART's pass-through commands only (issue 22); SYS_ADMIN and SYS_PTRACE stay in the variant.
    assert!(base_yaml.contains("privileged:\n  - SYS_RAWIO\ndevices:"), "the plain add-on's privileges:\n{base_yaml}");
    let yaml = std::fs::read_to_string(variant.join("config.yaml")).unwrap();
    for expected in
        ["slug: diskwatch_actions", "- SYS_ADMIN", "- SYS_PTRACE", "- SYS_RAWIO", "host_pid: true", "full_access: true"]
    {
        assert!(yaml.contains(expected), "the variant lacks {expected}:\n{yaml}");
    }
    assert_eq!(
        std::fs::read(variant.join("rootfs/run.sh")).unwrap(),
        std::fs::read(base.join("rootfs/run.sh")).unwrap()
    );

    let common = r#""log_level":"info","emit_initial":false,"include_loop_devices":false,"api_on_lan":false,"discovery_prefix":"homeassistant""#;
    let (ok, config, log) = addon_config(&format!("{{{common}}}"));
    assert!(ok, "{config}\n{log}");
    assert!(config.contains("[actions]\nenabled = false"), "{config}");
    let (ok, config, log) = addon_config(&format!(
        "{{{common},\"action_unmount\":true,\"action_eject\":true,\"action_spin_down\":false,\"action_mount\":false,\"mount_root\":\"/mnt/data/supervisor/media/diskwatch\"}}"
    ));
    assert!(ok, "check-config rejected the variant's configuration:\n{config}\n{log}");
    assert!(
        config.contains("[actions]\nenabled = true\nallow = [\"unmount\", \"eject\"]\nmount_root = \"/mnt/data/supervisor/media/diskwatch\""),
        "{config}"
    );
}

/// `systemd-analyze security --offline` of the packaged unit in a scratch root, with or
/// without the actions drop-in: (exposure score, the checks that fail).
fn exposure(with_drop_in: bool) -> (f64, std::collections::BTreeSet<String>) {
    let root = tempfile::tempdir().unwrap();
    let units = root.path().join("etc/systemd/system");
    std::fs::create_dir_all(units.join("diskwatch.service.d")).unwrap();
    std::fs::copy(repo().join("systemd/diskwatch.service"), units.join("diskwatch.service")).unwrap();
    if with_drop_in {
        let drop_in = repo().join("systemd/diskwatch.service.d/actions.conf");
        std::fs::copy(drop_in, units.join("diskwatch.service.d/actions.conf")).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(format!("--root={}", root.path().display()))
        .arg("diskwatch.service")
        .output()
        .expect("run systemd-analyze (apt package systemd)");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let score = report
        .lines()
        .find_map(|l| l.split("exposure level for diskwatch.service: ").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in:\n{report}{}", String::from_utf8_lossy(&out.stderr)));
    let failing = report
        .lines()
        .filter_map(|l| l.strip_prefix("✗ "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    (score, failing)
}

/// The drop-in loosens the unit only where actions need it, and the unit without it is the
/// read-only one.
#[test]
fn systemd_drop_in_adds_only_what_actions_need() {
    let (off, off_failing) = exposure(false);
    let (on, on_failing) = exposure(true);
    eprintln!("systemd-analyze security: actions off {off}, with the actions drop-in {on}");
    let added: Vec<&String> = on_failing.difference(&off_failing).collect();
    // SMART's CAP_SYS_ADMIN and CAP_SYS_RAWIO are the smartctl helper unit's, not the agent's.
    let expected = [
        "CapabilityBoundingSet=~CAP_SYS_ADMIN",
        "CapabilityBoundingSet=~CAP_SYS_CHROOT",
        "CapabilityBoundingSet=~CAP_SYS_PTRACE",
        "CapabilityBoundingSet=~CAP_SYS_RAWIO",
        "RestrictNamespaces=~mnt",
        "SystemCallFilter=~@mount",
    ];
    assert_eq!(added, expected.iter().collect::<Vec<_>>(), "the drop-in changed other checks too");
    assert!(off_failing.is_subset(&on_failing));
    assert!(on < 4.0, "exposure with actions {on} is above 'OK'");
    assert!(off < on);
}
