//! The attention side of the state model (SPEC §9): a disk's verdict is re-assessed whenever
//! its health changes or the owner acknowledges, with the pure rules of `crate::attention`;
//! `disk.attention_changed` is raised only when the level or the set of unacknowledged reasons
//! changes. Acknowledgements are data here; `crate::attention::store` keeps them on disk.

use std::collections::{BTreeMap, HashMap};

use serde_json::json;

use super::{Draft, DraftData, State};
use crate::attention::disk::{Baselines, Limits};
use crate::attention::{assess, is_news, Acknowledgeable, Acks, Found};
use crate::events::EventKind;
use crate::model::attention::{Attention, Reason};
use crate::model::HealthSource;

/// Acknowledgements and rule history, by object.
#[derive(Debug, Default)]
pub(super) struct AttentionMemory {
    /// Subject (`disk/<id>`) → acknowledged reason codes and values.
    pub(super) acks: HashMap<String, Acks>,
    /// Per disk: the counts first seen (only a rise above them is a reason); kept across
    /// restarts by `crate::attention::baselines`.
    baselines: BTreeMap<String, Baselines>,
    /// Bumped whenever `baselines` changes: the keeper saves then.
    baselines_generation: u64,
    /// Per member disk: the reasons its arrays give it (`state::attention_objects`).
    pub(super) array_reasons: HashMap<String, Vec<Found>>,
    /// The time of the fact being applied, for a verdict made without a health reading.
    pub(super) now: String,
}

impl AttentionMemory {
    pub(super) fn forget_disk(&mut self, id: &str) {
        if self.baselines.remove(id).is_some() {
            self.baselines_generation += 1;
        }
    }

    /// An acknowledgement ends with its reason: if it comes back, it is news again. Codes for
    /// which `unjudged` holds keep theirs: the data that decides them is not there yet.
    pub(super) fn end_acks_with_reasons(&mut self, subject: &str, next: &Attention, unjudged: impl Fn(&str) -> bool) {
        if let Some(acks) = self.acks.get_mut(subject) {
            acks.retain(|code, _| unjudged(code) || next.reasons.iter().any(|r| &r.code == code));
        }
    }
}

/// A verdict that is news: the level before and the reasons now.
pub(super) struct News {
    previous: Option<&'static str>,
    reasons: Vec<Reason>,
}

impl State {
    /// Acknowledgements kept from an earlier run (`crate::attention::store`), by subject.
    pub fn load_acknowledgements(&mut self, acks: BTreeMap<String, Acks>) {
        self.attention.acks.extend(acks);
    }

    /// Baselines of the rising rules kept from an earlier run (`crate::attention::baselines`),
    /// by disk id. A disk's baseline set in this run already wins.
    pub fn load_baselines(&mut self, baselines: BTreeMap<String, Baselines>) {
        for (id, b) in baselines {
            self.attention.baselines.entry(id).or_insert(b);
        }
    }

    /// The baselines of the rising rules, by disk id, and a generation that changes with them.
    pub fn baselines(&self) -> (u64, &BTreeMap<String, Baselines>) {
        (self.attention.baselines_generation, &self.attention.baselines)
    }

    /// What the owner acknowledged of an object, as the state holds it now.
    pub fn acknowledgements(&self, subject: &str) -> Option<&Acks> {
        self.attention.acks.get(subject)
    }

    /// Re-assesses a disk from its health; returns the news, if the verdict is news. The
    /// verdict itself is stored whether news or not (its `assessed_at` moves with the data).
    pub(super) fn assess_disk(&mut self, id: &str) -> Option<News> {
        let disk = self.disks.get_mut(id)?;
        let subject = format!("disk/{id}");
        let previous = disk.attention.clone();
        let limits = Limits { temperature_critical: self.config.temperature_critical };
        let tested = crate::attention::disk::self_test_reasons(disk.self_test.as_deref());
        let next = disk.health.as_deref().map(|h| {
            let base = if h.source == HealthSource::Smartctl {
                let known = self.attention.baselines.get(id).copied();
                let mut b = known.unwrap_or_else(|| Baselines::of(h));
                // A counter the first reading lacked starts at its first value.
                b.crc_errors = b.crc_errors.or(h.crc_errors);
                b.command_timeouts = b.command_timeouts.or(h.command_timeouts);
                if known != Some(b) {
                    self.attention.baselines.insert(id.to_owned(), b);
                    self.attention.baselines_generation += 1;
                }
                b
            } else {
                Baselines::default()
            };
            let mut found = crate::attention::disk::reasons(h, base, limits);
            if !tested.is_empty() {
                // The followed test says more (failing, with the LBA) of the same log entry.
                found.retain(|f| f.code != "self_test_failed");
                found.extend(tested.iter().cloned());
            }
            found.extend(self.attention.array_reasons.get(id).cloned().unwrap_or_default());
            let none = Acks::new();
            let acks = self.attention.acks.get(&subject).unwrap_or(&none);
            assess(found, h.unreadable_since.as_deref(), acks, previous.as_deref(), &h.checked_at)
        });
        // A disk without a reading (not watched, or not yet read) still carries its arrays'
        // reasons, and goes back to ok when they end.
        let next = next.or_else(|| {
            let mut found = tested.clone();
            found.extend(self.attention.array_reasons.get(id).cloned().unwrap_or_default());
            if found.is_empty() && previous.is_none() {
                return None;
            }
            let none = Acks::new();
            let acks = self.attention.acks.get(&subject).unwrap_or(&none);
            Some(assess(found, None, acks, previous.as_deref(), &self.attention.now))
        });
        // Without a verdict (nothing read yet) the previous one, if any, stays.
        let next = next?;
        self.attention.end_acks_with_reasons(&subject, &next, |_| false);
        let news = is_news(previous.as_deref(), &next);
        let reasons = next.reasons.clone();
        disk.attention = Some(Box::new(next));
        news.then(|| News { previous: previous.map(|p| p.level.as_str()), reasons })
    }

    /// The draft of a `disk.attention_changed`: the disk as it is now, the level before, the reasons.
    pub(super) fn attention_draft(&self, id: &str, news: News) -> Draft {
        let disk = self.disks.get(id).map(serde_json::to_value).and_then(Result::ok).unwrap_or_default();
        Draft {
            kind: EventKind::DiskAttentionChanged,
            subject: format!("disk/{id}"),
            data: DraftData::Ready(json!({"disk": disk, "previous": news.previous, "reasons": news.reasons})),
        }
    }

    /// Records an acknowledgement and re-assesses the object; returns whether anything changed.
    pub(super) fn acknowledge(&mut self, subject: String, acks: Acks, drafts: &mut Vec<Draft>) -> bool {
        let id = subject.strip_prefix("disk/").map(str::to_owned);
        self.attention.acks.insert(subject, acks);
        // Mounts and arrays are re-assessed after every acknowledgement (`assess_objects`).
        let Some(id) = id else { return false };
        let before = self.disks.get(&id).and_then(|d| d.attention.clone());
        if let Some(news) = self.assess_disk(&id) {
            drafts.push(self.attention_draft(&id, news));
        }
        before != self.disks.get(&id).and_then(|d| d.attention.clone())
    }

    /// The verdict of a disk, mount or array as the state holds it: `None` when there is no
    /// such object, `Some(None)` while it has no verdict (what an acknowledgement is taken of).
    pub fn attention_of(&self, kind: Acknowledgeable, id: &str) -> Option<Option<Attention>> {
        let attention = match kind {
            Acknowledgeable::Disk => self.disks.get(id)?.attention.as_deref(),
            Acknowledgeable::Mount => self.mounts.get(id)?.attention.as_deref(),
            Acknowledgeable::Array => self.arrays.get(id)?.attention.as_deref(),
        };
        Some(attention.cloned())
    }

    /// A disk's verdict (for tests and sinks).
    pub fn disk_attention(&self, id: &str) -> Option<&Attention> {
        self.disks.get(id).and_then(|d| d.attention.as_deref())
    }
}
