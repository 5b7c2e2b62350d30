//! From reasons to a verdict: acknowledgements, `since`, the level, and whether a new verdict
//! is news (`*.attention_changed`): only when the level or the set of unacknowledged reasons
//! (code and value) changes, so an unchanged value never raises anything twice.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::model::attention::{Attention, Level, Reason, Severity};

/// A reason as a rule finds it, before acknowledgements and history.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub code: &'static str,
    pub severity: Severity,
    pub text: String,
    pub value: Value,
}

/// What the owner acknowledged on one object: reason code → the value acknowledged. A reason
/// stays quiet while its value is that one.
pub type Acks = BTreeMap<String, Value>;

/// The code of the reason "read before, cannot now" (level `unknown`, not acknowledgeable).
pub const UNREADABLE: &str = "unreadable";

/// The verdict: `found` judged against `acks`; `unreadable` is when the object stopped being
/// readable (its reasons are then from the last reading); `assessed_at` is the time of the data.
pub fn assess(
    found: Vec<Found>,
    unreadable: Option<&str>,
    acks: &Acks,
    previous: Option<&Attention>,
    assessed_at: &str,
) -> Attention {
    let since = |code: &str| {
        previous
            .and_then(|p| p.reasons.iter().find(|r| r.code == code))
            .map_or_else(|| assessed_at.to_owned(), |r| r.since.clone())
    };
    let mut reasons: Vec<Reason> = found
        .into_iter()
        .map(|f| Reason {
            acknowledged: acks.get(f.code) == Some(&f.value),
            since: since(f.code),
            code: f.code.to_owned(),
            severity: f.severity,
            text: f.text,
            value: f.value,
        })
        .collect();
    let mut level = reasons
        .iter()
        .filter(|r| !r.acknowledged)
        .map(|r| match r.severity {
            Severity::Watch => Level::Watch,
            Severity::Failing => Level::Failing,
        })
        .max()
        .unwrap_or(Level::Ok);
    if let Some(at) = unreadable {
        reasons.push(Reason {
            code: UNREADABLE.to_owned(),
            severity: Severity::Watch,
            text: format!("SMART was read before and cannot be read since {at}: the values are the last reading's"),
            value: json!(at),
            since: at.to_owned(),
            acknowledged: false,
        });
        level = level.max(Level::Unknown);
    }
    Attention { level, reasons, assessed_at: assessed_at.to_owned() }
}

/// Whether `next` is news after `previous`: the level or the unacknowledged reasons changed.
/// A first verdict is news only when it is not `ok` (a failing drive at start-up is announced).
pub fn is_news(previous: Option<&Attention>, next: &Attention) -> bool {
    match previous {
        None => next.level != Level::Ok,
        Some(p) => p.level != next.level || p.unacknowledged() != next.unacknowledged(),
    }
}

/// The acknowledgements that quiet every current reason of `attention` (what the acknowledge
/// button records): code → value, the unreadable reason left out.
pub fn acknowledge_all(attention: &Attention) -> Acks {
    attention.reasons.iter().filter(|r| r.code != UNREADABLE).map(|r| (r.code.clone(), r.value.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(code: &'static str, severity: Severity, value: u64) -> Found {
        Found { code, severity, text: code.into(), value: json!(value) }
    }

    #[test]
    fn level_acks_and_news() {
        let none = Acks::new();
        let a = assess(vec![f("reallocated_sectors", Severity::Watch, 1)], None, &none, None, "t1");
        assert_eq!(a.level, Level::Watch);
        assert!(is_news(None, &a));
        // The same value later: not news; `since` is kept.
        let b = assess(vec![f("reallocated_sectors", Severity::Watch, 1)], None, &none, Some(&a), "t2");
        assert!(!is_news(Some(&a), &b));
        assert_eq!(b.reasons[0].since, "t1");
        assert_eq!(b.assessed_at, "t2");
        // Acknowledged: ok, news once; holds while the value stays.
        let acks = acknowledge_all(&b);
        let c = assess(vec![f("reallocated_sectors", Severity::Watch, 1)], None, &acks, Some(&b), "t3");
        assert_eq!(c.level, Level::Ok);
        assert!(c.reasons[0].acknowledged);
        assert!(is_news(Some(&b), &c));
        let d = assess(vec![f("reallocated_sectors", Severity::Watch, 1)], None, &acks, Some(&c), "t4");
        assert!(!is_news(Some(&c), &d));
        // The value changes: news again, unacknowledged.
        let e = assess(vec![f("reallocated_sectors", Severity::Watch, 2)], None, &acks, Some(&d), "t5");
        assert_eq!(e.level, Level::Watch);
        assert!(!e.reasons[0].acknowledged && is_news(Some(&d), &e));
        // Failing wins over watch; unreadable is unknown unless something fails.
        let g = assess(
            vec![f("pending_sectors", Severity::Failing, 8), f("reallocated_sectors", Severity::Watch, 2)],
            None,
            &none,
            None,
            "t",
        );
        assert_eq!(g.level, Level::Failing);
        let u = assess(vec![], Some("t9"), &none, None, "t");
        assert_eq!(u.level, Level::Unknown);
        assert_eq!(u.reasons[0].code, UNREADABLE);
        assert!(acknowledge_all(&u).is_empty());
        let uf = assess(vec![f("pending_sectors", Severity::Failing, 8)], Some("t9"), &none, None, "t");
        assert_eq!(uf.level, Level::Failing);
        // A first ok verdict is not news.
        assert!(!is_news(None, &assess(vec![], None, &none, None, "t")));
    }
}
