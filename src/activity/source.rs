//! The activity source's task: samples every disk of the core's storage view every
//! `[activity] interval` and sends the readings as one [`Fact::DiskIo`].

use std::time::Instant;

use tokio::time::{interval, MissedTickBehavior};
use tracing::{info, instrument};

use super::{ActivityConfig, Sampler, NAME};
use crate::sources::{Source, SourceContext, SourceFuture};
use crate::state::Fact;

/// The activity source.
pub struct ActivitySource {
    config: ActivityConfig,
}

impl ActivitySource {
    pub fn new(config: ActivityConfig) -> Self {
        ActivitySource { config }
    }
}

impl Source for ActivitySource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn run(self: Box<Self>, ctx: SourceContext) -> SourceFuture {
        Box::pin(run(self.config, ctx))
    }
}

#[instrument(name = "activity", skip_all)]
async fn run(config: ActivityConfig, ctx: SourceContext) {
    let mut sampler = Sampler::new(&config.sysfs);
    if !ctx.ready(NAME).await {
        return;
    }
    info!(interval = ?config.interval, "activity source started");
    let mut tick = interval(config.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ctx.token.cancelled() => break,
            _ = tick.tick() => {}
        }
        let view = ctx.storage.borrow().clone();
        let samples =
            sampler.sample(view.disks.iter().map(|d| (d.id.as_str(), d.kernel_name.as_str())), Instant::now());
        if !samples.is_empty() && ctx.facts.send(Fact::DiskIo { samples }).await.is_err() {
            break;
        }
    }
}
