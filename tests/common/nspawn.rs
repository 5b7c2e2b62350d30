//! A Debian stable booted by a real systemd as PID 1 in a `systemd-nspawn` container, for the
//! tests of the packaged unit (tests/systemd_unit.rs).
//!
//! The root filesystem is made once with `debootstrap` and reused (`DISKWATCH_NSPAWN_ROOT`,
//! default /var/lib/diskwatch-test/bookworm); each boot runs on a throw-away copy of it
//! (`--ephemeral`), so a test that fails half-way leaves nothing behind for the next run.
//! The container has its own network namespace (loopback only) and is reached with
//! `nsenter -t <its PID 1> -a`; its files through `/proc/<PID 1>/root`.
//! Also shared by the packaged-unit tests: [`build_deb`], drop-ins, `systemd-analyze security`.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// What the root filesystem holds besides Debian's minimal base: systemd as init, the
/// libraries the .deb depends on, findmnt (util-linux).
pub const PACKAGES: &str = "systemd,systemd-sysv,dbus,udev,libblkid1,libudev1,util-linux";
const SUITE: &str = "bookworm";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The cached root filesystem: made with debootstrap when missing or made with other packages.
/// Returns its path and how long making it took (None when reused).
pub fn rootfs() -> (PathBuf, Option<Duration>) {
    let dir = PathBuf::from(
        std::env::var("DISKWATCH_NSPAWN_ROOT").unwrap_or_else(|_| "/var/lib/diskwatch-test/bookworm".into()),
    );
    let parent = dir.parent().expect("the rootfs has a parent directory").to_path_buf();
    std::fs::create_dir_all(&parent).expect("create the rootfs's parent directory");
    // One maker at a time, across test processes.
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(parent.join(".nspawn-rootfs.lock"))
        .expect("open the rootfs lock");
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).expect("lock the rootfs");
    let marker = dir.join(".diskwatch-nspawn");
    let wanted = format!("{SUITE} {PACKAGES}\n");
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == wanted) && dir.join("usr/lib/systemd/systemd").exists() {
        return (dir, None);
    }
    let start = Instant::now();
    let fresh = dir.with_extension("new");
    let _ = std::fs::remove_dir_all(&fresh);
    // No mirror named: debootstrap's own default (or DISKWATCH_DEBIAN_MIRROR).
    let mirror = std::env::var("DISKWATCH_DEBIAN_MIRROR").ok().filter(|m| !m.is_empty());
    let out = Command::new("debootstrap")
        .args(["--variant=minbase", &format!("--include={PACKAGES}"), SUITE])
        .arg(&fresh)
        .args(mirror)
        .output()
        .unwrap_or_else(|e| panic!("cannot run debootstrap (scripts/setup installs it): {e}"));
    assert!(out.status.success(), "debootstrap {SUITE} failed:\n{}{}", text(&out.stdout), text(&out.stderr));
    std::fs::write(fresh.join(".diskwatch-nspawn"), &wanted).expect("write the marker");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&fresh, &dir).expect("move the new rootfs into place");
    (dir, Some(start.elapsed()))
}

/// Builds the .deb with `cargo deb` (a release build) and returns its path.
pub fn build_deb() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(&cargo)
        .args(["deb", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo deb: {e}"));
    assert!(out.status.success(), "cargo deb failed (scripts/setup installs cargo-deb):\n{}", text(&out.stderr));
    let deb = text(&out.stdout).lines().rev().find(|l| l.trim().ends_with(".deb")).map(|l| l.trim().to_owned());
    PathBuf::from(deb.unwrap_or_else(|| panic!("cargo deb printed no .deb path:\n{}", text(&out.stdout))))
}

/// A booted container; powered off (and its throw-away copy removed) on drop.
pub struct Container {
    nspawn: Child,
    /// The container's PID 1 (systemd), as the host numbers it.
    pub leader: u32,
    /// From spawning to `systemctl is-system-running` answering running (or degraded).
    pub boot: Duration,
    /// What `is-system-running` said.
    pub state: String,
    log: PathBuf,
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_owned()
}

impl Container {
    /// Boots `rootfs` (on an ephemeral copy) with `extra` nspawn arguments; waits until its
    /// systemd says the boot is over.
    pub fn boot(rootfs: &Path, extra: &[&str]) -> Self {
        let start = Instant::now();
        let log = std::env::temp_dir().join(format!("diskwatch-nspawn-{}.log", std::process::id()));
        let log_file = File::create(&log).expect("create the nspawn log");
        let nspawn = Command::new("systemd-nspawn")
            .args(["--quiet", "--keep-unit", "--register=no", "--private-network", "--console=passive", "--ephemeral"])
            .arg("--machine=diskwatch-unit-test")
            .args(extra)
            .arg("-b")
            .arg("-D")
            .arg(rootfs)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("dup the log"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run systemd-nspawn (systemd-container, scripts/setup): {e}"));
        let mut container = Container { leader: 0, boot: Duration::ZERO, state: String::new(), nspawn, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        while container.leader == 0 {
            if let Ok(Some(status)) = container.nspawn.try_wait() {
                panic!("systemd-nspawn exited with {status} before booting:\n{}", container.log_text());
            }
            assert!(Instant::now() < deadline, "no systemd in the container after 60 s:\n{}", container.log_text());
            container.leader = children(container.nspawn.id()).into_iter().find(|&p| comm(p) == "systemd").unwrap_or(0);
            std::thread::sleep(Duration::from_millis(20));
        }
        // Until the container's systemd listens on its bus, systemctl answers with errors.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let out = container.run(&["timeout", "110", "systemctl", "is-system-running", "--wait"]);
            let state = text(&out.stdout).trim().to_owned();
            if matches!(state.as_str(), "running" | "degraded") {
                container.state = state;
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the container did not finish booting: {state:?} {}\n{}",
                text(&out.stderr),
                container.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        container.boot = start.elapsed();
        container
    }

    fn log_text(&self) -> String {
        let mut s = String::new();
        let _ = File::open(&self.log).and_then(|mut f| f.read_to_string(&mut s));
        s
    }

    /// Runs a command in all of the container's namespaces (its PID 1's view).
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.leader.to_string(), "-a"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run nsenter: {e}"))
    }

    /// Runs `sh -c script` in the container; panics with its output when it fails.
    pub fn sh(&self, script: &str) -> String {
        let out = self.run(&["sh", "-c", script]);
        assert!(out.status.success(), "in the container: {script}\n{}{}", text(&out.stdout), text(&out.stderr));
        text(&out.stdout).trim().to_owned()
    }

    /// `systemctl show -p <property> --value <unit>`.
    pub fn property(&self, unit: &str, property: &str) -> String {
        self.sh(&format!("systemctl show -p {property} --value {unit}"))
    }

    /// The container's root directory as seen from the host.
    pub fn root(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.leader))
    }

    /// GET on a loopback URL inside the container's network namespace (the host's curl).
    /// None while nothing answers there.
    pub fn http_get(&self, url: &str) -> Option<serde_json::Value> {
        let out = Command::new("nsenter")
            .args(["-t", &self.leader.to_string(), "-n", "curl", "-sf", "--max-time", "5", url])
            .output()
            .unwrap_or_else(|e| panic!("cannot run nsenter curl: {e}"));
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Writes (Some) or removes (None) the drop-in `/etc/systemd/system/<unit>.d/<name>.conf`
    /// with `[Service]` and `body`, as `systemctl edit` would, then `systemctl daemon-reload`.
    pub fn set_dropin(&self, unit: &str, name: &str, body: Option<&str>) {
        let dir = self.root().join(format!("etc/systemd/system/{unit}.d"));
        let path = dir.join(format!("{name}.conf"));
        match body {
            Some(body) => {
                std::fs::create_dir_all(&dir).expect("create the drop-in directory");
                std::fs::write(&path, format!("[Service]\n{body}\n")).expect("write the drop-in");
            }
            None => {
                let _ = std::fs::remove_file(&path);
                let _ = std::fs::remove_dir(&dir);
            }
        }
        self.sh("systemctl daemon-reload");
    }

    /// `systemd-analyze security <unit>` as the container's systemd (PID 1) rates the loaded
    /// unit: the overall exposure and the whole report.
    pub fn security(&self, unit: &str) -> (f64, String) {
        let out = self.run(&["systemd-analyze", "security", "--no-pager", unit]);
        let report = text(&out.stdout);
        let line = report.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_else(|| {
            panic!("no exposure line from systemd-analyze security:\n{report}{}", text(&out.stderr))
        });
        let score = line
            .split(':')
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("cannot read the score from {line:?}"));
        (score, report)
    }

    /// Waits (polling every 200 ms) until `check` returns Some.
    pub fn wait_for<T>(&self, timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.leader != 0 {
            let _ = self.run(&["systemctl", "poweroff", "--no-block"]);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                let _ = std::fs::remove_file(&self.log);
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // The nspawn process is ours: end it if the container would not power off.
        eprintln!("container did not power off within 60 s; killing systemd-nspawn");
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}
