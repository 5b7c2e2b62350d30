//! The core: the one task that applies facts to the state, journals and logs
//! the resulting events and fans them out. Nothing else writes the state.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, instrument};

use crate::agent::Agent;
use crate::events::journal::{Journal, JournalError, JournalSync};
use crate::events::Published;
use crate::state::Fact;
use crate::systemd::Watchdog;

/// Facts applied per batch (one journal write per batch).
const BATCH: usize = 256;
/// The degradation condition raised while journal writes fail.
pub const JOURNAL_CONDITION: &str = "journal_write";
/// Event ids reserved per write of the journal's high-water mark: a crash skips at most this many.
pub const HWM_BLOCK: u64 = 1000;

/// The core loop: runs until `token` is cancelled or every fact sender is gone, then
/// applies what is queued, publishes `agent.stopping`, syncs the journal and ends the streams.
#[instrument(name = "core", skip_all)]
pub async fn run(
    agent: Arc<Agent>,
    mut journal: Journal,
    mut facts: mpsc::Receiver<Fact>,
    token: CancellationToken,
    watchdog: Option<Watchdog>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    // Pinged from this loop, so a core stuck in publish stops the pings and systemd restarts us.
    let mut watchdog_tick = tokio::time::interval(watchdog.map_or(std::time::Duration::from_secs(3600), |w| w.period));
    watchdog_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let sync_every = match journal.sync_policy() {
        JournalSync::Interval(every) => Some(every),
        JournalSync::Batch => None,
    };
    let mut sync_tick = tokio::time::interval(sync_every.unwrap_or(std::time::Duration::from_secs(3600)));
    sync_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Every batch allocates and frees (states, frames, queues): after a burst, glibc would keep
    // the high-water mark resident.
    let mut trimmer = crate::heap::Trimmer::default();
    loop {
        tokio::select! {
            biased;
            _ = token.cancelled() => break,
            _ = watchdog_tick.tick(), if watchdog.is_some() => {
                if let Some(w) = &watchdog {
                    w.ping();
                }
            }
            _ = sync_tick.tick(), if sync_every.is_some() => {
                journal.sync_in_background();
                journal_health(&agent, &journal);
            }
            n = facts.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    break;
                }
                publish(&agent, &mut journal, batch.drain(..));
                trimmer.touched(tokio::time::Instant::now());
            }
            _ = trimmer.due() => crate::heap::trim_in_background(),
        }
    }
    // Apply what sources already sent, then say goodbye.
    while let Ok(fact) = facts.try_recv() {
        batch.push(fact);
    }
    batch.push(Fact::AgentStopping { reason: "shutdown".to_owned() });
    publish(&agent, &mut journal, batch.drain(..));
    if let Err(e) = journal.close(agent.state().last_seq()) {
        error!(error = %e, "journal sync failed at shutdown");
    }
    info!(last_event_id = agent.state().last_seq(), "core stopped");
    agent.streams_done.cancel();
}

/// Applies facts, journals their events, then hands them to the log and the sinks.
fn publish(agent: &Agent, journal: &mut Journal, facts: impl Iterator<Item = Fact>) {
    let now = SystemTime::now();
    let mut out: Vec<Arc<Published>> = Vec::new();
    let mut started = false;
    let last = {
        let mut state = agent.state_mut();
        for fact in facts {
            agent.metrics.facts.inc();
            debug!(?fact, "fact received");
            started |= matches!(fact, Fact::AgentStarted { .. });
            for event in state.apply(fact, now) {
                out.push(Arc::new(Published::new(event)));
            }
        }
        state.last_seq()
    };
    agent.topology_applied();
    if !out.is_empty() {
        for event in &out {
            debug!(id = event.seq, kind = %event.kind(), subject = %event.subject(), "event emitted");
            agent.metrics.events.get_or_create(&crate::metrics::TypeLabel { r#type: event.kind().to_owned() }).inc();
        }
        agent.metrics.last_event_id.set(last);
        // The ids are reserved on disk before any of them leaves the core.
        if let Err(e) = journal.reserve(last) {
            agent.metrics.journal_errors.inc();
            error!(error = %e, "cannot reserve event ids: a crash now may reuse some");
        }
        if let Err(e) = journal.append(&out) {
            // History on disk is lost for these events; the live stream goes on, the next
            // batch tries again (reopening the file if need be), and health says `degraded`
            // until a write succeeds again (a full state_dir cleaned up).
            agent.metrics.journal_errors.inc();
            if matches!(e, JournalError::Open { .. }) {
                agent.metrics.journal_reopen_failures.inc();
            }
            error!(error = %e, "journal write failed");
        }
        journal_health(agent, journal);
        agent.log.append(&out);
        agent.metrics.ring_events.set(agent.log.len() as i64);
        agent.metrics.ring_bytes.set(agent.log.held_bytes() as i64);
    }
    if started {
        agent.set_ready();
    }
}

/// Health `degraded` (condition `journal_write`) while the journal cannot write or sync.
fn journal_health(agent: &Agent, journal: &Journal) {
    match journal.failing() {
        Some(why) => agent.metrics.conditions.raise(JOURNAL_CONDITION, format!("journal write failed: {why}")),
        None => {
            if agent.metrics.conditions.clear(JOURNAL_CONDITION) {
                info!("journal writable again");
            }
        }
    }
}
