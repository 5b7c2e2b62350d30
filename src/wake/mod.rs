//! Why won't my disks sleep? (SPEC §9, issue 24): spin-ups and standby share per disk, and the
//! process that woke each one.
//!
//! - [`ledger`]: one disk's asleep periods and wakes over 24 hours (pure).
//! - [`trace`]: tracefs — the one module that touches it: a private instance whose block and
//!   writeback tracepoints are enabled only while some disk is asleep, filtered to those disks.
//! - [`attribute`]: a traced request → who and what (pure).
//! - [`process`]: `/proc/<pid>`: thread group, kernel thread, cgroup → unit, an open file.
//! - [`config`]: the sleep section of the configuration.
//! - [`source`]: the task: follows the power state, arms and disarms, reports [`crate::state::Fact::DiskSleep`].

pub mod attribute;
pub mod config;
pub mod ledger;
pub mod process;
pub mod source;
pub mod trace;

pub use config::SleepConfig;
pub use source::WakeSource;

/// Source name in health and `source.*` events.
pub const NAME: &str = "sleep";

/// RFC 3339 with milliseconds.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}
