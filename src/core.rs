//! The core: the one task that applies facts to the state, journals and logs
//! the resulting events and fans them out; plus start-up and shutdown of the
//! whole agent ([`start`], [`run`]).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Instant, SystemTime};

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, instrument};

use crate::config::Config;
use crate::events::journal::{Journal, JournalError, JournalOptions, JournalSync};
use crate::events::log::{EventLog, RingLimits};
use crate::events::Published;
use crate::metrics::Metrics;
use crate::model::Snapshot;
use crate::sources::{FactSender, Source, SourceContext};
use crate::state::{Fact, State, StateConfig};

/// Facts the channel into the core holds before sources wait.
const FACT_QUEUE: usize = 4096;
/// Facts applied per batch (one journal write per batch).
const BATCH: usize = 256;
/// Event ids reserved per write of the journal's high-water mark: a crash skips at most this many.
const HWM_BLOCK: u64 = 1000;

/// Health of a sink (the MQTT connection, say).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SinkStatus {
    pub name: String,
    /// `connected`, `connecting`, `disconnected` or `disabled`.
    pub status: String,
    pub message: Option<String>,
    pub required: bool,
}

/// The agent as the sinks and the HTTP side see it.
pub struct Agent {
    pub config: Arc<Config>,
    pub node_id: String,
    state: RwLock<State>,
    pub log: EventLog,
    pub metrics: Metrics,
    sinks: Mutex<Vec<SinkStatus>>,
    pub started: Instant,
    /// Cancelled once the last event (`agent.stopping`) has been published:
    /// streams finish sending and end.
    pub streams_done: CancellationToken,
}

impl Agent {
    /// Read access to the state; hold it briefly.
    pub fn state(&self) -> RwLockReadGuard<'_, State> {
        // The state is only written by the core between whole facts; a panic there is a bug
        // that already stopped the core, and reading the last state is still the best answer.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshot(&self) -> Snapshot {
        self.state().snapshot()
    }

    /// Records the health of a sink, replacing its previous status.
    pub fn set_sink_status(&self, status: SinkStatus) {
        let mut sinks = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        match sinks.iter_mut().find(|s| s.name == status.name) {
            Some(slot) => *slot = status,
            None => sinks.push(status),
        }
    }

    pub fn sink_statuses(&self) -> Vec<SinkStatus> {
        self.sinks.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// What the caller of [`start`] may add to a configured agent.
#[derive(Default)]
pub struct RunOptions {
    /// An already bound listener (tests bind port 0); otherwise `http.listen` is bound.
    pub listener: Option<TcpListener>,
    /// Sources started besides the configured built-in ones.
    pub sources: Vec<Box<dyn Source>>,
    /// Leave out the built-in sources (tests feed facts themselves).
    pub no_builtin_sources: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

/// A started agent.
pub struct Running {
    pub agent: Arc<Agent>,
    pub local_addr: SocketAddr,
    /// Feeds facts into the core, as a source would.
    pub facts: FactSender,
    /// Last event id recovered from the journal: events of this run come after it.
    pub started_after: u64,
    tracker: TaskTracker,
}

impl Running {
    /// Waits until shutdown has finished: the core drained, the journal synced, streams ended.
    pub async fn wait(self) {
        drop(self.facts);
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Starts the agent: loads the journal, binds HTTP, starts the core, the sources and the sinks.
pub async fn start(config: Config, token: CancellationToken, options: RunOptions) -> Result<Running, StartError> {
    let node_id = config.node_id();
    let (journal, recovered) = Journal::open(
        &config.state_dir,
        JournalOptions {
            max_bytes: config.events.journal_max_bytes,
            keep: config.events.journal_keep,
            sync: config.events.journal_sync,
            hwm_block: HWM_BLOCK,
            ring_events: config.events.ring_size,
            ring_bytes: config.events.ring_max_bytes,
        },
    )?;
    let start_after = recovered.start_after();
    info!(
        last_event_id = recovered.last_seq,
        high_water_mark = recovered.hwm,
        held = recovered.events.len(),
        "journal loaded"
    );
    let state = State::new(
        StateConfig {
            node_id: node_id.clone(),
            emit_initial: config.emit_initial,
            usage_thresholds: config.mounts.usage_thresholds.clone(),
            usage_step: config.mounts.usage_step,
        },
        start_after,
    );
    let listener = match options.listener {
        Some(l) => l,
        None => TcpListener::bind(config.http.listen)
            .await
            .map_err(|source| StartError::Listen { addr: config.http.listen, source })?,
    };
    let local_addr = listener.local_addr().map_err(|source| StartError::Listen { addr: config.http.listen, source })?;
    let config = Arc::new(config);
    let agent = Arc::new(Agent {
        log: EventLog::new(
            RingLimits { events: config.events.ring_size, bytes: config.events.ring_max_bytes },
            config.events.client_buffer,
            recovered.events,
        )
        .with_journal(journal.files(), start_after),
        config: config.clone(),
        node_id,
        state: RwLock::new(state),
        metrics: Metrics::new(),
        sinks: Mutex::new(Vec::new()),
        started: Instant::now(),
        streams_done: CancellationToken::new(),
    });
    set_journal_status(&agent, None);
    let (facts, fact_rx) = mpsc::channel(FACT_QUEUE);
    let tracker = TaskTracker::new();

    let app = crate::http::app(agent.clone());
    let http_done = agent.streams_done.clone();
    // Small SSE frames must leave at once: Nagle plus delayed ACKs would hold them for up to 40 ms.
    let listener = axum::serve::ListenerExt::tap_io(listener, |stream: &mut tokio::net::TcpStream| {
        if let Err(e) = stream.set_nodelay(true) {
            debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    tracker.spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move { http_done.cancelled().await });
        if let Err(e) = serve.await {
            error!(error = %e, "HTTP server failed");
        }
    });
    info!(addr = %local_addr, "serving HTTP");
    if config.mqtt.enabled {
        tracker.spawn(crate::mqtt::run(agent.clone()));
    } else {
        agent.set_sink_status(SinkStatus {
            name: "mqtt".into(),
            status: "disabled".into(),
            message: None,
            required: false,
        });
    }

    let sources_token = token.child_token();
    let mut sources = if options.no_builtin_sources { Vec::new() } else { crate::sources::builtin(&config) };
    sources.extend(options.sources);
    if sources.is_empty() {
        info!("no sources configured: the agent serves what is fed to it");
    }
    for source in sources {
        let name = source.name();
        let _ = facts.send(Fact::SourceRunning { source: name.to_owned(), required: source.required() }).await;
        let ctx = SourceContext { facts: facts.clone(), token: sources_token.clone(), agent: agent.clone() };
        info!(source = name, "starting source");
        tracker.spawn(source.run(ctx));
    }
    let _ = facts.send(Fact::AgentStarted { version: env!("CARGO_PKG_VERSION").to_owned() }).await;
    let watchdog = crate::systemd::Watchdog::from_env();
    tracker.spawn(core_loop(agent.clone(), journal, fact_rx, token, watchdog));
    Ok(Running { agent, local_addr, facts, started_after: start_after, tracker })
}

/// Runs the agent until `token` is cancelled, then shuts it down.
pub async fn run(config: Config, token: CancellationToken, options: RunOptions) -> Result<(), StartError> {
    start(config, token, options).await?.wait().await;
    Ok(())
}

#[instrument(name = "core", skip_all)]
async fn core_loop(
    agent: Arc<Agent>,
    mut journal: Journal,
    mut facts: mpsc::Receiver<Fact>,
    token: CancellationToken,
    watchdog: Option<crate::systemd::Watchdog>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    // Pinged from this loop, so a core stuck in publish stops the pings and systemd restarts us.
    let mut watchdog_tick = tokio::time::interval(watchdog.map_or(std::time::Duration::from_secs(3600), |w| w.period));
    watchdog_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let sync_every = match agent.config.events.journal_sync {
        JournalSync::Interval(every) => Some(every),
        JournalSync::Batch => None,
    };
    let mut sync_tick = tokio::time::interval(sync_every.unwrap_or(std::time::Duration::from_secs(3600)));
    sync_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = token.cancelled() => break,
            _ = watchdog_tick.tick(), if watchdog.is_some() => {
                if let Some(w) = &watchdog {
                    w.ping();
                }
            }
            _ = sync_tick.tick(), if sync_every.is_some() => journal.sync_in_background(),
            n = facts.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    break;
                }
                publish(&agent, &mut journal, batch.drain(..));
            }
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
    let last = {
        let mut state = agent.state.write().unwrap_or_else(|p| p.into_inner());
        for fact in facts {
            agent.metrics.facts.inc();
            debug!(?fact, "fact received");
            for event in state.apply(fact, now) {
                out.push(Arc::new(Published::new(event)));
            }
        }
        state.last_seq()
    };
    if out.is_empty() {
        return;
    }
    let failing_before = journal.failing().map(str::to_owned);
    // The ids are reserved on disk before any of them leaves the core.
    if let Err(e) = journal.reserve(last) {
        agent.metrics.journal_errors.inc();
        error!(error = %e, "cannot reserve event ids: a crash now may reuse some");
    }
    for event in &out {
        debug!(id = event.seq, kind = %event.kind(), subject = %event.subject(), "event emitted");
        agent.metrics.events.get_or_create(&crate::metrics::TypeLabel { r#type: event.kind().to_owned() }).inc();
    }
    if let Some(last) = out.last() {
        agent.metrics.last_event_id.set(last.seq);
    }
    if let Err(e) = journal.append(&out) {
        // History on disk is lost for these events; the live stream goes on, and the
        // next batch tries again (reopening the file if need be).
        agent.metrics.journal_errors.inc();
        if matches!(e, JournalError::Open { .. }) {
            agent.metrics.journal_reopen_failures.inc();
        }
        error!(error = %e, "journal write failed");
    }
    if journal.failing() != failing_before.as_deref() {
        set_journal_status(agent, journal.failing());
    }
    agent.log.append(&out);
    agent.metrics.ring_events.set(agent.log.len() as i64);
    agent.metrics.ring_bytes.set(agent.log.held_bytes() as i64);
}

/// The journal as health shows it: `ok`, or `failed` (health `degraded`) while it cannot write.
fn set_journal_status(agent: &Agent, failing: Option<&str>) {
    agent.set_sink_status(SinkStatus {
        name: "journal".into(),
        status: if failing.is_some() { "failed" } else { "ok" }.into(),
        message: failing.map(str::to_owned),
        required: false,
    });
}
