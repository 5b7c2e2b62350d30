//! The mount and array rules (SPEC §9; the table is in docs/forecast.md and docs/arrays.md):
//! pure functions over the object. A reason's `value` is what makes it news again: the
//! threshold crossed for a mount (not the estimate, which moves every point), the number of
//! members lost for an array (a second loss is news even when acknowledged).

use serde_json::json;

use super::Found;
use crate::model::array::{Array, ArrayState, MemberRole};
use crate::model::attention::Severity;
use crate::model::{Forecast, Mount};

/// The attention a forecast calls for (docs/forecast.md): failing at 98 % used or when even
/// the slower end of the interval fills within a day, watch when it fills within a week, and
/// only when that is at most [`EXTRAPOLATION`] times the basis ahead. The slower end, not the
/// central estimate: a burst in a short basis makes a steep central slope with a wide
/// interval, and no alert is worth a false one.
pub fn severity(forecast: Option<&Forecast>, percent_used: f64) -> Option<Severity> {
    if percent_used >= FULL_PERCENT {
        return Some(Severity::Failing);
    }
    let f = forecast?;
    let slow = f.high_seconds?;
    // An alert never rests on extrapolating more than EXTRAPOLATION times the history it has:
    // one big download in the first hours is no week-long trend.
    if slow > f.basis_seconds.saturating_mul(EXTRAPOLATION) {
        return None;
    }
    if slow < DAY_SECONDS {
        Some(Severity::Failing)
    } else if slow < WEEK_SECONDS {
        Some(Severity::Watch)
    } else {
        None
    }
}

/// How many times its basis an alerting forecast may reach ahead at most.
pub const EXTRAPOLATION: u64 = 4;

/// The code of the mount reason "fills within a week / a day".
pub const FILLS_SOON: &str = "fills_soon";

/// Used % at which a mount needs attention whatever its trend.
pub const FULL_PERCENT: f64 = 98.0;
const DAY_SECONDS: u64 = 86_400;
const WEEK_SECONDS: u64 = 7 * DAY_SECONDS;

/// A mount's reasons: 98 % used, or filling within a week (watch) or a day (failing).
pub fn mount_reasons(m: &Mount) -> Vec<Found> {
    let Some(usage) = m.usage.as_ref() else { return Vec::new() };
    let mut out = Vec::new();
    if usage.percent >= FULL_PERCENT {
        out.push(Found {
            code: "mount_full",
            severity: Severity::Failing,
            text: format!("{} is {:.1} % full", m.mount_point, usage.percent),
            value: json!(FULL_PERCENT),
        });
        return out;
    }
    let f = m.forecast.as_ref();
    if let Some(sev) = severity(f, usage.percent) {
        let (limit, within) = match sev {
            Severity::Failing => ("24h", "a day"),
            Severity::Watch => ("7d", "a week"),
        };
        let days = f.and_then(|f| f.full_in_seconds).map_or(0.0, |s| s as f64 / 86_400.0);
        out.push(Found {
            code: FILLS_SOON,
            severity: sev,
            text: format!("{} fills within {within} at its trend (in about {days:.1} days)", m.mount_point),
            value: json!(limit),
        });
    }
    out
}

/// An array's reasons: failed (failing), degraded (failing: no redundancy left to lose, act
/// now), recovering (watch: a rebuild runs, still without redundancy).
pub fn array_reasons(a: &Array) -> Vec<Found> {
    let lost = a.degraded_count;
    let (code, severity, what) = match a.state {
        ArrayState::Failed => {
            ("array_failed", Severity::Failing, "has failed: more members lost than its level tolerates")
        }
        ArrayState::Degraded => {
            ("array_degraded", Severity::Failing, "is degraded: no redundancy, replace the lost member")
        }
        ArrayState::Recovering => ("array_recovering", Severity::Watch, "is rebuilding: no redundancy until it ends"),
        _ => return Vec::new(),
    };
    vec![Found {
        code,
        severity,
        text: format!("{} {what} ({lost} member(s) missing or faulty)", a.name),
        value: json!(lost),
    }]
}

/// The reasons a member disk gets from its arrays: a faulty member fails; the others of a
/// degraded, recovering or failed array carry the array's reason as watch (they are fine, but
/// a second loss now loses data).
pub fn member_reasons(a: &Array, disk_id: &str) -> Vec<Found> {
    let Some(array_reason) = array_reasons(a).into_iter().next() else { return Vec::new() };
    let faulty =
        a.members.iter().any(|m| m.disk_id.as_deref() == Some(disk_id) && matches!(m.role, MemberRole::Faulty));
    if faulty {
        return vec![Found {
            code: "array_member_faulty",
            severity: Severity::Failing,
            text: format!("kicked out of {} as faulty", a.name),
            value: json!(a.id),
        }];
    }
    vec![Found {
        code: "array_member",
        severity: Severity::Watch,
        text: format!("member of {}, which {}", a.name, &array_reason.text[a.name.len() + 1..]),
        value: json!({"array": a.id, "lost": a.degraded_count}),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::array::{ArrayKind, ArrayMember};
    use crate::model::{Forecast, Usage};

    fn usage(percent: f64) -> Usage {
        Usage {
            total_bytes: 100,
            used_bytes: percent as u64,
            available_bytes: 100 - percent as u64,
            percent,
            inodes_total: 0,
            inodes_used: 0,
            inodes_free: 0,
        }
    }

    #[test]
    fn mount_rules() {
        let mut m: Mount = serde_json::from_value(json!({
            "id": "data", "mount_point": "/data", "source": "/dev/sda1", "dev": "8:1", "fs_type": "ext4",
            "options": [], "super_options": [], "read_only": false, "root": "/", "network": false
        }))
        .unwrap();
        assert!(mount_reasons(&m).is_empty());
        m.usage = Some(usage(50.0));
        assert!(mount_reasons(&m).is_empty());
        let fc = |full: u64, high: u64| Forecast {
            full_in_seconds: Some(full),
            low_seconds: Some(full / 2),
            high_seconds: Some(high),
            basis_seconds: 8 * 86_400,
            bytes_per_day: 1,
        };
        m.forecast = Some(fc(3 * 86_400, 5 * 86_400));
        let r = mount_reasons(&m);
        assert_eq!((r[0].code, r[0].severity), ("fills_soon", Severity::Watch));
        // The estimate moves, the value (the threshold crossed) does not: no news.
        m.forecast = Some(fc(2 * 86_400, 4 * 86_400));
        assert_eq!(mount_reasons(&m)[0].value, r[0].value);
        // A wide interval (the slow end beyond a week) is no alarm, however close the centre.
        m.forecast = Some(fc(86_400, 30 * 86_400));
        assert!(mount_reasons(&m).is_empty());
        m.forecast = Some(fc(3600, 20_000));
        assert_eq!(mount_reasons(&m)[0].severity, Severity::Failing);
        m.usage = Some(usage(98.5));
        assert_eq!(mount_reasons(&m)[0].code, "mount_full");
    }

    #[test]
    fn array_and_member_rules() {
        let mut a = Array::new(ArrayKind::Md, "md0", Some("1".into()));
        a.members = vec![
            ArrayMember::new(Some("sda".into()), MemberRole::Active, Some(0)),
            ArrayMember::new(Some("sdb".into()), MemberRole::Faulty, Some(1)),
        ];
        a.members[0].disk_id = Some("A".into());
        a.members[1].disk_id = Some("B".into());
        assert!(array_reasons(&a).is_empty() && member_reasons(&a, "A").is_empty());
        a.state = ArrayState::Degraded;
        a.degraded_count = 1;
        assert_eq!(array_reasons(&a)[0].severity, Severity::Failing);
        assert_eq!(member_reasons(&a, "A")[0].code, "array_member");
        assert_eq!(member_reasons(&a, "B")[0].code, "array_member_faulty");
        let before = array_reasons(&a)[0].value.clone();
        a.degraded_count = 2;
        assert_ne!(array_reasons(&a)[0].value, before, "a second loss is news");
        a.state = ArrayState::Recovering;
        assert_eq!(array_reasons(&a)[0].severity, Severity::Watch);
    }
}
