//! Which events an array's new observation makes (pure; used by [`crate::state::State`]).
//!
//! - `array.degraded` when redundancy is lost, and again each time `degraded_count` rises while
//!   it is lost (a second member of a RAID6 or a 3-way mirror, a failure during a rebuild: the
//!   moment mdadm's Monitor raises Fail and DegradedArray again); `array.failed` when the array
//!   becomes unusable, `array.recovering` when a rebuild starts, `array.recovered` when
//!   redundancy is back;
//! - `array.changed` for any other reported change (members, error counters, mismatch count,
//!   level…), and for sync progress at most once per whole percent and once per second;
//! - a new array that starts its first sync within [`INITIAL_SYNC_WINDOW`] of appearing, with
//!   nothing faulty and every empty slot covered by a spare (a fresh RAID5/6 is created
//!   degraded-and-recovering; md may show it inactive during assembly, or active a moment
//!   before it slots the spare), is `initial_sync`, shown as `resyncing`: no alarm. If no
//!   sync has started when the window ends, the withheld `array.degraded` is raised then.

use std::time::{Duration, SystemTime};

use crate::events::EventKind;
use crate::model::array::{Array, ArrayState, MemberRole};
use crate::state::diff_fields;

/// Fields the state model owns, that progress throttling handles, or that flip with every
/// write burst (md `array_state` goes `active` ↔ `clean`): `state` tells what matters.
const NOT_REPORTED: &[&str] =
    &["raw_state", "mounts", "degraded_mount", "initial_sync", "sync_percent", "sync_eta_seconds"];

/// What the state remembers of one array between observations: the progress announced
/// last, and when the array appeared (not at start-up).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProgressMark {
    floor: Option<i64>,
    at: Option<SystemTime>,
    appeared: Option<SystemTime>,
}

/// How long after an array appears a starting sync counts as its first: md starts the
/// recovery of a new RAID5 within milliseconds of `mdadm --create` or `--assemble`, but
/// shows the array inactive or spare-less in between.
pub const INITIAL_SYNC_WINDOW: Duration = Duration::from_secs(10);

/// Minimum time between two progress events of one array.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// An event to raise: its type and the changed fields (for all but `array.added`).
#[derive(Debug, Clone, PartialEq)]
pub struct Raise {
    pub kind: EventKind,
    pub changed: Option<Vec<String>>,
}

/// Whether the array is in its first sync: syncing, nothing faulty or missing, every slot
/// held by a working or rebuilding member.
fn looks_like_initial_sync(array: &Array) -> bool {
    array.sync_action.as_deref().is_some_and(|a| a == "recover" || a == "resync")
        && matches!(array.state, ArrayState::Recovering | ArrayState::Degraded | ArrayState::Resyncing)
        && !array.members.iter().any(|m| matches!(m.role, MemberRole::Faulty | MemberRole::Missing))
}

/// Whether the array waits for its first sync to start: degraded, nothing faulty, and as many
/// idle spares as empty slots (md has not slotted the spare yet).
fn awaits_first_sync(array: &Array) -> bool {
    let count = |role: MemberRole| array.members.iter().filter(|m| m.role == role && !m.rebuilding).count();
    array.state == ArrayState::Degraded
        && count(MemberRole::Faulty) == 0
        && count(MemberRole::Missing) >= 1
        && count(MemberRole::Spare) >= count(MemberRole::Missing)
}

/// Gives members that went missing without a name the name they had before (same slot).
pub fn carry_missing_names(old: &Array, new: &mut Array) {
    for member in new.members.iter_mut().filter(|m| m.role == MemberRole::Missing && m.kernel_name.is_none()) {
        if let Some(before) = old.members.iter().find(|o| o.slot.is_some() && o.slot == member.slot) {
            member.kernel_name = before.kernel_name.clone();
        }
    }
}

/// The events `new` makes against `old` (`None`: a new array). `quiet` is the silent first
/// enumeration. Adjusts `new`'s `initial_sync` and state, and the progress mark.
pub fn transitions(
    old: Option<&Array>,
    new: &mut Array,
    quiet: bool,
    mark: &mut ProgressMark,
    now: SystemTime,
) -> Vec<Raise> {
    let mut raises = Vec::new();
    let Some(old) = old else {
        mark.appeared = (!quiet).then_some(now);
        new.initial_sync = !quiet && (looks_like_initial_sync(new) || awaits_first_sync(new));
        if new.initial_sync {
            new.state = ArrayState::Resyncing;
        }
        mark.floor = new.sync_percent.map(|p| p.floor() as i64);
        mark.at = Some(now);
        if quiet {
            return raises;
        }
        raises.push(Raise { kind: EventKind::ArrayAdded, changed: None });
        match new.state {
            ArrayState::Failed => {
                raises.push(Raise { kind: EventKind::ArrayFailed, changed: Some(vec!["state".into()]) })
            }
            ArrayState::Degraded => {
                raises.push(Raise { kind: EventKind::ArrayDegraded, changed: Some(vec!["state".into()]) })
            }
            ArrayState::Recovering => {
                raises.push(Raise { kind: EventKind::ArrayDegraded, changed: Some(vec!["state".into()]) });
                raises.push(Raise { kind: EventKind::ArrayRecovering, changed: Some(vec!["state".into()]) });
            }
            _ => {}
        }
        return raises;
    };
    carry_missing_names(old, new);
    let young = mark.appeared.is_some_and(|t| now.duration_since(t).unwrap_or_default() <= INITIAL_SYNC_WINDOW);
    // Not yet seen running outside its first sync: seen inactive (assembly) or waiting.
    let first_run = old.initial_sync || old.state == ArrayState::Inactive;
    new.initial_sync = if young && first_run {
        looks_like_initial_sync(new) || awaits_first_sync(new)
    } else {
        old.initial_sync && new.sync_action.is_some() && looks_like_initial_sync(new)
    };
    if new.initial_sync {
        new.state = ArrayState::Resyncing;
    }
    let mut changed = diff_fields(old, new, NOT_REPORTED);
    if let (Some(before), Some(now_counts)) = (&old.errors, &new.errors) {
        for counter in now_counts.rising_since(before) {
            changed.push(format!("errors.{counter}"));
        }
    }
    let floor = new.sync_percent.map(|p| p.floor() as i64);
    let progress_due = floor.is_some()
        && floor != mark.floor
        && mark.at.is_none_or(|at| now.duration_since(at).unwrap_or_default() >= PROGRESS_EVERY);
    let sync_ended = new.sync_percent.is_none() && old.sync_percent.is_some();
    if progress_due || sync_ended {
        changed.push("sync_percent".to_owned());
        if new.sync_eta_seconds != old.sync_eta_seconds {
            changed.push("sync_eta_seconds".to_owned());
        }
        mark.floor = floor;
        mark.at = Some(now);
    }
    let (was, is) = (old.state, new.state);
    if is == ArrayState::Failed && was != ArrayState::Failed {
        raises.push(Raise { kind: EventKind::ArrayFailed, changed: Some(changed.clone()) });
    } else if is.lost_redundancy() && !was.lost_redundancy() {
        raises.push(Raise { kind: EventKind::ArrayDegraded, changed: Some(changed.clone()) });
        if is == ArrayState::Recovering {
            raises.push(Raise { kind: EventKind::ArrayRecovering, changed: Some(changed.clone()) });
        }
    } else if is.lost_redundancy() && is != ArrayState::Failed && new.degraded_count > old.degraded_count {
        // Another member lost while redundancy was already short.
        raises.push(Raise { kind: EventKind::ArrayDegraded, changed: Some(changed.clone()) });
        if is == ArrayState::Recovering && was != ArrayState::Recovering {
            raises.push(Raise { kind: EventKind::ArrayRecovering, changed: Some(changed.clone()) });
        }
    } else if is == ArrayState::Recovering && was != ArrayState::Recovering {
        raises.push(Raise { kind: EventKind::ArrayRecovering, changed: Some(changed.clone()) });
    } else if !is.lost_redundancy() && was.lost_redundancy() {
        raises.push(Raise { kind: EventKind::ArrayRecovered, changed: Some(changed.clone()) });
    }
    if raises.is_empty() && !changed.is_empty() {
        raises.push(Raise { kind: EventKind::ArrayChanged, changed: Some(changed) });
    }
    raises
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::array::{ArrayKind, ArrayMember, ErrorCounts};

    fn raid5(state: ArrayState, sync: Option<(&str, f64)>) -> Array {
        let mut a = Array::new(ArrayKind::Md, "md0", Some("u".into()));
        a.level = Some("raid5".into());
        a.raid_disks = Some(3);
        a.state = state;
        a.members = (0..3).map(|i| ArrayMember::new(Some(format!("sd{i}")), MemberRole::Active, Some(i))).collect();
        if let Some((action, percent)) = sync {
            a.sync_action = Some(action.into());
            a.sync_percent = Some(percent);
        }
        a
    }

    fn kinds(r: &[Raise]) -> Vec<&'static str> {
        r.iter().map(|r| r.kind.wire()).collect()
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    #[test]
    fn a_fresh_raid5_in_its_first_sync_is_no_alarm() {
        let mut mark = ProgressMark::default();
        let mut new = raid5(ArrayState::Recovering, Some(("recover", 0.0)));
        new.members[2].role = MemberRole::Spare;
        new.members[2].rebuilding = true;
        new.degraded_count = 1;
        let r = transitions(None, &mut new, false, &mut mark, at(0));
        assert_eq!(kinds(&r), vec!["array.added"]);
        assert!(new.initial_sync);
        assert_eq!(new.state, ArrayState::Resyncing);
        let old = new.clone();
        let mut done = raid5(ArrayState::Clean, None);
        let r = transitions(Some(&old), &mut done, false, &mut mark, at(100));
        assert_eq!(kinds(&r), vec!["array.changed"], "the end of the first sync is a change, not a recovery");
        assert!(!done.initial_sync);
    }

    #[test]
    fn losing_a_member_then_rebuilding_then_recovering() {
        let mut mark = ProgressMark::default();
        let clean = raid5(ArrayState::Clean, None);
        let mut lost = raid5(ArrayState::Degraded, None);
        lost.members[1].role = MemberRole::Faulty;
        lost.degraded_count = 1;
        let r = transitions(Some(&clean), &mut lost, false, &mut mark, at(0));
        assert_eq!(kinds(&r), vec!["array.degraded"]);
        assert!(r[0].changed.as_ref().expect("changed").contains(&"state".to_owned()));
        let mut rebuild = raid5(ArrayState::Recovering, Some(("recover", 0.5)));
        rebuild.members[1] = ArrayMember::new(None, MemberRole::Missing, Some(1));
        rebuild.degraded_count = 1;
        let r = transitions(Some(&lost), &mut rebuild, false, &mut mark, at(1));
        assert_eq!(kinds(&r), vec!["array.recovering"]);
        assert_eq!(rebuild.members[1].kernel_name.as_deref(), Some("sd1"), "missing member keeps its name");
        assert!(!rebuild.initial_sync, "a rebuild after a loss is not an initial sync");
        let r = transitions(Some(&rebuild), &mut raid5(ArrayState::Clean, None), false, &mut mark, at(50));
        assert_eq!(kinds(&r), vec!["array.recovered"]);
    }

    #[test]
    fn progress_is_throttled_per_percent_and_per_second() {
        let mut mark = ProgressMark::default();
        let mut prev = raid5(ArrayState::Recovering, Some(("recover", 10.0)));
        prev.degraded_count = 1;
        prev.members[1].role = MemberRole::Missing;
        let _ = transitions(Some(&raid5(ArrayState::Degraded, None)), &mut prev, false, &mut mark, at(0));
        let mut events = 0;
        // 10.0 → 14.9 in steps of 0.1, ten steps a second.
        for step in 1..=49u64 {
            let mut next = prev.clone();
            next.sync_percent = Some(10.0 + step as f64 / 10.0);
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000) + Duration::from_millis(step * 100);
            let r = transitions(Some(&prev), &mut next, false, &mut mark, now);
            if !r.is_empty() {
                assert_eq!(kinds(&r), vec!["array.changed"]);
                assert_eq!(r[0].changed.as_deref(), Some(&["sync_percent".to_owned()][..]));
                events += 1;
            }
            prev = next;
        }
        assert_eq!(events, 4, "11, 12, 13, 14 percent, each after a second");
        // A jump of many percents within a second is one event.
        let mut jump = prev.clone();
        jump.sync_percent = Some(40.0);
        let r = transitions(Some(&prev), &mut jump, false, &mut mark, at(5) + Duration::from_millis(400));
        assert_eq!(r.len(), 1);
        let mut jump2 = jump.clone();
        jump2.sync_percent = Some(60.0);
        let r = transitions(Some(&jump), &mut jump2, false, &mut mark, at(5) + Duration::from_millis(900));
        assert!(r.is_empty(), "less than a second after the last");
    }

    #[test]
    fn rising_error_counters_are_named() {
        let mut mark = ProgressMark::default();
        let mut old = raid5(ArrayState::Clean, None);
        old.errors = Some(ErrorCounts::default());
        let mut new = old.clone();
        new.errors = Some(ErrorCounts { corruption: 3, ..Default::default() });
        let r = transitions(Some(&old), &mut new, false, &mut mark, at(0));
        assert_eq!(kinds(&r), vec!["array.changed"]);
        assert_eq!(r[0].changed, Some(vec!["errors".to_owned(), "errors.corruption".to_owned()]));
    }

    /// A raid6 of four rebuilding onto sd3 (slot 3), as md shows it mid-recovery.
    fn raid6_rebuilding() -> Array {
        let mut a = raid5(ArrayState::Recovering, Some(("recover", 40.0)));
        a.level = Some("raid6".into());
        a.raid_disks = Some(4);
        a.members.push(ArrayMember::new(Some("sd3".into()), MemberRole::Spare, Some(3)));
        a.members[3].rebuilding = true;
        a.degraded_count = 1;
        a
    }

    #[test]
    fn each_further_loss_raises_degraded_again() {
        let mut mark = ProgressMark::default();
        // A raid6 that lost sd1 (degraded, 1), then sd2 (2): alarm both times.
        let mut one = raid5(ArrayState::Degraded, None);
        one.level = Some("raid6".into());
        one.members[1].role = MemberRole::Faulty;
        one.degraded_count = 1;
        let mut two = one.clone();
        two.members[2].role = MemberRole::Faulty;
        two.degraded_count = 2;
        let r = transitions(Some(&one), &mut two, false, &mut mark, at(0));
        assert_eq!(kinds(&r), vec!["array.degraded"]);
        let changed = r[0].changed.clone().expect("changed");
        assert!(
            changed.contains(&"degraded_count".to_owned()) && changed.contains(&"members".to_owned()),
            "{changed:?}"
        );
        // A member lost during a rebuild: md stops the recovery; degraded again.
        let rebuilding = raid6_rebuilding();
        let mut broken = rebuilding.clone();
        broken.members[0].role = MemberRole::Faulty;
        broken.degraded_count = 2;
        let r = transitions(Some(&rebuilding), &mut broken, false, &mut mark, at(5));
        assert_eq!(kinds(&r), vec!["array.degraded"], "still recovering, one more lost");
        broken.state = ArrayState::Degraded;
        broken.sync_action = None;
        broken.sync_percent = None;
        let r = transitions(Some(&rebuilding), &mut broken, false, &mut mark, at(6));
        assert_eq!(kinds(&r), vec!["array.degraded"], "recovery stopped by the loss");
        // The count falling (a member back) is no alarm; the same count is no alarm either.
        let r = transitions(Some(&two), &mut one.clone(), false, &mut mark, at(7));
        assert_eq!(kinds(&r), vec!["array.changed"]);
        let r = transitions(Some(&two), &mut two.clone(), false, &mut mark, at(8));
        assert!(r.is_empty());
    }

    #[test]
    fn a_recovery_right_after_assembly_or_before_the_spare_is_slotted_is_the_first_sync() {
        // Seen first inactive (assembly), then recovering onto the spare: initial sync.
        let mut mark = ProgressMark::default();
        let mut inactive = raid5(ArrayState::Inactive, None);
        inactive.members.iter_mut().for_each(|m| m.role = MemberRole::Spare);
        let r = transitions(None, &mut inactive, false, &mut mark, at(0));
        assert_eq!(kinds(&r), vec!["array.added"]);
        let mut syncing = raid5(ArrayState::Recovering, Some(("recover", 0.0)));
        syncing.members[2].role = MemberRole::Spare;
        syncing.members[2].rebuilding = true;
        syncing.degraded_count = 1;
        let r = transitions(Some(&inactive), &mut syncing, false, &mut mark, at(1));
        assert_eq!(kinds(&r), vec!["array.changed"], "no degraded, no recovering");
        assert!(syncing.initial_sync);
        assert_eq!(syncing.state, ArrayState::Resyncing);

        // Seen first active with the spare not slotted yet: waiting, no alarm; then the sync.
        let mut mark = ProgressMark::default();
        let mut waiting = raid5(ArrayState::Degraded, None);
        waiting.members[2] = ArrayMember::new(None, MemberRole::Missing, Some(2));
        waiting.members.push(ArrayMember::new(Some("sd2".into()), MemberRole::Spare, None));
        waiting.degraded_count = 1;
        let r = transitions(None, &mut waiting, false, &mut mark, at(0));
        assert_eq!(kinds(&r), vec!["array.added"]);
        assert_eq!(waiting.state, ArrayState::Resyncing);
        let mut started = syncing.clone();
        started.initial_sync = false;
        started.state = ArrayState::Recovering;
        let r = transitions(Some(&waiting), &mut started, false, &mut mark, at(1));
        assert!(kinds(&r).iter().all(|k| *k == "array.changed"), "{r:?}");
        assert!(started.initial_sync);

        // No sync within the window: the withheld alarm is raised at the next observation.
        let mut mark = ProgressMark::default();
        let mut waiting2 = waiting.clone();
        waiting2.initial_sync = false;
        waiting2.state = ArrayState::Degraded;
        let r = transitions(None, &mut waiting2, false, &mut mark, at(0));
        assert_eq!(kinds(&r), vec!["array.added"]);
        let mut still = waiting.clone();
        still.initial_sync = false;
        still.state = ArrayState::Degraded;
        let r = transitions(Some(&waiting2), &mut still.clone(), false, &mut mark, at(5));
        assert!(r.is_empty(), "within the window");
        let r = transitions(Some(&waiting2), &mut still, false, &mut mark, at(11));
        assert_eq!(kinds(&r), vec!["array.degraded"]);

        // A recovery long after the array appeared is a rebuild, inactive before or not.
        let mut mark = ProgressMark::default();
        let mut inactive = raid5(ArrayState::Inactive, None);
        let _ = transitions(None, &mut inactive, false, &mut mark, at(0));
        let mut late = syncing.clone();
        late.initial_sync = false;
        late.state = ArrayState::Recovering;
        let r = transitions(Some(&inactive), &mut late, false, &mut mark, at(60));
        assert_eq!(kinds(&r), vec!["array.degraded", "array.recovering"]);
        // And one found at start-up (quiet) is never an initial sync.
        let mut mark = ProgressMark::default();
        let mut inactive = raid5(ArrayState::Inactive, None);
        let _ = transitions(None, &mut inactive, true, &mut mark, at(0));
        let mut early = syncing.clone();
        early.initial_sync = false;
        early.state = ArrayState::Recovering;
        let r = transitions(Some(&inactive), &mut early, false, &mut mark, at(1));
        assert_eq!(kinds(&r), vec!["array.degraded", "array.recovering"]);
    }

    #[test]
    fn appearing_degraded_or_failed_raises_the_alarm_unless_quiet() {
        let mut mark = ProgressMark::default();
        let mut degraded = raid5(ArrayState::Degraded, None);
        degraded.members[2] = ArrayMember::new(None, MemberRole::Missing, Some(2));
        let r = transitions(None, &mut degraded.clone(), false, &mut mark, at(0));
        assert_eq!(kinds(&r), vec!["array.added", "array.degraded"]);
        assert!(transitions(None, &mut degraded, true, &mut mark, at(0)).is_empty());
        let mut failed = raid5(ArrayState::Failed, None);
        let r = transitions(None, &mut failed, false, &mut mark, at(0));
        assert_eq!(kinds(&r), vec!["array.added", "array.failed"]);
        let mut worse = raid5(ArrayState::Failed, None);
        let r = transitions(Some(&degraded), &mut worse, false, &mut mark, at(0));
        assert_eq!(kinds(&r), vec!["array.failed"]);
    }
}
