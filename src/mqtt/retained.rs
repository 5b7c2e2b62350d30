//! What the broker holds from us: decides which retained messages to send
//! for a new plan (changes only, or everything on a re-announce), marks
//! vanished objects offline at once and clears their topics after their
//! removal delay (short for removable objects, long for fixed ones; see [`Removal`]).
//! Remembered in `state_dir` so a restart orphans nothing.
//! Methods only change state and return messages; the sink does the I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::discovery::Retained;
use super::MqttError;

/// A retained message to send (an empty payload clears the topic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub topic: String,
    pub payload: String,
}

/// One object the broker holds topics for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ObjectRecord {
    /// Every retained topic published for the object.
    pub topics: BTreeSet<String>,
    /// Its availability topic (absent for the host).
    pub availability: Option<String>,
    /// When it left the snapshot, in milliseconds since the Unix epoch.
    pub removed_at_ms: Option<u64>,
    /// It lived on a removable or loop disk (as last seen): the short removal delay applies.
    #[serde(default)]
    pub removable: bool,
    /// When its discovery configs were cleared; its state and availability topics follow
    /// [`STATE_CLEAR_GAP_MS`] later (see [`Retainer::expire`]).
    #[serde(default)]
    pub configs_cleared_at_ms: Option<u64>,
}

/// Between clearing an object's discovery and its state topics. Home Assistant drops the
/// entities (and unsubscribes) on the empty config; an empty state arriving before that
/// makes every template of the entity fail in its log ("'value_json' is undefined").
pub const STATE_CLEAR_GAP_MS: u64 = 2_000;

fn is_config(topic: &str) -> bool {
    topic.ends_with("/config")
}

/// The least time between two publishes of one discovery config topic. Home Assistant
/// (2026.11.0, `mqtt/discovery.py`) handles a device config component by component; a
/// component still being set up from the previous config makes it queue that component's
/// update and drop the rest of the message, so entities a quick second config adds (the
/// SMART entities, when the first reading comes 30 ms after the first announcement) were
/// created only when the config next changed, about 20 s later (tests/ha_real.rs). A config
/// change within this gap is held back and sent when it ends.
pub const CONFIG_GAP_MS: u64 = 2_000;

/// When removed objects' topics are cleared (and Home Assistant drops their entities).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removal {
    pub removable_ms: u64,
    pub fixed_ms: u64,
    /// At most this many removed removable objects wait for their delay: under plug churn
    /// (a new mount point or loop device every second) the oldest go first, so Home
    /// Assistant never piles up entities of objects long gone.
    pub max_removable: usize,
}

/// See [`Removal::max_removable`].
pub const MAX_REMOVED_REMOVABLE: usize = 16;

impl Removal {
    pub fn new(removable: std::time::Duration, fixed: std::time::Duration) -> Self {
        Self {
            removable_ms: removable.as_millis() as u64,
            fixed_ms: fixed.as_millis() as u64,
            max_removable: MAX_REMOVED_REMOVABLE,
        }
    }

    fn delay_ms(&self, record: &ObjectRecord) -> u64 {
        if record.removable {
            self.removable_ms
        } else {
            self.fixed_ms
        }
    }
}

/// The persisted form.
#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    objects: BTreeMap<String, ObjectRecord>,
    /// Topics whose clearing the broker has not acknowledged yet.
    #[serde(default)]
    clearing: BTreeSet<String>,
}

#[derive(Debug, Default)]
pub struct Retainer {
    /// Payload last sent per topic in this connection's view of the broker.
    published: HashMap<String, String>,
    objects: BTreeMap<String, ObjectRecord>,
    /// Topics to clear until the broker acknowledges the empty retained message: an object
    /// forgotten before that would leave its discovery on the broker for good.
    clearing: BTreeSet<String>,
    /// Whether `objects` or `clearing` changed since the last save.
    dirty: bool,
    /// When each discovery config topic was last sent in this connection ([`CONFIG_GAP_MS`]).
    config_sent_ms: HashMap<String, u64>,
    /// When the earliest config held back by [`CONFIG_GAP_MS`] may go.
    held_until_ms: Option<u64>,
}

impl Retainer {
    /// Loads the remembered objects; a missing file is an empty memory.
    pub fn load(path: &Path) -> Result<Self, MqttError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(MqttError::Io { path: path.to_path_buf(), source }),
        };
        Self::parse(&text).map_err(|source| MqttError::StateFile { path: path.to_path_buf(), source })
    }

    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        let file: File = serde_json::from_str(text)?;
        Ok(Self { objects: file.objects, clearing: file.clearing, ..Self::default() })
    }

    pub fn to_json(&self) -> String {
        // A map of strings, sets and numbers always serialises.
        serde_json::to_string_pretty(&File { objects: self.objects.clone(), clearing: self.clearing.clone() })
            .unwrap_or_default()
    }

    /// Writes the memory if it changed, atomically and durably (a crash leaves the old
    /// or the new file, never an empty one that would orphan retained discovery).
    pub fn save_if_dirty(&mut self, path: &Path) -> Result<(), MqttError> {
        if !self.dirty {
            return Ok(());
        }
        crate::fsutil::write_atomic(path, self.to_json().as_bytes())
            .map_err(|source| MqttError::Io { path: path.to_path_buf(), source })?;
        self.dirty = false;
        Ok(())
    }

    /// Forgets what the broker holds (a new connection: the broker may have lost it all).
    pub fn forget_published(&mut self) {
        self.published.clear();
        self.config_sent_ms.clear();
        self.held_until_ms = None;
    }

    /// When a discovery config held back by [`CONFIG_GAP_MS`] may be sent: the sink updates
    /// again then.
    pub fn held_until_ms(&self) -> Option<u64> {
        self.held_until_ms
    }

    pub fn objects(&self) -> &BTreeMap<String, ObjectRecord> {
        &self.objects
    }

    /// The messages that bring the broker to `plan`: changed payloads only, or
    /// everything when `full`; objects missing from the plan go offline now.
    pub fn update(&mut self, plan: Vec<Retained>, now_ms: u64, full: bool) -> Vec<Outgoing> {
        let mut out = Vec::new();
        self.held_until_ms = None;
        let mut present: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for msg in plan {
            let topics = present.entry(msg.object.clone()).or_default();
            topics.insert(msg.topic.clone());
            let record = self.objects.entry(msg.object.clone()).or_default();
            if record.topics.insert(msg.topic.clone()) {
                self.dirty = true;
            }
            if record.removable != msg.removable {
                record.removable = msg.removable;
                self.dirty = true;
            }
            if msg.topic.ends_with("/availability") && record.availability.as_deref() != Some(&msg.topic) {
                record.availability = Some(msg.topic.clone());
                self.dirty = true;
            }
            self.revive(&msg.topic);
            if full || self.published.get(&msg.topic) != Some(&msg.payload) {
                if is_config(&msg.topic) {
                    let free_at = self.config_sent_ms.get(&msg.topic).map_or(0, |t| t + CONFIG_GAP_MS);
                    if !full && now_ms < free_at {
                        self.held_until_ms = Some(self.held_until_ms.map_or(free_at, |h| h.min(free_at)));
                        continue;
                    }
                    self.config_sent_ms.insert(msg.topic.clone(), now_ms);
                }
                self.published.insert(msg.topic.clone(), msg.payload.clone());
                out.push(Outgoing { topic: msg.topic, payload: msg.payload });
            }
        }
        for (object, record) in &mut self.objects {
            match present.get(object) {
                Some(topics) => {
                    if record.removed_at_ms.take().is_some() | record.configs_cleared_at_ms.take().is_some() {
                        self.dirty = true;
                    }
                    // Topics the object no longer uses (an entity dropped, the discovery form switched).
                    let stale: Vec<String> = record.topics.difference(topics).cloned().collect();
                    for topic in stale {
                        record.topics.remove(&topic);
                        self.published.remove(&topic);
                        self.dirty = true;
                        self.clearing.insert(topic.clone());
                        out.push(Outgoing { topic, payload: String::new() });
                    }
                }
                None => {
                    if record.removed_at_ms.is_none() {
                        record.removed_at_ms = Some(now_ms);
                        self.dirty = true;
                    }
                    if let Some(avail) = &record.availability {
                        if full || self.published.get(avail).map(String::as_str) != Some("offline") {
                            self.published.insert(avail.clone(), "offline".into());
                            out.push(Outgoing { topic: avail.clone(), payload: "offline".into() });
                        }
                    }
                }
            }
        }
        out
    }

    /// Removed removable objects beyond [`Removal::max_removable`], oldest first.
    fn over_cap(&self, removal: &Removal) -> Vec<String> {
        let mut gone: Vec<(u64, &String)> = self
            .objects
            .iter()
            .filter(|(_, r)| r.removable && r.configs_cleared_at_ms.is_none())
            .filter_map(|(k, r)| r.removed_at_ms.map(|t| (t, k)))
            .collect();
        let excess = gone.len().saturating_sub(removal.max_removable);
        gone.sort();
        gone.into_iter().take(excess).map(|(_, k)| k.clone()).collect()
    }

    /// Objects removed at least their delay ago (and the oldest removable ones beyond the
    /// cap) lose their discovery configs now, so Home Assistant drops their entities; their
    /// state and availability topics are cleared [`STATE_CLEAR_GAP_MS`] later, and then the
    /// object is forgotten.
    pub fn expire(&mut self, now_ms: u64, removal: &Removal) -> Vec<Outgoing> {
        let mut expired: Vec<String> = self
            .objects
            .iter()
            .filter(|(_, r)| r.configs_cleared_at_ms.is_none())
            .filter(|(_, r)| r.removed_at_ms.is_some_and(|t| now_ms.saturating_sub(t) >= removal.delay_ms(r)))
            .map(|(k, _)| k.clone())
            .collect();
        expired.extend(self.over_cap(removal));
        let mut out = Vec::new();
        for key in expired {
            if let Some(record) = self.objects.get_mut(&key) {
                self.dirty = true;
                let configs: Vec<String> = record.topics.iter().filter(|t| is_config(t)).cloned().collect();
                for topic in configs {
                    record.topics.remove(&topic);
                    self.published.remove(&topic);
                    self.clearing.insert(topic.clone());
                    out.push(Outgoing { topic, payload: String::new() });
                }
                record.configs_cleared_at_ms = Some(now_ms);
            }
        }
        let done: Vec<String> = self
            .objects
            .iter()
            .filter(|(_, r)| r.configs_cleared_at_ms.is_some_and(|t| now_ms.saturating_sub(t) >= STATE_CLEAR_GAP_MS))
            .map(|(k, _)| k.clone())
            .collect();
        for key in done {
            if let Some(record) = self.objects.remove(&key) {
                self.dirty = true;
                for topic in record.topics {
                    self.published.remove(&topic);
                    self.clearing.insert(topic.clone());
                    out.push(Outgoing { topic, payload: String::new() });
                }
            }
        }
        out
    }

    /// Every clear not yet acknowledged, to send again on a new connection: discovery
    /// configs first, so Home Assistant drops an entity before its state topic empties.
    pub fn pending_clears(&self) -> Vec<Outgoing> {
        let (configs, others): (Vec<&String>, Vec<&String>) = self.clearing.iter().partition(|t| is_config(t));
        configs
            .into_iter()
            .chain(others)
            .map(|topic| Outgoing { topic: topic.clone(), payload: String::new() })
            .collect()
    }

    /// The broker acknowledged the clearing of `topic`.
    pub fn cleared(&mut self, topic: &str) {
        if self.clearing.remove(topic) {
            self.dirty = true;
        }
    }

    /// A topic is published again (an object came back): it is no longer being cleared.
    fn revive(&mut self, topic: &str) {
        if self.clearing.remove(topic) {
            self.dirty = true;
        }
    }

    /// The earliest time an expiry is due, if any object is waiting (0: now, over the cap).
    pub fn next_expiry_ms(&self, removal: &Removal) -> Option<u64> {
        if !self.over_cap(removal).is_empty() {
            return Some(0);
        }
        let due = |r: &ObjectRecord| match r.configs_cleared_at_ms {
            Some(t) => Some(t.saturating_add(STATE_CLEAR_GAP_MS)),
            None => r.removed_at_ms.map(|t| t.saturating_add(removal.delay_ms(r))),
        };
        self.objects.values().filter_map(due).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(object: &str, topic: &str, payload: &str) -> Retained {
        Retained { object: object.into(), topic: topic.into(), payload: payload.into(), removable: false }
    }

    #[test]
    fn a_config_changed_again_within_the_gap_waits_for_it() {
        let plan = |state: &str, cfg: &str| {
            vec![msg("disk/a", "b/disk/a/state", state), msg("disk/a", "ha/device/a/config", cfg)]
        };
        let mut r = Retainer::default();
        assert_eq!(r.update(plan("1", "{c1}"), 1_000, true).len(), 2);
        // 30 ms later: the state goes at once, the config waits for the gap.
        let out = r.update(plan("2", "{c2}"), 1_030, false);
        assert_eq!(out, vec![Outgoing { topic: "b/disk/a/state".into(), payload: "2".into() }]);
        assert_eq!(r.held_until_ms(), Some(1_000 + CONFIG_GAP_MS));
        // Changed once more while held: still one message, the newest, when the gap ends.
        assert!(r.update(plan("2", "{c3}"), 1_500, false).is_empty());
        let out = r.update(plan("2", "{c3}"), 1_000 + CONFIG_GAP_MS, false);
        assert_eq!(out, vec![Outgoing { topic: "ha/device/a/config".into(), payload: "{c3}".into() }]);
        assert_eq!(r.held_until_ms(), None);
        // A full re-announce is never held.
        assert_eq!(r.update(plan("2", "{c4}"), 1_000 + CONFIG_GAP_MS + 10, true).len(), 2);
    }

    /// One delay for every object, as the tests before the two delays used.
    fn after(ms: u64) -> Removal {
        Removal { removable_ms: ms, fixed_ms: ms, max_removable: MAX_REMOVED_REMOVABLE }
    }

    fn disk_plan(size: &str) -> Vec<Retained> {
        vec![
            msg("host", "b/state", "{}"),
            msg("disk/a", "b/disk/a/state", size),
            msg("disk/a", "b/disk/a/availability", "online"),
            msg("disk/a", "ha/device/a/config", "{cfg}"),
        ]
    }

    #[test]
    fn only_changes_are_sent_unless_full() {
        let mut r = Retainer::default();
        assert_eq!(r.update(disk_plan("1"), 0, false).len(), 4);
        assert!(r.update(disk_plan("1"), 0, false).is_empty());
        let out = r.update(disk_plan("2"), 0, false);
        assert_eq!(out, vec![Outgoing { topic: "b/disk/a/state".into(), payload: "2".into() }]);
        assert_eq!(r.update(disk_plan("2"), 0, true).len(), 4);
    }

    #[test]
    fn removal_goes_offline_then_clears_after_retention() {
        let mut r = Retainer::default();
        r.update(disk_plan("1"), 0, false);
        let out = r.update(vec![msg("host", "b/state", "{}")], 1_000, false);
        assert_eq!(out, vec![Outgoing { topic: "b/disk/a/availability".into(), payload: "offline".into() }]);
        // Still offline, nothing new to send; a full re-announce repeats the offline.
        assert!(r.update(vec![msg("host", "b/state", "{}")], 2_000, false).is_empty());
        assert_eq!(r.update(vec![msg("host", "b/state", "{}")], 2_000, true).len(), 2);
        assert!(r.expire(5_000, &after(5_000)).is_empty());
        assert_eq!(r.next_expiry_ms(&after(5_000)), Some(6_000));
        // The discovery first: Home Assistant drops the entities before their state empties.
        let cleared = r.expire(6_000, &after(5_000));
        assert_eq!(cleared, vec![Outgoing { topic: "ha/device/a/config".into(), payload: String::new() }]);
        assert_eq!(r.next_expiry_ms(&after(5_000)), Some(6_000 + STATE_CLEAR_GAP_MS));
        assert!(r.expire(6_000 + STATE_CLEAR_GAP_MS - 1, &after(5_000)).is_empty());
        let cleared = r.expire(6_000 + STATE_CLEAR_GAP_MS, &after(5_000));
        let topics: Vec<&str> = cleared.iter().map(|o| o.topic.as_str()).collect();
        assert_eq!(topics, ["b/disk/a/availability", "b/disk/a/state"]);
        assert!(cleared.iter().all(|o| o.payload.is_empty()));
        assert!(!r.objects().contains_key("disk/a"));
        assert_eq!(r.next_expiry_ms(&after(5_000)), None);
        // The clears are kept, across a restart too, until the broker acknowledges each;
        // on a new connection they go configs first.
        assert_eq!(r.pending_clears().len(), 3);
        assert_eq!(r.pending_clears()[0].topic, "ha/device/a/config");
        let again = Retainer::parse(&r.to_json()).unwrap();
        assert_eq!(again.pending_clears(), r.pending_clears());
        r.cleared("b/disk/a/state");
        assert_eq!(r.pending_clears().len(), 2);
    }

    #[test]
    fn returning_object_is_not_expired_and_dropped_topics_are_cleared() {
        let mut r = Retainer::default();
        r.update(disk_plan("1"), 0, false);
        r.update(vec![], 1, false);
        let mut plan = disk_plan("1");
        plan.pop();
        let out = r.update(plan, 2, false);
        assert!(out.contains(&Outgoing { topic: "b/disk/a/availability".into(), payload: "online".into() }));
        assert!(out.contains(&Outgoing { topic: "ha/device/a/config".into(), payload: String::new() }));
        assert!(r.expire(u64::MAX, &after(0)).is_empty());
    }

    #[test]
    fn memory_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mqtt.json");
        let mut r = Retainer::default();
        r.update(disk_plan("1"), 0, false);
        r.save_if_dirty(&path).unwrap();
        let mut again = Retainer::load(&path).unwrap();
        // The disk is gone after the restart: it goes offline and is cleared later.
        let out = again.update(vec![], 10, false);
        assert_eq!(out, vec![Outgoing { topic: "b/disk/a/availability".into(), payload: "offline".into() }]);
        assert_eq!(again.expire(20, &after(10)).len(), 1);
        assert_eq!(again.expire(20 + STATE_CLEAR_GAP_MS, &after(10)).len(), 2 + 1);
        assert!(Retainer::load(&dir.path().join("missing.json")).unwrap().objects().is_empty());
        assert!(Retainer::parse("not json").is_err());
    }

    fn object_plan(object: &str, removable: bool) -> Vec<Retained> {
        let topic = format!("b/{object}/availability");
        vec![Retained { object: object.into(), topic, payload: "online".into(), removable }]
    }

    #[test]
    fn removable_objects_go_sooner_and_never_pile_up() {
        let removal = Removal { removable_ms: 300_000, fixed_ms: 7 * 86_400_000, max_removable: 3 };
        let mut r = Retainer::default();
        let mut plan = object_plan("disk/fixed", false);
        plan.extend(object_plan("disk/usb", true));
        r.update(plan, 0, false);
        r.update(vec![], 1_000, false);
        assert_eq!(r.next_expiry_ms(&removal), Some(301_000));
        let cleared = r.expire(301_000, &removal);
        assert!(cleared.is_empty(), "no discovery to clear: {cleared:?}");
        let cleared = r.expire(301_000 + STATE_CLEAR_GAP_MS, &removal);
        assert_eq!(cleared, vec![Outgoing { topic: "b/disk/usb/availability".into(), payload: String::new() }]);
        assert_eq!(r.next_expiry_ms(&removal), Some(1_000 + 7 * 86_400_000));
        // The class is remembered across a restart.
        let mut r = Retainer::parse(&r.to_json()).unwrap();
        assert!(!r.objects()["disk/fixed"].removable);
        // Plug churn: a new loop device every second. Only the newest three removed ones stay.
        for i in 0..10u64 {
            let object = format!("mount/m{i}");
            r.update(object_plan(&object, true), 400_000 + i * 1_000, false);
            r.update(vec![], 400_500 + i * 1_000, false);
        }
        assert_eq!(r.next_expiry_ms(&removal), Some(0), "over the cap: due now");
        assert!(r.expire(410_000, &removal).is_empty(), "no discovery in these plans");
        let cleared = r.expire(410_000 + STATE_CLEAR_GAP_MS, &removal);
        assert_eq!(cleared.len(), 7);
        assert!(cleared.iter().all(|o| o.topic.starts_with("b/mount/m") && !o.topic.contains("m7")));
        let left: Vec<&String> = r.objects().keys().collect();
        assert_eq!(left, ["disk/fixed", "mount/m7", "mount/m8", "mount/m9"]);
    }
}
