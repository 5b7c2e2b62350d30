//! Configuration of the mount-table source (`[mounts]`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MountsConfig {
    pub enabled: bool,
    /// The mount table: PID 1's (the host's view, also from inside a sandboxing unit), or this
    /// process's own while PID 1's is hidden; any other path is read as given.
    pub mountinfo: PathBuf,
    #[serde(with = "humantime_serde")]
    pub usage_interval: Duration,
    /// A usage query taking longer marks the mount stale.
    #[serde(with = "humantime_serde")]
    pub usage_timeout: Duration,
    /// Safety re-read of the mount table when no change notification came.
    #[serde(with = "humantime_serde")]
    pub reread_interval: Duration,
    /// Usage percentages whose crossing raises `mount.usage`.
    pub usage_thresholds: Vec<f64>,
    /// A move of at least this many percentage points raises `mount.usage`.
    pub usage_step: f64,
    /// Filesystem types kept even when excluded (e.g. "squashfs").
    pub include_fs_types: Vec<String>,
    /// Filesystem types left out, besides the built-in pseudo filesystems.
    pub exclude_fs_types: Vec<String>,
    /// Mount-point globs kept even when excluded.
    pub include_paths: Vec<String>,
    /// Mount-point globs left out.
    pub exclude_paths: Vec<String>,
}

impl Default for MountsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            mountinfo: PathBuf::from(super::table::HOST_MOUNTINFO),
            usage_interval: Duration::from_secs(30),
            usage_timeout: Duration::from_secs(2),
            reread_interval: Duration::from_secs(60),
            usage_thresholds: vec![80.0, 90.0, 95.0],
            usage_step: 1.0,
            include_fs_types: Vec::new(),
            exclude_fs_types: Vec::new(),
            include_paths: Vec::new(),
            exclude_paths: Vec::new(),
        }
    }
}

impl MountsConfig {
    /// Adds one line per invalid value to `problems`.
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.usage_interval.is_zero() {
            problems.push("mounts.usage_interval: must be longer than 0s".to_owned());
        }
        if self.usage_timeout.is_zero() {
            problems.push("mounts.usage_timeout: must be longer than 0s".to_owned());
        }
        if self.reread_interval.is_zero() {
            problems.push("mounts.reread_interval: must be longer than 0s".to_owned());
        }
        if let Err(e) = super::filter::Filter::new(self) {
            problems.push(e.to_string());
        }
        if self.usage_step <= 0.0 {
            problems.push("mounts.usage_step: must be above 0".to_owned());
        }
        for t in &self.usage_thresholds {
            if !(0.0..=100.0).contains(t) {
                problems.push(format!("mounts.usage_thresholds: {t} is not a percentage (0-100)"));
            }
        }
    }
}
