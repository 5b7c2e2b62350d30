//! A disk's sleep record (SPEC §9): spin-ups and standby share over the last 24 hours, and
//! what woke it last. Filled by the wake source (`crate::wake`), applied by the state.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How the I/O that woke a disk reached it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum WakeOp {
    Read,
    Write,
    /// Filesystem metadata (inode tables, directories: requests flagged REQ_META).
    Metadata,
    /// A command sent around the filesystem (SG_IO, NVMe admin): another tool's smartctl, hdparm.
    Passthrough,
    /// Seen only from the power state or the I/O counters (no trace).
    #[default]
    Unknown,
}

impl WakeOp {
    pub fn as_str(self) -> &'static str {
        match self {
            WakeOp::Read => "read",
            WakeOp::Write => "write",
            WakeOp::Metadata => "metadata",
            WakeOp::Passthrough => "passthrough",
            WakeOp::Unknown => "unknown",
        }
    }
}

/// One wake: when, who (process, its systemd unit or container), what and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, Default)]
pub struct Wake {
    /// RFC 3339 time of the first request (traced), or of the first sight of the disk awake.
    pub at: String,
    /// The process (thread group) that caused the I/O; for writeback, the one that dirtied the data.
    pub pid: Option<u32>,
    pub comm: Option<String>,
    /// The systemd unit or container scope of the process (from `/proc/<pid>/cgroup`).
    pub unit: Option<String>,
    /// A file on the disk the process held open (or the device node), when one was found.
    pub path: Option<String>,
    pub op: WakeOp,
    /// The whole cgroup path of the process (an addition to SPEC §9).
    #[serde(default)]
    pub cgroup: Option<String>,
    /// The kernel thread that issued the request when it did so on the named task's behalf
    /// (the flusher, a journal thread): writeback is named after the task that dirtied the data.
    #[serde(default)]
    pub issuer: Option<String>,
    /// How long the disk had been seen asleep (an addition to SPEC §9).
    #[serde(default)]
    pub slept_seconds: Option<u64>,
    /// Why the cause is unknown, when it is (no tracefs, no privilege, not traced in time).
    #[serde(default)]
    pub note: Option<String>,
}

/// A stretch of time the disk was seen asleep (RFC 3339; `to` null while it still sleeps).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SleepPeriod {
    pub from: String,
    pub to: Option<String>,
}

/// A disk's sleep over the last 24 hours (SPEC §9).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, Default)]
pub struct Sleep {
    /// Wakes (standby or sleep → I/O) in the last 24 hours.
    pub spin_ups_24h: u32,
    /// Share of the watched time in the last 24 hours the disk was asleep, 0–100.
    pub standby_percent_24h: f64,
    /// When the disk was first seen asleep, while it sleeps; null when it spins.
    pub standby_since: Option<String>,
    pub last_wake: Option<Wake>,
    /// The asleep periods of the last 24 hours, oldest first (the dashboard's band; an addition).
    #[serde(default)]
    pub periods_24h: Vec<SleepPeriod>,
    /// The wakes of the last 24 hours, oldest first (the band's markers; an addition).
    #[serde(default)]
    pub wakes_24h: Vec<Wake>,
}
