//! Wiring: starts the whole agent in order and stops it. The core loop first
//! (so no source can fill the fact channel before anything reads it), then
//! HTTP, then the sources; once every source's start-up facts are applied,
//! `agent.started` is published, the MQTT sink starts and the agent is ready
//! (`READY=1` under systemd).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::agent::{Agent, SinkState, SinkStatus};
use crate::config::Config;
use crate::events::journal::{Journal, JournalError, JournalOptions};
use crate::events::log::{EventLog, RingLimits};
use crate::metrics::Metrics;
use crate::sources::{FactSender, Source, SourceContext};
use crate::state::{Fact, State, StateConfig};

/// Facts the channel into the core holds before sources wait.
const FACT_QUEUE: usize = 4096;
/// Longest wait for the sources' start-up facts: a source that never reports is not waited for
/// longer, so a slow source cannot keep the agent from announcing what the others found.
pub const STARTUP_WAIT: Duration = Duration::from_secs(20);

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
    /// Ids up to this may have been issued by an earlier run: events of this run come after it.
    pub started_after: u64,
    tracker: TaskTracker,
}

impl Running {
    /// Waits until every source's start-up facts are applied and `agent.started` is published.
    pub async fn ready(&self) {
        let mut ready = self.agent.ready();
        // The sender lives in the agent, which this handle holds: the wait cannot see it closed.
        let _ = ready.wait_for(|r| *r).await;
    }

    /// Waits until shutdown has finished: the core drained, the journal synced, streams ended.
    pub async fn wait(self) {
        drop(self.facts);
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// The sources the configuration enables.
pub fn builtin_sources(config: &Config, smartctl: &crate::smartctl::Smartctl) -> Vec<Box<dyn Source>> {
    let mut sources: Vec<Box<dyn Source>> = Vec::new();
    if config.udev.enabled {
        // The power check goes to the disks the health source watches, with its smartctl; with
        // health off, only the runtime PM state is consulted.
        let health = &config.health;
        let sleep = crate::udev::SleepSetup {
            smartctl: health.enabled.then(|| health.smartctl.clone()),
            smartctl_disks: crate::text::KernelNameFilter::new(&health.include, &health.exclude).ok(),
            smartctl_device_type: Some(health.device_type.clone()).filter(|t| !t.is_empty()),
            smartctl_socket: Some(health.smartctl_socket.clone()).filter(|s| !s.as_os_str().is_empty()),
            cache: Some(config.state_dir.join(crate::udev::PROBE_CACHE_FILE)),
        };
        sources.push(Box::new(crate::udev::UdevSource::new(config.udev.clone()).sleep_aware(sleep)));
    }
    if config.mounts.enabled {
        sources.push(Box::new(crate::mounts::MountsSource::new(config.mounts.clone())));
    }
    if config.shares.enabled {
        sources.push(Box::new(crate::shares::SharesSource::new(config.shares.clone())));
    }
    if config.health.enabled {
        sources.push(Box::new(crate::health::HealthSource::new(
            config.health.clone(),
            config.activity.interval,
            smartctl.clone(),
        )));
    }
    if config.activity.enabled {
        sources.push(Box::new(crate::activity::ActivitySource::new(config.activity.clone())));
    }
    if config.arrays.enabled {
        sources.push(Box::new(crate::arrays::ArraysSource::new(config.arrays.clone())));
    }
    // Sleep follows the power state the health source reports: nothing to follow without it.
    if config.sleep.enabled && config.health.enabled {
        sources.push(Box::new(crate::wake::WakeSource::new(config.sleep.clone(), config.activity.interval)));
    }
    if config.forecast.enabled && config.mounts.enabled {
        let source = crate::forecast::ForecastSource::new(config.forecast.clone(), Some(config.state_dir.clone()));
        sources.push(Box::new(source));
    }
    sources
}

/// Starts the agent: loads the journal, starts the core, HTTP and the sources; readiness and
/// the MQTT sink follow in the background once the sources' start-up facts are applied.
pub async fn start(config: Config, token: CancellationToken, options: RunOptions) -> Result<Running, StartError> {
    let node = crate::node::resolve(&config.node_id, &config.state_dir, crate::node::MACHINE_ID_FILES);
    let node_id = node.id.clone();
    let (journal, recovered) = Journal::open(
        &config.state_dir,
        JournalOptions {
            max_bytes: config.events.journal_max_bytes,
            keep: config.events.journal_keep,
            sync: config.events.journal_sync,
            hwm_block: crate::core::HWM_BLOCK,
            ring_events: config.events.ring_size,
            ring_bytes: config.events.ring_max_bytes,
        },
    )?;
    // This run's ids come after every id an earlier run may have issued.
    let start_after = recovered.start_after();
    info!(
        last_event_id = recovered.last_seq,
        high_water_mark = recovered.hwm,
        held = recovered.events.len(),
        "journal loaded"
    );
    // After the journal opened (it creates state_dir), so the id is remembered next to it.
    match crate::node::remember(&config.state_dir, &node) {
        Ok(()) => info!(node_id = %node.id, origin = ?node.origin, "node id"),
        Err(e) => warn!(node_id = %node.id, error = %e, "cannot remember the node id in the state directory"),
    }
    let mut state = State::new(
        StateConfig {
            node_id: node_id.clone(),
            emit_initial: config.emit_initial,
            usage_thresholds: config.mounts.usage_thresholds.clone(),
            usage_step: config.mounts.usage_step,
            temperature_warn: config.health.temperature_warn,
            temperature_critical: config.health.temperature_critical,
        },
        start_after,
    );
    let ack_file = config.state_dir.join(crate::attention::store::FILE);
    state.load_acknowledgements(crate::attention::store::load(&ack_file));
    let baselines_file = config.state_dir.join(crate::attention::baselines::FILE);
    state.load_baselines(crate::attention::baselines::load(&baselines_file));
    let listener = match options.listener {
        Some(l) => l,
        None => TcpListener::bind(config.http.listen)
            .await
            .map_err(|source| StartError::Listen { addr: config.http.listen, source })?,
    };
    let local_addr = listener.local_addr().map_err(|source| StartError::Listen { addr: config.http.listen, source })?;
    let log = EventLog::new(
        RingLimits { events: config.events.ring_size, bytes: config.events.ring_max_bytes },
        config.events.client_buffer,
        recovered.events,
    )
    .with_journal(journal.files(), start_after);
    let agent = Arc::new(Agent::new(node_id, state, log, Arc::new(Metrics::new())));
    let tracker = TaskTracker::new();

    // 1. The core loop, before anything can send facts.
    let (facts, fact_rx) = mpsc::channel(FACT_QUEUE);
    let watchdog = crate::systemd::Watchdog::from_env();
    tracker.spawn(crate::core::run(agent.clone(), journal, fact_rx, token.clone(), watchdog));

    // The rising rules' baselines, saved to state_dir whenever they change.
    let reader = agent.clone();
    let read = move || {
        let state = reader.state();
        let (generation, baselines) = state.baselines();
        (generation, baselines.clone())
    };
    tracker.spawn(crate::attention::baselines::keep(baselines_file, agent.topology(), token.clone(), read));

    // One smartctl (binary or helper socket, version, per-disk slot) for health and self-tests.
    let smartctl = config.health.smartctl();
    // Self-tests: built here because the action engine starts requested ones through it.
    let self_test = (config.health.enabled && !options.no_builtin_sources).then(|| {
        crate::selftest::SelfTestSource::new(
            config.health.self_test.clone(),
            (config.health.include.clone(), config.health.exclude.clone()),
            Some(config.state_dir.clone()),
            smartctl.clone(),
        )
    });
    // The action engine (refuses everything unless `[actions] enabled`).
    let actions = crate::actions::Actions::new(
        config.actions.clone(),
        crate::actions::machine::Machine::default(),
        facts.clone(),
        agent.storage(),
    )
    .with_ack_file(ack_file)
    .with_self_test(self_test.as_ref().map(|s| s.handle()));
    if config.actions.enabled {
        crate::actions::report_capabilities(&config.actions);
        if config.http.auth_token.is_none() {
            warn!(
                "actions are enabled but http.auth_token_file is not set: the HTTP action routes answer 401 \
                (they need the token always); Home Assistant's buttons still work"
            );
        }
    }

    // The history store, loaded before HTTP serves it; recorded from the core's objects.
    if config.history.enabled {
        start_history(&tracker, &agent, &config, token.clone());
    }

    // 2. HTTP: serves what the state holds at any moment.
    serve_http(&tracker, agent.clone(), listener, config.http.clone(), actions.clone());
    info!(addr = %local_addr, "serving HTTP");

    // 3. The sources. Each is registered before it starts, so readiness waits for it.
    let sources_token = token.child_token();
    let mut sources = if options.no_builtin_sources { Vec::new() } else { builtin_sources(&config, &smartctl) };
    if let Some(s) = self_test {
        sources.push(Box::new(s));
    }
    sources.extend(options.sources);
    if sources.is_empty() {
        info!("no sources configured: the agent serves what is fed to it");
    }
    let mut names = Vec::new();
    for source in sources {
        let name = source.name();
        names.push(name);
        let _ = facts.send(Fact::SourceRunning { source: name.to_owned(), required: source.required() }).await;
        let ctx = SourceContext {
            facts: facts.clone(),
            token: sources_token.clone(),
            metrics: agent.metrics.clone(),
            storage: agent.storage(),
        };
        info!(source = name, "starting source");
        tracker.spawn(source.run(ctx));
    }

    // 4. After the start-up facts: `agent.started`, the MQTT sink, readiness.
    tracker.spawn(finish_startup(agent.clone(), facts.clone(), config, tracker.clone(), token, actions, names));
    Ok(Running { agent, local_addr, facts, started_after: start_after, tracker })
}

/// Runs the agent until `token` is cancelled, then shuts it down.
pub async fn run(config: Config, token: CancellationToken, options: RunOptions) -> Result<(), StartError> {
    start(config, token, options).await?.wait().await;
    Ok(())
}

fn start_history(tracker: &TaskTracker, agent: &Arc<Agent>, config: &Config, token: CancellationToken) {
    let (history, error) = crate::history::History::open(&config.history, Some(config.state_dir.clone()));
    if let Some(e) = error {
        warn!(error = %e, "history not loaded: starting empty");
    }
    let history = Arc::new(history);
    agent.set_history(history.clone());
    let reader = agent.clone();
    let read = move || {
        let state = reader.state();
        (state.disks().cloned().collect(), state.mounts().cloned().collect())
    };
    tracker.spawn(crate::history::recorder::run(history, config.history.clone(), token, read));
}

fn serve_http(
    tracker: &TaskTracker,
    agent: Arc<Agent>,
    listener: TcpListener,
    config: crate::http::config::HttpConfig,
    actions: crate::actions::Actions,
) {
    let done = agent.streams_done.clone();
    let limits = crate::http::server::Limits::from(&config);
    let app = crate::http::app_with_actions(agent.clone(), config, Some(actions));
    tracker.spawn(crate::http::serve(listener, app, agent, limits, done));
}

/// Waits for every source's start-up facts (bounded by [`STARTUP_WAIT`]), publishes
/// starts the MQTT sink and sends `agent.started` (the core marks the agent ready once applied).
async fn finish_startup(
    agent: Arc<Agent>,
    facts: FactSender,
    config: Config,
    tracker: TaskTracker,
    token: CancellationToken,
    actions: crate::actions::Actions,
    sources: Vec<&'static str>,
) {
    let started = tokio::time::Instant::now();
    let mut topology = agent.topology();
    let settled = async {
        // `SourceReady` is applied in a batch like any fact; the generation watch wakes us
        // after batches that changed the topology, and the poll catches ready-only batches.
        loop {
            // By name: before the core has applied the registrations, "every registered source
            // has settled" would hold of an empty set (READY with no disks known, measured).
            if agent.state().settled(&sources) {
                return;
            }
            tokio::select! {
                _ = topology.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
        }
    };
    tokio::select! {
        _ = token.cancelled() => return,
        waited = tokio::time::timeout(STARTUP_WAIT, settled) => {
            if waited.is_err() {
                let state = agent.state();
                let late: Vec<&str> = sources.iter().copied().filter(|s| !state.settled(&[s])).collect();
                warn!(waited = ?STARTUP_WAIT, ?late, "not every source reported its start-up facts; starting anyway");
            }
        }
    }
    if config.mqtt.enabled {
        tracker.spawn(crate::mqtt::run(agent.clone(), config.mqtt.clone(), config.state_dir.clone(), actions));
    } else {
        let disabled = SinkStatus { name: "mqtt".into(), status: SinkState::Disabled, message: None, required: false };
        agent.set_sink_status(disabled);
    }
    let snapshot = agent.snapshot();
    info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        disks = snapshot.disks.len(),
        mounts = snapshot.mounts.len(),
        shares = snapshot.shares.len(),
        "start-up facts applied"
    );
    // The core marks the agent ready once it has published this.
    let _ = facts.send(Fact::AgentStarted { version: env!("CARGO_PKG_VERSION").to_owned() }).await;
}
