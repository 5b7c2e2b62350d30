//! What a source works with, and the list of built-in sources.
//!
//! A source is one task that owns its OS handle, observes the machine and
//! sends [`Fact`]s to the core. It stops when its token is cancelled.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::core::Agent;
use crate::state::Fact;

/// The channel into the core.
pub type FactSender = mpsc::Sender<Fact>;

/// Everything a running source gets.
#[derive(Clone)]
pub struct SourceContext {
    pub facts: FactSender,
    /// Cancelled at shutdown.
    pub token: CancellationToken,
    /// The agent, for sources that follow other sources' events or read the snapshot.
    pub agent: Arc<Agent>,
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
    /// The source's task: coldplug, then follow changes until cancelled.
    fn run(self: Box<Self>, ctx: SourceContext) -> SourceFuture;
}

/// The sources the configuration enables.
pub fn builtin(config: &Config) -> Vec<Box<dyn Source>> {
    let mut sources: Vec<Box<dyn Source>> = Vec::new();
    if config.udev.enabled {
        sources.push(Box::new(crate::udev::UdevSource::new(config.udev.clone())));
    }
    if config.mounts.enabled {
        sources.push(Box::new(crate::mounts::MountsSource::new(config.mounts.clone())));
    }
    if config.shares.enabled {
        sources.push(Box::new(crate::shares::SharesSource::new(config.shares.clone())));
    }
    if config.arrays.enabled {
        sources.push(Box::new(crate::arrays::ArraysSource::new(config.arrays.clone())));
    }
    sources
}
