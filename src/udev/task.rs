//! The source's task: open the event socket, coldplug, then turn events,
//! node writes and coalescing deadlines into facts until cancelled.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;
use tokio::time::sleep_until;
use tracing::{debug, info, instrument, warn};

use super::config::{UdevConfig, UdevMode};
use crate::agent::StorageView;
use crate::model::PowerState;
use crate::sources::SourceContext;
use crate::state::Fact;

use super::coalesce::Coalescer;
use super::netlink::{KernelSocket, Received};
use super::probe::kernel_props;
use super::sleep::{Deferred, ProbeCache, SleepCheck, RECHECK};
use super::sysfs::{SysDevice, Sysfs};
use super::tracker::{PropSource, Tracker};
use super::udevd::UdevMonitor;
use super::uevent::{Action, Props, Uevent};
use super::watch::{NodeWatcher, Writes};
use super::{resolve_mode, SleepSetup, UdevError, UdevStats};
use crate::text::KernelNameFilter;

enum Monitor {
    Kernel(KernelSocket),
    Udev(UdevMonitor),
}

impl Monitor {
    fn open(mode: UdevMode, receive_buffer: usize) -> Result<Self, UdevError> {
        match mode {
            UdevMode::Udev => Ok(Monitor::Udev(UdevMonitor::open(receive_buffer)?)),
            _ => Ok(Monitor::Kernel(KernelSocket::open(receive_buffer)?)),
        }
    }

    async fn recv(&mut self, out: &mut Vec<Uevent>) -> Received {
        match self {
            Monitor::Kernel(s) => s.recv(out).await,
            Monitor::Udev(m) => m.recv(out).await,
        }
    }
}

/// Waits for node writes when there is a watcher, forever otherwise.
async fn written(watcher: &mut Option<NodeWatcher>, out: &mut Vec<String>) -> std::io::Result<()> {
    match watcher {
        Some(w) => w.written(out).await,
        None => std::future::pending().await,
    }
}

/// Runs blocking work (blkid probes, sysfs reads) without holding a worker of a multi-thread
/// runtime (the other tasks move to another thread meanwhile); inline on the source's own
/// current-thread runtime ([`run_on_own_thread`]) and in tests.
fn off_runtime<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Kernel mode: asks the disks' power state, then enumerates without probing the sleeping ones.
async fn enumerate(
    tracker: &mut Tracker,
    check: &SleepCheck,
    deferred: &mut Deferred,
    kernel: bool,
    initial: bool,
) -> Fact {
    if kernel {
        let candidates = tracker.disk_candidates();
        let asleep = check.asleep(&candidates).await;
        if !asleep.is_empty() {
            info!(
                disks = asleep.len(),
                "disks asleep: not probed until they wake (what their last probe found is used)"
            );
        }
        deferred.follow(check, &candidates, &asleep);
        tracker.set_asleep(asleep);
    }
    let fact = off_runtime(|| tracker.enumerate(initial));
    tracker.save_cache();
    fact
}

/// How often, at most, the probe cache is written while devices come and go.
const CACHE_SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The first probes of devices announced before them: a new disk's identity (its table was read
/// and kept when it was announced: `Tracker::read_new_tables`), a partition's filesystem.
fn first_probes(devices: Vec<SysDevice>) -> Vec<(SysDevice, Props)> {
    devices
        .into_iter()
        .map(|sys| {
            let started = Instant::now();
            let props = kernel_props(&sys);
            debug!(devpath = %sys.devpath, micros = started.elapsed().as_micros() as u64, "first probe");
            (sys, props)
        })
        .collect()
}

/// The nice value of the first probes' thread (and of the probe threads it starts, which inherit
/// it): on a busy machine, announcing the next event goes before finding a new device's
/// filesystem.
const PROBE_NICE: libc::c_int = 10;

/// Runs [`first_probes`] on a thread of its own at [`PROBE_NICE`]; the answer comes on the
/// returned channel (closed without one if the thread cannot start).
fn start_first_probes(devices: Vec<SysDevice>) -> oneshot::Receiver<Vec<(SysDevice, Props)>> {
    let (tx, rx) = oneshot::channel();
    let spawned = std::thread::Builder::new().name("diskwatch-probe".into()).spawn(move || {
        // SAFETY: setpriority with PRIO_PROCESS and 0 sets the calling thread's nice value on
        // Linux (nice is per thread); raising it needs no privilege and touches no memory.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, PROBE_NICE) } != 0 {
            debug!(error = %std::io::Error::last_os_error(), "cannot lower the probe thread's priority");
        }
        let _ = tx.send(first_probes(devices));
    });
    if let Err(e) = spawned {
        warn!(error = %e, "cannot start a probe thread: new devices stay without their probe");
    }
    rx
}

/// The probes in flight, when there are some; forever otherwise.
async fn joined<T>(task: &mut Option<oneshot::Receiver<T>>) -> Result<T, oneshot::error::RecvError> {
    match task {
        Some(t) => t.await,
        None => std::future::pending().await,
    }
}

async fn deadline(at: Option<Instant>) {
    match at {
        Some(t) => sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// Runs the source on a thread of its own, with a current-thread runtime. Its blocking work
/// (sysfs reads, a new disk's partition table, probes waited for with a timeout) then holds no
/// worker of the agent's runtime, and needs no hand-off of that worker to another thread per
/// event batch (`block_in_place`): one thread wakes for a uevent, reads what it needs and sends
/// the facts (docs/udev.md has the latency and memory figures).
pub async fn run_on_own_thread(config: UdevConfig, stats: Arc<UdevStats>, sleep: SleepSetup, ctx: SourceContext) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            warn!(error = %e, "cannot start the block-device source's own runtime: it shares the agent's");
            return run(config, stats, sleep, ctx).await;
        }
    };
    let facts = ctx.facts.clone();
    let (done_tx, done_rx) = oneshot::channel();
    let spawned = std::thread::Builder::new().name("diskwatch-udev".into()).spawn(move || {
        runtime.block_on(run(config, stats, sleep, ctx));
        // A probe thread still waiting on a hung device must not hold the shutdown.
        runtime.shutdown_timeout(std::time::Duration::from_millis(200));
        let _ = done_tx.send(());
    });
    match spawned {
        Ok(_) => {
            if done_rx.await.is_err() {
                warn!("the block-device source's thread ended without finishing (a panic)");
                let message = "the source's thread panicked".to_owned();
                let _ = facts.send(Fact::SourceFailed { source: "udev".into(), message }).await;
            }
        }
        Err(e) => {
            warn!(error = %e, "cannot start the block-device source's thread");
            let message = format!("cannot start its thread: {e}");
            let _ = facts.send(Fact::SourceFailed { source: "udev".into(), message }).await;
        }
    }
}

#[instrument(name = "udev", skip_all)]
pub async fn run(config: UdevConfig, stats: Arc<UdevStats>, sleep: SleepSetup, ctx: SourceContext) {
    let fail = |message: String| Fact::SourceFailed { source: "udev".into(), message };
    let filter = match KernelNameFilter::new(&config.include, &config.exclude) {
        Ok(f) => f,
        Err(e) => {
            let _ = ctx.facts.send(fail(e.to_string())).await;
            return;
        }
    };
    let mode = resolve_mode(config.source);
    info!(mode = ?mode, configured = ?config.source, "block-device source mode");
    stats.mode.store(if mode == UdevMode::Udev { 2 } else { 1 }, Ordering::Relaxed);
    // Open the socket before enumerating so nothing falls between the two.
    let mut monitor = match Monitor::open(mode, config.receive_buffer) {
        Ok(m) => m,
        Err(e) => {
            warn!(error = %e, "cannot follow block-device events");
            let _ = ctx.facts.send(fail(e.to_string())).await;
            return;
        }
    };
    // udevd watches nodes itself and sends change events; without it we do.
    let mut watcher = match mode {
        UdevMode::Udev => None,
        _ => NodeWatcher::new().map_err(|e| warn!(error = %e, "filesystem changes will show only on re-plug")).ok(),
    };
    let source = if mode == UdevMode::Udev { PropSource::Udev } else { PropSource::Kernel };
    let kernel = source == PropSource::Kernel;
    let cache = if kernel { ProbeCache::load(sleep.cache.clone()) } else { ProbeCache::default() };
    let mut tracker = Tracker::with_cache(Sysfs::new(&config.sysfs), filter, source, cache);
    let check = SleepCheck::new(
        sleep.smartctl.clone(),
        sleep.smartctl_device_type.clone(),
        sleep.smartctl_disks.clone(),
        &config.sysfs,
    )
    .via_socket(sleep.smartctl_socket.clone());
    let mut deferred = Deferred::default();
    let mut writes = Writes::new(&config.sysfs);
    let started = Instant::now();
    let fact = enumerate(&mut tracker, &check, &mut deferred, kernel, true).await;
    let micros = started.elapsed().as_micros() as u64;
    stats.coldplug_micros.store(micros, Ordering::Relaxed);
    stats.devices.store(tracker.len() as u64, Ordering::Relaxed);
    info!(devices = tracker.len(), micros, "coldplug enumeration done");
    sync_watches(&tracker, &mut watcher, &mut writes);
    if ctx.facts.send(fact).await.is_err() || !ctx.ready("udev").await {
        return;
    }
    stats.ready.store(true, Ordering::Release);

    let mut coalescer = Coalescer::new(config.coalesce);
    let mut events = Vec::new();
    let mut written_paths = Vec::new();
    let mut facts = Vec::new();
    let mut last_save = Instant::now();
    let mut saving: Option<std::thread::JoinHandle<bool>> = None;
    let mut probing: Option<oneshot::Receiver<Vec<(SysDevice, Props)>>> = None;
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The core's view, for the power state the health source saw (kernel mode: a `change` of a
    // disk it saw asleep is not probed), and the disks held unprobed for it until it sees them
    // awake again.
    let mut storage = ctx.storage.clone();
    let mut held: HashSet<String> = HashSet::new();
    'events: loop {
        tokio::select! {
            biased;
            _ = ctx.token.cancelled() => break 'events,
            received = monitor.recv(&mut events) => match received {
                Received::Ok => {
                    let now = Instant::now();
                    stats.events.fetch_add(events.len() as u64, Ordering::Relaxed);
                    if kernel {
                        hold_sleeping(&mut tracker, &storage.borrow(), &events, &mut held);
                    }
                    off_runtime(|| {
                        tracker.prefetch(&events);
                        for ev in events.drain(..) {
                            handle(&mut tracker, &mut coalescer, &mut watcher, &mut writes, ev, now, &mut facts);
                        }
                        tracker.end_batch();
                    });
                }
                Received::Overflow => {
                    events.clear();
                    stats.resyncs.fetch_add(1, Ordering::Relaxed);
                    ctx.metrics.udev_resyncs.inc();
                    warn!(receive_buffer = config.receive_buffer, "event socket overflowed (ENOBUFS): re-enumerating");
                    facts.push(enumerate(&mut tracker, &check, &mut deferred, kernel, false).await);
                    coalescer = Coalescer::new(config.coalesce);
                    sync_watches(&tracker, &mut watcher, &mut writes);
                }
                Received::Failed(e) => {
                    warn!(error = %e, "block-device event socket failed; reopening");
                    if ctx.facts.send(fail(format!("event socket failed: {e}"))).await.is_err() {
                        break 'events;
                    }
                    let Some(reopened) = reopen(mode, config.receive_buffer, &ctx.token).await else { break };
                    monitor = reopened;
                    // Events were missed while the socket was down.
                    facts.push(enumerate(&mut tracker, &check, &mut deferred, kernel, false).await);
                    coalescer = Coalescer::new(config.coalesce);
                    sync_watches(&tracker, &mut watcher, &mut writes);
                    facts.push(Fact::SourceRecovered { source: "udev".into() });
                    info!("block-device event socket reopened");
                }
            },
            res = written(&mut watcher, &mut written_paths) => {
                if let Err(e) = res {
                    warn!(error = %e, "inotify failed: filesystem changes will show only on re-plug");
                    watcher = None;
                }
                let now = Instant::now();
                let paths: Vec<String> = written_paths.drain(..).filter(|p| {
                    let wrote = writes.wrote(p, now);
                    if !wrote {
                        debug!(devpath = %p, "device node closed without writes (a monitor such as smartctl): not re-read");
                    }
                    wrote
                }).collect();
                off_runtime(|| node_written(&mut tracker, &mut coalescer, paths, now, &mut facts));
            }
            _ = deadline(writes.next_deadline()) => {
                let now = Instant::now();
                let paths = writes.due(now);
                off_runtime(|| node_written(&mut tracker, &mut coalescer, paths, now, &mut facts));
            }
            _ = deadline(coalescer.next_deadline()) => {
                off_runtime(|| {
                    for (path, props) in coalescer.due(Instant::now()) {
                        tracker.handle(Action::Change, &path, props.as_ref(), &mut facts);
                        sync_one(&tracker, &mut watcher, &mut writes, &path);
                    }
                });
            }
            probed = joined(&mut probing) => {
                probing = None;
                match probed {
                    Ok(probed) => tracker.finish_probe(probed, &mut facts),
                    Err(_) => warn!("the probe thread ended without an answer"),
                }
            }
            changed = storage.changed(), if !held.is_empty() => {
                if changed.is_err() {
                    // The core is gone: nobody will say the disks woke.
                    held.clear();
                    continue 'events;
                }
                let view = storage.borrow_and_update().clone();
                held.retain(|disk| tracker.asleep().contains(disk));
                let active = |p: PowerState| !p.is_asleep() && p != PowerState::Unknown;
                let awake: Vec<String> =
                    held.iter().filter(|d| power_state(&view, d).is_some_and(active)).cloned().collect();
                for disk in awake {
                    held.remove(&disk);
                    info!(devpath = %disk, "a disk whose change was not probed while asleep is active: probing it");
                    tracker.wake(&disk);
                    off_runtime(|| tracker.handle(Action::Change, &disk, None, &mut facts));
                }
            }
            _ = recheck.tick(), if !deferred.is_empty() => {
                deferred.retain(tracker.asleep());
                for devpath in deferred.woken(&check).await {
                    info!(devpath = %devpath, "a disk left unprobed while asleep is awake: probing it");
                    tracker.wake(&devpath);
                    off_runtime(|| tracker.handle(Action::Change, &devpath, None, &mut facts));
                }
            }
        }
        if kernel {
            deferred.retain(tracker.asleep());
        }
        stats.devices.store(tracker.len() as u64, Ordering::Relaxed);
        for fact in facts.drain(..) {
            if ctx.facts.send(fact).await.is_err() {
                break 'events;
            }
        }
        // New disks went out without their blkid probe. Their partition tables first, here: a
        // table is a few small reads, and a partition added next (BLKPG, a scan) finds its id in
        // it instead of waiting for a probe on another thread or reading it again.
        if tracker.has_new_tables() {
            off_runtime(|| tracker.read_new_tables());
        }
        // Then the rest on a thread of lower priority, while the loop goes on with the next
        // events (a partition added meanwhile is not held up behind its disk's probe).
        if probing.is_none() {
            let unprobed = tracker.take_unprobed();
            if !unprobed.is_empty() {
                probing = Some(start_first_probes(unprobed));
            }
        }
        // The cache is a hint for disks found asleep later: written after the facts went out,
        // at most every CACHE_SAVE_EVERY during a plug storm, and on a thread of its own (each
        // write is fsynced: on this loop, the fsync held the next uevents for milliseconds).
        // A save that failed (logged by its thread) leaves the cache to be saved again.
        if let Some(done) = saving.take_if(|s| s.is_finished()) {
            if !done.join().unwrap_or(false) {
                tracker.cache_unsaved();
            }
        }
        if kernel && last_save.elapsed() >= CACHE_SAVE_EVERY && saving.is_none() {
            if let Some((path, bytes)) = tracker.cache_snapshot() {
                let spawned = std::thread::Builder::new()
                    .name("diskwatch-cache".into())
                    .spawn(move || super::sleep::write_cache(&path, &bytes));
                match spawned {
                    Ok(handle) => saving = Some(handle),
                    Err(e) => warn!(error = %e, "cannot start a thread to save the probe cache"),
                }
            }
            last_save = Instant::now();
        }
    }
    // The last word is the synchronous save below.
    if let Some(saving) = saving.take() {
        if !saving.join().unwrap_or(false) {
            tracker.cache_unsaved();
        }
    }
    tracker.save_cache();
    debug!("block-device source stopped");
}

/// Reopens the event socket once a second until it works or the source is cancelled.
async fn reopen(mode: UdevMode, receive_buffer: usize, token: &tokio_util::sync::CancellationToken) -> Option<Monitor> {
    loop {
        tokio::select! {
            _ = token.cancelled() => return None,
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
        match Monitor::open(mode, receive_buffer) {
            Ok(m) => return Some(m),
            Err(e) => warn!(error = %e, "cannot reopen the block-device event socket"),
        }
    }
}

/// Device nodes closed after writes: re-read now, or after a storm of them settles.
fn node_written(
    tracker: &mut Tracker,
    coalescer: &mut Coalescer,
    paths: Vec<String>,
    now: Instant,
    facts: &mut Vec<Fact>,
) {
    for path in paths {
        debug!(devpath = %path, "device node written");
        // Written, so spinning: a disk held unprobed while asleep is probed again.
        tracker.wake_disk_of(&path);
        if coalescer.change(&path, None, now) {
            tracker.handle(Action::Change, &path, None, facts);
        }
    }
}

fn handle(
    tracker: &mut Tracker,
    coalescer: &mut Coalescer,
    watcher: &mut Option<NodeWatcher>,
    writes: &mut Writes,
    ev: Uevent,
    now: Instant,
    facts: &mut Vec<Fact>,
) {
    debug!(action = ?ev.action, devpath = %ev.devpath, "block-device event");
    if ev.action == Action::Add {
        // Watch the node before probing it: a mkfs that ends between the probe and a watch added
        // afterwards would otherwise go unseen. `sync_one` below drops the watch if the device
        // is not reported.
        if let (Some(w), Some(name)) = (watcher.as_mut(), ev.props.get("DEVNAME")) {
            w.sync(&ev.devpath, Some(&format!("/dev/{name}")));
            writes.baseline(&ev.devpath);
        }
    }
    match ev.action {
        Action::Add | Action::Remove => {
            coalescer.passthrough(&ev.devpath, ev.action == Action::Remove, now);
            tracker.handle(
                ev.action,
                &ev.devpath,
                Some(&ev.props).filter(|p| p.contains_key("USEC_INITIALIZED")),
                facts,
            );
        }
        Action::Change | Action::Other => {
            let props = Some(ev.props).filter(|p| p.contains_key("USEC_INITIALIZED"));
            if coalescer.change(&ev.devpath, props.clone(), now) {
                tracker.handle(Action::Change, &ev.devpath, props.as_ref(), facts);
            } else if tracker.presence_changed(&ev.devpath) {
                // An attach or detach inside a storm: handled now, it supersedes the deferred read.
                coalescer.passthrough(&ev.devpath, false, now);
                tracker.handle(Action::Change, &ev.devpath, props.as_ref(), facts);
            }
        }
    }
    sync_one(tracker, watcher, writes, &ev.devpath);
}

fn sync_one(tracker: &Tracker, watcher: &mut Option<NodeWatcher>, writes: &mut Writes, devpath: &str) {
    if let Some(w) = watcher {
        let node = tracker.devnode(devpath);
        w.sync(devpath, node);
        match node {
            Some(_) => writes.baseline(devpath),
            None => writes.forget(devpath),
        }
    }
}

fn sync_watches(tracker: &Tracker, watcher: &mut Option<NodeWatcher>, writes: &mut Writes) {
    if let Some(w) = watcher {
        let known: Vec<(String, String)> =
            tracker.devpaths().filter_map(|p| Some((p.to_owned(), tracker.devnode(p)?.to_owned()))).collect();
        // Fresh start: drop every watch, then add the current devices.
        let mut fresh = match NodeWatcher::new() {
            Ok(f) => f,
            Err(e) => {
                warn!(error = %e, "cannot renew inotify watches");
                return;
            }
        };
        for (path, node) in &known {
            fresh.sync(path, Some(node));
            writes.baseline(path);
        }
        *w = fresh;
    }
}

/// The power state the health source last saw for the disk at `devpath`.
fn power_state(view: &StorageView, devpath: &str) -> Option<PowerState> {
    let name = devpath.rsplit('/').next()?;
    view.disks.iter().find(|d| d.kernel_name == name)?.power_state
}

/// Whether a `change` uevent says the medium changed: a new medium or size (`DISK_MEDIA_CHANGE`,
/// `RESIZE`), which a disk in standby cannot produce without spinning up.
fn media_changed(props: &Props) -> bool {
    ["DISK_MEDIA_CHANGE", "RESIZE"].iter().any(|k| props.get(*k).is_some_and(|v| v == "1"))
}

/// Kernel mode: a `change` of a disk (or of one of its partitions) the health source saw in
/// standby or sleep is handled from sysfs and the disk's last probe, without reading it
/// (`udevadm trigger` or `echo change > uevent` reach sleeping disks too); the disk is held so
/// until the health source sees it active again. A media or size change is probed.
fn hold_sleeping(tracker: &mut Tracker, view: &StorageView, events: &[Uevent], held: &mut HashSet<String>) {
    for ev in events.iter().filter(|e| matches!(e.action, Action::Change | Action::Other)) {
        let Some(disk) = tracker.disk_of(&ev.devpath) else { continue };
        if media_changed(&ev.props) {
            if tracker.wake(&disk) {
                info!(devpath = %disk, "a sleeping disk's medium changed: probing it");
            }
            held.remove(&disk);
        } else if power_state(view, &disk).is_some_and(PowerState::is_asleep) && tracker.hold_asleep(&disk) {
            info!(devpath = %disk, "change of a disk in standby: not probed until it is active (never-wake)");
            held.insert(disk);
        }
    }
}
