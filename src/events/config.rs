//! Configuration of the event log (`[events]`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Events held in memory for resume and history.
    pub ring_size: usize,
    /// How many events a streaming client may fall behind before it is resynced.
    pub client_buffer: usize,
    /// Size of the journal file at which it is rotated.
    pub journal_max_bytes: u64,
    /// Rotated journal files kept besides the current one.
    pub journal_keep: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self { ring_size: 10_000, client_buffer: 1024, journal_max_bytes: 8 << 20, journal_keep: 2 }
    }
}

impl EventsConfig {
    /// Adds one line per invalid value to `problems`.
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.ring_size == 0 {
            problems.push("events.ring_size: must be at least 1".to_owned());
        }
        if self.client_buffer == 0 {
            problems.push("events.client_buffer: must be at least 1".to_owned());
        }
    }
}
