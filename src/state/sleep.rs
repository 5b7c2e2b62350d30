//! The sleep side of the state model (SPEC §9): a disk's sleep record as the wake source
//! reports it, and `disk.woken` when the report is a wake. The record is computed by the
//! source (it follows the power state over time); the state only stores it and makes the event.

use serde_json::json;

use super::{Draft, DraftData, State};
use crate::events::EventKind;
use crate::model::sleep::Sleep;

impl State {
    /// Stores a disk's sleep record; with `woken`, raises `disk.woken` carrying the last wake.
    /// Returns whether the disk changed.
    pub(super) fn disk_sleep(&mut self, id: &str, sleep: Box<Sleep>, woken: bool, drafts: &mut Vec<Draft>) -> bool {
        let Some(disk) = self.disks.get_mut(id) else { return false };
        if disk.sleep.as_deref() == Some(&*sleep) && !woken {
            return false;
        }
        let last_wake = sleep.last_wake.clone();
        disk.sleep = Some(sleep);
        if woken {
            if let Some(wake) = last_wake {
                let snapshot = serde_json::to_value(&*disk).unwrap_or_default();
                drafts.push(Draft {
                    kind: EventKind::DiskWoken,
                    subject: format!("disk/{id}"),
                    data: DraftData::Ready(json!({
                        "disk": snapshot,
                        "changed": ["sleep"],
                        "last_wake": wake,
                    })),
                });
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::model::sleep::{Wake, WakeOp};
    use crate::state::{Fact, StateConfig};

    use crate::state::test_disk::disk;

    #[test]
    fn a_wake_is_one_event_a_statistic_is_none() {
        let mut s = State::new(StateConfig::default(), 0);
        s.apply(Fact::DiskUpsert(disk("d")), SystemTime::now());
        let quiet = Sleep { standby_percent_24h: 50.0, standby_since: Some("t0".into()), ..Sleep::default() };
        let events = s
            .apply(Fact::DiskSleep { id: "d".into(), sleep: Box::new(quiet.clone()), woken: false }, SystemTime::now());
        assert!(events.is_empty());
        assert_eq!(s.disk("d").unwrap().sleep.as_deref(), Some(&quiet));
        let wake =
            Wake { at: "t1".into(), pid: Some(42), comm: Some("cat".into()), op: WakeOp::Read, ..Wake::default() };
        let woke = Sleep { spin_ups_24h: 1, last_wake: Some(wake), ..quiet };
        let events = s.apply(Fact::DiskSleep { id: "d".into(), sleep: Box::new(woke), woken: true }, SystemTime::now());
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, "disk.woken");
        assert_eq!(events[0].data["last_wake"]["comm"], "cat");
        assert_eq!(events[0].data["last_wake"]["op"], "read");
        assert_eq!(events[0].data["disk"]["sleep"]["spin_ups_24h"], 1);
        // udev re-describing the disk keeps the record; an unknown disk is ignored.
        s.apply(Fact::DiskUpsert(disk("d")), SystemTime::now());
        assert_eq!(s.disk("d").unwrap().sleep.as_ref().unwrap().spin_ups_24h, 1);
        let events = s.apply(
            Fact::DiskSleep { id: "gone".into(), sleep: Box::new(Sleep::default()), woken: true },
            SystemTime::now(),
        );
        assert!(events.is_empty());
    }
}
