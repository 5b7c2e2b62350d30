//! Scheduled SMART self-tests that respect sleep (SPEC §9, docs/selftest.md): short and long
//! tests at their intervals, started only on disks already awake (or, when the owner allows
//! it, on a long test overdue by its interval plus a grace), never on two members of one
//! array at once, never on more than `max_parallel` disks; results and progress from the
//! drive's own self-test log.
//!
//! - [`config`]: the `[health.self_test]` section.
//! - [`engine`]: the rules and each disk's record, pure (the time is an argument).
//! - [`round`]: one round over the disks (logs, starts, news), shared with the bench.
//! - [`store`]: when each kind last completed, in `state_dir/selftest.json`.
//! - [`source`]: the task: smartctl through `crate::smartctl`, facts to the core, requests
//!   from the action engine.

pub mod config;
pub mod engine;
pub mod round;
pub mod source;
pub mod store;

pub use config::SelfTestConfig;
pub use source::{SelfTestHandle, SelfTestSource};

/// Source name in health and `source.*` events.
pub const NAME: &str = "self_test";
