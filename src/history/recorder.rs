//! The recorder task: samples the current disks and mounts a few times per resolution bucket
//! (the samples of a bucket are averaged), saves the store every `save_interval` and once more
//! at shutdown. It is handed a function that reads the core's objects, so it depends on
//! nothing but the model.

use std::sync::Arc;

use tokio::time::{interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{unix_now, History, HistoryConfig};
use crate::model::{Disk, Mount};

/// Runs until `token` is cancelled; `read` returns the current disks and mounts.
pub async fn run<F>(history: Arc<History>, config: HistoryConfig, token: CancellationToken, read: F)
where
    F: Fn() -> (Vec<Disk>, Vec<Mount>) + Send + 'static,
{
    let mut sample = interval(config.sample_every());
    sample.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut save = interval(config.save_interval);
    save.set_missed_tick_behavior(MissedTickBehavior::Delay);
    save.tick().await; // the first tick is immediate: nothing to save yet
    info!(series = history.series_count(), every = ?config.sample_every(), "history recorder started");
    loop {
        tokio::select! {
            _ = token.cancelled() => break,
            _ = sample.tick() => {
                let (disks, mounts) = read();
                history.record(&disks, &mounts, unix_now());
            }
            _ = save.tick() => save_now(&history).await,
        }
    }
    save_now(&history).await;
}

/// Saves on a blocking thread (fsync), logging the outcome.
async fn save_now(history: &Arc<History>) {
    let h = history.clone();
    match tokio::task::spawn_blocking(move || h.save()).await {
        Ok(Ok(())) => debug!(series = history.series_count(), "history saved"),
        Ok(Err(e)) => warn!(error = %e, "cannot save history"),
        Err(e) => warn!(error = %e, "history save task failed"),
    }
}
