//! `[sleep]` (SPEC §9).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[sleep]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SleepConfig {
    /// Spin statistics; attribution where the kernel and the privileges allow it.
    pub enabled: bool,
    /// Where tracefs is (mounted there when it is not yet); empty: no tracing, causes `unknown`.
    pub tracefs: PathBuf,
    /// Root of procfs (`/proc`).
    pub proc: PathBuf,
}

impl Default for SleepConfig {
    fn default() -> Self {
        SleepConfig { enabled: true, tracefs: PathBuf::from("/sys/kernel/tracing"), proc: PathBuf::from("/proc") }
    }
}

impl SleepConfig {
    /// Adds a line per problem, each naming its key.
    pub fn validate(&self, p: &mut Vec<String>) {
        if !self.proc.is_absolute() {
            p.push("sleep.proc: must be an absolute path".to_owned());
        }
        if !self.tracefs.as_os_str().is_empty() && !self.tracefs.is_absolute() {
            p.push("sleep.tracefs: must be an absolute path or empty".to_owned());
        }
    }
}
