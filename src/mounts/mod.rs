//! The mounts source (SPEC §2, §3): follows the mount table through the kernel's change
//! notification, reports it as [`Fact::Mounts`], and samples each mount's usage without ever
//! letting a dead filesystem stall anything.
//!
//! - [`mountinfo`]: the parser of `/proc/<pid>/mountinfo`.
//! - [`filter`]: which mounts are reported.
//! - [`table`]: the watched file.
//! - [`usage`] and [`pool`]: statvfs sampling with timeouts on plain threads.

pub mod config;
pub mod differ;
pub mod filter;
pub mod fxhash;
pub mod mountinfo;
pub mod pool;
pub mod table;
pub mod usage;

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::{interval, sleep, Instant, MissedTickBehavior};
use tracing::{debug, info, instrument, warn};

use crate::model::Mount;
use crate::sources::{Source, SourceContext, SourceFuture};
use crate::state::Fact;
use config::MountsConfig;
use differ::{Delta, Differ};
use filter::Filter;
use table::Table;
use usage::Sampler;

/// Source name in health and `source.*` events.
pub const NAME: &str = "mounts";
/// How soon a failed table is tried again.
const RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum MountsError {
    #[error("cannot open mount table {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("cannot read mount table {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("mount table {path} is empty (its process is gone?)")]
    Empty { path: PathBuf },
    #[error(transparent)]
    Filter(#[from] filter::FilterError),
}

/// Turns a mountinfo text into the filtered mounts the core gets (the whole table at once;
/// the source itself works with [`differ::Differ`]).
pub fn mounts_from(text: &str, filter: &Filter) -> (Vec<Mount>, usize) {
    let (entries, bad) = mountinfo::parse(text);
    let kept = entries.into_iter().filter(|e| filter.keeps(&e.fs_type, &e.mount_point));
    (mountinfo::to_mounts(kept), bad.len())
}

/// The mounts source.
pub struct MountsSource {
    config: MountsConfig,
}

impl MountsSource {
    pub fn new(config: MountsConfig) -> Self {
        Self { config }
    }
}

impl Source for MountsSource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn required(&self) -> bool {
        true
    }

    fn run(self: Box<Self>, ctx: SourceContext) -> SourceFuture {
        Box::pin(run(self.config, ctx))
    }
}

/// What the loop remembers between reads.
struct Watch {
    table: Table,
    filter: Filter,
    differ: Differ,
    failed: bool,
    /// The next good read is sent as a whole table (start-up, and after a failure).
    whole: bool,
    initial: bool,
}

/// What a read produced, in the order to send it.
enum Outcome {
    /// The table cannot be read: the message for `source.failed`.
    Failed(String),
    Table {
        recovered: bool,
        change: Change,
    },
    Nothing,
}

enum Change {
    Whole { mounts: Vec<Mount>, initial: bool },
    Delta(Delta),
}

impl Watch {
    fn refresh(&mut self, check_exists: bool) -> Outcome {
        let text = match self.table.read(check_exists) {
            Ok(text) => text,
            Err(e) => {
                self.table.close();
                if self.failed {
                    return Outcome::Nothing;
                }
                warn!(error = %e, "mount table unavailable");
                self.failed = true;
                self.whole = true;
                return Outcome::Failed(e.to_string());
            }
        };
        let delta = self.differ.diff(&text, &self.filter);
        if delta.bad_lines > 0 {
            warn!(bad_lines = delta.bad_lines, "mount table lines skipped");
        }
        let recovered = std::mem::take(&mut self.failed);
        if recovered {
            info!("mount table readable again");
        }
        let change = if std::mem::take(&mut self.whole) {
            let initial = std::mem::take(&mut self.initial);
            Change::Whole { mounts: self.differ.mounts().cloned().collect(), initial }
        } else if delta.is_empty() {
            return Outcome::Nothing;
        } else {
            Change::Delta(delta)
        };
        Outcome::Table { recovered, change }
    }
}

#[instrument(name = "mounts", skip_all, fields(mountinfo = %config.mountinfo.display()))]
async fn run(config: MountsConfig, ctx: SourceContext) {
    let filter = match Filter::new(&config) {
        Ok(f) => f,
        Err(e) => {
            let _ = ctx.facts.send(Fact::SourceFailed { source: NAME.to_owned(), message: e.to_string() }).await;
            return;
        }
    };
    let mut watch = Watch {
        table: Table::for_setting(&config.mountinfo),
        filter,
        differ: Differ::new(),
        failed: false,
        whole: true,
        initial: true,
    };
    let metrics = &ctx.metrics;
    let (mut sampler, mut answers) =
        Sampler::new(config.usage_timeout, metrics.usage.clone(), metrics.conditions.clone());
    let mut reread = interval(config.reread_interval.max(Duration::from_millis(10)));
    reread.set_missed_tick_behavior(MissedTickBehavior::Delay);
    reread.reset();
    let mut usage_round = interval(config.usage_interval);
    usage_round.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The first round is the immediate sampling of the mounts the first read finds.
    usage_round.reset();
    let retry = sleep(RETRY);
    tokio::pin!(retry);
    let mut next_check = Instant::now();
    let mut outcome = watch.refresh(false);
    let mut ready_sent = false;
    loop {
        let mut facts = Vec::new();
        match std::mem::replace(&mut outcome, Outcome::Nothing) {
            Outcome::Nothing => {}
            Outcome::Failed(message) => facts.push(Fact::SourceFailed { source: NAME.to_owned(), message }),
            Outcome::Table { recovered, change } => {
                if recovered {
                    facts.push(Fact::SourceRecovered { source: NAME.to_owned() });
                }
                // Queued before the table reaches the core, answered only after: the answers
                // are read by this loop once the facts below are sent.
                match change {
                    Change::Whole { mounts, initial } => {
                        sampler.set_mounts(&mounts);
                        facts.push(Fact::Mounts { mounts, initial });
                    }
                    Change::Delta(Delta { upserts, removed, .. }) => {
                        sampler.update(&upserts, &removed);
                        facts.push(Fact::MountsChanged { upserts, removed });
                    }
                }
            }
        }
        for fact in facts {
            if ctx.facts.send(fact).await.is_err() {
                return;
            }
        }
        // The first read's table (or its failure) is this source's start-up fact.
        if !ready_sent {
            ready_sent = true;
            if !ctx.ready(NAME).await {
                return;
            }
        }
        if watch.failed && retry.is_elapsed() {
            retry.as_mut().reset(Instant::now() + RETRY);
        }
        let check = tokio::time::sleep_until(next_check);
        tokio::select! {
            biased;
            _ = ctx.token.cancelled() => break,
            _ = watch.table.changed(), if !watch.failed => outcome = watch.refresh(false),
            _ = &mut retry, if watch.failed => outcome = watch.refresh(false),
            _ = reread.tick() => outcome = watch.refresh(true),
            Some(done) = answers.recv() => {
                if let Some(fact) = sampler.on_done(done) {
                    if ctx.facts.send(fact).await.is_err() {
                        return;
                    }
                }
            }
            _ = usage_round.tick() => sampler.sample_all(),
            _ = check, if sampler.busy() => {
                next_check = Instant::now() + sampler.check_every();
                for fact in sampler.check_timeouts() {
                    warn!(id = ?fact_id(&fact), timeout = ?config.usage_timeout, "usage query hangs: mount stale");
                    if ctx.facts.send(fact).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
    debug!(threads = sampler.threads(), "mounts source stopped");
}

fn fact_id(fact: &Fact) -> Option<&str> {
    match fact {
        Fact::MountUsage { id, .. } => Some(id),
        _ => None,
    }
}
