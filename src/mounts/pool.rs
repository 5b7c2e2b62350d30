//! A small elastic pool of plain threads for statvfs calls, which can block forever on a dead
//! network server. A hung call keeps its thread; the pool starts a replacement so the other
//! mounts keep being sampled, up to a hard cap so hung threads cannot pile up without bound.
//!
//! Plain threads rather than tokio's blocking pool: the runtime waits for its blocking tasks at
//! shutdown, and a thread stuck in the kernel would then hang the agent's exit.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::warn;

use crate::metrics::UsageMetrics;
use crate::model::Usage;

/// Threads that are neither idle-exited nor counted as hung: enough for bursts of new mounts.
const HEALTHY: usize = 2;
/// Threads at most, hung ones included.
pub const MAX_THREADS: usize = 32;
/// An idle thread beyond [`HEALTHY`] exits after this long.
const IDLE_EXIT: Duration = Duration::from_secs(60);

/// A query for one mount.
pub struct Job {
    pub id: String,
    pub path: PathBuf,
    /// Microseconds since the pool's epoch plus one when a thread picked the job up; 0 before.
    pub started: Arc<AtomicU64>,
}

/// The answer to a [`Job`].
#[derive(Debug)]
pub struct Done {
    pub id: String,
    pub result: Result<Usage, nix::errno::Errno>,
}

/// Computes usage from a statvfs answer the way `df` does: the percentage is of the space
/// available to users, `used / (used + available)`.
pub fn usage_from(st: &nix::sys::statvfs::Statvfs) -> Usage {
    let unit = st.fragment_size().max(1);
    let total = st.blocks().saturating_mul(unit);
    let free = st.blocks_free().saturating_mul(unit);
    let available = st.blocks_available().saturating_mul(unit);
    let used = total.saturating_sub(free);
    let inodes_total = st.files();
    let inodes_free = st.files_free();
    Usage {
        total_bytes: total,
        used_bytes: used,
        available_bytes: available,
        percent: percent(used, available),
        inodes_total,
        inodes_used: inodes_total.saturating_sub(inodes_free),
        inodes_free,
    }
}

/// `used / (used + available) * 100`, 0 for an empty filesystem.
pub fn percent(used: u64, available: u64) -> f64 {
    let denominator = used as f64 + available as f64;
    if denominator == 0.0 {
        0.0
    } else {
        used as f64 / denominator * 100.0
    }
}

struct Shared {
    jobs: Mutex<std_mpsc::Receiver<Job>>,
    /// Threads running (idle, busy or hung).
    alive: AtomicUsize,
    epoch: Instant,
}

/// The pool; dropping it lets the idle threads exit (hung ones exit when their call returns).
pub struct Pool {
    tx: std_mpsc::Sender<Job>,
    shared: Arc<Shared>,
    /// Per thread: when its current job started (µs since epoch + 1), 0 when idle.
    busy: Vec<Arc<AtomicU64>>,
    results: mpsc::UnboundedSender<Done>,
    timeout: Duration,
    /// Every thread is hung and the cap allows no more: queued jobs wait for a hung call to end.
    saturated: bool,
    metrics: UsageMetrics,
}

impl Pool {
    pub fn new(results: mpsc::UnboundedSender<Done>, timeout: Duration, metrics: UsageMetrics) -> Self {
        let (tx, rx) = std_mpsc::channel();
        let shared = Arc::new(Shared { jobs: Mutex::new(rx), alive: AtomicUsize::new(0), epoch: Instant::now() });
        Self { tx, shared, busy: Vec::new(), results, timeout, saturated: false, metrics }
    }

    /// Whether the pool is at its cap with every thread hung (see [`Pool::ensure_threads`]).
    pub fn saturated(&self) -> bool {
        self.saturated
    }

    /// Microseconds since the pool's epoch plus one (0 means "not started").
    pub fn now_stamp(&self) -> u64 {
        stamp(self.shared.epoch)
    }

    /// How long ago a stamp was taken.
    pub fn since(&self, stamp: u64) -> Duration {
        Duration::from_micros(self.now_stamp().saturating_sub(stamp))
    }

    pub fn threads(&self) -> usize {
        self.shared.alive.load(Ordering::Relaxed)
    }

    /// Queues a job, starting a thread first when too few are free to take it.
    pub fn submit(&mut self, job: Job) {
        if !self.ensure_threads() {
            self.metrics.saturated.inc();
        }
        // The receiver lives in `shared`, which this pool holds: the send cannot fail.
        let _ = self.tx.send(job);
    }

    /// Starts threads until [`HEALTHY`] of them are not stuck in a call older than the timeout.
    /// False when the cap stopped it with no thread free: the pool is saturated.
    pub fn ensure_threads(&mut self) -> bool {
        let now = self.now_stamp();
        let timeout = self.timeout.as_micros() as u64;
        self.busy.retain(|b| Arc::strong_count(b) > 1);
        let healthy = self
            .busy
            .iter()
            .filter(|b| {
                let since = b.load(Ordering::Acquire);
                since == 0 || now.saturating_sub(since) < timeout
            })
            .count();
        self.metrics.threads_hung.set((self.busy.len() - healthy) as i64);
        let ok = self.start_threads(healthy);
        self.metrics.threads.set(self.busy.len() as i64);
        ok
    }

    fn start_threads(&mut self, healthy: usize) -> bool {
        for _ in healthy..HEALTHY {
            let started = self.busy.len() < MAX_THREADS && self.spawn_one();
            if !started {
                let saturated = healthy == 0;
                if saturated && !self.saturated {
                    warn!(threads = self.busy.len(), "usage threads all hung: queued queries wait and go stale");
                }
                self.saturated = saturated;
                return !saturated;
            }
        }
        self.saturated = false;
        true
    }

    /// Starts up to `n` more threads, within the cap, for jobs that have waited too long in the
    /// queue: the threads ahead of them are most likely hanging, just not past the timeout yet.
    /// Without this a burst of dead mounts would be worked through at [`HEALTHY`] per timeout.
    pub fn grow(&mut self, n: usize) {
        let room = MAX_THREADS.saturating_sub(self.busy.len());
        for _ in 0..n.min(room) {
            if !self.spawn_one() {
                break;
            }
        }
        self.metrics.threads.set(self.busy.len() as i64);
    }

    fn spawn_one(&mut self) -> bool {
        let busy = Arc::new(AtomicU64::new(0));
        let shared = self.shared.clone();
        let results = self.results.clone();
        let mine = busy.clone();
        let spawned =
            std::thread::Builder::new().name("diskwatch-statvfs".into()).spawn(move || worker(shared, mine, results));
        match spawned {
            Ok(_) => {
                self.shared.alive.fetch_add(1, Ordering::Relaxed);
                self.busy.push(busy);
                true
            }
            Err(e) => {
                warn!(error = %e, "cannot start a usage thread");
                false
            }
        }
    }
}

#[cfg(test)]
impl Pool {
    /// Pretends `n` threads are stuck in calls that started at stamp 1; they stay "alive" while
    /// the caller holds the returned handles. No job is ever taken by them.
    pub fn fake_hung(&mut self, n: usize) -> Vec<Arc<AtomicU64>> {
        let stuck: Vec<Arc<AtomicU64>> = (0..n).map(|_| Arc::new(AtomicU64::new(1))).collect();
        self.busy.extend(stuck.iter().cloned());
        stuck
    }
}

fn stamp(epoch: Instant) -> u64 {
    epoch.elapsed().as_micros() as u64 + 1
}

fn worker(shared: Arc<Shared>, busy: Arc<AtomicU64>, results: mpsc::UnboundedSender<Done>) {
    loop {
        let job = {
            let jobs = shared.jobs.lock().unwrap_or_else(|p| p.into_inner());
            jobs.recv_timeout(IDLE_EXIT)
        };
        let job = match job {
            Ok(job) => job,
            Err(std_mpsc::RecvTimeoutError::Timeout) if shared.alive.load(Ordering::Relaxed) > HEALTHY => break,
            Err(std_mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let now = stamp(shared.epoch);
        busy.store(now, Ordering::Release);
        job.started.store(now, Ordering::Release);
        let result = nix::sys::statvfs::statvfs(&job.path).map(|st| usage_from(&st));
        busy.store(0, Ordering::Release);
        if results.send(Done { id: job.id, result }).is_err() {
            break;
        }
    }
    shared.alive.fetch_sub(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_as_df() {
        // df: 1000 used, 3000 available (root reserve not counted) → 25 %.
        assert_eq!(percent(1000, 3000), 25.0);
        assert_eq!(percent(0, 0), 0.0);
        assert_eq!(percent(5, 0), 100.0);
    }

    #[tokio::test]
    async fn samples_a_real_filesystem() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut pool = Pool::new(tx, Duration::from_secs(2), UsageMetrics::default());
        let dir = std::env::temp_dir();
        let started = Arc::new(AtomicU64::new(0));
        pool.submit(Job { id: "tmp".into(), path: dir, started: started.clone() });
        pool.submit(Job { id: "gone".into(), path: "/nonexistent/diskwatch".into(), started: Arc::default() });
        let mut got = Vec::new();
        for _ in 0..2 {
            got.push(tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap());
        }
        got.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(got[0].id, "gone");
        assert!(got[0].result.is_err());
        let usage = got[1].result.as_ref().unwrap();
        assert!(usage.total_bytes > 0 && usage.total_bytes >= usage.used_bytes);
        assert!((0.0..=100.0).contains(&usage.percent));
        assert!(started.load(Ordering::Acquire) > 0);
        assert!(pool.threads() <= MAX_THREADS);
    }
}
