//! The health source (SPEC §8): SMART health, temperature and power state of every disk,
//! without ever waking a sleeping disk or keeping an idle one awake.
//!
//! - `crate::smartctl`: running smartctl and reading its answer (shared with the udev source).
//! - [`poll`]: one disk's bookkeeping and the rules deciding what it is sent.
//! - [`poller`]: a round over all disks.
//! - [`config`]: the `[health]` section.
//! - [`hwmon`]: temperatures from `drivetemp` and NVMe hwmon devices.
//! - [`source`]: the task.

pub mod config;
pub mod hwmon;
pub mod poll;
pub mod poller;
pub mod source;

pub use source::HealthSource;

use std::time::SystemTime;

// The disks smartctl may ask: `[health] include/exclude` (the filter lives in the leaf `text`).
use crate::text::KernelNameFilter;
pub use config::HealthConfig;

/// Source name in health and `source.*` events.
pub const NAME: &str = "health";

/// The current time as RFC 3339 with milliseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_filter_works() {
        let c = HealthConfig::default();
        let mut p = Vec::new();
        c.validate(&mut p);
        assert!(p.is_empty(), "{p:?}");
        let f = KernelNameFilter::new(&c.include, &c.exclude).unwrap();
        assert!(f.keeps("sda") && f.keeps("nvme0n1"));
        assert!(!f.keeps("loop0") && !f.keeps("dm-1") && !f.keeps("md127"));
        let f = KernelNameFilter::new(&["loop*".into()], &c.exclude).unwrap();
        assert!(f.keeps("loop3"));
        let bad = HealthConfig { temperature_warn: 70.0, ..HealthConfig::default() };
        let mut p = Vec::new();
        bad.validate(&mut p);
        assert_eq!(p.len(), 1);
    }
}
