//! Configuration of the event log (`[events]`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::journal::JournalSync;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Events held in memory for resume and history (older ones are read from the journal).
    pub ring_size: usize,
    /// Bytes the events held in memory may take, whatever their count.
    pub ring_max_bytes: usize,
    /// How many events a streaming client may fall behind before it is resynced.
    pub client_buffer: usize,
    /// Size of the journal file at which it is rotated.
    pub journal_max_bytes: u64,
    /// Rotated journal files kept besides the current one.
    pub journal_keep: usize,
    /// When journal writes reach stable storage: `"batch"` (before clients see
    /// the events) or an interval such as `"1s"` (the most history a power loss takes).
    pub journal_sync: JournalSync,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            ring_size: 10_000,
            ring_max_bytes: 512 << 10,
            client_buffer: 1024,
            journal_max_bytes: 16 << 20,
            journal_keep: 3,
            journal_sync: JournalSync::Interval(Duration::from_secs(1)),
        }
    }
}

impl EventsConfig {
    /// Adds one line per invalid value to `problems`.
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.ring_size == 0 {
            problems.push("events.ring_size: must be at least 1".to_owned());
        }
        if self.ring_max_bytes < 64 * 1024 {
            problems.push("events.ring_max_bytes: must be at least 65536".to_owned());
        }
        if self.client_buffer == 0 {
            problems.push("events.client_buffer: must be at least 1".to_owned());
        }
    }
}
