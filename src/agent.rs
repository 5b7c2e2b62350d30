//! The agent handle shared by the core and the sinks: the state behind a lock,
//! the event log, metrics, sink health, and the typed channels the core feeds
//! (the storage view for sources, the change generation for sinks). A leaf:
//! it knows nothing of sources, sinks or configuration files.

use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::events::log::EventLog;
use crate::history::History;
use crate::metrics::Metrics;
use crate::model::{Disk, Mount, Partition, Snapshot};
use crate::state::State;

/// What a sink is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SinkState {
    Connected,
    Connecting,
    Disconnected,
    /// Turned off in the configuration.
    Disabled,
}

/// Health of a sink (the MQTT connection, say).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SinkStatus {
    pub name: String,
    pub status: SinkState,
    pub message: Option<String>,
    pub required: bool,
}

/// The block devices and mounts as the core knows them, for sources that
/// follow other sources' objects (the shares source re-checks paths when the
/// mount table changes; health sources poll the disks).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StorageView {
    pub disks: Vec<Disk>,
    pub partitions: Vec<Partition>,
    pub mounts: Vec<Mount>,
}

/// The agent as the core and the sinks see it.
pub struct Agent {
    pub node_id: String,
    state: RwLock<State>,
    pub log: EventLog,
    pub metrics: Arc<Metrics>,
    sinks: Mutex<Vec<SinkStatus>>,
    pub started: Instant,
    /// Cancelled once the last event (`agent.stopping`) has been published:
    /// streams finish sending and end.
    pub streams_done: CancellationToken,
    /// The storage view, replaced by the core after every batch that changed the topology.
    storage: watch::Sender<Arc<StorageView>>,
    /// The state's topology generation after the last applied batch.
    topology: watch::Sender<u64>,
    /// Flips to true once every source's start-up facts are applied and `agent.started` is out.
    ready: watch::Sender<bool>,
    /// The history store, when `[history]` is enabled (set once at start).
    history: std::sync::OnceLock<Arc<History>>,
}

impl Agent {
    pub fn new(node_id: String, state: State, log: EventLog, metrics: Arc<Metrics>) -> Self {
        Self {
            node_id,
            state: RwLock::new(state),
            log,
            metrics,
            sinks: Mutex::new(Vec::new()),
            started: Instant::now(),
            streams_done: CancellationToken::new(),
            storage: watch::Sender::new(Arc::new(StorageView::default())),
            topology: watch::Sender::new(0),
            ready: watch::Sender::new(false),
            history: std::sync::OnceLock::new(),
        }
    }

    /// The history store, if enabled.
    pub fn history(&self) -> Option<&Arc<History>> {
        self.history.get()
    }

    /// Sets the history store (once, at start).
    pub fn set_history(&self, history: Arc<History>) {
        let _ = self.history.set(history);
    }

    /// Read access to the state; hold it briefly.
    pub fn state(&self) -> RwLockReadGuard<'_, State> {
        // The state is only written by the core between whole facts; a panic there is a bug
        // that already stopped the core, and reading the last state is still the best answer.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Write access, for the core loop only.
    pub(crate) fn state_mut(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
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

    /// Follows the storage view (sources).
    pub fn storage(&self) -> watch::Receiver<Arc<StorageView>> {
        self.storage.subscribe()
    }

    /// Follows the topology generation (sinks that mirror the topology).
    pub fn topology(&self) -> watch::Receiver<u64> {
        self.topology.subscribe()
    }

    /// Follows readiness.
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    pub(crate) fn set_ready(&self) {
        self.ready.send_replace(true);
    }

    /// Called by the core after a batch: publishes a new storage view and generation if the
    /// topology changed.
    pub(crate) fn topology_applied(&self) {
        let (generation, view) = {
            let state = self.state();
            let generation = state.topology_generation();
            if generation == *self.topology.borrow() {
                return;
            }
            let view = StorageView {
                disks: state.disks().cloned().collect(),
                partitions: state.partitions().cloned().collect(),
                mounts: state.mounts().cloned().collect(),
            };
            (generation, view)
        };
        self.storage.send_replace(Arc::new(view));
        self.topology.send_replace(generation);
    }
}
