//! The shares source through a running agent: configuration files edited the ways tools edit
//! them (rename-over and in place), includes, NFS exports, broken input, and availability
//! following a real ext4 mount on a loop device.

mod common;

use std::time::Duration;

use common::shares::{save, Save, ShareDir};
use common::sse::{Message, SseClient};
use common::TestAgent;
use diskwatch::state::Fact;

const DEBOUNCE: Duration = Duration::from_millis(100);
const WAIT: Duration = Duration::from_secs(10);

/// The Samba configuration written by a test: the shares' sections plus a marker share whose
/// comment is bumped to prove that nothing else is pending on the stream.
struct Smb {
    sections: Vec<(String, String)>,
    marker: u32,
}

impl Smb {
    fn text(&self) -> String {
        let mut t = String::from("[global]\n  workgroup = TEST\n  include = inc.conf\n");
        for (name, body) in &self.sections {
            t.push_str(&format!("[{name}]\n{body}\n"));
        }
        t.push_str(&format!("[marker]\n  path = /nonexistent\n  comment = marker {}\n", self.marker));
        t
    }

    fn set(&mut self, name: &str, body: String) {
        match self.sections.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = body,
            None => self.sections.push((name.to_owned(), body)),
        }
    }

    fn remove(&mut self, name: &str) {
        self.sections.retain(|(n, _)| n != name);
    }
}

struct Harness {
    agent: TestAgent,
    dir: ShareDir,
    smb: Smb,
    sse: SseClient,
}

impl Harness {
    async fn start() -> Self {
        let dir = ShareDir::new();
        let smb = Smb { sections: vec![("base".into(), format!("  path = {}", dir.data("base")))], marker: 0 };
        std::fs::write(dir.path("smb.conf"), smb.text()).unwrap();
        std::fs::write(dir.path("inc.conf"), "").unwrap();
        let agent = TestAgent::start(|c| dir.configure(c, DEBOUNCE), vec![]).await;
        agent
            .wait_snapshot(WAIT, |s| s["shares"].as_array().is_some_and(|a| a.iter().any(|x| x["id"] == "smb-base")))
            .await;
        let sse = SseClient::connect(&agent.url("/api/v1/events/stream?types=share.*,source.*"), None).await;
        Self { agent, dir, smb, sse }
    }

    async fn save_smb(&mut self, how: Save) {
        save(&self.dir.path("smb.conf"), self.smb.text().as_bytes(), how);
    }

    async fn next(&mut self) -> Message {
        self.sse.expect(WAIT).await
    }

    /// The next message is `kind` about share `id`; returns its data.
    async fn expect(&mut self, kind: &str, id: &str) -> serde_json::Value {
        let msg = self.next().await;
        assert_eq!(
            (msg.event.as_str(), msg.json()["subject"].as_str()),
            (kind, Some(&*format!("share/{id}"))),
            "{}",
            msg.data
        );
        msg.json()["data"].clone()
    }

    /// Bumps the marker and checks that its update is the very next message: nothing extra came before.
    async fn marker(&mut self, how: Save) {
        self.smb.marker += 1;
        self.save_smb(how).await;
        let data = self.expect("share.updated", "smb-marker").await;
        assert_eq!(data["changed"], serde_json::json!(["comment"]));
    }

    /// Sends a fact straight to the core and checks its event is the next message, after
    /// waiting well past the debounce: proves the source sent nothing meanwhile.
    async fn quiet(&mut self, n: u32) {
        tokio::time::sleep(DEBOUNCE * 5).await;
        let message = format!("quiet {n}");
        self.agent.facts.send(Fact::SourceFailed { source: "probe".into(), message: message.clone() }).await.unwrap();
        let msg = self.next().await;
        assert_eq!((msg.event.as_str(), msg.json()["data"]["message"].as_str()), ("source.failed", Some(&*message)));
    }
}

async fn edit_cycle(how: Save) {
    let mut h = Harness::start().await;
    let a = h.dir.data("a");
    let b = h.dir.data("b");

    // Add a share.
    h.smb.set("new", format!("  path = {a}\n  writable = yes"));
    h.save_smb(how).await;
    let data = h.expect("share.created", "smb-new").await;
    assert_eq!(data["share"]["path"], a.as_str());
    assert_eq!(data["share"]["read_only"], false);
    assert_eq!(data["share"]["path_exists"], true);
    h.marker(how).await;

    // Change its path.
    h.smb.set("new", format!("  path = {b}\n  writable = yes"));
    h.save_smb(how).await;
    let data = h.expect("share.updated", "smb-new").await;
    assert_eq!(data["changed"], serde_json::json!(["path", "resolved_path"]));
    assert_eq!(data["share"]["path"], b.as_str());
    h.marker(how).await;

    // Disable it.
    h.smb.set("new", format!("  path = {b}\n  writable = yes\n  available = no"));
    h.save_smb(how).await;
    let data = h.expect("share.disabled", "smb-new").await;
    assert_eq!(data["share"]["enabled"], false);
    h.marker(how).await;

    // Enable it again.
    h.smb.set("new", format!("  path = {b}\n  writable = yes"));
    h.save_smb(how).await;
    h.expect("share.enabled", "smb-new").await;
    h.marker(how).await;

    // Delete it.
    h.smb.remove("new");
    h.save_smb(how).await;
    let data = h.expect("share.deleted", "smb-new").await;
    assert_eq!(data["share"]["path"], b.as_str());
    h.marker(how).await;

    // An included file changes.
    save(&h.dir.path("inc.conf"), format!("[inc]\n  path = {a}\n").as_bytes(), how);
    let data = h.expect("share.created", "smb-inc").await;
    assert!(data["share"]["config_file"].as_str().unwrap().ends_with("/inc.conf"));
    h.marker(how).await;
    save(&h.dir.path("inc.conf"), format!("[inc]\n  path = {a}\n  guest ok = yes\n").as_bytes(), how);
    let data = h.expect("share.updated", "smb-inc").await;
    assert_eq!(data["changed"], serde_json::json!(["guest_ok"]));
    h.marker(how).await;

    // NFS: /etc/exports appears, changes; a file in exports.d appears.
    save(&h.dir.path("exports"), format!("{a} client(ro)\n").as_bytes(), how);
    let id = diskwatch::model::Share::make_id(diskwatch::model::Protocol::Nfs, &a);
    let data = h.expect("share.created", &id).await;
    assert_eq!(data["share"]["read_only"], true);
    assert_eq!(data["share"]["clients"][0]["host"], "client");
    h.marker(how).await;
    save(&h.dir.path("exports"), format!("{a} client(ro) other(rw,sync)\n").as_bytes(), how);
    let data = h.expect("share.updated", &id).await;
    assert_eq!(data["changed"], serde_json::json!(["clients", "read_only"]));
    h.marker(how).await;
    save(&h.dir.path("exports.d/more.exports"), format!("{b} *(rw)\n").as_bytes(), how);
    let id_b = diskwatch::model::Share::make_id(diskwatch::model::Protocol::Nfs, &b);
    h.expect("share.created", &id_b).await;
    h.marker(how).await;
    std::fs::remove_file(h.dir.path("exports.d/more.exports")).unwrap();
    h.expect("share.deleted", &id_b).await;
    h.marker(how).await;

    // A file in exports.d that is not *.exports changes nothing.
    save(&h.dir.path("exports.d/notes.txt"), format!("{b} *(rw)\n").as_bytes(), how);
    h.marker(how).await;

    let snap = h.agent.get_json("/api/v1/snapshot").await;
    let ids: Vec<&str> = snap["shares"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 4, "{ids:?}");
    h.agent.stop().await;
}

#[tokio::test]
async fn edits_saved_by_rename_over_give_exactly_their_events() {
    edit_cycle(Save::RenameOver).await;
}

#[tokio::test]
async fn edits_saved_in_place_give_exactly_their_events() {
    edit_cycle(Save::InPlace).await;
}

/// Breaks the configuration in one way.
type Breaker = Box<dyn Fn()>;

#[tokio::test]
async fn bad_input_keeps_the_last_good_shares() {
    let mut h = Harness::start().await;
    h.smb.set("keep", format!("  path = {}", h.dir.data("keep")));
    h.save_smb(Save::RenameOver).await;
    h.expect("share.created", "smb-keep").await;
    let smb = h.dir.path("smb.conf");
    let inc = h.dir.path("inc.conf");
    let good = h.smb.text();

    let huge = vec![b'#'; 10 << 20];
    let cases: Vec<(&str, Breaker, String)> = vec![
        (
            "invalid UTF-8",
            Box::new({
                let smb = smb.clone();
                let mut text = good.clone().into_bytes();
                text.extend(b"[x]\n  comment = caf\xe9\n");
                move || save(&smb, &text, Save::RenameOver)
            }),
            format!("{}:", smb.display()),
        ),
        (
            "binary garbage",
            Box::new({
                let smb = smb.clone();
                move || save(&smb, b"\x7fELF\x02\x01\x01\x00\x00\x00garbage", Save::InPlace)
            }),
            format!("{}:1: binary content", smb.display()),
        ),
        (
            "10 MB file",
            Box::new({
                let smb = smb.clone();
                move || save(&smb, &huge, Save::RenameOver)
            }),
            format!("{}: larger than", smb.display()),
        ),
        (
            "broken section header",
            Box::new({
                let smb = smb.clone();
                let text = format!("{good}[unclosed\n");
                move || save(&smb, text.as_bytes(), Save::InPlace)
            }),
            format!("{}:", smb.display()),
        ),
        (
            "include cycle",
            Box::new({
                let inc = inc.clone();
                move || save(&inc, b"\n\ninclude = smb.conf\n", Save::RenameOver)
            }),
            format!("{}:3: include cycle", inc.display()),
        ),
        (
            "missing include",
            Box::new({
                let inc = inc.clone();
                move || save(&inc, b"include = sub/nothere.conf\n", Save::InPlace)
            }),
            format!("{}:1: included file", inc.display()),
        ),
        (
            "unreadable file",
            Box::new({
                let smb = smb.clone();
                let tmp = smb.with_file_name("smb.dir");
                move || {
                    std::fs::create_dir(&tmp).unwrap();
                    std::fs::remove_file(&smb).unwrap();
                    std::fs::rename(&tmp, &smb).unwrap();
                }
            }),
            format!("cannot read {}", smb.display()),
        ),
    ];
    for (n, (what, break_it, expected)) in cases.into_iter().enumerate() {
        break_it();
        let msg = h.next().await;
        assert_eq!(msg.event, "source.failed", "{what}: {}", msg.data);
        let message = msg.json()["data"]["message"].as_str().unwrap().to_owned();
        assert!(message.contains(&expected), "{what}: {message:?} should contain {expected:?}");
        h.quiet(n as u32).await;
        let snap = h.agent.get_json("/api/v1/shares").await;
        let ids: Vec<&str> = snap.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["smb-base", "smb-keep", "smb-marker"], "{what}: shares kept");
        let health = h.agent.get_json("/api/v1/health").await;
        assert!(health.to_string().contains("failed"), "{what}: {health}");

        // Fix it: recovered, and no share events since the set is unchanged.
        if smb.is_dir() {
            std::fs::remove_dir(&smb).unwrap();
        }
        save(&inc, b"", Save::RenameOver);
        h.save_smb(Save::RenameOver).await;
        let msg = h.next().await;
        assert_eq!(msg.event, "source.recovered", "{what}: {}", msg.data);
        h.marker(Save::InPlace).await;
    }

    // A broken file that is then fixed with a change: recovered, then exactly that change.
    save(&smb, b"[bad\n", Save::RenameOver);
    assert_eq!(h.next().await.event, "source.failed");
    h.smb.remove("keep");
    h.save_smb(Save::RenameOver).await;
    assert_eq!(h.next().await.event, "source.recovered");
    h.expect("share.deleted", "smb-keep").await;
    h.marker(Save::RenameOver).await;
    h.agent.stop().await;
}

#[tokio::test]
async fn missing_configuration_is_no_share_and_no_failure() {
    let dir = ShareDir::new();
    // No smb.conf (Samba not installed); one NFS export so the first read is observable.
    let exported = dir.data("exported");
    std::fs::write(dir.path("exports"), format!("{exported} h\n")).unwrap();
    let agent = TestAgent::start(|c| dir.configure(c, DEBOUNCE), vec![]).await;
    let snap = agent.wait_snapshot(WAIT, |s| s["shares"].as_array().is_some_and(|a| a.len() == 1)).await;
    assert_eq!(snap["shares"][0]["protocol"], "nfs");
    let mut sse = SseClient::connect(&agent.url("/api/v1/events/stream?types=share.*,source.*"), None).await;
    // Samba gets installed later: its config appears.
    let data = dir.data("d");
    save(&dir.path("smb.conf"), format!("[d]\npath = {data}\n").as_bytes(), Save::RenameOver);
    let msg = sse.expect(WAIT).await;
    assert_eq!(msg.event, "share.created", "{}", msg.data);
    let health = agent.get_json("/api/v1/health").await;
    assert!(!health.to_string().contains("failed"), "{health}");
    agent.stop().await;
}

/// A share on a real ext4 filesystem: available while mounted, unavailable after unmount,
/// available again after mounting, unavailable when its directory is removed.
#[tokio::test]
async fn availability_follows_a_real_mount() {
    if !common::require_root("availability_follows_a_real_mount") {
        return;
    }
    let _lock = common::machine_lock();
    let mut disk = common::LoopDevice::new(64, &[]);
    common::sh("mkfs.ext4", &["-q", "-F", &disk.device]);
    let dir = ShareDir::new();
    let mnt = dir.path("mnt");
    let mut mount = common::MountGuard::new(&disk.device, &mnt, Some("ext4"), None);
    let data = mnt.join("data");
    std::fs::create_dir(&data).unwrap();
    save(&dir.path("smb.conf"), format!("[data]\npath = {}\n", data.display()).as_bytes(), Save::RenameOver);
    let agent = TestAgent::start(
        |c| {
            dir.configure(c, DEBOUNCE);
            c.shares.recheck_interval = Duration::from_millis(200);
            c.mounts.enabled = true;
        },
        vec![],
    )
    .await;
    // No udev source here either: tell the core about the loop device, so the share's disk is known.
    agent
        .facts
        .send(Fact::BlockDevices {
            disks: vec![common::facts::whole_disk("test-loop", &disk.name(), &disk.dev())],
            partitions: vec![],
            initial: true,
        })
        .await
        .unwrap();
    let mount_id = diskwatch::model::mount_id(&mnt.to_string_lossy());
    let snap = agent
        .wait_snapshot(WAIT, |s| {
            s["shares"].as_array().is_some_and(|a| {
                a.iter().any(|x| x["id"] == "smb-data" && x["available"] == true && x["disk_id"] == "test-loop")
            })
        })
        .await;
    let share = &snap["shares"][0];
    assert_eq!(share["mount_id"], mount_id.as_str());
    let m = snap["mounts"].as_array().unwrap().iter().find(|m| m["id"] == mount_id.as_str()).unwrap();
    assert_eq!(m["shares"], serde_json::json!(["smb-data"]));

    let mut sse = SseClient::connect(&agent.url("/api/v1/events/stream?types=share.*"), None).await;
    mount.unmount();
    let msg = sse.expect(WAIT).await;
    assert_eq!(msg.event, "share.unavailable", "{}", msg.data);
    assert_eq!(msg.json()["data"]["share"]["mount_id"], mount_id.as_str(), "stays bound to its mount");

    let mut mount = common::MountGuard::new(&disk.device, &mnt, Some("ext4"), None);
    let msg = sse.expect(WAIT).await;
    assert_eq!(msg.event, "share.available", "{}", msg.data);

    std::fs::remove_dir(&data).unwrap();
    let msg = sse.expect(WAIT).await;
    assert_eq!(msg.event, "share.unavailable", "{}", msg.data);
    assert_eq!(msg.json()["data"]["share"]["path_exists"], false);
    std::fs::create_dir(&data).unwrap();
    let msg = sse.expect(WAIT).await;
    assert_eq!(msg.event, "share.available", "{}", msg.data);

    agent.stop().await;
    mount.unmount();
    disk.detach();
}

/// A writer that truncates the file and takes longer than the debounce to finish: the source waits
/// for it to close the file instead of reading half a configuration (which would delete shares).
#[tokio::test]
async fn a_slow_in_place_writer_is_read_once_it_closes_the_file() {
    use std::io::Write;
    let mut h = Harness::start().await;
    h.smb.set("slow", format!("  path = {}", h.dir.data("slow")));
    let text = h.smb.text();
    let (head, tail) = text.split_at(text.find("[base]").unwrap() + 3);
    let mut file = std::fs::OpenOptions::new().write(true).truncate(true).open(h.dir.path("smb.conf")).unwrap();
    file.write_all(head.as_bytes()).unwrap();
    file.flush().unwrap();
    tokio::time::sleep(DEBOUNCE * 5 / 2).await;
    file.write_all(tail.as_bytes()).unwrap();
    drop(file);
    h.expect("share.created", "smb-slow").await;
    h.marker(Save::InPlace).await;
    h.agent.stop().await;
}
