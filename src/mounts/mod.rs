//! The mounts source (SPEC §2, §3): follows the mount table through the kernel's change
//! notification, reports it as [`Fact::Mounts`], and samples each mount's usage without ever
//! letting a dead filesystem stall anything.
//!
//! - [`mountinfo`]: the parser of `/proc/<pid>/mountinfo`.
//! - [`filter`]: which mounts are reported.
//! - [`table`]: the watched file.
//! - [`usage`] and [`pool`]: statvfs sampling with timeouts on plain threads.

pub mod filter;
pub mod mountinfo;
pub mod pool;
pub mod table;
pub mod usage;

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::{interval, sleep, Instant, MissedTickBehavior};
use tracing::{debug, info, instrument, warn};

use crate::config::MountsConfig;
use crate::model::Mount;
use crate::sources::{Source, SourceContext, SourceFuture};
use crate::state::Fact;
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

/// Turns a mountinfo text into the filtered mounts the core gets.
pub fn mounts_from(text: &str, filter: &Filter) -> (Vec<Mount>, usize) {
    let (entries, bad) = mountinfo::parse(text);
    for (line, error) in &bad {
        debug!(line = %line, error = %error, "unparsable mountinfo line");
    }
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
    /// The last text turned into facts: an unchanged re-read sends nothing.
    last_text: String,
    failed: bool,
    initial: bool,
}

enum Outcome {
    /// Facts to send first, then the new table (with `initial`) when there is one.
    Facts(Vec<Fact>, Option<(Vec<Mount>, bool)>),
    Nothing,
}

impl Watch {
    fn refresh(&mut self, check_exists: bool) -> Outcome {
        let path = self.table.path().to_path_buf();
        match self.table.read(check_exists) {
            Ok(text) => {
                let mut facts = Vec::new();
                if self.failed {
                    info!(path = %path.display(), "mount table readable again");
                    facts.push(Fact::SourceRecovered { source: NAME.to_owned() });
                    self.failed = false;
                } else if !self.initial && text == self.last_text {
                    return Outcome::Nothing;
                }
                let (mounts, bad) = mounts_from(&text, &self.filter);
                if bad > 0 {
                    warn!(path = %path.display(), bad_lines = bad, "mount table lines skipped");
                }
                self.last_text.clear();
                self.last_text.push_str(&text);
                let initial = self.initial;
                self.initial = false;
                Outcome::Facts(facts, Some((mounts, initial)))
            }
            Err(e) => {
                self.table.close();
                if self.failed {
                    return Outcome::Nothing;
                }
                warn!(path = %self.table.path().display(), error = %e, "mount table unavailable");
                self.failed = true;
                Outcome::Facts(vec![Fact::SourceFailed { source: NAME.to_owned(), message: e.to_string() }], None)
            }
        }
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
        table: Table::new(config.mountinfo.clone()),
        filter,
        last_text: String::new(),
        failed: false,
        initial: true,
    };
    let (mut sampler, mut answers) = Sampler::new(config.usage_timeout);
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
    loop {
        if let Outcome::Facts(mut facts, table) = std::mem::replace(&mut outcome, Outcome::Nothing) {
            if let Some((mounts, initial)) = table {
                // Queued before the table reaches the core, answered only after: the answers are
                // read by this loop once the facts below are sent.
                sampler.set_mounts(&mounts);
                facts.push(Fact::Mounts { mounts, initial });
            }
            for fact in facts {
                if ctx.facts.send(fact).await.is_err() {
                    return;
                }
            }
            if watch.failed {
                retry.as_mut().reset(Instant::now() + RETRY);
            }
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
