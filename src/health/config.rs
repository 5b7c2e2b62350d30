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
    /// The smartctl helper's socket (`diskwatch-smartctl.socket`): when set, smartctl is run by
    /// the helper, which holds the capabilities SMART needs, and `smartctl` above is not used
    /// by the agent. Empty: the agent runs smartctl itself. The packaged unit sets it.
    pub smartctl_socket: PathBuf,
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
            smartctl_socket: PathBuf::new(),
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
    /// The smartctl the health and self-test sources share: one binary or helper socket, one
    /// detected version, and one at-most-one-run-per-disk set across both (two smartctl runs at
    /// once can hang a USB bridge).
    pub fn smartctl(&self) -> crate::smartctl::Smartctl {
        let device_type = Some(self.device_type.clone()).filter(|t| !t.is_empty());
        crate::smartctl::Smartctl::new(self.smartctl.clone(), self.timeout, device_type)
            .via_socket(Some(self.smartctl_socket.clone()))
    }

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
        if !self.smartctl_socket.as_os_str().is_empty() && !self.smartctl_socket.is_absolute() {
            p.push(format!("health.smartctl_socket: {:?} must be an absolute path", self.smartctl_socket));
        }
        if let Err(e) = KernelNameFilter::new(&self.include, &self.exclude) {
            p.push(format!("health.include/exclude: {e}"));
        }
        self.self_test.validate(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smartctl_socket_empty_or_absolute() {
        let mut c = HealthConfig::default();
        let problems = |c: &HealthConfig| {
            let mut p = Vec::new();
            c.validate(&mut p);
            p
        };
        assert!(problems(&c).is_empty(), "{:?}", problems(&c));
        c.smartctl_socket = "/run/diskwatch/smartctl.sock".into();
        assert!(problems(&c).is_empty());
        c.smartctl_socket = "run/smartctl.sock".into();
        assert!(problems(&c).iter().any(|p| p.starts_with("health.smartctl_socket:")), "{:?}", problems(&c));
    }
}
