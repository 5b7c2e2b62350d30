//! Attention of mounts and arrays, and what an array's trouble means for its member disks
//! (SPEC §9): re-assessed after every fact that can change them (structural facts, usage,
//! forecasts); `mount.attention_changed` / `array.attention_changed` only when the level or
//! the unacknowledged reasons change.

use std::collections::HashMap;

use serde_json::json;

use super::{Draft, DraftData, State};
use crate::attention::objects::{array_reasons, member_reasons, mount_reasons, FILLS_SOON};
use crate::attention::{assess, is_news, Acks, Found};
use crate::events::EventKind;
use crate::model::attention::Attention;

/// Whether two verdicts say the same (the same reasons, acknowledged alike): then the old one
/// is kept, so an unchanged object is not republished with only a new `assessed_at`.
fn same(a: &Attention, b: &Attention) -> bool {
    a.level == b.level
        && a.reasons.len() == b.reasons.len()
        && a.reasons.iter().zip(&b.reasons).all(|(x, y)| {
            x.code == y.code && x.value == y.value && x.acknowledged == y.acknowledged && x.text == y.text
        })
}

/// The next verdict of an object from its reasons, or `None` when nothing changed.
fn next_verdict(found: Vec<Found>, acks: Option<&Acks>, previous: Option<&Attention>, now: &str) -> Option<Attention> {
    let none = Acks::new();
    let next = assess(found, None, acks.unwrap_or(&none), previous, now);
    match previous {
        Some(p) if same(p, &next) => None,
        _ => Some(next),
    }
}

impl State {
    /// Re-assesses every mount and array, and the array reasons of member disks; returns
    /// whether any verdict changed (sinks mirroring the objects follow).
    pub(super) fn assess_objects(&mut self, now: &str, drafts: &mut Vec<Draft>) -> bool {
        let mut changed = false;
        let ids: Vec<String> = self.mounts.keys().cloned().collect();
        for id in ids {
            let Some(m) = self.mounts.get(&id) else { continue };
            if m.usage.is_none() && m.attention.is_none() {
                continue;
            }
            let subject = format!("mount/{id}");
            let previous = m.attention.as_deref().cloned();
            let Some(next) = next_verdict(mount_reasons(m), self.attention.acks.get(&subject), previous.as_ref(), now)
            else {
                continue;
            };
            changed = true;
            // The forecast comes minutes after the usage (when the forecast source closes its
            // first point after a start): `fills_soon` is not judged without one.
            let forecast_missing = m.forecast.is_none();
            self.attention.end_acks_with_reasons(&subject, &next, |code| code == FILLS_SOON && forecast_missing);
            let news = is_news(previous.as_ref(), &next);
            if let Some(m) = self.mounts.get_mut(&id) {
                m.attention = Some(Box::new(next.clone()));
            }
            if news {
                let mount = self.mounts.get(&id).map(serde_json::to_value).and_then(Result::ok).unwrap_or_default();
                drafts.push(Draft {
                    kind: EventKind::MountAttentionChanged,
                    subject,
                    data: DraftData::Ready(json!({
                        "mount": mount, "previous": previous.map(|p| p.level.as_str()), "reasons": next.reasons,
                    })),
                });
            }
        }
        let mut members: HashMap<String, Vec<Found>> = HashMap::new();
        let ids: Vec<String> = self.arrays.keys().cloned().collect();
        for id in ids {
            let Some(a) = self.arrays.get(&id) else { continue };
            for disk in a.members.iter().filter_map(|m| m.disk_id.as_deref()) {
                let found = member_reasons(a, disk);
                if !found.is_empty() {
                    members.entry(disk.to_owned()).or_default().extend(found);
                }
            }
            let subject = format!("array/{id}");
            let previous = a.attention.as_deref().cloned();
            let Some(next) = next_verdict(array_reasons(a), self.attention.acks.get(&subject), previous.as_ref(), now)
            else {
                continue;
            };
            changed = true;
            self.attention.end_acks_with_reasons(&subject, &next, |_| false);
            let news = is_news(previous.as_ref(), &next);
            if let Some(a) = self.arrays.get_mut(&id) {
                a.attention = Some(Box::new(next.clone()));
            }
            if news {
                let array = self.arrays.get(&id).map(serde_json::to_value).and_then(Result::ok).unwrap_or_default();
                drafts.push(Draft {
                    kind: EventKind::ArrayAttentionChanged,
                    subject,
                    data: DraftData::Ready(json!({
                        "array": array, "previous": previous.map(|p| p.level.as_str()), "reasons": next.reasons,
                    })),
                });
            }
        }
        // Member disks whose array reasons changed are re-assessed with them.
        let mut disks: Vec<String> = members.keys().cloned().collect();
        disks.extend(self.attention.array_reasons.keys().filter(|d| !members.contains_key(*d)).cloned());
        for disk in disks {
            let found = members.remove(&disk).unwrap_or_default();
            let old = self.attention.array_reasons.get(&disk);
            if old == Some(&found) || (old.is_none() && found.is_empty()) {
                continue;
            }
            if found.is_empty() {
                self.attention.array_reasons.remove(&disk);
            } else {
                self.attention.array_reasons.insert(disk.clone(), found);
            }
            self.attention.now = now.to_owned();
            if let Some(news) = self.assess_disk(&disk) {
                drafts.push(self.attention_draft(&disk, news));
            }
            changed = true;
        }
        changed
    }
}
