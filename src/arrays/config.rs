//! Configuration of the arrays source (`[arrays]`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[arrays]`: where md, btrfs and ZFS state is read from, and how often what does not notify.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArraysConfig {
    pub enabled: bool,
    /// The md status file (POLLPRI on change).
    pub mdstat: PathBuf,
    /// Root of sysfs: md attributes are read under `<sysfs>/block/md*/md/`.
    pub sysfs: PathBuf,
    /// The btrfs sysfs directory (`/sys/fs/btrfs`).
    pub btrfs: PathBuf,
    /// The mount table whose changes make btrfs filesystems appear and vanish.
    pub mountinfo: PathBuf,
    /// The zpool binary (path or name on PATH); empty: ZFS pools are not followed.
    pub zpool: String,
    /// Re-read of what does not notify: btrfs error counters, ZFS status; also a safety
    /// re-read of md.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Re-read while a rebuild, resync, check, scrub or replace runs (progress).
    #[serde(with = "humantime_serde")]
    pub progress_interval: Duration,
    /// Longest a `zpool status` run may take.
    #[serde(with = "humantime_serde")]
    pub zpool_timeout: Duration,
}

impl Default for ArraysConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            mdstat: PathBuf::from("/proc/mdstat"),
            sysfs: PathBuf::from("/sys"),
            btrfs: PathBuf::from("/sys/fs/btrfs"),
            mountinfo: PathBuf::from("/proc/self/mountinfo"),
            zpool: "zpool".into(),
            interval: Duration::from_secs(30),
            progress_interval: Duration::from_secs(1),
            zpool_timeout: Duration::from_secs(10),
        }
    }
}

impl ArraysConfig {
    /// Adds one line per invalid value to `problems`.
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.interval < Duration::from_millis(10) {
            problems.push("arrays.interval: must be at least 10ms".to_owned());
        }
        if self.progress_interval < Duration::from_millis(10) {
            problems.push("arrays.progress_interval: must be at least 10ms".to_owned());
        }
        if self.zpool_timeout.is_zero() {
            problems.push("arrays.zpool_timeout: must be longer than 0s".to_owned());
        }
    }
}
