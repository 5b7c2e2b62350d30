//! `[forecast]` (SPEC §9): how much usage history time-to-full forecasts are made from.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[forecast]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForecastConfig {
    pub enabled: bool,
    /// Shortest usage history (since the last cleanup) a forecast is made from.
    #[serde(with = "humantime_serde")]
    pub min_basis: Duration,
    /// One averaged usage point per this much time.
    #[serde(with = "humantime_serde")]
    pub resolution: Duration,
    /// How much history is kept and fitted over at most.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        ForecastConfig {
            enabled: true,
            min_basis: Duration::from_secs(6 * 3600),
            resolution: Duration::from_secs(600),
            window: Duration::from_secs(14 * 86_400),
        }
    }
}

impl ForecastConfig {
    /// Adds a line per problem, each naming its key.
    pub fn validate(&self, p: &mut Vec<String>) {
        if self.resolution < Duration::from_secs(1) {
            p.push("forecast.resolution: must be at least 1s".to_owned());
        }
        if self.window < self.resolution * 3 {
            p.push("forecast.window: must hold at least 3 points of forecast.resolution".to_owned());
        } else if self.window.as_secs() / self.resolution.as_secs().max(1) > 100_000 {
            p.push("forecast.window: more than 100000 points of forecast.resolution".to_owned());
        }
        if self.min_basis > self.window {
            p.push("forecast.min_basis: must not be longer than forecast.window".to_owned());
        }
    }

    /// How often the mounts' usage is sampled (a few samples per point, averaged).
    pub fn sample_every(&self) -> Duration {
        (self.resolution / 5).clamp(Duration::from_millis(200), Duration::from_secs(60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_valid_and_bad_values_named() {
        let mut p = Vec::new();
        ForecastConfig::default().validate(&mut p);
        assert!(p.is_empty(), "{p:?}");
        let bad = ForecastConfig {
            resolution: Duration::from_millis(10),
            window: Duration::from_secs(1),
            min_basis: Duration::from_secs(3600),
            ..ForecastConfig::default()
        };
        bad.validate(&mut p);
        assert!(p.iter().any(|l| l.starts_with("forecast.resolution")));
        assert!(p.iter().any(|l| l.starts_with("forecast.min_basis")));
    }
}
