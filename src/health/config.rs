//! `[health]` (SPEC §8).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::KernelNameFilter;

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
    /// `[health.self_test]`: scheduled SMART self-tests (docs/selftest.md).
    pub self_test: crate::selftest::SelfTestConfig,
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
            self_test: crate::selftest::SelfTestConfig::default(),
        }
    }
}

impl HealthConfig {
    /// Adds a line per problem, each naming its key.
    pub fn validate(&self, p: &mut Vec<String>) {
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
        self.self_test.validate(p);
    }
}
