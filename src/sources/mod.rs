//! What a source works with, and the list of built-in sources.
//!
//! A source is one task that owns its OS handle, observes the machine and
//! sends [`Fact`]s to the core. Once its start-up facts are sent it sends
//! [`Fact::SourceReady`] (readiness waits for every source's). It stops when
//! its token is cancelled. It gets only what it needs: never the agent, the
//! event log or another source's configuration.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::agent::StorageView;
use crate::metrics::Metrics;
use crate::state::Fact;

/// The channel into the core.
pub type FactSender = mpsc::Sender<Fact>;

/// Everything a running source gets.
#[derive(Clone)]
pub struct SourceContext {
    pub facts: FactSender,
    /// Cancelled at shutdown.
    pub token: CancellationToken,
    pub metrics: Arc<Metrics>,
    /// The core's disks, partitions and mounts, replaced after every change.
    pub storage: watch::Receiver<Arc<StorageView>>,
}

impl SourceContext {
    /// Tells the core this source's start-up facts are all sent. False when the core is gone.
    pub async fn ready(&self, source: &str) -> bool {
        self.facts.send(Fact::SourceReady { source: source.to_owned() }).await.is_ok()
    }
}

pub type SourceFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A source of facts, started once by the agent.
pub trait Source: Send {
    /// Short name used in logs, health and `source.*` events.
    fn name(&self) -> &'static str;
    /// Whether the agent is unhealthy (HTTP 503) while this source is failed.
    fn required(&self) -> bool {
        false
    }
    /// The source's task: coldplug, [`SourceContext::ready`], then follow changes until cancelled.
    fn run(self: Box<Self>, ctx: SourceContext) -> SourceFuture;
}
