//! Configuration of the block-device source (`[udev]`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UdevMode {
    Auto,
    Udev,
    Kernel,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UdevConfig {
    pub enabled: bool,
    pub source: UdevMode,
    /// Kernel-name globs left out.
    pub exclude: Vec<String>,
    /// Kernel-name globs kept even when excluded.
    pub include: Vec<String>,
    /// Netlink socket receive buffer in bytes.
    pub receive_buffer: usize,
    /// Change events for one device arriving within this window are coalesced.
    #[serde(with = "humantime_serde")]
    pub coalesce: Duration,
    /// Root of sysfs (a test can point it elsewhere).
    pub sysfs: PathBuf,
}

impl Default for UdevConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            source: UdevMode::Auto,
            exclude: vec!["ram*".into(), "zram*".into(), "loop*".into()],
            include: Vec::new(),
            receive_buffer: 16 << 20,
            coalesce: Duration::from_millis(50),
            sysfs: PathBuf::from("/sys"),
        }
    }
}

impl UdevConfig {
    /// Adds one line per invalid value to `problems`.
    pub fn validate(&self, problems: &mut Vec<String>) {
        for (key, globs) in [("udev.include", &self.include), ("udev.exclude", &self.exclude)] {
            for g in globs {
                if let Err(e) = globset::Glob::new(g) {
                    problems.push(format!("{key}: invalid glob {g:?}: {e}"));
                }
            }
        }
    }
}
