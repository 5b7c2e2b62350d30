//! The attention verdict (SPEC §9): pure rules over an object, listed in one table
//! (docs/health.md) with the public source of each.
//!
//! - [`disk`]: the disk rules (SMART, NVMe, SCSI, self-test, temperature, unreadable).
//! - [`objects`]: the mount (full, fills soon) and array (degraded, failed, rebuilding) rules.
//! - [`verdict`]: reasons + acknowledgements + the previous verdict → the new verdict, and
//!   whether it is news.
//! - [`store`]: acknowledgements on disk (`state_dir/acknowledged.json`).

pub mod disk;
pub mod objects;
pub mod store;
pub mod verdict;

pub use verdict::{acknowledge_all, assess, is_news, Acks, Found};
