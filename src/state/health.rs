//! The health side of the state model: a disk's power state, SMART health and I/O activity
//! (SPEC §8), and the events they make: `disk.health_changed`, `disk.temperature` (bands with
//! hysteresis, no flapping) and `disk.power_state` (entering or leaving standby).

use serde_json::json;

use super::rules::{health_news, temp_level, TempLevel};
use super::{Draft, DraftData, State};
use crate::events::EventKind;
use crate::model::{DiskIo, Health, PowerState};

impl State {
    /// Applies what the health source saw of one disk; returns whether the disk changed.
    pub(super) fn disk_health(
        &mut self,
        id: &str,
        power_state: PowerState,
        health: Option<Health>,
        note: Option<String>,
        drafts: &mut Vec<Draft>,
    ) -> bool {
        let Some(disk) = self.disks.get_mut(id) else { return false };
        let before = (disk.power_state, disk.health.clone(), disk.health_note.clone(), disk.attention.clone());
        let old_power = disk.power_state;
        // A kept reading (standby) is the same reading, and the same reading is never news.
        let news = match &health {
            Some(h) if disk.health.as_deref() != Some(h) => health_news(disk.health.as_deref(), h),
            _ => Vec::new(),
        };
        disk.power_state = Some(power_state);
        disk.health = health.map(Box::new);
        disk.health_note = note;
        let attention_news = self.assess_disk(id);
        let Some(disk) = self.disks.get(id) else { return false };
        let changed =
            before != (disk.power_state, disk.health.clone(), disk.health_note.clone(), disk.attention.clone());
        if !changed {
            return false;
        }
        let snapshot = serde_json::to_value(disk).unwrap_or_default();
        let subject = format!("disk/{id}");
        if !news.is_empty() {
            drafts.push(Draft {
                kind: EventKind::DiskHealthChanged,
                subject: subject.clone(),
                data: DraftData::Ready(json!({"disk": snapshot, "changed": news})),
            });
        }
        // Power: only transitions between two known states, into or out of standby/sleep.
        if let Some(old) = old_power.filter(|p| *p != PowerState::Unknown) {
            if power_state != PowerState::Unknown && old.is_asleep() != power_state.is_asleep() {
                drafts.push(Draft {
                    kind: EventKind::DiskPowerState,
                    subject: subject.clone(),
                    data: DraftData::Ready(json!({
                        "disk": snapshot,
                        "changed": ["power_state"],
                        "previous": old.as_str(),
                    })),
                });
            }
        }
        if let Some(news) = attention_news {
            drafts.push(self.attention_draft(id, news));
        }
        let temperature = self.disks.get(id).and_then(|d| d.health.as_ref()).and_then(|h| h.temperature_c);
        if let Some(t) = temperature {
            let prev = self.temp_levels.get(id).copied().unwrap_or_default();
            let level = temp_level(prev, t, self.config.temperature_warn, self.config.temperature_critical);
            if level != prev {
                self.temp_levels.insert(id.to_owned(), level);
                drafts.push(Draft {
                    kind: EventKind::DiskTemperature,
                    subject,
                    data: DraftData::Ready(json!({
                        "disk": snapshot,
                        "changed": ["temperature"],
                        "level": level.as_str(),
                        "previous": prev.as_str(),
                        "temperature_c": t,
                    })),
                });
            }
        }
        true
    }

    /// Applies I/O samples (no event); returns whether any disk changed.
    pub(super) fn disk_io(&mut self, samples: Vec<(String, DiskIo)>) -> bool {
        let mut changed = false;
        for (id, io) in samples {
            if let Some(disk) = self.disks.get_mut(&id) {
                if disk.io.as_deref() != Some(&io) {
                    disk.io = Some(Box::new(io));
                    changed = true;
                }
            }
        }
        changed
    }

    /// The temperature band last announced for a disk.
    pub fn temperature_level(&self, id: &str) -> TempLevel {
        self.temp_levels.get(id).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::model::HealthSource;
    use crate::state::{Fact, StateConfig};

    use crate::state::test_disk::disk;

    /// A reading with these counts (the parsing of real smartctl outputs is tested in
    /// smartctl::parse and, through this state, in tests/health.rs).
    fn reading(at: &str, passed: bool, reallocated: u64) -> Health {
        Health {
            passed: Some(passed),
            temperature_c: Some(32.0),
            power_on_hours: Some(1730),
            power_cycles: Some(9),
            reallocated_sectors: Some(reallocated),
            pending_sectors: Some(0),
            uncorrectable: Some(0),
            nvme_percentage_used: None,
            nvme_critical_warning: None,
            nvme_media_errors: None,
            checked_at: at.into(),
            source: HealthSource::Smartctl,
            ..Default::default()
        }
    }

    fn state_with_disk() -> State {
        let mut s = State::new(StateConfig::default(), 0);
        s.apply(Fact::DiskUpsert(disk("d")), SystemTime::now());
        s
    }

    /// The kinds of these events, leaving out `disk.attention_changed` (tested on its own below).
    fn kinds(events: &[crate::events::CloudEvent]) -> Vec<String> {
        events.iter().map(|e| e.kind.clone()).filter(|k| k != "disk.attention_changed").collect()
    }

    fn health(s: &mut State, p: PowerState, h: Option<Health>) -> Vec<String> {
        let events =
            s.apply(Fact::DiskHealth { id: "d".into(), power_state: p, health: h, note: None }, SystemTime::now());
        kinds(&events)
    }

    #[test]
    fn failing_then_more_reallocated() {
        let mut s = state_with_disk();
        assert!(health(&mut s, PowerState::Active, Some(reading("t1", true, 1))).is_empty());
        // The same reading again (kept in standby) is no news.
        assert!(health(&mut s, PowerState::Active, Some(reading("t1", true, 1))).is_empty());
        assert_eq!(health(&mut s, PowerState::Active, Some(reading("t2", true, 304))), vec!["disk.health_changed"]);
        assert_eq!(health(&mut s, PowerState::Active, Some(reading("t3", false, 1975))), vec!["disk.health_changed"]);
        let d = s.disk("d").unwrap();
        assert_eq!(d.health.as_ref().unwrap().passed, Some(false));
        // udev re-describing the disk keeps what the health source reported, silently.
        let events = s.apply(Fact::DiskUpsert(disk("d")), SystemTime::now());
        assert!(events.is_empty(), "{:?}", kinds(&events));
        assert_eq!(s.disk("d").unwrap().health.as_ref().unwrap().passed, Some(false));
    }

    #[test]
    fn power_state_transitions() {
        let mut s = state_with_disk();
        let h = reading("t1", true, 0);
        assert!(health(&mut s, PowerState::Standby, None).is_empty(), "first sight is not a transition");
        assert_eq!(health(&mut s, PowerState::Active, Some(h.clone())), vec!["disk.power_state"]);
        assert!(health(&mut s, PowerState::Idle, Some(h.clone())).is_empty());
        assert_eq!(health(&mut s, PowerState::Standby, Some(h.clone())), vec!["disk.power_state"]);
        assert!(health(&mut s, PowerState::Sleeping, Some(h.clone())).is_empty());
        assert!(health(&mut s, PowerState::Unknown, Some(h)).is_empty());
    }

    #[test]
    fn temperature_bands_without_flapping() {
        let mut s = state_with_disk();
        let mut at = 0;
        let mut temp = |s: &mut State, t: f64| {
            at += 1;
            let h = Health {
                temperature_c: Some(t),
                checked_at: format!("t{at}"),
                source: HealthSource::Hwmon,
                ..reading("", true, 0)
            };
            let events = s.apply(
                Fact::DiskHealth { id: "d".into(), power_state: PowerState::Active, health: Some(h), note: None },
                SystemTime::now(),
            );
            events
                .iter()
                .filter(|e| e.kind == "disk.temperature")
                .map(|e| (e.kind.clone(), e.data["level"].as_str().map(str::to_owned)))
                .collect::<Vec<_>>()
        };
        assert!(temp(&mut s, 40.0).is_empty());
        assert_eq!(temp(&mut s, 50.0), vec![("disk.temperature".to_owned(), Some("warn".into()))]);
        for t in [49.0, 50.0, 49.0, 50.0] {
            assert!(temp(&mut s, t).is_empty(), "flapped at {t}");
        }
        assert_eq!(temp(&mut s, 61.0), vec![("disk.temperature".to_owned(), Some("critical".into()))]);
        assert_eq!(temp(&mut s, 45.0), vec![("disk.temperature".to_owned(), Some("normal".into()))]);
    }

    fn attention_events(s: &mut State, p: PowerState, h: Health) -> Vec<serde_json::Value> {
        let fact = Fact::DiskHealth { id: "d".into(), power_state: p, health: Some(h), note: None };
        s.apply(fact, SystemTime::now())
            .into_iter()
            .filter(|e| e.kind == "disk.attention_changed")
            .map(|e| serde_json::to_value(&e.data).unwrap())
            .collect()
    }

    /// One event per change of level or of the unacknowledged reasons; none for an unchanged
    /// value, none for a new `checked_at` or a standby; an acknowledgement holds until the
    /// value changes; a disk that cannot be read any more is unknown, not ok.
    #[test]
    fn attention_changes_once_per_change() {
        let mut s = state_with_disk();
        assert!(attention_events(&mut s, PowerState::Active, reading("t1", true, 0)).is_empty());
        assert_eq!(s.disk_attention("d").unwrap().level, crate::model::attention::Level::Ok);
        let e = attention_events(&mut s, PowerState::Active, reading("t2", true, 1));
        assert_eq!(e.len(), 1);
        assert_eq!(e[0]["previous"], "ok");
        assert_eq!(e[0]["reasons"][0]["code"], "reallocated_sectors");
        assert_eq!(e[0]["disk"]["attention"]["level"], "watch");
        for (i, p) in [PowerState::Active, PowerState::Standby, PowerState::Active].into_iter().enumerate() {
            assert!(attention_events(&mut s, p, reading(&format!("t3{i}"), true, 1)).is_empty(), "unchanged");
        }
        // Acknowledged: one event (level back to ok), then quiet while the value stays.
        let acks = crate::attention::acknowledge_all(s.disk_attention("d").unwrap());
        let events = s.apply(Fact::Acknowledge { subject: "disk/d".into(), acks }, SystemTime::now());
        assert_eq!(kinds_all(&events), ["disk.attention_changed"]);
        assert_eq!(s.disk_attention("d").unwrap().level, crate::model::attention::Level::Ok);
        assert!(s.disk_attention("d").unwrap().reasons[0].acknowledged);
        assert!(attention_events(&mut s, PowerState::Active, reading("t4", true, 1)).is_empty());
        let e = attention_events(&mut s, PowerState::Active, reading("t5", true, 2));
        assert_eq!(e.len(), 1, "a changed value is news again");
        assert_eq!(e[0]["disk"]["attention"]["level"], "watch");
        // Failing, then unreadable: the last reading's reasons stay, the level never turns ok.
        let mut bad = reading("t6", false, 2);
        let e = attention_events(&mut s, PowerState::Active, bad.clone());
        assert_eq!(e[0]["disk"]["attention"]["level"], "failing");
        bad.unreadable_since = Some("t7".into());
        let e = attention_events(&mut s, PowerState::Unknown, bad.clone());
        assert_eq!(e.len(), 1);
        assert_eq!(s.disk_attention("d").unwrap().level, crate::model::attention::Level::Failing);
        let mut fine = reading("t1", true, 0);
        fine.unreadable_since = Some("t8".into());
        let e = attention_events(&mut s, PowerState::Unknown, fine);
        assert_eq!(e[0]["disk"]["attention"]["level"], "unknown");
    }

    fn kinds_all(events: &[crate::events::CloudEvent]) -> Vec<String> {
        events.iter().map(|e| e.kind.clone()).collect()
    }

    #[test]
    fn io_samples_are_fields_not_events() {
        let mut s = state_with_disk();
        let generation = s.topology_generation();
        let io = DiskIo { read_bytes_per_s: 1.0, write_bytes_per_s: 2.0, busy_percent: 3.0, idle_seconds: 0 };
        let events =
            s.apply(Fact::DiskIo { samples: vec![("d".into(), io.clone()), ("gone".into(), io)] }, SystemTime::now());
        assert!(events.is_empty());
        assert_eq!(s.disk("d").unwrap().io.as_ref().unwrap().write_bytes_per_s, 2.0);
        assert!(s.topology_generation() > generation);
    }
}
