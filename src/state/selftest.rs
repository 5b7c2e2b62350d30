//! The self-test side of the state model (SPEC §9): a disk's `self_test` record as the
//! self-test source reports it, `disk.self_test_started` / `disk.self_test_finished` from its
//! news, and the disk's attention re-assessed (a failed test is `failing`, docs/health.md).

use serde_json::json;

use super::{Draft, DraftData, State};
use crate::events::EventKind;
use crate::model::selftest::{SelfTest, SelfTestNews};

impl State {
    /// Stores a disk's self-test record; returns whether the disk changed.
    pub(super) fn disk_self_test(
        &mut self,
        id: &str,
        self_test: Option<Box<SelfTest>>,
        news: Option<SelfTestNews>,
        drafts: &mut Vec<Draft>,
    ) -> bool {
        let Some(disk) = self.disks.get_mut(id) else { return false };
        if disk.self_test == self_test && news.is_none() {
            return false;
        }
        disk.self_test = self_test;
        let attention_news = self.assess_disk(id);
        let Some(disk) = self.disks.get(id) else { return false };
        let snapshot = serde_json::to_value(disk).unwrap_or_default();
        let subject = format!("disk/{id}");
        match news {
            Some(SelfTestNews::Started { kind, by, woke }) => drafts.push(Draft {
                kind: EventKind::DiskSelfTestStarted,
                subject,
                data: DraftData::Ready(json!({
                    "disk": snapshot, "changed": ["self_test"], "kind": kind, "by": by, "woke": woke,
                })),
            }),
            Some(SelfTestNews::Finished(last)) => drafts.push(Draft {
                kind: EventKind::DiskSelfTestFinished,
                subject,
                data: DraftData::Ready(json!({"disk": snapshot, "changed": ["self_test"], "last": last})),
            }),
            None => {}
        }
        if let Some(news) = attention_news {
            drafts.push(self.attention_draft(id, news));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::model::attention::Level;
    use crate::model::selftest::{LastTest, RunningTest, SelfTestKind, SelfTestResult};
    use crate::state::{Fact, StateConfig};

    use crate::state::test_disk::disk;

    fn fact(st: SelfTest, news: Option<SelfTestNews>) -> Fact {
        Fact::DiskSelfTest { id: "d".into(), self_test: Some(Box::new(st)), news }
    }

    #[test]
    fn started_progress_finished_and_a_failure_is_failing() {
        let mut s = State::new(StateConfig::default(), 0);
        s.apply(Fact::DiskUpsert(disk("d")), SystemTime::now());
        let running = SelfTest {
            running: Some(RunningTest { kind: SelfTestKind::Short, percent_remaining: None }),
            next_due: Some("2026-12-10T00:00:00Z".into()),
            ..SelfTest::default()
        };
        let news = SelfTestNews::Started { kind: SelfTestKind::Short, by: "schedule".into(), woke: false };
        let events = s.apply(fact(running.clone(), Some(news)), SystemTime::now());
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, "disk.self_test_started");
        assert_eq!(events[0].data["kind"], "short");
        assert_eq!(events[0].data["disk"]["self_test"]["running"]["kind"], "short");
        // Progress: the record changes, no event; the same record again changes nothing.
        let mut progress = running.clone();
        progress.running.as_mut().unwrap().percent_remaining = Some(40);
        assert!(s.apply(fact(progress.clone(), None), SystemTime::now()).is_empty());
        assert_eq!(
            s.disk("d").unwrap().self_test.as_ref().unwrap().running.as_ref().unwrap().percent_remaining,
            Some(40)
        );
        let generation = s.topology_generation();
        s.apply(fact(progress, None), SystemTime::now());
        assert_eq!(s.topology_generation(), generation);
        // Failed with an LBA: the finished event, then the attention is failing.
        let last = LastTest {
            kind: SelfTestKind::Short,
            result: SelfTestResult::Failed,
            at_hours: Some(16402),
            lba_first_error: Some(494591083),
        };
        let done = SelfTest { running: None, last: Some(last.clone()), next_due: running.next_due.clone() };
        let events = s.apply(fact(done, Some(SelfTestNews::Finished(last))), SystemTime::now());
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["disk.self_test_finished", "disk.attention_changed"]);
        assert_eq!(events[0].data["last"]["result"], "failed");
        assert_eq!(events[0].data["last"]["lba_first_error"], 494591083);
        let attention = s.disk_attention("d").unwrap();
        assert_eq!(attention.level, Level::Failing);
        assert!(attention.reasons[0].text.contains("LBA 494591083"), "{:?}", attention.reasons);
        // udev re-describing the disk keeps the record.
        s.apply(Fact::DiskUpsert(disk("d")), SystemTime::now());
        assert!(s.disk("d").unwrap().self_test.is_some());
    }
}
