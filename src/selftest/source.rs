//! The self-test task: every `poll` (and when the core's disks change) it reads the logs it
//! needs, starts what the [`Engine`] plans, and reports each disk's record to the core as a
//! [`Fact::DiskSelfTest`]. Requests from the action engine come over a channel
//! ([`SelfTestHandle`]) and follow the same rules, answered at once.
//!
//! Every smartctl run goes through `crate::smartctl` with the `-n` power check: a disk that
//! went to sleep since the health source saw it awake answers "standby" and is sent nothing.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio::time::{interval, MissedTickBehavior};
use tracing::{info, instrument, warn};

use super::engine::{DiskView, Engine};
use super::round::{self, Drives, Target};
use super::{store, SelfTestConfig, NAME};
use crate::agent::StorageView;
use crate::model::selftest::{SelfTest, SelfTestKind, SelfTestNews};
use crate::model::PowerState;
use crate::smartctl::selftest::{LogAnswer, StartAnswer};
use crate::smartctl::Smartctl;
use crate::sources::{Source, SourceContext, SourceFuture};
use crate::state::Fact;
use crate::text::KernelNameFilter;

/// Plans made on disk-set changes come no closer than this (the view changes with every I/O sample).
const PLAN_EVERY: Duration = Duration::from_secs(10);

/// A request to start a test now (the action engine).
#[derive(Debug)]
pub struct Request {
    pub disk: String,
    pub kind: SelfTestKind,
    /// Who asked, for the event (`token:<name>`, `mqtt`).
    pub by: String,
    pub reply: oneshot::Sender<Result<String, (&'static str, String)>>,
}

/// Starts tests on request; cheap to clone.
#[derive(Clone, Debug)]
pub struct SelfTestHandle(mpsc::Sender<Request>);

impl SelfTestHandle {
    /// Starts a `kind` test on `disk` now: a message, or a reason code and why not.
    pub async fn request(&self, disk: &str, kind: SelfTestKind, by: String) -> Result<String, (&'static str, String)> {
        let (reply, answer) = oneshot::channel();
        let gone = || ("error", "the self-test scheduler is not running".to_owned());
        self.0.send(Request { disk: disk.to_owned(), kind, by, reply }).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// The self-test source.
pub struct SelfTestSource {
    config: SelfTestConfig,
    /// The disks it may test: `[health] include/exclude`, as the health source reads them.
    include: Vec<String>,
    exclude: Vec<String>,
    state_dir: Option<PathBuf>,
    requests: mpsc::Receiver<Request>,
    handle: SelfTestHandle,
    /// Shared with the health source (`HealthConfig::smartctl`).
    smartctl: Smartctl,
}

impl SelfTestSource {
    /// Tests the disks `include`/`exclude` keep (`[health]`'s globs) through the health
    /// source's `smartctl` (one binary or helper socket, one run per disk at a time).
    pub fn new(
        config: SelfTestConfig,
        (include, exclude): (Vec<String>, Vec<String>),
        state_dir: Option<PathBuf>,
        smartctl: Smartctl,
    ) -> Self {
        let (tx, requests) = mpsc::channel(16);
        SelfTestSource { config, include, exclude, state_dir, requests, handle: SelfTestHandle(tx), smartctl }
    }

    pub fn handle(&self) -> SelfTestHandle {
        self.handle.clone()
    }
}

impl Source for SelfTestSource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn run(self: Box<Self>, ctx: SourceContext) -> SourceFuture {
        Box::pin(run(*self, ctx))
    }
}

/// The disks of a view that pass the filter, with their arrays (the disk's and its partitions').
fn targets(view: &StorageView, filter: &KernelNameFilter) -> Vec<Target> {
    view.disks
        .iter()
        .filter(|d| filter.keeps(&d.kernel_name))
        .map(|d| {
            let mut arrays = d.arrays.clone();
            for p in view.partitions.iter().filter(|p| p.disk_id == d.id) {
                arrays.extend(p.arrays.iter().cloned());
            }
            arrays.sort();
            arrays.dedup();
            let awake = matches!(d.power_state, Some(PowerState::Active | PowerState::Idle));
            Target { view: DiskView { id: d.id.clone(), awake, arrays }, devnode: d.devnode.clone() }
        })
        .collect()
}

/// smartctl as the scheduler's drives.
struct Smart(Smartctl);

impl Drives for Smart {
    async fn log(&self, disk: &str, devnode: &str) -> Result<LogAnswer, String> {
        self.0.self_test_log(disk, devnode).await.map_err(|e| e.to_string())
    }

    async fn start(&self, disk: &str, devnode: &str, kind: SelfTestKind, wake: bool) -> Result<StartAnswer, String> {
        self.0.start_self_test(disk, devnode, kind, wake).await.map_err(|e| e.to_string())
    }
}

struct Task {
    engine: Engine,
    smart: Smart,
    ctx: SourceContext,
    store: Option<PathBuf>,
    /// The record last sent per disk.
    sent: HashMap<String, Option<SelfTest>>,
    saved: BTreeMap<String, super::engine::Clocks>,
}

impl Task {
    async fn send(&mut self, id: &str, news: Option<SelfTestNews>) -> bool {
        let record = self.engine.record(id);
        if news.is_none() && self.sent.get(id) == Some(&record) {
            return true;
        }
        self.sent.insert(id.to_owned(), record.clone());
        let fact = Fact::DiskSelfTest { id: id.to_owned(), self_test: record.map(Box::new), news };
        self.ctx.facts.send(fact).await.is_ok()
    }

    fn persist(&mut self) {
        let clocks = self.engine.clocks();
        if clocks == self.saved {
            return;
        }
        if let Some(path) = &self.store {
            if let Err(e) = store::save(path, &clocks) {
                warn!(path = %path.display(), error = %e, "cannot save the self-test clocks");
            }
        }
        self.saved = clocks;
    }

    /// One round, then every disk's record to the core (only what changed).
    async fn step(&mut self, view: &StorageView, filter: &KernelNameFilter, all: bool) -> bool {
        let targets = targets(view, filter);
        let news = round::round(&mut self.engine, &self.smart, &targets, all, SystemTime::now()).await;
        self.sent.retain(|id, _| self.engine.tracks.contains_key(id));
        for (id, n) in news {
            if !self.send(&id, Some(n)).await {
                return false;
            }
        }
        for t in &targets {
            if !self.send(&t.view.id, None).await {
                return false;
            }
        }
        self.persist();
        true
    }

    async fn request(&mut self, view: &StorageView, filter: &KernelNameFilter, r: Request) {
        let targets = targets(view, filter);
        let now = SystemTime::now();
        let answer = round::request(&mut self.engine, &self.smart, &targets, &r.disk, r.kind, &r.by, now).await;
        let answer = match answer {
            Ok(news) => {
                self.send(&r.disk, Some(news)).await;
                Ok(format!("{} self-test started on {}", r.kind.as_str(), r.disk))
            }
            Err(e) => Err(e),
        };
        self.persist();
        let _ = r.reply.send(answer);
    }
}

#[instrument(name = "self_test", skip_all)]
async fn run(source: SelfTestSource, ctx: SourceContext) {
    let SelfTestSource { config, include, exclude, state_dir, mut requests, handle, smartctl } = source;
    drop(handle);
    let filter = match KernelNameFilter::new(&include, &exclude) {
        Ok(f) => f,
        Err(e) => {
            let _ = ctx.facts.send(Fact::SourceFailed { source: NAME.into(), message: e.to_string() }).await;
            return;
        }
    };
    let smart = Smart(smartctl);
    let store_path = state_dir.map(|d| d.join(store::FILE));
    let mut engine = Engine::new(config.clone());
    if let Some(path) = &store_path {
        match store::load(path) {
            Ok(clocks) => engine.load(clocks),
            Err(e) => warn!(path = %path.display(), error = %e, "self-test clocks not loaded: the drives' logs say"),
        }
    }
    let saved = engine.clocks();
    let mut task = Task { engine, smart, ctx: ctx.clone(), store: store_path, sent: HashMap::new(), saved };
    if !ctx.ready(NAME).await {
        return;
    }
    info!(short = ?config.interval(SelfTestKind::Short), long = ?config.interval(SelfTestKind::Long),
        max_parallel = config.max_parallel, wake_for_long = config.wake_for_long, "self-test scheduler started");
    let mut storage = ctx.storage.clone();
    let mut ticks = interval(config.poll);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut storage_open = true;
    let mut requests_open = true;
    let mut last_plan = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = ctx.token.cancelled() => break,
            _ = ticks.tick() => {
                let view = storage.borrow_and_update().clone();
                last_plan = tokio::time::Instant::now();
                if !task.step(&view, &filter, true).await {
                    break;
                }
            }
            r = requests.recv(), if requests_open => {
                let Some(r) = r else {
                    requests_open = false;
                    continue;
                };
                let view = storage.borrow().clone();
                task.request(&view, &filter, r).await;
            }
            changed = storage.changed(), if storage_open => {
                if changed.is_err() {
                    storage_open = false;
                    continue;
                }
                // A disk seen awake may open a window; not more often than PLAN_EVERY.
                if last_plan.elapsed() < PLAN_EVERY {
                    continue;
                }
                last_plan = tokio::time::Instant::now();
                let view = storage.borrow_and_update().clone();
                if !task.step(&view, &filter, false).await {
                    break;
                }
            }
        }
    }
}
