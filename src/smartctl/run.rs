//! Runs smartctl for one disk with a timeout, never more than one run per disk at a time.
//!
//! A smartctl stuck on a dead bridge may sit in the kernel (uninterruptible sleep) where even
//! SIGKILL waits; the disk's slot stays taken until the process is really gone, so a hung
//! device never collects a pile of smartctl processes. The reaper is a small task per run.
//!
//! Two ways to run it, behind the same [`Runner::run`]: as a child of the agent, or through the
//! smartctl helper's socket (`[health] smartctl_socket`, [`super::helper_client`]), where the
//! helper unit holds the capabilities SMART needs and the agent holds none of them. Timeouts,
//! the one-run-per-disk slot and the arguments are the same either way.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// Output is capped: a full `-x` of a big SAS drive is ~100 KB; anything far beyond is not smartctl.
pub(crate) const MAX_OUTPUT: u64 = 4 * 1024 * 1024;

/// How often [`Runner::run_waiting`] looks whether a taken slot was freed.
const SLOT_POLL: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot run {path}: {source}")]
    Spawn { path: PathBuf, source: std::io::Error },
    #[error("{path} did not finish within {timeout:?} (killed)")]
    Timeout { path: PathBuf, timeout: Duration },
    #[error("a previous smartctl for this disk is still running")]
    Busy,
    #[error("reading {path}'s output: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} was ended by a signal")]
    Signalled { path: PathBuf },
    #[error(
        "the smartctl helper's socket {socket} is absent or not listening ({source}): no SMART until \
         `systemctl enable --now diskwatch-smartctl.socket` (docs/health.md, \"SMART under the systemd unit\")"
    )]
    HelperAbsent { socket: PathBuf, source: std::io::Error },
    #[error("cannot connect to the smartctl helper at {socket}: {source}")]
    Connect { socket: PathBuf, source: std::io::Error },
    #[error("the smartctl helper refused the request: {reason}")]
    Refused { reason: String },
    #[error("the smartctl helper: {message}")]
    Helper { message: String },
}

/// What a finished run printed.
#[derive(Debug)]
pub struct Output {
    pub status: i32,
    pub stdout: String,
}

/// The smartctl runner: the binary, the timeout, and the disks with a run in flight.
#[derive(Clone)]
pub struct Runner {
    binary: PathBuf,
    timeout: Duration,
    in_flight: Arc<Mutex<HashSet<String>>>,
    /// The smartctl helper's socket: when set, runs go there instead of to a child.
    socket: Option<PathBuf>,
}

/// Frees the disk's slot when the process is gone (dropped by the reaper, or at once on error).
pub(super) struct Slot {
    set: Arc<Mutex<HashSet<String>>>,
    key: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut set) = self.set.lock() {
            set.remove(&self.key);
        }
    }
}

impl Runner {
    pub fn new(binary: PathBuf, timeout: Duration) -> Self {
        Runner { binary, timeout, in_flight: Arc::new(Mutex::new(HashSet::new())), socket: None }
    }

    /// Sends every run to the smartctl helper at `socket` (None or empty: runs smartctl itself).
    pub fn via_socket(mut self, socket: Option<PathBuf>) -> Self {
        self.socket = socket.filter(|s| !s.as_os_str().is_empty());
        self
    }

    pub fn binary(&self) -> &std::path::Path {
        &self.binary
    }

    /// How many disks have a smartctl process alive right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Runs `smartctl args…` for `disk` (the key of the at-most-one rule).
    pub async fn run(&self, disk: &str, args: &[String]) -> Result<Output, RunError> {
        {
            let mut set = self.in_flight.lock().map_err(|_| RunError::Busy)?;
            if !set.insert(disk.to_owned()) {
                return Err(RunError::Busy);
            }
        }
        let slot = Slot { set: self.in_flight.clone(), key: disk.to_owned() };
        match &self.socket {
            Some(socket) => super::helper_client::run(socket, args, self.timeout, slot).await,
            None => self.spawn(args, slot).await,
        }
    }

    /// As [`Runner::run`], but a disk whose slot is taken (another source's run: a health poll
    /// beside a self-test's) is waited for, up to `wait`, before giving up with
    /// [`RunError::Busy`]. Still never two runs for one disk at once.
    pub async fn run_waiting(&self, disk: &str, args: &[String], wait: Duration) -> Result<Output, RunError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match self.run(disk, args).await {
                Err(RunError::Busy) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(SLOT_POLL).await;
                }
                other => return other,
            }
        }
    }

    /// Runs smartctl as a child of the agent.
    async fn spawn(&self, args: &[String], slot: Slot) -> Result<Output, RunError> {
        let mut child = Command::new(&self.binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .env("LC_ALL", "C")
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| RunError::Spawn { path: self.binary.clone(), source })?;
        let mut stdout = child.stdout.take().ok_or_else(|| RunError::Read {
            path: self.binary.clone(),
            source: std::io::Error::other("no stdout pipe"),
        })?;
        let work = async {
            let mut buf = Vec::new();
            (&mut stdout).take(MAX_OUTPUT).read_to_end(&mut buf).await?;
            let status = child.wait().await?;
            Ok::<_, std::io::Error>((status, buf))
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok((status, buf))) => {
                drop(slot);
                let code = status.code().ok_or_else(|| RunError::Signalled { path: self.binary.clone() })?;
                Ok(Output { status: code, stdout: String::from_utf8_lossy(&buf).into_owned() })
            }
            Ok(Err(source)) => Err(RunError::Read { path: self.binary.clone(), source }),
            Err(_) => {
                let _ = child.start_kill();
                // The slot is released only once the process has really exited.
                tokio::spawn(async move {
                    let _ = child.wait().await;
                    drop(slot);
                });
                Err(RunError::Timeout { path: self.binary.clone(), timeout: self.timeout })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &std::path::Path, body: &str) -> PathBuf {
        let path = dir.join("fake-smartctl");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[tokio::test]
    async fn captures_status_and_output() {
        let dir = tempfile::tempdir().unwrap();
        let r = Runner::new(script(dir.path(), "echo \"$@\"; exit 4"), Duration::from_secs(5));
        let out = r.run("sda", &["-a".into(), "/dev/sda".into()]).await.unwrap();
        assert_eq!(out.status, 4);
        assert_eq!(out.stdout.trim(), "-a /dev/sda");
        assert_eq!(r.in_flight(), 0);
    }

    #[tokio::test]
    async fn run_waiting_waits_for_the_disks_slot_and_then_runs() {
        let dir = tempfile::tempdir().unwrap();
        let r = Runner::new(script(dir.path(), "sleep 0.3; echo \"$@\""), Duration::from_secs(5));
        let first = ["first".to_owned()];
        let (a, b, c) = tokio::join!(
            r.run("sda", &first),
            async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                r.run_waiting("sda", &["second".into()], Duration::from_secs(5)).await
            },
            async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                r.run_waiting("sdb", &["other".into()], Duration::from_millis(10)).await
            }
        );
        assert_eq!(a.unwrap().stdout.trim(), "first");
        assert_eq!(b.unwrap().stdout.trim(), "second", "waited for the first run, then ran");
        assert_eq!(c.unwrap().stdout.trim(), "other", "another disk's slot is free at once");
        let (_, late) = tokio::join!(r.run("sda", &[]), async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            r.run_waiting("sda", &[], Duration::from_millis(100)).await
        });
        assert!(matches!(late, Err(RunError::Busy)), "gives up after its wait: {late:?}");
    }

    #[tokio::test]
    async fn missing_binary() {
        let r = Runner::new("/nonexistent/smartctl".into(), Duration::from_secs(5));
        assert!(matches!(r.run("sda", &[]).await, Err(RunError::Spawn { .. })));
        assert_eq!(r.in_flight(), 0);
    }

    #[tokio::test]
    async fn hanging_binary_times_out_and_holds_its_slot_until_gone() {
        let dir = tempfile::tempdir().unwrap();
        let r = Runner::new(script(dir.path(), "exec sleep 30"), Duration::from_millis(200));
        let (a, b) = tokio::join!(r.run("sda", &[]), async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            r.run("sda", &[]).await
        });
        assert!(matches!(a, Err(RunError::Timeout { .. })), "{a:?}");
        assert!(matches!(b, Err(RunError::Busy)), "{b:?}");
        // The killed process is reaped and the slot freed.
        for _ in 0..100 {
            if r.in_flight() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(r.in_flight(), 0);
    }
}
