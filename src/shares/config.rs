//! Configuration of the shares source (`[shares]`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SharesConfig {
    pub enabled: bool,
    /// Samba configuration files.
    pub samba: Vec<PathBuf>,
    /// NFS exports files and directories (`*.exports` inside).
    pub nfs: Vec<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub debounce: Duration,
    /// Share paths are checked again this often (besides on every mount change), so a
    /// removed or re-created share directory is noticed.
    #[serde(with = "humantime_serde")]
    pub recheck_interval: Duration,
}

impl Default for SharesConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            samba: vec![PathBuf::from("/etc/samba/smb.conf")],
            nfs: vec![PathBuf::from("/etc/exports"), PathBuf::from("/etc/exports.d")],
            debounce: Duration::from_millis(500),
            recheck_interval: Duration::from_secs(30),
        }
    }
}

impl SharesConfig {
    /// Adds one line per invalid value to `problems`.
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.recheck_interval.is_zero() {
            problems.push("shares.recheck_interval: must be longer than 0s".to_owned());
        }
    }
}
