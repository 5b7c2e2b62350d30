//! The health source's task: follows the disks in the core's storage view, polls them every
//! `[health] interval` (a new disk at once), watches the partition counters of sleeping disks
//! between rounds (a disk with I/O is awake again, no command needed), and reports each disk
//! as a [`Fact::DiskHealth`]. Runs that fail are reported as the source's failed status.

use std::time::Duration;

use tokio::time::{interval, MissedTickBehavior};
use tracing::{debug, info, instrument, warn};

use super::poller::{Poller, Target, Update};
use super::{HealthConfig, KernelNameFilter, NAME};
use crate::agent::StorageView;
use crate::sources::{Source, SourceContext, SourceFuture};
use crate::state::Fact;

/// The health source.
pub struct HealthSource {
    config: HealthConfig,
    /// Shared with the self-test source ([`HealthConfig::smartctl`]).
    smartctl: crate::smartctl::Smartctl,
    /// How often sleeping disks' partition counters are looked at (the activity interval).
    wake_every: Duration,
}

impl HealthSource {
    pub fn new(config: HealthConfig, wake_every: Duration, smartctl: crate::smartctl::Smartctl) -> Self {
        HealthSource { config, smartctl, wake_every }
    }
}

impl Source for HealthSource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn run(self: Box<Self>, ctx: SourceContext) -> SourceFuture {
        Box::pin(run(self.config, self.smartctl, self.wake_every, ctx))
    }
}

/// The disks of a view that pass the filter.
pub fn targets(view: &StorageView, filter: &KernelNameFilter) -> Vec<Target> {
    view.disks
        .iter()
        .filter(|d| filter.keeps(&d.kernel_name))
        .map(|d| Target { id: d.id.clone(), kernel_name: d.kernel_name.clone(), devnode: d.devnode.clone() })
        .collect()
}

async fn send(ctx: &SourceContext, updates: Vec<Update>) -> bool {
    for u in updates {
        let fact = Fact::DiskHealth { id: u.id, power_state: u.power_state, health: u.health, note: u.note };
        if ctx.facts.send(fact).await.is_err() {
            return false;
        }
    }
    true
}

/// Reports the source failed while any disk's last run failed, recovered when none does.
async fn report(ctx: &SourceContext, poller: &Poller, failed: &mut bool) {
    if poller.errors.is_empty() {
        if *failed {
            *failed = false;
            let _ = ctx.facts.send(Fact::SourceRecovered { source: NAME.into() }).await;
        }
        return;
    }
    let mut lines: Vec<String> = poller.errors.iter().map(|(id, e)| format!("{id}: {e}")).collect();
    lines.sort();
    *failed = true;
    let _ = ctx.facts.send(Fact::SourceFailed { source: NAME.into(), message: lines.join("; ") }).await;
}

#[instrument(name = "health", skip_all)]
async fn run(config: HealthConfig, smartctl: crate::smartctl::Smartctl, wake_every: Duration, ctx: SourceContext) {
    let filter = match KernelNameFilter::new(&config.include, &config.exclude) {
        Ok(f) => f,
        Err(e) => {
            let _ = ctx.facts.send(Fact::SourceFailed { source: NAME.into(), message: e.to_string() }).await;
            return;
        }
    };
    let mut poller = Poller::new(smartctl, config.sysfs.clone());
    let mut storage = ctx.storage.clone();
    poller.set_targets(targets(&storage.borrow_and_update(), &filter));
    // Health never holds up readiness: the first round may wait on slow devices.
    if !ctx.ready(NAME).await {
        return;
    }
    info!(smartctl = %config.smartctl.display(), interval = ?config.interval, "health source started");
    let mut rounds = interval(config.interval);
    rounds.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut wake = interval(wake_every);
    wake.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failed = false;
    let mut storage_open = true;
    loop {
        let only: Option<Vec<String>> = tokio::select! {
            _ = ctx.token.cancelled() => break,
            _ = rounds.tick() => None,
            _ = wake.tick() => {
                let woke = poller.wake_check();
                if !woke.is_empty() {
                    debug!(disks = woke.len(), "I/O on sleeping disks: awake again");
                }
                if !send(&ctx, woke).await {
                    break;
                }
                continue;
            }
            changed = storage.changed(), if storage_open => {
                if changed.is_err() {
                    storage_open = false;
                    continue;
                }
                let new = poller.set_targets(targets(&storage.borrow_and_update(), &filter));
                if new.is_empty() {
                    continue;
                }
                Some(new)
            }
        };
        let round = tokio::select! {
            _ = ctx.token.cancelled() => break,
            r = poller.round(only.as_deref()) => r,
        };
        let (updates, stats) = round;
        debug!(
            smart_reads = stats.smart_reads,
            power_checks = stats.power_checks,
            asleep = stats.asleep,
            suspended = stats.suspended,
            errors = stats.errors,
            "health round"
        );
        if !send(&ctx, updates).await {
            break;
        }
        report(&ctx, &poller, &mut failed).await;
    }
    if poller.in_flight() > 0 {
        warn!(running = poller.in_flight(), "smartctl still running at shutdown (killed)");
    }
}
