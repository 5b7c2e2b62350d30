//! The health source (SPEC §8): SMART health, temperature and power state of every disk,
//! without ever waking a sleeping disk or keeping an idle one awake.
//!
//! - [`smart`]: what `smartctl --json` printed, as a typed answer (ATA, SAT, SCSI/SAS, NVMe).
//! - [`runner`]: smartctl with a timeout, at most one run per disk.
//! - [`poll`]: one disk's bookkeeping and the rules deciding what it is sent.
//! - [`poller`]: a round over all disks.
//! - [`hwmon`]: temperatures from `drivetemp` and NVMe hwmon devices.
//! - [`rules`]: when a reading is news, and temperature bands with hysteresis.

pub mod hwmon;
pub mod poll;
pub mod poller;
pub mod rules;
pub mod runner;
pub mod smart;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// Source name in health and `source.*` events.
pub const NAME: &str = "health";

/// `[health]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    pub enabled: bool,
    /// smartctl binary: a path or a name on PATH.
    pub smartctl: PathBuf,
    /// SMART poll per active disk (an idle disk only gets a power check).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// A smartctl run taking longer is killed.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Kernel-name globs; include wins over exclude.
    pub exclude: Vec<String>,
    pub include: Vec<String>,
    /// °C: `disk.temperature` when crossed (in either direction, 2 °C hysteresis going down).
    pub temperature_warn: f64,
    pub temperature_critical: f64,
    /// smartctl `-d` type for every disk ("" = smartctl's autodetection).
    pub device_type: String,
    /// Root of sysfs (`/sys`): runtime PM, activity counters and hwmon are read below it.
    pub sysfs: PathBuf,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            enabled: true,
            smartctl: PathBuf::from("smartctl"),
            interval: Duration::from_secs(30 * 60),
            timeout: Duration::from_secs(60),
            exclude: ["loop*", "ram*", "zram*", "dm-*", "md*", "sr*", "nbd*"].map(String::from).to_vec(),
            include: Vec::new(),
            temperature_warn: 50.0,
            temperature_critical: 60.0,
            device_type: String::new(),
            sysfs: PathBuf::from("/sys"),
        }
    }
}

impl HealthConfig {
    /// Configuration problems, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.interval.is_zero() {
            p.push("health.interval: must be longer than 0s".to_owned());
        }
        if self.timeout.is_zero() {
            p.push("health.timeout: must be longer than 0s".to_owned());
        }
        if self.temperature_warn >= self.temperature_critical {
            p.push(format!(
                "health.temperature_warn: {} must be below health.temperature_critical ({})",
                self.temperature_warn, self.temperature_critical
            ));
        }
        if self.smartctl.as_os_str().is_empty() {
            p.push("health.smartctl: must name a binary".to_owned());
        }
        if let Err(e) = KernelNameFilter::new(&self.include, &self.exclude) {
            p.push(format!("health.include/exclude: {e}"));
        }
        p
    }
}

/// Kernel-name include/exclude globs (include wins).
#[derive(Debug, Clone)]
pub struct KernelNameFilter {
    include: globset::GlobSet,
    exclude: globset::GlobSet,
}

impl KernelNameFilter {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, globset::Error> {
        let build = |globs: &[String]| -> Result<globset::GlobSet, globset::Error> {
            let mut b = globset::GlobSetBuilder::new();
            for g in globs {
                b.add(globset::Glob::new(g)?);
            }
            b.build()
        };
        Ok(KernelNameFilter { include: build(include)?, exclude: build(exclude)? })
    }

    pub fn keeps(&self, kernel_name: &str) -> bool {
        self.include.is_match(kernel_name) || !self.exclude.is_match(kernel_name)
    }
}

/// The current time as RFC 3339 with seconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_filter_works() {
        let c = HealthConfig::default();
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        let f = KernelNameFilter::new(&c.include, &c.exclude).unwrap();
        assert!(f.keeps("sda") && f.keeps("nvme0n1"));
        assert!(!f.keeps("loop0") && !f.keeps("dm-1") && !f.keeps("md127"));
        let f = KernelNameFilter::new(&["loop*".into()], &c.exclude).unwrap();
        assert!(f.keeps("loop3"));
        let bad = HealthConfig { temperature_warn: 70.0, ..HealthConfig::default() };
        assert_eq!(bad.problems().len(), 1);
    }
}
