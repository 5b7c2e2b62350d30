//! The attention verdict (SPEC §9): pure rules over an object, listed in one table
//! (docs/health.md) with the public source of each.
//!
//! - [`disk`]: the disk rules (SMART, NVMe, SCSI, self-test, temperature, unreadable).
//! - [`objects`]: the mount (full, fills soon) and array (degraded, failed, rebuilding) rules.
//! - [`verdict`]: reasons + acknowledgements + the previous verdict → the new verdict, and
//!   whether it is news.
//! - [`store`]: acknowledgements on disk (`state_dir/acknowledged.json`).
//! - [`baselines`]: the counts the rising rules compare with, on disk
//!   (`state_dir/attention-baselines.json`).

pub mod baselines;
pub mod disk;
pub mod objects;
pub mod store;
pub mod verdict;

pub use verdict::{acknowledge_all, assess, is_news, Acks, Found};

/// The objects whose attention the owner can acknowledge (SPEC §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acknowledgeable {
    Disk,
    Mount,
    Array,
}

impl Acknowledgeable {
    pub const ALL: [Acknowledgeable; 3] = [Acknowledgeable::Disk, Acknowledgeable::Mount, Acknowledgeable::Array];

    /// The kind as in subjects and MQTT topics (`disk`, `mount`, `array`).
    pub fn as_str(self) -> &'static str {
        match self {
            Acknowledgeable::Disk => "disk",
            Acknowledgeable::Mount => "mount",
            Acknowledgeable::Array => "array",
        }
    }

    pub fn from_wire(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    /// The subject acknowledgements are kept under (`mount/<id>`).
    pub fn subject(self, id: &str) -> String {
        format!("{}/{id}", self.as_str())
    }
}
