//! Shared test support: privilege checks, the machine-wide test lock, guards
//! for loop devices and mounts, an in-process agent and an SSE client.
//!
//! Guards undo what they set up in `Drop`, so a failing test still detaches
//! its loop devices and unmounts its filesystems.
#![allow(dead_code)]

pub mod addon;
pub mod dashboard;
pub mod facts;
pub mod fuse;
pub mod ha;
pub mod mosquitto;
pub mod nspawn;
pub mod shares;
pub mod sse;
pub mod udevd;
pub mod wake;

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use diskwatch::config::Config;
use diskwatch::service::{start, RunOptions, Running};
use diskwatch::sources::{FactSender, Source};
use tokio_util::sync::CancellationToken;

/// True when running in CI, where a privileged test that cannot run must fail.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Whether a privileged test may run. Outside CI a non-root run skips (returns
/// false, with a note); in CI it panics, because a skipped check is not a pass.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    assert!(!in_ci(), "{test} needs root, and CI requires every privileged test to run");
    eprintln!("skipping {test}: needs root");
    false
}

/// Holds the machine-wide lock that serialises tests touching loop devices,
/// mounts, udevd or the block-device event stream, across test processes.
pub struct MachineLock {
    _lock: nix::fcntl::Flock<File>,
}

pub fn machine_lock() -> MachineLock {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/tmp/diskwatch-tests.lock")
        .expect("open the test lock file");
    let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).expect("lock the test lock file");
    MachineLock { _lock: lock }
}

/// Runs a command, panicking with its stderr when it fails; returns stdout.
pub fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(out.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `major:minor` of a device node, as mountinfo and sysfs write it.
pub fn dev_of(node: &str) -> String {
    use std::os::unix::fs::MetadataExt;
    let rdev = std::fs::metadata(node).unwrap_or_else(|e| panic!("stat {node}: {e}")).rdev();
    format!("{}:{}", nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev))
}

/// A loop device over a sparse image file, detached on drop.
pub struct LoopDevice {
    pub device: String,
    pub image: PathBuf,
    _dir: tempfile::TempDir,
}

impl LoopDevice {
    /// An image of `size_mib` MiB, with a GPT of the given partition sizes in
    /// MiB (none: a bare device), attached and its partitions added with partx.
    pub fn new(size_mib: u64, partitions_mib: &[u64]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = dir.path().join("disk.img");
        let file = File::create(&image).expect("create image");
        file.set_len(size_mib << 20).expect("size image");
        drop(file);
        if !partitions_mib.is_empty() {
            let mut script = String::from("label: gpt\n");
            for size in partitions_mib {
                script.push_str(&format!("size={}MiB\n", size));
            }
            let mut child = Command::new("sfdisk")
                .arg("--quiet")
                .arg(&image)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("run sfdisk (apt package fdisk)");
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(script.as_bytes()).expect("write sfdisk script");
            assert!(child.wait().expect("sfdisk").success(), "sfdisk failed");
        }
        let device = sh("losetup", &["-f", "--show", "-P", image.to_str().expect("utf-8 path")]);
        let this = Self { device, image, _dir: dir };
        if !partitions_mib.is_empty() {
            // This kernel has no partition-table parsers: add the partitions by hand.
            let _ = Command::new("partx").args(["-a", &this.device]).output();
        }
        this
    }

    /// Kernel name, e.g. `loop3`.
    pub fn name(&self) -> String {
        self.device.trim_start_matches("/dev/").to_owned()
    }

    /// Device node of partition `n`, e.g. `/dev/loop3p1`.
    pub fn partition(&self, n: u32) -> String {
        format!("{}p{n}", self.device)
    }

    /// `major:minor` of the device node.
    pub fn dev(&self) -> String {
        dev_of(&self.device)
    }

    /// Detaches now (the drop then has nothing left to do).
    pub fn detach(&mut self) {
        if !self.device.is_empty() {
            let _ = Command::new("losetup").args(["-d", &self.device]).output();
            self.device.clear();
        }
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        self.detach();
    }
}

/// A mount made by a test, lazily unmounted on drop.
pub struct MountGuard {
    pub target: PathBuf,
}

impl MountGuard {
    /// `mount [-t fstype] [-o options] source target`.
    pub fn new(source: &str, target: &Path, fstype: Option<&str>, options: Option<&str>) -> Self {
        std::fs::create_dir_all(target).expect("create mount point");
        let mut args: Vec<&str> = Vec::new();
        if let Some(t) = fstype {
            args.extend(["-t", t]);
        }
        if let Some(o) = options {
            args.extend(["-o", o]);
        }
        let target_str = target.to_str().expect("utf-8 path");
        args.extend([source, target_str]);
        sh("mount", &args);
        Self { target: target.to_path_buf() }
    }

    pub fn unmount(&mut self) {
        if !self.target.as_os_str().is_empty() {
            let _ = Command::new("umount").arg("-l").arg(&self.target).output();
            self.target = PathBuf::new();
        }
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        self.unmount();
    }
}

/// A configuration for tests: temporary state dir, HTTP on port 0, no MQTT,
/// and no built-in sources unless the test turns them on.
pub fn test_config(state_dir: &Path) -> Config {
    let mut config = Config { state_dir: state_dir.to_path_buf(), node_id: "test".into(), ..Config::default() };
    config.http.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.mqtt.enabled = false;
    config.udev.enabled = false;
    config.mounts.enabled = false;
    config.shares.enabled = false;
    config.health.enabled = false;
    config.activity.enabled = false;
    config.history.enabled = false;
    config.arrays.enabled = false;
    config
}

/// An agent running in this process; cancelled on drop.
pub struct TestAgent {
    pub running: Option<Running>,
    pub token: CancellationToken,
    pub addr: SocketAddr,
    pub facts: FactSender,
    pub state_dir: tempfile::TempDir,
}

impl TestAgent {
    /// Starts an agent with `configure` applied to [`test_config`] and the given extra sources.
    pub async fn start(configure: impl FnOnce(&mut Config), sources: Vec<Box<dyn Source>>) -> Self {
        let state_dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(state_dir.path());
        configure(&mut config);
        let token = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let running =
            start(config, token.clone(), RunOptions { listener: Some(listener), sources, ..Default::default() })
                .await
                .expect("agent starts");
        // As under systemd: the agent is used once every source's start-up facts are applied.
        tokio::time::timeout(Duration::from_secs(30), running.ready()).await.expect("agent ready within 30 s");
        let addr = running.local_addr;
        let facts = running.facts.clone();
        Self { running: Some(running), token, addr, facts, state_dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// GET a JSON document.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        reqwest::get(self.url(path)).await.expect("GET").json().await.expect("JSON body")
    }

    /// Polls the snapshot until `check` holds, or panics after `timeout` with the last snapshot.
    pub async fn wait_snapshot(
        &self,
        timeout: Duration,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let snap = self.get_json("/api/v1/snapshot").await;
            if check(&snap) {
                return snap;
            }
            assert!(tokio::time::Instant::now() < deadline, "snapshot never matched: {snap:#}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Cancels and waits for a clean shutdown.
    pub async fn stop(mut self) {
        self.token.cancel();
        if let Some(running) = self.running.take() {
            running.wait().await;
        }
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.token.cancel();
    }
}
