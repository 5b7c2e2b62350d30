//! `[health.self_test]` (SPEC §9, docs/selftest.md).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::selftest::SelfTestKind;

/// `[health.self_test]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelfTestConfig {
    /// Scheduled tests at all (an owner's request through the action still works when off).
    pub enabled: bool,
    /// Interval of short tests; 0 turns them off.
    #[serde(with = "humantime_serde")]
    pub short: Duration,
    /// Interval of long (extended) tests; 0 turns them off.
    #[serde(with = "humantime_serde")]
    pub long: Duration,
    /// Disks testing at once, all arrays together (never two members of one array anyway).
    pub max_parallel: usize,
    /// Let a long test overdue by `long` + `grace` spin a sleeping disk up.
    pub wake_for_long: bool,
    /// How long past due a test may wait for the disk to be awake before `wake_for_long` applies.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
    /// How often a running test's progress is read (the disk is busy testing anyway).
    #[serde(with = "humantime_serde")]
    pub poll: Duration,
    /// How long after an aborted or interrupted test the next try waits at least.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
}

const DAY: u64 = 24 * 3600;

impl Default for SelfTestConfig {
    fn default() -> Self {
        SelfTestConfig {
            enabled: true,
            short: Duration::from_secs(7 * DAY),
            long: Duration::from_secs(30 * DAY),
            max_parallel: 2,
            wake_for_long: false,
            grace: Duration::from_secs(2 * DAY),
            poll: Duration::from_secs(5 * 60),
            retry_after: Duration::from_secs(3600),
        }
    }
}

impl SelfTestConfig {
    /// The interval of a kind; `None` when it is off.
    pub fn interval(&self, kind: SelfTestKind) -> Option<Duration> {
        let i = match kind {
            SelfTestKind::Short => self.short,
            SelfTestKind::Long => self.long,
        };
        (self.enabled && !i.is_zero()).then_some(i)
    }

    /// Adds a line per problem, each naming its key.
    pub fn validate(&self, p: &mut Vec<String>) {
        const MIN: Duration = Duration::from_secs(3600);
        for (key, v) in [("short", self.short), ("long", self.long)] {
            if !v.is_zero() && v < MIN {
                p.push(format!(
                    "health.self_test.{key}: {} is shorter than 1h (0 turns this kind off)",
                    humantime::format_duration(v)
                ));
            }
        }
        if !self.short.is_zero() && !self.long.is_zero() && self.long < self.short {
            p.push(format!(
                "health.self_test.long: {} must not be shorter than health.self_test.short ({})",
                humantime::format_duration(self.long),
                humantime::format_duration(self.short)
            ));
        }
        if self.max_parallel == 0 {
            p.push("health.self_test.max_parallel: must be at least 1".to_owned());
        }
        if self.poll.is_zero() {
            p.push("health.self_test.poll: must be longer than 0s".to_owned());
        }
        if self.wake_for_long && self.long.is_zero() {
            p.push("health.self_test.wake_for_long: long tests are off (health.self_test.long = 0)".to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::providers::{Format, Serialized, Toml};

    #[allow(clippy::result_large_err)] // figment::Error is what extract returns
    fn load(toml: &str) -> Result<SelfTestConfig, figment::Error> {
        figment::Figment::from(Serialized::defaults(SelfTestConfig::default())).merge(Toml::string(toml)).extract()
    }

    #[test]
    fn defaults_and_problems() {
        let c = load("").unwrap();
        let mut p = Vec::new();
        c.validate(&mut p);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(c.interval(SelfTestKind::Short), Some(Duration::from_secs(7 * DAY)));
        let c = load("short = \"0\"\nlong = \"10min\"\nmax_parallel = 0\nwake_for_long = true").unwrap();
        assert_eq!(c.interval(SelfTestKind::Short), None);
        let mut p = Vec::new();
        c.validate(&mut p);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("health.self_test.long: 10m"));
        assert!(p[1].starts_with("health.self_test.max_parallel"));
        let c = load("short = \"30d\"\nlong = \"7d\"").unwrap();
        let mut p = Vec::new();
        c.validate(&mut p);
        assert!(p[0].contains("must not be shorter"), "{p:?}");
        assert!(load("hourly = true").unwrap_err().to_string().contains("hourly"));
        let off = load("enabled = false").unwrap();
        assert_eq!(off.interval(SelfTestKind::Long), None);
    }
}
