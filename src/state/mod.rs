//! The state model: the only writer of the topology. [`State::apply`] turns a
//! [`Fact`] into events, assigns each its sequence number, and does no I/O.

pub mod array_transitions;
mod arrays;
mod attention;
mod attention_objects;
mod diff;
mod fact;
mod forecast;
mod health;
mod link;
pub mod rules;
mod selftest;
mod sleep;
#[cfg(test)]
mod test_disk;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use serde::Serialize;
use serde_json::json;

/// Field-level comparison, shared with the array transitions.
pub(crate) use diff::changed_fields as diff_fields;
pub use fact::Fact;

use crate::events::{CloudEvent, EventKind};
use crate::model::array::Array;
use crate::model::{Disk, Mount, Partition, Share, Snapshot, SourceState, SourceStatus};
use crate::state::array_transitions::ProgressMark;
use diff::{changed_fields, DERIVED};

/// What the state model needs to know about the configuration.
#[derive(Debug, Clone)]
pub struct StateConfig {
    pub node_id: String,
    /// Emit `*.added` / `mount.mounted` / `share.created` for the first enumeration too.
    pub emit_initial: bool,
    /// Usage percentages whose crossing raises `mount.usage`.
    pub usage_thresholds: Vec<f64>,
    /// A move of at least this many percentage points raises `mount.usage`.
    pub usage_step: f64,
    /// °C thresholds of `disk.temperature`.
    pub temperature_warn: f64,
    pub temperature_critical: f64,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            node_id: "localhost".to_owned(),
            emit_initial: false,
            usage_thresholds: vec![80.0, 90.0, 95.0],
            usage_step: 1.0,
            temperature_warn: 50.0,
            temperature_critical: 60.0,
        }
    }
}

/// The live topology and the event sequence.
#[derive(Debug)]
pub struct State {
    config: StateConfig,
    /// `diskwatch://<node_id>`, the CloudEvents source.
    source_uri: String,
    /// Sequence number of the last event emitted.
    last_seq: u64,
    disks: BTreeMap<String, Disk>,
    partitions: BTreeMap<String, Partition>,
    mounts: BTreeMap<String, Mount>,
    shares: BTreeMap<String, Share>,
    sources: BTreeMap<String, SourceStatus>,
    arrays: BTreeMap<String, Array>,
    /// Per array: the sync progress last announced (throttles `array.changed`).
    progress_marks: HashMap<String, ProgressMark>,
    /// Sources that have sent their start-up facts (or failed trying).
    settled: std::collections::BTreeSet<String>,
    /// Bumped whenever disks, partitions, mounts or shares change, with or without an event.
    topology_generation: u64,
    /// Per mount: the usage percent last announced by `mount.usage`, and
    /// whether the first sample should be announced (not for coldplugged mounts).
    usage_marks: HashMap<String, UsageMark>,
    /// Per disk: the temperature band last announced by `disk.temperature`.
    temp_levels: HashMap<String, rules::TempLevel>,
    /// The attention bookkeeping: acknowledgements, CRC baselines (see `attention.rs`).
    attention: attention::AttentionMemory,
}

#[derive(Debug, Clone, Copy)]
struct UsageMark {
    announced: Option<f64>,
    announce_first: bool,
}

/// An event before it is stamped with a sequence number.
struct Draft {
    kind: EventKind,
    subject: String,
    data: DraftData,
}

enum DraftData {
    /// Data fixed when the event was made (removals, lifecycle).
    Ready(serde_json::Value),
    /// The object's state after the whole fact, links included, plus the changed fields.
    Current { object: &'static str, id: String, changed: Option<Vec<String>> },
}

impl State {
    /// A state whose next event will carry sequence number `last_seq + 1`.
    pub fn new(config: StateConfig, last_seq: u64) -> Self {
        Self {
            source_uri: format!("diskwatch://{}", config.node_id),
            config,
            last_seq,
            disks: BTreeMap::new(),
            partitions: BTreeMap::new(),
            mounts: BTreeMap::new(),
            shares: BTreeMap::new(),
            sources: BTreeMap::new(),
            arrays: BTreeMap::new(),
            progress_marks: HashMap::new(),
            settled: std::collections::BTreeSet::new(),
            topology_generation: 0,
            usage_marks: HashMap::new(),
            temp_levels: HashMap::new(),
            attention: attention::AttentionMemory::default(),
        }
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Changes whenever the topology (disks, partitions, mounts, shares) may have changed,
    /// silent start-up additions included: sinks that mirror the topology follow it.
    pub fn topology_generation(&self) -> u64 {
        self.topology_generation
    }

    /// Whether every registered source has sent its start-up facts or failed.
    /// Whether these sources have each reported their start-up facts (or failed). Asked by name:
    /// "every registered source has settled" would hold of an empty set before the core has
    /// applied the registrations.
    pub fn settled(&self, names: &[&str]) -> bool {
        names.iter().all(|name| self.settled.contains(*name))
    }

    /// Applies one fact and returns the events it makes, in order, stamped
    /// with consecutive sequence numbers and the given time.
    pub fn apply(&mut self, fact: Fact, now: SystemTime) -> Vec<CloudEvent> {
        let mut drafts = Vec::new();
        let availability_before: HashMap<String, bool> =
            self.shares.values().map(|s| (s.id.clone(), s.available)).collect();
        // Mounts and arrays are judged again after what can change their verdict.
        let judge = matches!(fact, Fact::MountUsage { .. } | Fact::MountForecasts { .. } | Fact::Acknowledge { .. });
        let structural = match fact {
            Fact::BlockDevices { disks, partitions, initial } => {
                self.replace_block_devices(disks, partitions, initial, &mut drafts);
                true
            }
            Fact::DiskUpsert(disk) => {
                self.upsert_disk(disk, false, &mut drafts);
                true
            }
            Fact::DiskRemoved { id } => {
                self.remove_disk(&id, &mut drafts);
                true
            }
            Fact::PartitionUpsert(partition) => {
                self.upsert_partition(partition, false, &mut drafts);
                true
            }
            Fact::PartitionRemoved { id } => {
                self.remove_partition(&id, &mut drafts);
                true
            }
            Fact::Mounts { mounts, initial } => {
                self.replace_mounts(mounts, initial, &mut drafts);
                true
            }
            Fact::MountsChanged { upserts, removed } => {
                for id in removed {
                    self.remove_mount(&id, &mut drafts);
                }
                for mount in upserts {
                    self.upsert_mount(mount, false, &mut drafts);
                }
                true
            }
            Fact::MountUsage { id, usage, stale } => {
                self.mount_usage(&id, usage, stale, &mut drafts);
                false
            }
            Fact::DiskHealth { id, power_state, health, note } => {
                if self.disk_health(&id, power_state, health, note, &mut drafts) {
                    // Not structural (no relink), but sinks mirroring disks follow it.
                    self.topology_generation += 1;
                }
                false
            }
            Fact::DiskSleep { id, sleep, woken } => {
                if self.disk_sleep(&id, sleep, woken, &mut drafts) {
                    self.topology_generation += 1;
                }
                false
            }
            Fact::DiskSelfTest { id, self_test, news } => {
                if self.disk_self_test(&id, self_test, news, &mut drafts) {
                    self.topology_generation += 1;
                }
                false
            }
            Fact::MountForecasts { forecasts } => {
                if self.mount_forecasts(forecasts) {
                    self.topology_generation += 1;
                }
                false
            }
            Fact::DiskIo { samples } => {
                if self.disk_io(samples) {
                    self.topology_generation += 1;
                }
                false
            }
            Fact::Shares { shares, initial } => {
                self.replace_shares(shares, initial, &mut drafts);
                true
            }
            Fact::Arrays { arrays, initial } => {
                self.replace_arrays(arrays, initial, now, &mut drafts);
                true
            }
            Fact::SourceRunning { source, required } => {
                self.sources.insert(
                    source.clone(),
                    SourceStatus { name: source, status: SourceState::Running, message: None, required },
                );
                false
            }
            Fact::SourceReady { source } => {
                self.settled.insert(source);
                false
            }
            Fact::SourceFailed { source, message } => {
                self.settled.insert(source.clone());
                let entry = self.sources.entry(source.clone()).or_insert_with(|| SourceStatus {
                    name: source.clone(),
                    status: SourceState::Running,
                    message: None,
                    required: false,
                });
                let already = entry.status == SourceState::Failed && entry.message.as_deref() == Some(&message);
                entry.status = SourceState::Failed;
                entry.message = Some(message.clone());
                if !already {
                    drafts.push(Draft {
                        kind: EventKind::SourceFailed,
                        subject: format!("source/{source}"),
                        data: DraftData::Ready(json!({"source": source, "message": message})),
                    });
                }
                false
            }
            Fact::SourceRecovered { source } => {
                if let Some(entry) = self.sources.get_mut(&source) {
                    if entry.status == SourceState::Failed {
                        entry.status = SourceState::Running;
                        entry.message = None;
                        drafts.push(Draft {
                            kind: EventKind::SourceRecovered,
                            subject: format!("source/{source}"),
                            data: DraftData::Ready(json!({"source": source})),
                        });
                    }
                }
                false
            }
            Fact::AgentStarted { version } => {
                drafts.push(Draft {
                    kind: EventKind::AgentStarted,
                    subject: format!("agent/{}", self.config.node_id),
                    data: DraftData::Ready(json!({"node_id": self.config.node_id, "version": version})),
                });
                false
            }
            Fact::ActionFinished(record) => {
                let kind = if record.succeeded { EventKind::ActionSucceeded } else { EventKind::ActionFailed };
                drafts.push(Draft {
                    kind,
                    subject: record.object.clone(),
                    data: DraftData::Ready(json!({ "action": record })),
                });
                false
            }
            Fact::Acknowledge { subject, acks } => {
                if self.acknowledge(subject, acks, &mut drafts) {
                    self.topology_generation += 1;
                }
                false
            }
            Fact::AgentStopping { reason } => {
                drafts.push(Draft {
                    kind: EventKind::AgentStopping,
                    subject: format!("agent/{}", self.config.node_id),
                    data: DraftData::Ready(json!({"node_id": self.config.node_id, "reason": reason})),
                });
                false
            }
        };
        if structural {
            self.relink(&availability_before, &mut drafts);
            self.topology_generation += 1;
        }
        if structural || judge {
            let at = humantime::format_rfc3339_millis(now).to_string();
            if self.assess_objects(&at, &mut drafts) {
                self.topology_generation += 1;
            }
        }
        drafts
            .into_iter()
            .map(|d| {
                let data = self.render(d.data);
                self.last_seq += 1;
                CloudEvent::new(self.last_seq, &self.source_uri, d.kind, now, d.subject, data)
            })
            .collect()
    }

    /// Turns a draft's data into the event's `data`: the object's current state, links included.
    fn render(&self, data: DraftData) -> serde_json::Value {
        let (object, id, changed) = match data {
            DraftData::Ready(value) => return value,
            DraftData::Current { object, id, changed } => (object, id, changed),
        };
        let value = match object {
            "disk" => self.disks.get(&id).map(serde_json::to_value),
            "partition" => self.partitions.get(&id).map(serde_json::to_value),
            "mount" => self.mounts.get(&id).map(serde_json::to_value),
            "array" => self.arrays.get(&id).map(serde_json::to_value),
            _ => self.shares.get(&id).map(serde_json::to_value),
        };
        let mut map = serde_json::Map::new();
        map.insert(object.to_owned(), value.and_then(Result::ok).unwrap_or_default());
        if let Some(changed) = changed {
            map.insert("changed".to_owned(), json!(changed));
        }
        serde_json::Value::Object(map)
    }

    /// The whole topology, tagged with the last event id.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            node_id: self.config.node_id.clone(),
            last_event_id: self.last_seq,
            disks: self.disks.values().cloned().collect(),
            partitions: self.partitions.values().cloned().collect(),
            mounts: self.mounts.values().cloned().collect(),
            shares: self.shares.values().cloned().collect(),
            sources: self.sources.values().cloned().collect(),
            arrays: self.arrays.values().cloned().collect(),
        }
    }

    pub fn disks(&self) -> impl Iterator<Item = &Disk> {
        self.disks.values()
    }
    pub fn disk(&self, id: &str) -> Option<&Disk> {
        self.disks.get(id)
    }
    pub fn partitions(&self) -> impl Iterator<Item = &Partition> {
        self.partitions.values()
    }
    pub fn mounts(&self) -> impl Iterator<Item = &Mount> {
        self.mounts.values()
    }
    pub fn shares(&self) -> impl Iterator<Item = &Share> {
        self.shares.values()
    }
    pub fn arrays(&self) -> impl Iterator<Item = &Array> {
        self.arrays.values()
    }
    pub fn array(&self, id: &str) -> Option<&Array> {
        self.arrays.get(id)
    }
    pub fn sources(&self) -> impl Iterator<Item = &SourceStatus> {
        self.sources.values()
    }

    fn quiet(&self, initial: bool) -> bool {
        initial && !self.config.emit_initial
    }

    fn replace_block_devices(
        &mut self,
        disks: Vec<Disk>,
        partitions: Vec<Partition>,
        initial: bool,
        drafts: &mut Vec<Draft>,
    ) {
        let keep_parts: std::collections::HashSet<&str> = partitions.iter().map(|p| p.id.as_str()).collect();
        let gone_parts: Vec<String> =
            self.partitions.keys().filter(|id| !keep_parts.contains(id.as_str())).cloned().collect();
        for id in gone_parts {
            self.remove_partition(&id, drafts);
        }
        let keep_disks: std::collections::HashSet<&str> = disks.iter().map(|d| d.id.as_str()).collect();
        let gone_disks: Vec<String> =
            self.disks.keys().filter(|id| !keep_disks.contains(id.as_str())).cloned().collect();
        for id in gone_disks {
            self.remove_disk(&id, drafts);
        }
        for disk in disks {
            self.upsert_disk(disk, initial, drafts);
        }
        for partition in partitions {
            self.upsert_partition(partition, initial, drafts);
        }
    }

    fn upsert_disk(&mut self, mut disk: Disk, initial: bool, drafts: &mut Vec<Draft>) {
        let quiet = self.quiet(initial);
        match self.disks.get(&disk.id) {
            Some(old) => {
                disk.partitions = old.partitions.clone();
                disk.mounts = old.mounts.clone();
                // Owned by the health and activity sources, not by udev.
                disk.power_state = old.power_state;
                disk.health = old.health.clone();
                disk.health_note = old.health_note.clone();
                disk.io = old.io.clone();
                disk.sleep = old.sleep.clone();
                disk.arrays = old.arrays.clone();
                disk.attention = old.attention.clone();
                disk.self_test = old.self_test.clone();
                let changed = changed_fields(old, &disk, DERIVED);
                if !changed.is_empty() {
                    drafts.push(current_draft(EventKind::DiskChanged, "disk", &disk.id, Some(changed)));
                }
            }
            None if !quiet => drafts.push(current_draft(EventKind::DiskAdded, "disk", &disk.id, None)),
            None => {}
        }
        self.disks.insert(disk.id.clone(), disk);
    }

    fn remove_disk(&mut self, id: &str, drafts: &mut Vec<Draft>) {
        let children: Vec<String> =
            self.partitions.values().filter(|p| p.disk_id == id).map(|p| p.id.clone()).collect();
        for child in children {
            self.remove_partition(&child, drafts);
        }
        if let Some(disk) = self.disks.remove(id) {
            self.temp_levels.remove(id);
            self.attention.forget_disk(id);
            drafts.push(ready_draft(EventKind::DiskRemoved, "disk", id, &disk));
        }
    }

    fn upsert_partition(&mut self, mut partition: Partition, initial: bool, drafts: &mut Vec<Draft>) {
        let quiet = self.quiet(initial);
        match self.partitions.get(&partition.id) {
            Some(old) => {
                partition.mounts = old.mounts.clone();
                partition.arrays = old.arrays.clone();
                let changed = changed_fields(old, &partition, DERIVED);
                if !changed.is_empty() {
                    drafts.push(current_draft(EventKind::PartitionChanged, "partition", &partition.id, Some(changed)));
                }
            }
            None if !quiet => drafts.push(current_draft(EventKind::PartitionAdded, "partition", &partition.id, None)),
            None => {}
        }
        self.partitions.insert(partition.id.clone(), partition);
    }

    fn remove_partition(&mut self, id: &str, drafts: &mut Vec<Draft>) {
        if let Some(partition) = self.partitions.remove(id) {
            drafts.push(ready_draft(EventKind::PartitionRemoved, "partition", id, &partition));
        }
    }

    fn replace_mounts(&mut self, mounts: Vec<Mount>, initial: bool, drafts: &mut Vec<Draft>) {
        let quiet = self.quiet(initial);
        let mut next: BTreeMap<String, Mount> = BTreeMap::new();
        for mount in mounts {
            next.insert(mount.id.clone(), mount);
        }
        let gone: Vec<String> = self.mounts.keys().filter(|id| !next.contains_key(*id)).cloned().collect();
        for id in gone {
            self.remove_mount(&id, drafts);
        }
        for mount in next.into_values() {
            self.upsert_mount(mount, quiet, drafts);
        }
    }

    fn remove_mount(&mut self, id: &str, drafts: &mut Vec<Draft>) {
        if let Some(mount) = self.mounts.remove(id) {
            self.usage_marks.remove(id);
            drafts.push(ready_draft(EventKind::MountUnmounted, "mount", id, &mount));
        }
    }

    fn upsert_mount(&mut self, mut mount: Mount, quiet: bool, drafts: &mut Vec<Draft>) {
        let id = mount.id.clone();
        match self.mounts.get(&id) {
            Some(old) => {
                mount.partition_id = old.partition_id.clone();
                mount.disk_id = old.disk_id.clone();
                mount.shares = old.shares.clone();
                mount.array_id = old.array_id.clone();
                mount.usage = old.usage.clone();
                mount.stale = old.stale;
                mount.attention = old.attention.clone();
                mount.forecast = old.forecast.clone();
                // Equal (derived fields copied above) is the common case: skip the field diff.
                let changed = if *old == mount { Vec::new() } else { changed_fields(old, &mount, DERIVED) };
                if !changed.is_empty() {
                    // A different filesystem on the same mount point is a new mount.
                    if changed.iter().any(|f| f == "dev" || f == "fs_type" || f == "source" || f == "mount_point") {
                        drafts.push(ready_draft(EventKind::MountUnmounted, "mount", &id, old));
                        mount.usage = None;
                        mount.stale = false;
                        mount.forecast = None;
                        self.usage_marks.insert(id.clone(), UsageMark { announced: None, announce_first: true });
                        drafts.push(current_draft(EventKind::MountMounted, "mount", &id, None));
                    } else {
                        drafts.push(current_draft(EventKind::MountRemounted, "mount", &id, Some(changed)));
                    }
                }
            }
            None => {
                self.usage_marks.insert(id.clone(), UsageMark { announced: None, announce_first: !quiet });
                if !quiet {
                    drafts.push(current_draft(EventKind::MountMounted, "mount", &id, None));
                }
            }
        }
        self.mounts.insert(id, mount);
    }

    fn mount_usage(&mut self, id: &str, usage: Option<crate::model::Usage>, stale: bool, drafts: &mut Vec<Draft>) {
        let Some(mount) = self.mounts.get_mut(id) else { return };
        let mark =
            self.usage_marks.entry(id.to_owned()).or_insert(UsageMark { announced: None, announce_first: false });
        let mut changed = Vec::new();
        if mount.stale != stale {
            mount.stale = stale;
            changed.push("stale".to_owned());
        }
        if let Some(usage) = usage {
            let percent = usage.percent;
            let announce = match mark.announced {
                None => mark.announce_first,
                Some(last) => {
                    (percent - last).abs() >= self.config.usage_step
                        || self.config.usage_thresholds.iter().any(|t| (last < *t) != (percent < *t))
                }
            };
            if mark.announced.is_none() && !announce {
                // The baseline for coldplugged mounts: later moves are measured from here.
                mark.announced = Some(percent);
            }
            if announce {
                mark.announced = Some(percent);
                changed.push("usage".to_owned());
            }
            mount.usage = Some(usage);
        }
        if !changed.is_empty() {
            drafts.push(current_draft(EventKind::MountUsage, "mount", id, Some(changed)));
        }
    }

    fn replace_shares(&mut self, shares: Vec<Share>, initial: bool, drafts: &mut Vec<Draft>) {
        let quiet = self.quiet(initial);
        let mut next: BTreeMap<String, Share> = BTreeMap::new();
        for share in shares {
            next.insert(share.id.clone(), share);
        }
        let gone: Vec<String> = self.shares.keys().filter(|id| !next.contains_key(*id)).cloned().collect();
        for id in gone {
            if let Some(share) = self.shares.remove(&id) {
                drafts.push(ready_draft(EventKind::ShareDeleted, "share", &id, &share));
            }
        }
        for (id, mut share) in next {
            match self.shares.get(&id) {
                Some(old) => {
                    // Keep the (possibly sticky) link while the path stays the same.
                    if old.resolved_path == share.resolved_path {
                        share.mount_id = old.mount_id.clone();
                    }
                    share.partition_id = old.partition_id.clone();
                    share.disk_id = old.disk_id.clone();
                    share.available = old.available;
                    let mut changed = changed_fields(old, &share, DERIVED);
                    if old.enabled != share.enabled {
                        let kind = if share.enabled { EventKind::ShareEnabled } else { EventKind::ShareDisabled };
                        drafts.push(current_draft(kind, "share", &id, Some(vec!["enabled".into()])));
                        changed.retain(|f| f != "enabled");
                    }
                    // Existence of the path is reported through availability, not as a config change.
                    changed.retain(|f| f != "path_exists");
                    if !changed.is_empty() {
                        drafts.push(current_draft(EventKind::ShareUpdated, "share", &id, Some(changed)));
                    }
                }
                None if !quiet => drafts.push(current_draft(EventKind::ShareCreated, "share", &id, None)),
                None => {}
            }
            self.shares.insert(id, share);
        }
    }
}

fn ready_draft<T: Serialize>(kind: EventKind, object: &'static str, id: &str, value: &T) -> Draft {
    let mut data = serde_json::Map::new();
    data.insert(object.to_owned(), serde_json::to_value(value).unwrap_or_default());
    Draft { kind, subject: format!("{object}/{id}"), data: DraftData::Ready(serde_json::Value::Object(data)) }
}

fn current_draft(kind: EventKind, object: &'static str, id: &str, changed: Option<Vec<String>>) -> Draft {
    Draft { kind, subject: format!("{object}/{id}"), data: DraftData::Current { object, id: id.to_owned(), changed } }
}
