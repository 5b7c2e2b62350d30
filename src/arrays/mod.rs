//! The arrays source (SPEC §8): md RAID arrays, multi-device btrfs filesystems and ZFS pools,
//! reported as the complete set of [`Array`]s after every change.
//!
//! md is followed the way `mdadm --monitor` does: POLLPRI on `/proc/mdstat` and on the md
//! attributes that notify (`array_state`, `degraded`, `sync_action`, `dev-*/state`). btrfs
//! filesystems appear in sysfs when mounted, so the mount table's POLLPRI wakes a re-read; their
//! error counters do not notify and are re-read every `interval`. ZFS pools are read from
//! `zpool status -j` every `interval` where a zpool binary exists. While a rebuild, resync,
//! check or scrub runs, progress is re-read every `progress_interval`.
//!
//! - [`mdstat`], [`md`]: the md parsers and the Array made of them.
//! - [`btrfs`], [`zfs`]: the btrfs and ZFS readers.
//! - [`read`]: attribute reads and the POLLPRI / inotify watch set.
//! - [`transitions`]: which events a new observation makes (pure, used by the state model).
//! - [`model`]: the Array object.

pub mod btrfs;
pub mod config;
pub mod md;
pub mod mdstat;
pub mod read;
pub mod zfs;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tokio::time::{interval, sleep_until, Instant, MissedTickBehavior};
use tracing::{debug, info, instrument, warn};

pub use crate::model::array::{Array, ArrayKind, ArrayMember, ArrayState, ErrorCounts, MemberRole};
use crate::sources::{Source, SourceContext, SourceFuture};
use crate::state::array_transitions::INITIAL_SYNC_WINDOW;
use crate::state::Fact;
pub use config::ArraysConfig;
use read::{AttrReader, WatchSet};

/// Source name in health and `source.*` events.
pub const NAME: &str = "arrays";

/// Least time between two scans caused by wakes (a burst gets one scan at its start and one
/// at the end of each gap): four times what the last scan took, within these bounds. A few
/// arrays scan in well under a millisecond, so a wake inside a burst waits about 2 ms; a
/// machine with 10 000 mounts (slower scans) is re-read at most a few times a second.
const MIN_SCAN_GAP: std::time::Duration = std::time::Duration::from_millis(2);
const MAX_SCAN_GAP: std::time::Duration = std::time::Duration::from_millis(50);

/// The gap after a scan that took `took`.
fn scan_gap(took: std::time::Duration) -> std::time::Duration {
    (took * 4).clamp(MIN_SCAN_GAP, MAX_SCAN_GAP)
}

/// When to read again after a wake (from the wake).
const FOLLOWUPS: [std::time::Duration; 3] = [
    std::time::Duration::from_millis(50),
    std::time::Duration::from_millis(250),
    std::time::Duration::from_millis(1000),
];

/// The arrays source.
pub struct ArraysSource {
    config: ArraysConfig,
}

impl ArraysSource {
    pub fn new(config: ArraysConfig) -> Self {
        Self { config }
    }
}

impl Source for ArraysSource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn run(self: Box<Self>, ctx: SourceContext) -> SourceFuture {
        Box::pin(run(self.config, ctx))
    }
}

/// Everything the source remembers between reads.
pub struct Scanner {
    config: ArraysConfig,
    pub watch: WatchSet,
    /// Last good md arrays by kernel name (kept when a read fails).
    md: Vec<(String, Array)>,
    /// Last good btrfs arrays by fsid.
    btrfs: Vec<(String, Array)>,
    zfs: Vec<Array>,
    /// The zpool binary, when one was found.
    zpool: Option<PathBuf>,
    /// Kernel name last seen per (array id, slot/devid): names members that went missing.
    known_names: HashMap<(String, u64), String>,
    /// The last message logged per input, so a bad input is logged once, not at every read.
    complaints: HashMap<String, String>,
}

impl Scanner {
    pub fn new(config: ArraysConfig) -> Self {
        let zpool = find_binary(&config.zpool);
        Self {
            config,
            watch: WatchSet::new(),
            md: Vec::new(),
            btrfs: Vec::new(),
            zfs: Vec::new(),
            zpool,
            known_names: HashMap::new(),
            complaints: HashMap::new(),
        }
    }

    pub fn has_zpool(&self) -> bool {
        self.zpool.is_some()
    }

    /// The current set of arrays (md, then btrfs, then ZFS).
    pub fn arrays(&self) -> Vec<Array> {
        let mut all: Vec<Array> = self.md.iter().map(|(_, a)| a.clone()).collect();
        all.extend(self.btrfs.iter().map(|(_, a)| a.clone()));
        all.extend(self.zfs.iter().cloned());
        for array in &mut all {
            for member in &mut array.members {
                if member.kernel_name.is_none() {
                    if let Some(slot) = member.slot {
                        member.kernel_name = self.known_names.get(&(array.id.clone(), slot)).cloned();
                    }
                }
            }
        }
        all
    }

    /// Whether any array is syncing, so progress should be re-read often.
    pub fn syncing(&self) -> bool {
        self.arrays().iter().any(|a| a.sync_action.is_some())
    }

    fn complain(&mut self, input: &str, message: String) {
        if self.complaints.get(input) != Some(&message) {
            warn!(input, error = %message, "array input unreadable: last good state kept");
            self.complaints.insert(input.to_owned(), message);
        }
    }

    fn content(&mut self, input: &str) {
        if self.complaints.remove(input).is_some() {
            info!(input, "array input readable again");
        }
    }

    /// Re-reads md and btrfs (cheap: a few small attribute files per array).
    pub fn scan_kernel(&mut self) {
        self.scan_md();
        self.scan_btrfs();
        self.remember_names();
        self.rewatch();
    }

    fn remember_names(&mut self) {
        for (_, array) in self.md.iter().chain(self.btrfs.iter()) {
            for member in &array.members {
                if let (Some(name), Some(slot)) = (&member.kernel_name, member.slot) {
                    if member.role != MemberRole::Missing {
                        self.known_names.insert((array.id.clone(), slot), name.clone());
                    }
                }
            }
        }
    }

    fn scan_md(&mut self) {
        let path = self.config.mdstat.clone();
        let input = path.display().to_string();
        let text = match self.watch.read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // No md driver loaded: no md arrays.
                self.content(&input);
                self.md.clear();
                return;
            }
            Err(e) => return self.complain(&input, e.to_string()),
        };
        let parsed = match mdstat::parse(&text) {
            Ok(parsed) => parsed,
            Err(e) => return self.complain(&input, e.to_string()),
        };
        self.content(&input);
        let mut next = Vec::with_capacity(parsed.len());
        for stat in &parsed {
            let key = format!("{}/{}", self.config.sysfs.display(), stat.name);
            match md::read_sysfs(&self.config.sysfs, &stat.name, &mut self.watch) {
                Ok(sys) => {
                    self.content(&key);
                    next.push((stat.name.clone(), md::array_from(stat, sys.as_ref())));
                }
                Err(e) => {
                    self.complain(&key, e.to_string());
                    if let Some(previous) = self.md.iter().find(|(n, _)| *n == stat.name) {
                        next.push(previous.clone());
                    }
                }
            }
        }
        self.md = next;
    }

    fn scan_btrfs(&mut self) {
        let root = self.config.btrfs.clone();
        let fsids = btrfs::list(&root);
        // The mount table is parsed only when there is a btrfs filesystem to name devices of.
        let mounts = if fsids.is_empty() { Vec::new() } else { self.btrfs_mounts() };
        let mut next = Vec::new();
        for fsid in fsids {
            let key = format!("{}/{fsid}", root.display());
            match btrfs::read_fs(&root, &fsid, &mut self.watch) {
                Ok(Some(fs)) if fs.is_multi_device() => {
                    self.content(&key);
                    let devids: Vec<u64> = fs.devinfo.iter().filter(|d| !d.missing).map(|d| d.devid).collect();
                    let mount_point = mounts.iter().find(|(source, _)| fs.devices.iter().any(|d| d == source));
                    let names = match mount_point {
                        Some((_, point)) => btrfs::device_names(Path::new(point), &devids).unwrap_or_else(|e| {
                            debug!(fsid, error = %e, "cannot name btrfs devices");
                            HashMap::new()
                        }),
                        None => HashMap::new(),
                    };
                    let names = if names.is_empty() && fs.devices.len() == devids.len() {
                        // No mount visible here: present devices in devid order.
                        devids.iter().copied().zip(fs.devices.iter().cloned()).collect()
                    } else {
                        names
                    };
                    next.push((fsid.clone(), btrfs::array_from(&fs, &names)));
                }
                Ok(_) => {}
                Err(e) => {
                    self.complain(&key, e.to_string());
                    if let Some(previous) = self.btrfs.iter().find(|(f, _)| *f == fsid) {
                        next.push(previous.clone());
                    }
                }
            }
        }
        self.btrfs = next;
    }

    /// btrfs mounts visible to this process: (source kernel name, mount point).
    fn btrfs_mounts(&mut self) -> Vec<(String, String)> {
        let path = self.config.mountinfo.clone();
        let Ok(text) = self.watch.read(&path) else { return Vec::new() };
        let (entries, _) = crate::mounts::mountinfo::parse(&text);
        entries
            .into_iter()
            .filter(|e| e.fs_type == "btrfs")
            .filter_map(|e| Some((e.source.strip_prefix("/dev/")?.to_owned(), e.mount_point)))
            .collect()
    }

    /// Watches mdstat, the mount table and every notifying md attribute.
    fn rewatch(&mut self) {
        let mut paths = vec![self.config.mdstat.clone(), self.config.mountinfo.clone()];
        for (name, array) in &self.md {
            let members: Vec<String> = array.members.iter().filter_map(|m| m.kernel_name.clone()).collect();
            paths.extend(md::polled_attributes(&self.config.sysfs, name, &members));
        }
        paths.retain(|p| p.exists());
        self.watch.set(&paths);
    }

    /// Runs `zpool status -j --json-int` (bounded) and keeps the last good pools.
    pub async fn scan_zfs(&mut self) {
        let Some(zpool) = self.zpool.clone() else { return };
        let input = zpool.display().to_string();
        let run = tokio::process::Command::new(&zpool)
            .args(["status", "-j", "--json-int"])
            .env("LC_ALL", "C")
            .kill_on_drop(true)
            .output();
        let output = match tokio::time::timeout(self.config.zpool_timeout, run).await {
            Err(_) => return self.complain(&input, format!("no answer within {:?}", self.config.zpool_timeout)),
            Ok(Err(e)) => return self.complain(&input, e.to_string()),
            Ok(Ok(output)) => output,
        };
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
            return self.complain(&input, format!("{}: {stderr}", output.status));
        }
        let resolve = |path: &str| -> Option<String> {
            let real = std::fs::canonicalize(path).ok()?;
            real.strip_prefix("/dev").ok().map(|p| p.to_string_lossy().into_owned())
        };
        match zfs::parse(&String::from_utf8_lossy(&output.stdout), &resolve) {
            Ok(pools) => {
                self.content(&input);
                self.zfs = pools;
            }
            Err(e) => self.complain(&input, e.to_string()),
        }
    }
}

/// Resolves a binary name on PATH (or checks a path).
fn find_binary(name: &str) -> Option<PathBuf> {
    if name.is_empty() {
        return None;
    }
    if name.contains('/') {
        return Path::new(name).is_file().then(|| PathBuf::from(name));
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|p| p.join(name)).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.is_file())
}

#[instrument(name = "arrays", skip_all, fields(mdstat = %config.mdstat.display(), btrfs = %config.btrfs.display()))]
async fn run(config: ArraysConfig, ctx: SourceContext) {
    let mut scanner = Scanner::new(config.clone());
    if scanner.has_zpool() {
        info!(zpool = %config.zpool, "following ZFS pools");
    } else {
        debug!(zpool = %config.zpool, "no zpool binary: ZFS pools not followed");
    }
    scanner.scan_kernel();
    scanner.scan_zfs().await;
    let mut last = scanner.arrays();
    if ctx.facts.send(Fact::Arrays { arrays: last.clone(), initial: true }).await.is_err() || !ctx.ready(NAME).await {
        return;
    }
    // md devices appear and go as disks too (udev), and btrfs member names follow the disks.
    let mut storage = ctx.storage.clone();
    let mut storage_open = true;
    let mut slow = interval(config.interval);
    slow.set_missed_tick_behavior(MissedTickBehavior::Delay);
    slow.reset();
    let mut fast = interval(config.progress_interval);
    fast.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Re-reads shortly after a wake: an unmount is announced on the mount table before the
    // filesystem's sysfs directory goes, and md updates attributes one after the other.
    let mut followups: Vec<Instant> = Vec::new();
    // A wake is answered at once, unless a scan ran within MIN_SCAN_GAP: then one scan follows
    // at the end of the gap. A flood of mount-table changes (10 000 mounts at once) would
    // otherwise re-read the whole table once per change.
    let mut last_scan = Instant::now();
    let mut gap = MIN_SCAN_GAP;
    let mut deferred: Option<Instant> = None;
    // The state withholds the degraded alarm of an array that appeared waiting for its first
    // sync; when that window ends the set is sent again (even unchanged) so it can decide.
    let mut window_ends: Option<Instant> = None;
    // Scans and remembers when, and how long the next gap is.
    let timed_scan = |scanner: &mut Scanner, last_scan: &mut Instant, gap: &mut std::time::Duration| {
        let started = Instant::now();
        scanner.scan_kernel();
        *last_scan = started;
        *gap = scan_gap(started.elapsed());
    };
    loop {
        let syncing = scanner.syncing();
        let next_followup = followups.first().copied();
        tokio::select! {
            biased;
            _ = ctx.token.cancelled() => break,
            woken = scanner.watch.changed() => {
                debug!(path = %woken.display(), "array input changed");
                let now = Instant::now();
                if now.duration_since(last_scan) >= gap {
                    timed_scan(&mut scanner, &mut last_scan, &mut gap);
                } else {
                    deferred.get_or_insert(last_scan + gap);
                }
                followups = FOLLOWUPS.iter().map(|d| now + *d).collect();
            }
            _ = sleep_until(deferred.unwrap_or_else(Instant::now)), if deferred.is_some() => {
                deferred = None;
                timed_scan(&mut scanner, &mut last_scan, &mut gap);
            }
            _ = sleep_until(next_followup.unwrap_or_else(Instant::now)), if next_followup.is_some() => {
                followups.remove(0);
                scanner.scan_kernel();
            }
            _ = fast.tick(), if syncing => scanner.scan_kernel(),
            _ = sleep_until(window_ends.unwrap_or_else(Instant::now)), if window_ends.is_some() => {
                window_ends = None;
                scanner.scan_kernel();
                let arrays = scanner.arrays();
                if ctx.facts.send(Fact::Arrays { arrays: arrays.clone(), initial: false }).await.is_err() {
                    return;
                }
                last = arrays;
                continue;
            }
            changed = storage.changed(), if storage_open => match changed {
                Ok(()) => {
                    if last_scan.elapsed() >= gap {
                        timed_scan(&mut scanner, &mut last_scan, &mut gap);
                    } else {
                        deferred.get_or_insert(last_scan + gap);
                    }
                }
                Err(_) => storage_open = false,
            },
            _ = slow.tick() => {
                scanner.scan_kernel();
                scanner.scan_zfs().await;
            }
        }
        let arrays = scanner.arrays();
        if arrays != last {
            if arrays.iter().any(|a| !last.iter().any(|l| l.id == a.id)) {
                window_ends = Some(Instant::now() + INITIAL_SYNC_WINDOW + std::time::Duration::from_millis(100));
            }
            let started = Instant::now();
            if ctx.facts.send(Fact::Arrays { arrays: arrays.clone(), initial: false }).await.is_err() {
                return;
            }
            debug!(arrays = arrays.len(), queued_in = ?started.elapsed(), "arrays sent");
            last = arrays;
        }
    }
    debug!("arrays source stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_gap_follows_the_scan_time_within_its_bounds() {
        assert_eq!(scan_gap(Duration::from_micros(150)), MIN_SCAN_GAP, "a quick scan: a short gap");
        assert_eq!(scan_gap(Duration::from_millis(3)), Duration::from_millis(12));
        assert_eq!(scan_gap(Duration::from_millis(40)), MAX_SCAN_GAP, "a slow table: at most a few scans a second");
    }
}
