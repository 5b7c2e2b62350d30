//! The sleep source's task. It follows the power state the health source reports (through the
//! core's storage view): a disk seen entering standby or sleep starts an asleep period and is
//! armed in the trace; the first request to it names the wake and disarms it; a disk seen awake
//! again without a traced request is a wake with cause `unknown`. While no disk sleeps nothing
//! is enabled and nothing is polled: attribution costs nothing while disks spin.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio::time::{interval, MissedTickBehavior};
use tracing::{debug, info, instrument, warn};

use super::attribute::{culprit, kernel_writer_name, Task};
use super::ledger::Ledger;
use super::process::{describe, open_file_on};
use super::trace::{Armed, Record, Tracer};
use super::{SleepConfig, NAME};
use crate::agent::StorageView;
use crate::model::sleep::{Wake, WakeOp};
use crate::sources::{Source, SourceContext, SourceFuture};
use crate::state::Fact;

/// How often the trace is read while some disk is armed.
pub const POLL: Duration = Duration::from_millis(250);
/// How often the 24-hour figures are brought up to date without a change (the share moves).
const REFRESH: Duration = Duration::from_secs(60);

/// The sleep source.
pub struct WakeSource {
    config: SleepConfig,
    /// How long after a traced wake the power state may still say asleep before the disk counts
    /// as asleep again (the health source sees I/O within one activity interval; a wake and the
    /// next spin-down can also fall between two views the watch channel coalesced).
    grace: Duration,
}

impl WakeSource {
    /// `activity_interval`: how often the health source looks at sleeping disks' counters.
    pub fn new(config: SleepConfig, activity_interval: Duration) -> Self {
        WakeSource { config, grace: activity_interval * 3 }
    }
}

impl Source for WakeSource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn run(self: Box<Self>, ctx: SourceContext) -> SourceFuture {
        Box::pin(run(self.config, self.grace, ctx))
    }
}

/// One disk as the source follows it.
struct Watched {
    ledger: Ledger,
    armed: Armed,
    /// When the trace named this sleep's wake, while the power state has not caught up yet.
    woke_pending: Option<SystemTime>,
    /// The last task seen dirtying data on this disk while it slept.
    dirtier: Option<Task>,
}

/// Everything the loop keeps.
struct Sleeper {
    proc_root: PathBuf,
    tracer: Option<Tracer>,
    /// Why causes are unknown without a trace (shown in each such wake and in the source status).
    untraced: Option<String>,
    disks: BTreeMap<String, Watched>,
    grace: Duration,
}

/// `"8:16"` → (8, 16).
fn parse_dev(dev: &str) -> Option<(u32, u32)> {
    let (a, b) = dev.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

impl Sleeper {
    /// Follows the view; returns the facts to send.
    fn on_view(&mut self, view: &StorageView, now: SystemTime) -> Vec<Fact> {
        let mut facts = Vec::new();
        let mut parts: HashMap<&str, Vec<(u32, u32)>> = HashMap::new();
        for p in &view.partitions {
            if let Some(dev) = parse_dev(&p.dev) {
                parts.entry(p.disk_id.as_str()).or_default().push(dev);
            }
        }
        let gone: Vec<String> =
            self.disks.keys().filter(|id| !view.disks.iter().any(|d| &d.id == *id)).cloned().collect();
        for id in gone {
            self.disarm(&id);
            self.disks.remove(&id);
        }
        for disk in &view.disks {
            // Only disks whose power state is known (watched by the health source, and a state
            // smartctl can ask: not virtio, not a bridge without CHECK POWER MODE) have a record.
            let Some(power) = disk.power_state else { continue };
            if power == crate::model::PowerState::Unknown && !self.disks.contains_key(&disk.id) {
                continue;
            }
            let Some(dev) = parse_dev(&disk.dev) else { continue };
            let mut devs = vec![dev];
            devs.extend(parts.get(disk.id.as_str()).into_iter().flatten().copied());
            let armed = Armed { devs, bdi: disk.dev.clone() };
            let new = !self.disks.contains_key(&disk.id);
            let entry = self.disks.entry(disk.id.clone()).or_insert_with(|| Watched {
                ledger: Ledger::new(now),
                armed: armed.clone(),
                woke_pending: None,
                dirtier: None,
            });
            entry.armed = armed;
            let before = facts.len();
            let known_awake = !power.is_asleep() && power != crate::model::PowerState::Unknown;
            if entry.woke_pending.is_some_and(|at| now.duration_since(at).unwrap_or_default() >= self.grace) {
                entry.woke_pending = None;
            }
            if power.is_asleep() && entry.woke_pending.is_none() && entry.ledger.fell_asleep(now) {
                debug!(disk = %disk.id, "asleep: armed");
                self.arm(&disk.id);
                facts.push(self.fact(&disk.id, now, false));
            } else if power.is_asleep() && entry.ledger.asleep() {
                // Partitions may have appeared: keep the filter in step.
                self.arm(&disk.id);
            }
            if known_awake {
                if self.disks.get(&disk.id).is_some_and(|w| w.ledger.asleep()) {
                    // A traced request may be waiting in the pipe: it comes first.
                    facts.extend(self.on_trace(now));
                }
                let Some(entry) = self.disks.get_mut(&disk.id) else { continue };
                entry.woke_pending = None;
                if entry.ledger.asleep() {
                    let note = self.untraced.clone().unwrap_or_else(|| {
                        "the trace saw no request (counters moved without one reaching the block layer's queue)"
                            .to_owned()
                    });
                    entry.ledger.woke(now, Wake { op: WakeOp::Unknown, note: Some(note), ..Wake::default() });
                    info!(disk = %disk.id, "woken (cause unknown)");
                    self.disarm(&disk.id);
                    facts.push(self.fact(&disk.id, now, true));
                }
            }
            if new && facts.len() == before {
                // A disk newly watched gets its (empty) record at once.
                facts.push(self.fact(&disk.id, now, false));
            }
        }
        facts
    }

    /// Reads the trace; returns the facts of the wakes it names.
    fn on_trace(&mut self, now: SystemTime) -> Vec<Fact> {
        let Some(tracer) = self.tracer.as_mut() else { return Vec::new() };
        let records = tracer.read();
        let mut facts = Vec::new();
        for record in records {
            match record {
                Record::Dirty { pid, tgid, comm, bdi, .. } => {
                    let Some(w) = self.disks.values_mut().find(|w| w.armed.bdi == bdi && w.ledger.asleep()) else {
                        continue;
                    };
                    if kernel_writer_name(&comm) || describe(&self.proc_root, pid).kthread {
                        continue;
                    }
                    let comm = if comm == "<...>" { describe(&self.proc_root, pid).comm.unwrap_or(comm) } else { comm };
                    w.dirtier = Some(Task { pid: tgid.unwrap_or(pid), comm });
                }
                Record::Block { pid, tgid, comm, dev, rwbs } => {
                    let Some(id) = self
                        .disks
                        .iter()
                        .find(|(_, w)| w.ledger.asleep() && w.armed.devs.contains(&dev))
                        .map(|(id, _)| id.clone())
                    else {
                        continue;
                    };
                    let info = describe(&self.proc_root, pid);
                    let issuer = Task { pid: tgid.or(info.tgid).unwrap_or(pid), comm };
                    let kthread = info.kthread || kernel_writer_name(&issuer.comm);
                    let Some(w) = self.disks.get_mut(&id) else { continue };
                    let (who, op) = culprit(&rwbs, &issuer, kthread, w.dirtier.as_ref());
                    let who = who.clone();
                    let info = if who.pid == issuer.pid { info } else { describe(&self.proc_root, who.pid) };
                    let wake = Wake {
                        pid: Some(who.pid),
                        comm: Some(who.comm.clone()),
                        unit: info.unit,
                        path: open_file_on(&self.proc_root, who.pid, &w.armed.devs),
                        op,
                        cgroup: info.cgroup,
                        issuer: (who.pid != issuer.pid).then(|| issuer.comm.clone()),
                        ..Wake::default()
                    };
                    w.ledger.woke(now, wake);
                    w.woke_pending = Some(now);
                    w.dirtier = None;
                    info!(disk = %id, pid = who.pid, comm = %who.comm, op = op.as_str(), rwbs = %rwbs, "woken");
                    self.disarm(&id);
                    facts.push(self.fact(&id, now, true));
                }
            }
        }
        facts
    }

    fn arm(&mut self, id: &str) {
        let (Some(tracer), Some(w)) = (self.tracer.as_mut(), self.disks.get(id)) else { return };
        if let Err(e) = tracer.arm(id, w.armed.clone()) {
            warn!(disk = %id, error = %e, "cannot arm the trace: this disk's wake will have no cause");
        }
    }

    fn disarm(&mut self, id: &str) {
        if let Some(tracer) = self.tracer.as_mut() {
            if let Err(e) = tracer.disarm(id) {
                warn!(disk = %id, error = %e, "cannot disarm the trace");
            }
        }
    }

    fn fact(&mut self, id: &str, now: SystemTime, woken: bool) -> Fact {
        let sleep = self.disks.get_mut(id).map(|w| w.ledger.record(now)).unwrap_or_default();
        Fact::DiskSleep { id: id.to_owned(), sleep: Box::new(sleep), woken }
    }

    fn armed(&self) -> bool {
        self.tracer.as_ref().is_some_and(|t| !t.armed().is_empty())
    }
}

async fn send(ctx: &SourceContext, facts: Vec<Fact>) -> bool {
    for fact in facts {
        if ctx.facts.send(fact).await.is_err() {
            return false;
        }
    }
    true
}

#[instrument(name = "sleep", skip_all)]
async fn run(config: SleepConfig, grace: Duration, ctx: SourceContext) {
    // tracefs calls are writes to in-kernel control files (no device I/O), a few per arming;
    // they run inline (figures in docs/sleep.md).
    let (tracer, untraced) = if config.tracefs.as_os_str().is_empty() {
        (None, Some("tracing is off ([sleep] tracefs is empty)".to_owned()))
    } else {
        match Tracer::open(&config.tracefs, &config.proc) {
            Ok(t) => (Some(t), None),
            Err(e) => (None, Some(format!("no wake attribution: {e}"))),
        }
    };
    if let Some(why) = &untraced {
        warn!(reason = %why, "wakes are counted from the power state; their causes are unknown");
        let message = format!("wakes counted, causes unknown: {why}");
        let _ = ctx.facts.send(Fact::SourceFailed { source: NAME.into(), message }).await;
    }
    let mut sleeper = Sleeper { proc_root: config.proc.clone(), tracer, untraced, disks: BTreeMap::new(), grace };
    let mut storage = ctx.storage.clone();
    let first = sleeper.on_view(&storage.borrow_and_update(), SystemTime::now());
    if !send(&ctx, first).await || !ctx.ready(NAME).await {
        return;
    }
    info!(traced = sleeper.tracer.is_some(), "sleep source started");
    let mut poll = interval(POLL);
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut refresh = interval(REFRESH);
    refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut regrace = interval(grace.max(Duration::from_millis(100)));
    regrace.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut storage_open = true;
    loop {
        let armed = sleeper.armed();
        let pending = sleeper.disks.values().any(|w| w.woke_pending.is_some());
        let facts = tokio::select! {
            _ = ctx.token.cancelled() => break,
            changed = storage.changed(), if storage_open => {
                if changed.is_err() {
                    storage_open = false;
                    continue;
                }
                let view = storage.borrow_and_update().clone();
                sleeper.on_view(&view, SystemTime::now())
            }
            _ = poll.tick(), if armed => sleeper.on_trace(SystemTime::now()),
            // A traced wake the power state never showed: asleep again once the grace is over.
            _ = regrace.tick(), if pending => {
                let view = storage.borrow().clone();
                sleeper.on_view(&view, SystemTime::now())
            }
            _ = refresh.tick() => {
                let now = SystemTime::now();
                let ids: Vec<String> = sleeper.disks.keys().cloned().collect();
                ids.iter().map(|id| sleeper.fact(id, now, false)).collect()
            }
        };
        if !send(&ctx, facts).await {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Disk, PowerState};

    fn disk(power: Option<PowerState>) -> Disk {
        let mut d: Disk = serde_json::from_value(serde_json::json!({
            "id": "d", "stable": true, "kernel_name": "sdb", "devpath": "/devices/x/sdb", "devnode": "/dev/sdb",
            "dev": "8:16", "vendor": null, "model": null, "serial": null, "wwn": null, "bus": "ata",
            "size_bytes": 1, "removable": false, "rotational": true, "read_only": false,
            "partition_table": null, "fs_type": null, "fs_label": null, "fs_uuid": null,
            "members": [], "holders": []
        }))
        .unwrap();
        d.power_state = power;
        d
    }

    fn view(power: Option<PowerState>) -> StorageView {
        StorageView { disks: vec![disk(power)], partitions: vec![], mounts: vec![] }
    }

    fn sleeps(facts: &[Fact]) -> Vec<(Sleep, bool)> {
        facts
            .iter()
            .filter_map(|f| match f {
                Fact::DiskSleep { sleep, woken, .. } => Some(((**sleep).clone(), *woken)),
                _ => None,
            })
            .collect()
    }

    use crate::model::sleep::Sleep;

    #[test]
    fn without_a_trace_wakes_are_counted_from_the_power_state() {
        let mut s = Sleeper {
            proc_root: PathBuf::from("/proc"),
            tracer: None,
            untraced: Some("no tracefs".into()),
            disks: BTreeMap::new(),
            grace: Duration::from_secs(30),
        };
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        // Not watched by health, or its state never known: no record.
        assert!(s.on_view(&view(None), t0).is_empty());
        assert!(s.on_view(&view(Some(PowerState::Unknown)), t0).is_empty());
        let f = sleeps(&s.on_view(&view(Some(PowerState::Active)), t0));
        assert_eq!(f.len(), 1, "a newly watched disk gets its record");
        assert_eq!((f[0].0.spin_ups_24h, f[0].1), (0, false));
        let f = sleeps(&s.on_view(&view(Some(PowerState::Standby)), t0 + Duration::from_secs(60)));
        assert!(f[0].0.standby_since.is_some() && !f[0].1);
        assert!(s.on_view(&view(Some(PowerState::Sleeping)), t0 + Duration::from_secs(90)).is_empty(), "still asleep");
        // Unknown is no wake; active is.
        assert!(s.on_view(&view(Some(PowerState::Unknown)), t0 + Duration::from_secs(100)).is_empty());
        let f = sleeps(&s.on_view(&view(Some(PowerState::Active)), t0 + Duration::from_secs(120)));
        assert_eq!(f.len(), 1);
        let (sleep, woken) = &f[0];
        assert!(*woken);
        let wake = sleep.last_wake.as_ref().unwrap();
        assert_eq!((wake.op, wake.pid, wake.note.as_deref()), (WakeOp::Unknown, None, Some("no tracefs")));
        assert_eq!(wake.slept_seconds, Some(60));
        assert_eq!(sleep.spin_ups_24h, 1);
        assert!(s.on_view(&view(Some(PowerState::Idle)), t0 + Duration::from_secs(130)).is_empty(), "one wake");
        // The disk goes away: forgotten.
        assert!(s.on_view(&StorageView { disks: vec![], partitions: vec![], mounts: vec![] }, t0).is_empty());
        assert!(s.disks.is_empty());
    }

    #[test]
    fn a_traced_wake_the_power_state_never_showed_is_asleep_again_after_the_grace() {
        let mut s = Sleeper {
            proc_root: PathBuf::from("/proc"),
            tracer: None,
            untraced: None,
            disks: BTreeMap::new(),
            grace: Duration::from_secs(30),
        };
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        s.on_view(&view(Some(PowerState::Standby)), t0);
        // The trace names a wake (as on_trace does), the view still says standby.
        let w = s.disks.get_mut("d").unwrap();
        w.ledger.woke(t0 + Duration::from_secs(5), Wake::default());
        w.woke_pending = Some(t0 + Duration::from_secs(5));
        assert!(
            s.on_view(&view(Some(PowerState::Standby)), t0 + Duration::from_secs(20)).is_empty(),
            "within the grace"
        );
        let f = sleeps(&s.on_view(&view(Some(PowerState::Standby)), t0 + Duration::from_secs(40)));
        assert_eq!(f.len(), 1);
        assert!(f[0].0.standby_since.is_some() && !f[0].1, "asleep again, armed, not a wake");
    }
}
