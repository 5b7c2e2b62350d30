//! A poll round over the disks: for each, decide (runtime PM, activity counters), run at most
//! one smartctl, read hwmon right after a SMART reading, and fold the answer into its
//! [`HealthTrack`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::stream::{self, StreamExt};
use tracing::{debug, warn};

use crate::activity::stat;
use crate::model::{Health, PowerState};

use super::poll::{reads_hwmon, HealthTrack, Plan};
use super::{hwmon, now_rfc3339};
use crate::smartctl::{runtime_suspended, Smartctl};

/// smartctl runs at once in a round (they mostly wait on the device).
const PARALLEL: usize = 4;

/// A disk to poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub id: String,
    pub kernel_name: String,
    pub devnode: String,
}

/// What a disk looks like after a round, for the core.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub id: String,
    pub power_state: PowerState,
    pub health: Option<Health>,
    pub note: Option<String>,
}

/// Counts of a round, for logs, metrics and the bench.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundStats {
    pub smart_reads: usize,
    pub power_checks: usize,
    pub suspended: usize,
    /// Disks known asleep with no I/O since: nothing sent.
    pub asleep: usize,
    pub errors: usize,
}

/// The poller: smartctl, sysfs, and every disk's bookkeeping.
pub struct Poller {
    smartctl: Smartctl,
    sys_block: PathBuf,
    disks: HashMap<String, (Target, HealthTrack)>,
    /// Last activity counter seen per disk, for wake detection between rounds.
    seen_ios: HashMap<String, u64>,
    /// Errors of the last round per disk (the source's failed/recovered status).
    pub errors: HashMap<String, String>,
}

impl Poller {
    pub fn new(smartctl: Smartctl, sysfs: PathBuf) -> Self {
        Poller {
            smartctl,
            sys_block: sysfs.join("block"),
            disks: HashMap::new(),
            seen_ios: HashMap::new(),
            errors: HashMap::new(),
        }
    }

    /// Disks with a smartctl process alive.
    pub fn in_flight(&self) -> usize {
        self.smartctl.in_flight()
    }

    pub fn tracked(&self, id: &str) -> Option<&HealthTrack> {
        self.disks.get(id).map(|(_, t)| t)
    }

    /// Replaces the disk set; returns the ids that are new (to poll at once).
    pub fn set_targets(&mut self, targets: Vec<Target>) -> Vec<String> {
        let ids: std::collections::HashSet<&str> = targets.iter().map(|t| t.id.as_str()).collect();
        self.disks.retain(|id, _| ids.contains(id.as_str()));
        self.seen_ios.retain(|id, _| ids.contains(id.as_str()));
        self.errors.retain(|id, _| ids.contains(id.as_str()));
        let mut new = Vec::new();
        for t in targets {
            match self.disks.get_mut(&t.id) {
                Some((old, _)) => *old = t,
                None => {
                    new.push(t.id.clone());
                    self.disks.insert(t.id.clone(), (t, HealthTrack::default()));
                }
            }
        }
        new
    }

    fn update(&self, id: &str) -> Option<Update> {
        self.disks.get(id).map(|(t, tr)| Update {
            id: t.id.clone(),
            power_state: tr.power,
            health: tr.health.clone(),
            note: tr.note.clone(),
        })
    }

    /// Between rounds: a disk believed asleep whose partitions had I/O is awake again.
    /// Reads only sysfs files; sends nothing to any disk.
    pub fn wake_check(&mut self) -> Vec<Update> {
        let mut woke = Vec::new();
        for (id, (t, tracked)) in self.disks.iter_mut() {
            let Ok(c) = stat::activity(&self.sys_block, &t.kernel_name) else { continue };
            let prev = self.seen_ios.insert(id.clone(), c.ios());
            if prev.is_some_and(|p| p != c.ios()) && tracked.woke() {
                woke.push(id.clone());
            }
        }
        woke.iter().filter_map(|id| self.update(id)).collect()
    }

    /// Polls `only` (or every disk); returns the disks whose state changed and the counts.
    pub async fn round(&mut self, only: Option<&[String]>) -> (Vec<Update>, RoundStats) {
        let mut stats = RoundStats::default();
        let mut jobs = Vec::new();
        for (id, (t, tracked)) in &self.disks {
            if only.is_some_and(|o| !o.contains(id)) {
                continue;
            }
            let suspended = runtime_suspended(&self.sys_block, &t.kernel_name);
            let ios = stat::activity(&self.sys_block, &t.kernel_name).ok().map(|c| c.ios());
            jobs.push((id.clone(), t.clone(), tracked.plan(suspended, ios), ios));
        }
        let smartctl = Arc::new(self.smartctl.clone());
        let sys_block = self.sys_block.clone();
        let results: Vec<_> = stream::iter(jobs)
            .map(|(id, t, plan, ios)| {
                let smartctl = smartctl.clone();
                let sys_block = sys_block.clone();
                async move {
                    let Some(ask) = plan.ask() else { return (id, t, plan, ios, None, None) };
                    let answer = smartctl.ask(&id, &t.devnode, ask).await.map_err(|e| e.to_string());
                    let hwmon_c = match &answer {
                        Ok(a) if reads_hwmon(plan, a) => hwmon::read_temperature(&sys_block, &t.kernel_name),
                        _ => None,
                    };
                    (id, t, plan, ios, Some(answer), hwmon_c)
                }
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        let now = now_rfc3339();
        let mut changed = Vec::new();
        for (id, t, plan, ios, answer, hwmon_c) in results {
            let Some((_, tracked)) = self.disks.get_mut(&id) else { continue };
            if let Some(ios) = ios {
                self.seen_ios.insert(id.clone(), ios);
            }
            let did_change = match (plan, answer) {
                (Plan::Asleep, _) => {
                    stats.asleep += 1;
                    false
                }
                (Plan::Suspended, _) | (_, None) => {
                    stats.suspended += 1;
                    self.errors.remove(&id);
                    tracked.suspended()
                }
                (plan, Some(Ok(answer))) => {
                    match plan {
                        Plan::SmartRead => stats.smart_reads += 1,
                        _ => stats.power_checks += 1,
                    }
                    let applied = tracked.apply(plan, answer, hwmon_c, ios, &now);
                    if let Some(why) = &applied.unsupported {
                        debug!(disk = %t.kernel_name, reason = %why, "SMART unavailable for this device");
                    }
                    match applied.error {
                        Some(e) => {
                            stats.errors += 1;
                            // Warn once per new error, not every round.
                            if self.errors.get(&id) != Some(&e) {
                                warn!(disk = %t.kernel_name, error = %e, "smartctl output not understood");
                            }
                            self.errors.insert(id.clone(), e);
                        }
                        None => {
                            self.errors.remove(&id);
                        }
                    }
                    applied.changed
                }
                (_, Some(Err(e))) => {
                    stats.errors += 1;
                    if self.errors.get(&id) != Some(&e) {
                        warn!(disk = %t.kernel_name, error = %e, "smartctl run failed");
                    }
                    self.errors.insert(id.clone(), e.clone());
                    tracked.failed(&e, &now)
                }
            };
            if did_change {
                changed.push(id);
            }
        }
        changed.sort();
        (changed.iter().filter_map(|id| self.update(id)).collect(), stats)
    }
}
