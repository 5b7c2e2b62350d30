//! systemd integration for `Type=notify` units: `READY=1` once the agent is
//! up, `WATCHDOG=1` pings from the core loop, `STATUS=` lines and
//! `STOPPING=1`. Outside systemd (no `NOTIFY_SOCKET`) every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;
use tracing::{debug, warn};

use crate::model::Snapshot;

/// Sends states to the service manager; a failure is logged and survived,
/// because the agent's job does not depend on systemd hearing about it.
fn notify(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, states) {
        warn!(error = %e, "sd_notify failed");
    }
}

/// `STATUS=<text>`: shown by `systemctl status`.
pub fn status(text: &str) {
    notify(&[NotifyState::Status(text)]);
}

/// `READY=1` with a status line.
pub fn ready(text: &str) {
    debug!(status = text, "notifying systemd: ready");
    notify(&[NotifyState::Ready, NotifyState::Status(text)]);
}

/// `STOPPING=1`.
pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("shutting down")]);
}

/// The watchdog, when the unit has `WatchdogSec=`: the core loop calls
/// [`Watchdog::ping`] from its own select loop, so a stuck core stops the
/// pings and systemd restarts the agent.
#[derive(Debug, Clone, Copy)]
pub struct Watchdog {
    /// How often to ping: half the configured timeout, as sd_watchdog_enabled(3) advises.
    pub period: Duration,
}

impl Watchdog {
    /// The watchdog systemd asked for (`WATCHDOG_USEC`, `WATCHDOG_PID`), if any.
    pub fn from_env() -> Option<Self> {
        let mut usec = 0u64;
        if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
            return None;
        }
        Some(Self { period: Duration::from_micros(usec / 2).max(Duration::from_millis(10)) })
    }

    pub fn ping(&self) {
        notify(&[NotifyState::Watchdog]);
    }
}

/// The `STATUS=` line sent with `READY=1`.
pub fn ready_status(snapshot: &Snapshot, http: std::net::SocketAddr) -> String {
    format!(
        "watching {} disks, {} mounts, {} shares; HTTP on {http}",
        snapshot.disks.len(),
        snapshot.mounts.len(),
        snapshot.shares.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_period_is_half_the_timeout() {
        // Only this test touches the watchdog variables.
        std::env::set_var("WATCHDOG_USEC", "20000000");
        std::env::set_var("WATCHDOG_PID", std::process::id().to_string());
        let w = Watchdog::from_env().expect("watchdog enabled");
        assert_eq!(w.period, Duration::from_secs(10));
        std::env::set_var("WATCHDOG_PID", "1");
        assert!(Watchdog::from_env().is_none(), "a watchdog meant for another process is ignored");
        std::env::remove_var("WATCHDOG_USEC");
        std::env::remove_var("WATCHDOG_PID");
        assert!(Watchdog::from_env().is_none());
    }

    #[test]
    fn notify_reaches_the_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).expect("bind");
        // A child process gets NOTIFY_SOCKET alone, so the env var does not leak into other tests.
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "systemd::tests::child_sends_ready", "--nocapture", "--include-ignored"])
            .env("NOTIFY_SOCKET", &path)
            .output()
            .expect("run child");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut buf = [0u8; 512];
        sock.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let n = sock.recv(&mut buf).expect("a notification");
        let msg = String::from_utf8_lossy(&buf[..n]);
        assert!(msg.contains("READY=1") && msg.contains("STATUS=testing"), "{msg}");
    }

    #[test]
    #[ignore = "run by notify_reaches_the_socket in a child process"]
    fn child_sends_ready() {
        assert!(std::env::var_os("NOTIFY_SOCKET").is_some());
        ready("testing");
    }
}
