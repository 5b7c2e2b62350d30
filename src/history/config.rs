//! `[history]` (SPEC §8).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[history]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    pub enabled: bool,
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    #[serde(with = "humantime_serde")]
    pub resolution: Duration,
    /// How often the store is written to state_dir (and at shutdown).
    #[serde(with = "humantime_serde")]
    pub save_interval: Duration,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            enabled: true,
            retention: Duration::from_secs(7 * 24 * 3600),
            resolution: Duration::from_secs(300),
            save_interval: Duration::from_secs(15 * 60),
        }
    }
}

impl HistoryConfig {
    /// Adds a line per problem, each naming its key.
    pub fn validate(&self, p: &mut Vec<String>) {
        if self.resolution < Duration::from_secs(1) {
            p.push("history.resolution: must be at least 1s".to_owned());
        }
        if self.retention < self.resolution {
            p.push("history.retention: must be at least history.resolution".to_owned());
        } else if self.slots() > 1_000_000 {
            p.push(format!("history.retention: {} slots per series is too many (at most 1000000)", self.slots()));
        }
        if self.save_interval.is_zero() {
            p.push("history.save_interval: must be longer than 0s".to_owned());
        }
    }

    /// Slots per series.
    pub fn slots(&self) -> usize {
        (self.retention.as_secs() / self.resolution.as_secs().max(1)).max(1) as usize
    }

    /// How often the recorder samples the state (a few samples per bucket, averaged).
    pub fn sample_every(&self) -> Duration {
        (self.resolution / 5).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }
}
