//! The shares source task: reads the configuration at start, re-reads it (debounced) whenever a
//! watched file changes, re-checks share paths when mounts come and go, and keeps the last good
//! share set when the configuration is broken.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tracing::{debug, info, instrument, warn};

use super::config::SharesConfig;
use crate::agent::StorageView;
use crate::model::Share;
use crate::sources::{Source, SourceContext, SourceFuture};
use crate::state::Fact;

use super::load::{load, recheck_paths, Loaded, WatchSet};

const NAME: &str = "shares";
/// File-system notifications held for the task. A burst beyond this (a package upgrade rewriting
/// /etc) is not queued without bound: the overflow is counted and turned into one full re-read,
/// which is all the dropped notifications could have asked for.
const NOTIFY_QUEUE: usize = 256;

/// The `shares` source (not required: the agent stays healthy without it).
pub struct SharesSource {
    config: SharesConfig,
}

impl SharesSource {
    pub fn new(config: SharesConfig) -> Self {
        Self { config }
    }
}

impl Source for SharesSource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn run(self: Box<Self>, ctx: SourceContext) -> SourceFuture {
        Box::pin(run(self.config, ctx))
    }
}

/// What the task remembers between re-reads.
struct Tracker {
    config: SharesConfig,
    ctx: SourceContext,
    /// The last share set sent to the core; `None` before the first good read.
    last_good: Option<Vec<Share>>,
    /// The message of the failure the core was last told about.
    failed: Option<String>,
    relevant: WatchSet,
    watcher: Option<RecommendedWatcher>,
    watched: BTreeSet<PathBuf>,
    /// Relevant files written to and not yet closed: a writer truncated the file and is still
    /// writing, so reading now could see half a file (and delete every share in the other half).
    writing: BTreeSet<PathBuf>,
}

#[instrument(name = "shares", skip_all)]
async fn run(config: SharesConfig, ctx: SourceContext) {
    let (tx, mut changes) = mpsc::channel(NOTIFY_QUEUE);
    let overflowed = Arc::new(AtomicBool::new(false));
    let overflow = overflowed.clone();
    let dropped = ctx.metrics.shares_notify_dropped.clone();
    let watcher = match notify::recommended_watcher(move |res| match tx.try_send(res) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            dropped.inc();
            overflow.store(true, Ordering::Release);
        }
        // The receiver is gone only when the task ended; nothing is left to tell.
        Err(mpsc::error::TrySendError::Closed(_)) => {}
    }) {
        Ok(w) => Some(w),
        Err(e) => {
            warn!(error = %e, "cannot watch share configuration; it is read once");
            None
        }
    };
    // The core's mount table: share paths are re-checked whenever its set of mount points changes.
    let mut storage = ctx.storage.clone();
    let mut known_mounts = mount_points(&storage.borrow_and_update());
    let mut storage_open = true;
    let mut recheck = tokio::time::interval(config.recheck_interval);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    recheck.reset();
    let debounce = config.debounce;
    let mut tracker = Tracker {
        config,
        ctx: ctx.clone(),
        last_good: None,
        failed: None,
        relevant: WatchSet::default(),
        watcher,
        watched: BTreeSet::new(),
        writing: BTreeSet::new(),
    };
    tracker.reload().await;
    if !ctx.ready(NAME).await {
        return;
    }
    // A burst of changes is read once, `debounce` after its last change (later while a file is
    // still open for writing), and at most 4 × `debounce` after its first, so a file rewritten
    // without pause, or held open by its writer, is still read.
    let mut pending: Option<(Instant, Instant)> = None;
    loop {
        let due = pending.map(|(first, last)| {
            let cap = first + debounce * 4;
            if tracker.writing.is_empty() {
                (last + debounce).min(cap)
            } else {
                cap
            }
        });
        tokio::select! {
            _ = ctx.token.cancelled() => break,
            Some(change) = changes.recv() => {
                // A full queue dropped notifications: they may have been relevant.
                let lost = overflowed.swap(false, Ordering::AcqRel);
                if tracker.is_relevant(change) || lost {
                    let now = Instant::now();
                    pending = Some((pending.map_or(now, |(first, _)| first), now));
                }
            }
            _ = sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                pending = None;
                tracker.writing.clear();
                tracker.reload().await;
            }
            changed = storage.changed(), if storage_open => match changed {
                Ok(()) => {
                    let now = mount_points(&storage.borrow_and_update());
                    if now != known_mounts {
                        known_mounts = now;
                        tracker.recheck().await;
                    }
                }
                Err(_) => storage_open = false,
            },
            _ = recheck.tick() => tracker.recheck().await,
        }
    }
    debug!("shares source stopped");
}

/// The mount points (with their devices) of a storage view: what share availability depends on.
fn mount_points(view: &StorageView) -> BTreeSet<(String, String)> {
    view.mounts.iter().map(|m| (m.mount_point.clone(), m.dev.clone())).collect()
}

impl Tracker {
    /// Whether a file-system notification can change the share set.
    fn is_relevant(&mut self, change: notify::Result<notify::Event>) -> bool {
        let event = match change {
            Ok(event) => event,
            Err(e) => {
                warn!(error = %e, "share configuration watch error; reading again");
                return true;
            }
        };
        if event.need_rescan() {
            return true;
        }
        if let EventKind::Access(kind) = event.kind {
            // Opening and reading change nothing; closing a written file does.
            if kind != AccessKind::Close(AccessMode::Write) {
                return false;
            }
        }
        for path in &event.paths {
            if self.watched.contains(path) && matches!(event.kind, EventKind::Remove(_) | EventKind::Modify(_)) {
                // A watched directory went away or was renamed: its watch is gone; set it up again.
                self.watched.remove(path);
                return true;
            }
        }
        let relevant: Vec<&PathBuf> = event.paths.iter().filter(|p| self.relevant.is_relevant(p)).collect();
        for path in &relevant {
            match event.kind {
                EventKind::Modify(ModifyKind::Data(_)) => {
                    self.writing.insert((*path).clone());
                }
                EventKind::Access(_) | EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_)) => {
                    self.writing.remove(*path);
                }
                _ => {}
            }
        }
        !relevant.is_empty()
    }

    /// Reads everything again and tells the core what changed.
    async fn reload(&mut self) {
        let (samba, nfs) = (self.config.samba.clone(), self.config.nfs.clone());
        // canonicalize may block on a dead network filesystem: keep it off the runtime threads.
        let reading = tokio::task::spawn_blocking(move || load(&samba, &nfs));
        // A read stuck on a dead filesystem must not hold up shutdown: the task ends, and the
        // blocking thread is left to the runtime's bounded shutdown.
        let loaded = tokio::select! {
            loaded = reading => loaded,
            _ = self.ctx.token.cancelled() => return,
        };
        let loaded = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                warn!(error = %e, "share configuration reader panicked");
                self.fail(format!("share configuration reader failed: {e}")).await;
                return;
            }
        };
        let Loaded { shares, watch, warnings } = loaded;
        for warning in &warnings {
            warn!(warning = %warning, "share configuration");
        }
        self.relevant = watch;
        self.sync_watches();
        match shares {
            Ok(shares) => {
                if self.failed.take().is_some() {
                    info!("share configuration readable again");
                    self.send(Fact::SourceRecovered { source: NAME.to_owned() }).await;
                }
                let initial = self.last_good.is_none();
                info!(shares = shares.len(), initial, "share configuration read");
                self.last_good = Some(shares.clone());
                self.send(Fact::Shares { shares, initial }).await;
            }
            Err(e) => self.fail(e.to_string()).await,
        }
    }

    async fn fail(&mut self, message: String) {
        if self.failed.as_deref() == Some(message.as_str()) {
            return;
        }
        warn!(error = %message, "share configuration unusable; keeping the last good share set");
        self.failed = Some(message.clone());
        self.send(Fact::SourceFailed { source: NAME.to_owned(), message }).await;
    }

    /// Re-checks share paths; sends the share set again when one changed.
    async fn recheck(&mut self) {
        let Some(mut shares) = self.last_good.clone() else { return };
        let checking = tokio::task::spawn_blocking(move || {
            let changed = recheck_paths(&mut shares);
            (changed, shares)
        });
        let checked = tokio::select! {
            checked = checking => checked,
            _ = self.ctx.token.cancelled() => return,
        };
        match checked {
            Ok((true, shares)) => {
                debug!("share paths changed");
                self.last_good = Some(shares.clone());
                self.send(Fact::Shares { shares, initial: false }).await;
            }
            Ok((false, _)) => {}
            Err(e) => warn!(error = %e, "share path check panicked"),
        }
    }

    /// Watches the directories the configuration now needs, and only those.
    fn sync_watches(&mut self) {
        let Some(watcher) = self.watcher.as_mut() else { return };
        let wanted = self.relevant.directories();
        for dir in self.watched.difference(&wanted) {
            if let Err(e) = watcher.unwatch(dir) {
                debug!(path = %dir.display(), error = %e, "unwatch failed");
            }
        }
        let mut now = BTreeSet::new();
        for dir in wanted {
            if self.watched.contains(&dir) {
                now.insert(dir);
                continue;
            }
            match watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    debug!(path = %dir.display(), "watching");
                    now.insert(dir);
                }
                Err(e) => warn!(path = %dir.display(), error = %e, "cannot watch directory"),
            }
        }
        self.watched = now;
    }

    async fn send(&self, fact: Fact) {
        if self.ctx.facts.send(fact).await.is_err() {
            debug!("core gone; fact dropped");
        }
    }
}
