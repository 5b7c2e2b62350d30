//! The pure rules behind the health events (SPEC §8): when a new reading is news
//! (`disk.health_changed`), and which temperature band a disk is in, with hysteresis so a
//! disk hovering at a threshold does not flap.

use crate::model::Health;

/// Degrees a temperature must fall below a threshold before the band drops back.
pub const HYSTERESIS_C: f64 = 2.0;

/// A disk's temperature band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum TempLevel {
    #[default]
    Normal,
    Warn,
    Critical,
}

impl TempLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            TempLevel::Normal => "normal",
            TempLevel::Warn => "warn",
            TempLevel::Critical => "critical",
        }
    }
}

/// The band after reading `t`, given the band before: rising takes the band at once,
/// falling only once `t` is [`HYSTERESIS_C`] below the band's threshold.
pub fn temp_level(prev: TempLevel, t: f64, warn: f64, critical: f64) -> TempLevel {
    let rising = if t >= critical {
        TempLevel::Critical
    } else if t >= warn {
        TempLevel::Warn
    } else {
        TempLevel::Normal
    };
    if rising >= prev {
        return rising;
    }
    // Falling: keep each band until clearly below its threshold.
    let keep_critical = prev == TempLevel::Critical && t > critical - HYSTERESIS_C;
    if keep_critical {
        return TempLevel::Critical;
    }
    if prev >= TempLevel::Warn && t > warn - HYSTERESIS_C {
        return TempLevel::Warn;
    }
    TempLevel::Normal
}

fn rose(prev: Option<u64>, now: Option<u64>) -> bool {
    matches!((prev, now), (Some(a), Some(b)) if b > a) || matches!((prev, now), (None, Some(b)) if b > 0)
}

/// What makes a new reading a `disk.health_changed`: the names of the fields that got worse
/// (or flipped back to passed). Empty when nothing is news. A first reading is news only when
/// it is already bad (a failing drive at start-up must be announced, not waited out).
pub fn health_news(prev: Option<&Health>, now: &Health) -> Vec<&'static str> {
    let mut news = Vec::new();
    let Some(prev) = prev else {
        if now.passed == Some(false) {
            news.push("passed");
        }
        if now.nvme_critical_warning.is_some_and(|w| w != 0) {
            news.push("nvme_critical_warning");
        }
        return news;
    };
    if prev.passed.is_some() && now.passed.is_some() && prev.passed != now.passed
        || prev.passed.is_none() && now.passed == Some(false)
    {
        news.push("passed");
    }
    if rose(prev.reallocated_sectors, now.reallocated_sectors) {
        news.push("reallocated_sectors");
    }
    if rose(prev.pending_sectors, now.pending_sectors) {
        news.push("pending_sectors");
    }
    if rose(prev.uncorrectable, now.uncorrectable) {
        news.push("uncorrectable");
    }
    if rose(prev.nvme_media_errors, now.nvme_media_errors) {
        news.push("nvme_media_errors");
    }
    let new_bits = now.nvme_critical_warning.unwrap_or(0) & !prev.nvme_critical_warning.unwrap_or(0);
    if new_bits != 0 {
        news.push("nvme_critical_warning");
    }
    news
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::HealthSource;

    fn h() -> Health {
        Health {
            passed: Some(true),
            temperature_c: Some(30.0),
            power_on_hours: Some(1),
            power_cycles: Some(1),
            reallocated_sectors: Some(0),
            pending_sectors: Some(0),
            uncorrectable: Some(0),
            nvme_percentage_used: None,
            nvme_critical_warning: None,
            nvme_media_errors: None,
            checked_at: String::new(),
            source: HealthSource::Smartctl,
            ..Default::default()
        }
    }

    #[test]
    fn bands_with_hysteresis() {
        use TempLevel::*;
        let (w, c) = (50.0, 60.0);
        let seq = [(49.0, Normal), (50.0, Warn), (49.0, Warn), (48.5, Warn), (48.0, Normal), (61.0, Critical)];
        let mut level = Normal;
        for (t, want) in seq {
            level = temp_level(level, t, w, c);
            assert_eq!(level, want, "at {t}");
        }
        assert_eq!(temp_level(Critical, 59.0, w, c), Critical);
        assert_eq!(temp_level(Critical, 58.0, w, c), Warn);
        assert_eq!(temp_level(Critical, 40.0, w, c), Normal);
        // Oscillating across the warn threshold by one degree yields a single transition.
        let mut level = Normal;
        let mut changes = 0;
        for t in [49.0, 50.0, 49.0, 50.0, 49.0, 50.0] {
            let next = temp_level(level, t, w, c);
            changes += usize::from(next != level);
            level = next;
        }
        assert_eq!(changes, 1);
    }

    #[test]
    fn news() {
        let base = h();
        assert!(health_news(Some(&base), &base).is_empty());
        assert!(health_news(None, &base).is_empty());
        let failed = Health { passed: Some(false), ..h() };
        assert_eq!(health_news(Some(&base), &failed), vec!["passed"]);
        assert_eq!(health_news(None, &failed), vec!["passed"]);
        assert_eq!(health_news(Some(&failed), &base), vec!["passed"]);
        let more = Health { reallocated_sectors: Some(3), ..failed.clone() };
        assert_eq!(health_news(Some(&failed), &more), vec!["reallocated_sectors"]);
        // Falling counts and other fields are not news.
        assert!(health_news(Some(&more), &failed).is_empty());
        let hotter = Health { temperature_c: Some(70.0), power_on_hours: Some(9), ..h() };
        assert!(health_news(Some(&base), &hotter).is_empty());
        let warn1 = Health { nvme_critical_warning: Some(0x04), ..h() };
        let warn2 = Health { nvme_critical_warning: Some(0x06), ..h() };
        assert_eq!(health_news(Some(&base), &warn1), vec!["nvme_critical_warning"]);
        assert_eq!(health_news(Some(&warn1), &warn2), vec!["nvme_critical_warning"]);
        assert!(health_news(Some(&warn2), &warn1).is_empty());
    }
}
