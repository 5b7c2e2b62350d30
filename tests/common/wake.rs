//! The wake matrix's shared pieces (issue 24, docs/sleep.md): the recorder smartctl that
//! simulates standby, the real diskwatch binary started with a generated configuration, a loop
//! disk with a mounted ext4 and cold files, and `provoke`, which puts the disk to "sleep", makes
//! one wake and returns the cause the agent named. Used by tests/wake.rs and tests/wake_unit.rs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{sh, LoopDevice, MountGuard};

pub const BIN: &str = env!("CARGO_BIN_EXE_diskwatch");
pub const WAIT: Duration = Duration::from_secs(30);
/// The drive an awake disk replays.
pub const ACTIVE: &str = "ata-hdd-wd140edfz.json";

/// The recorder in a temp dir: `smartctl` (the script), `map`, `argv.log`.
pub struct Replay {
    pub dir: tempfile::TempDir,
}

impl Replay {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smartctl");
        std::fs::copy(fixtures.join("recorder.sh"), dir.path().join("smartctl")).unwrap();
        std::fs::write(dir.path().join("fixtures"), fixtures.to_str().unwrap()).unwrap();
        std::fs::write(dir.path().join("map"), "").unwrap();
        Replay { dir }
    }

    pub fn bin(&self) -> PathBuf {
        self.dir.path().join("smartctl")
    }

    pub fn map(&self, device: &str, mode: &str) {
        let mut f = std::fs::OpenOptions::new().append(true).open(self.dir.path().join("map")).unwrap();
        writeln!(f, "{device} {mode}").unwrap();
    }
}

/// The real binary with a generated configuration; stopped (SIGTERM) on drop.
pub struct Agent {
    pub child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Agent {
    /// Every part on (udev in kernel mode, mounts, shares, arrays, health with the recorder,
    /// activity, history, sleep), MQTT off; `extra` is appended to the configuration.
    pub async fn start(replay: &Replay, extra: &str) -> Agent {
        Self::start_watching(replay, "loop*", extra).await
    }

    /// As [`Agent::start`], with udev and health keeping only the loop devices `globs` names
    /// (a TOML list body, e.g. `"loop3", "loop3p*"`), so that other tests' devices are left alone.
    pub async fn start_watching(replay: &Replay, globs: &str, extra: &str) -> Agent {
        let globs = if globs.starts_with('"') { globs.to_owned() } else { format!("\"{globs}\"") };
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = format!(
            r#"node_id = "test"
state_dir = "{state}"
log_level = "debug"
[http]
listen = "127.0.0.1:{port}"
[mqtt]
enabled = false
[udev]
source = "kernel"
include = [{globs}]
[health]
smartctl = "{smartctl}"
include = [{globs}]
interval = "300ms"
[activity]
interval = "200ms"
{extra}
"#,
            state = dir.path().display(),
            smartctl = replay.bin().display(),
        );
        let path = dir.path().join("config.toml");
        std::fs::write(&path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
        let mut cmd = Command::new(BIN);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("DISKWATCH_")) {
            cmd.env_remove(k);
        }
        let child = cmd
            .arg("--config")
            .arg(&path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start diskwatch");
        let agent = Agent { child, port, dir };
        let deadline = Instant::now() + WAIT;
        while reqwest::get(agent.url("/api/v1/snapshot")).await.is_err() {
            assert!(Instant::now() < deadline, "agent never served HTTP:\n{}", agent.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        agent
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    pub async fn get(&self, path: &str) -> Value {
        reqwest::get(self.url(path)).await.expect("GET").json().await.expect("JSON")
    }

    /// Waits until the disk `kernel_name` satisfies `check`; returns it.
    pub async fn wait_disk(&self, kernel_name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let snap = self.get("/api/v1/snapshot").await;
            let disk = snap["disks"].as_array().unwrap().iter().find(|d| d["kernel_name"] == kernel_name).cloned();
            if let Some(d) = disk.filter(|d| check(d)) {
                return d;
            }
            assert!(Instant::now() < deadline, "{kernel_name}: never {what}: {snap:#}\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The `disk.woken` events of a disk, oldest first (the journal-backed history).
    pub async fn wakes(&self, kernel_name: &str) -> Vec<Value> {
        let page = self.get("/api/v1/events?types=disk.woken&limit=1000").await;
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["data"]["disk"]["kernel_name"] == kernel_name)
            .cloned()
            .collect()
    }

    /// Stops with SIGTERM and waits.
    pub fn stop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A child process killed (and reaped) on drop.
pub struct Kid(pub Option<Child>);

impl Drop for Kid {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn drop_caches() {
    sh("sync", &[]);
    std::fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
}

/// A copy of a system binary under a distinctive name, so its comm names the row.
pub fn named(bin_dir: &Path, program: &str, name: &str) -> PathBuf {
    let from = sh("sh", &["-c", &format!("command -v {program}")]);
    let to = bin_dir.join(name);
    std::fs::copy(from, &to).unwrap();
    to
}

/// A loop disk with an ext4 partition mounted, its files written and synced.
pub struct Fixture {
    pub disk: LoopDevice,
    pub mount: MountGuard,
    pub bin: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Self {
        let disk = LoopDevice::new(96, &[80]);
        let part = disk.partition(1);
        // No lazy init: ext4lazyinit would write to the "sleeping" disk in the background.
        sh("mkfs.ext4", &["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", &part]);
        let target = tempfile::tempdir().unwrap().keep();
        // A long journal commit interval: the writeback row is the flusher's, not jbd2's.
        let mount = MountGuard::new(&part, &target, Some("ext4"), Some("commit=60"));
        let root = &mount.target;
        sh("dd", &["if=/dev/urandom", &format!("of={}/cold", root.display()), "bs=64k", "count=16", "status=none"]);
        for f in ["synced", "dirtied"] {
            sh("dd", &["if=/dev/zero", &format!("of={}/{f}", root.display()), "bs=4k", "count=4", "status=none"]);
        }
        // Enough directories that the one stat'ed sits in another inode-table block.
        for i in 0..300 {
            std::fs::create_dir_all(root.join(format!("dirs/d{i}"))).unwrap();
        }
        sh("sync", &[]);
        Fixture { disk, mount, bin: tempfile::tempdir().unwrap() }
    }

    pub fn path(&self, name: &str) -> String {
        self.mount.target.join(name).to_str().unwrap().to_owned()
    }
}

/// Puts the disk to "sleep", waits until diskwatch has armed it, runs `act`, wakes the recorder,
/// and returns the wake diskwatch reported (None when none came within `patience`).
pub async fn provoke(
    agent: &Agent,
    replay: &Replay,
    fx: &Fixture,
    patience: Duration,
    act: impl FnOnce() -> Option<Child>,
) -> Option<Value> {
    let name = fx.disk.name();
    // Nothing left over from the row before may reach the disk while the recorder says
    // standby: a real drive would spin up and say so, the recorder cannot (and two standby
    // answers after I/O are the health source's "bridge that lies about standby").
    sh("sync", &[]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    replay.map(&fx.disk.device, "standby");
    agent
        .wait_disk(&name, "asleep and armed", |d| {
            d["power_state"] == "standby" && d["sleep"]["standby_since"].is_string()
        })
        .await;
    // Let whatever was in flight settle (nothing should be).
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = agent.wakes(&name).await.len();
    let kid = Kid(act());
    replay.map(&fx.disk.device, ACTIVE);
    let deadline = Instant::now() + patience;
    let wake = loop {
        let wakes = agent.wakes(&name).await;
        if wakes.len() > before {
            break Some(wakes[before]["data"]["last_wake"].clone());
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drop(kid);
    // As a real drive does after a wake, the recorder now answers active: wait until the agent
    // has seen it. Otherwise a standby answer that followed this row's I/O and the next row's
    // would add up to the health source's "bridge that lies about standby" rule (two standby
    // answers after I/O with no active answer between), and its power state would be unknown.
    // (Without a wake the disk did no I/O and is not asked again: it stays in standby.)
    if wake.is_some() {
        agent.wait_disk(&name, "active again after the row", |d| d["power_state"] == "active").await;
    }
    wake
}

pub fn describe(wake: &Option<Value>) -> String {
    match wake {
        None => "no wake".to_owned(),
        Some(w) => format!(
            "{} ({}) pid {} unit {} path {}",
            w["comm"].as_str().unwrap_or("?"),
            w["op"].as_str().unwrap_or("?"),
            w["pid"],
            w["unit"].as_str().unwrap_or("-"),
            w["path"].as_str().unwrap_or("-"),
        ),
    }
}
