//! `[activity]` (SPEC §8).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[activity]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActivityConfig {
    pub enabled: bool,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Root of sysfs (`/sys`).
    pub sysfs: PathBuf,
}

impl Default for ActivityConfig {
    fn default() -> Self {
        ActivityConfig { enabled: true, interval: Duration::from_secs(10), sysfs: PathBuf::from("/sys") }
    }
}

impl ActivityConfig {
    /// Adds a line per problem, each naming its key.
    pub fn validate(&self, p: &mut Vec<String>) {
        if self.interval < Duration::from_millis(100) {
            p.push("activity.interval: must be at least 100ms".to_owned());
        }
    }
}
