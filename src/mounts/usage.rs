//! Usage sampling: one statvfs per mount every `usage_interval` on the [`Pool`], at most one
//! in flight per mount, and a query older than `usage_timeout` marks its mount stale. When every
//! thread of the pool hangs (at its cap), a query still waiting for a thread past its deadline
//! marks its mount stale too: its last value is old, and saying so beats showing it as current.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use tokio::sync::mpsc;
use tracing::debug;

use super::pool::{Done, Job, Pool, MAX_THREADS};
use crate::metrics::{Conditions, UsageMetrics};
use crate::model::{Mount, Usage};
use crate::state::Fact;

struct UsageWatch {
    path: PathBuf,
    dev: String,
    /// The running query's start stamp (0 while queued), when one is in flight.
    in_flight: Option<Arc<AtomicU64>>,
    /// When the query in flight was queued (pool stamp).
    queued: u64,
    /// Stale as last reported to the core.
    stale: bool,
    /// Usage last reported, so unchanged samples are not sent again.
    last: Option<Usage>,
}

/// Keeps track of the mounts to sample and of the queries in flight.
pub struct Sampler {
    pool: Pool,
    mounts: HashMap<String, UsageWatch>,
    timeout: Duration,
    metrics: UsageMetrics,
    conditions: Conditions,
}

/// The degradation condition raised while the pool is saturated.
pub const SATURATED_CONDITION: &str = "usage_pool_saturated";

impl Sampler {
    /// A sampler whose answers arrive on the returned receiver; feed them to [`Sampler::on_done`].
    pub fn new(
        timeout: Duration,
        metrics: UsageMetrics,
        conditions: Conditions,
    ) -> (Self, mpsc::UnboundedReceiver<Done>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let pool = Pool::new(tx, timeout, metrics.clone());
        (Self { pool, mounts: HashMap::new(), timeout, metrics, conditions }, rx)
    }

    /// Follows a new mount table; mounts that are new (or now hold another filesystem) are
    /// sampled at once, so a fresh mount gets its usage without waiting for the next round.
    pub fn set_mounts(&mut self, mounts: &[Mount]) {
        let mut fresh = Vec::new();
        let mut next = HashMap::with_capacity(mounts.len());
        for m in mounts {
            let path = PathBuf::from(&m.mount_point);
            match self.mounts.remove(&m.id) {
                Some(t) if t.path == path && t.dev == m.dev => {
                    next.insert(m.id.clone(), t);
                }
                _ => {
                    fresh.push(m.id.clone());
                    next.insert(
                        m.id.clone(),
                        UsageWatch { path, dev: m.dev.clone(), in_flight: None, queued: 0, stale: false, last: None },
                    );
                }
            }
        }
        // Queries of mounts that went away are forgotten; their answers are dropped.
        self.mounts = next;
        for id in fresh {
            self.sample(&id);
        }
    }

    /// Follows changes of the mount table (see [`Sampler::set_mounts`]).
    pub fn update(&mut self, upserts: &[Mount], removed: &[String]) {
        for id in removed {
            self.mounts.remove(id);
        }
        for m in upserts {
            let path = PathBuf::from(&m.mount_point);
            if self.mounts.get(&m.id).is_some_and(|t| t.path == path && t.dev == m.dev) {
                continue;
            }
            self.mounts.insert(
                m.id.clone(),
                UsageWatch { path, dev: m.dev.clone(), in_flight: None, queued: 0, stale: false, last: None },
            );
            self.sample(&m.id);
        }
    }

    fn sample(&mut self, id: &str) {
        let Some(t) = self.mounts.get_mut(id) else { return };
        if t.in_flight.is_some() {
            return;
        }
        let started = Arc::new(AtomicU64::new(0));
        t.in_flight = Some(started.clone());
        t.queued = self.pool.now_stamp();
        self.pool.submit(Job { id: id.to_owned(), path: t.path.clone(), started });
    }

    /// One round: every mount without a query in flight.
    pub fn sample_all(&mut self) {
        let ids: Vec<String> =
            self.mounts.iter().filter(|(_, t)| t.in_flight.is_none()).map(|(id, _)| id.clone()).collect();
        for id in ids {
            self.sample(&id);
        }
    }

    /// Whether queries are in flight (the caller then checks timeouts).
    pub fn busy(&self) -> bool {
        self.mounts.values().any(|t| t.in_flight.is_some())
    }

    /// How often to look for timed-out queries while [`Sampler::busy`].
    pub fn check_every(&self) -> Duration {
        (self.timeout / 4).max(Duration::from_millis(10))
    }

    /// An answer came back: the fact to send, if it tells the core something new.
    pub fn on_done(&mut self, done: Done) -> Option<Fact> {
        if self.pool.saturated() {
            // A hung call returned: its thread is free again.
            self.pool.ensure_threads();
            self.report_saturation();
        }
        let t = self.mounts.get_mut(&done.id)?;
        t.in_flight = None;
        match done.result {
            Ok(usage) => {
                if !t.stale && t.last.as_ref() == Some(&usage) {
                    return None;
                }
                t.stale = false;
                t.last = Some(usage.clone());
                Some(Fact::MountUsage { id: done.id, usage: Some(usage), stale: false })
            }
            // The filesystem is there but does not answer: a dead server or an aborted FUSE daemon.
            Err(e @ (Errno::ENOTCONN | Errno::EIO | Errno::ESTALE | Errno::EHOSTDOWN | Errno::ETIMEDOUT)) => {
                debug!(id = %done.id, error = %e, "usage query failed");
                if t.stale {
                    return None;
                }
                t.stale = true;
                Some(Fact::MountUsage { id: done.id, usage: None, stale: true })
            }
            // Most likely unmounted meanwhile; the next table read says so.
            Err(e) => {
                debug!(id = %done.id, path = %t.path.display(), error = %e, "usage query failed");
                None
            }
        }
    }

    /// Queries running longer than the timeout mark their mounts stale (once per hang), and so do
    /// queries still queued past the timeout while every thread of the pool hangs.
    pub fn check_timeouts(&mut self) -> Vec<Fact> {
        // The hung threads no longer count: make sure others serve the rest, if the cap allows.
        self.pool.ensure_threads();
        let overdue = self
            .mounts
            .values()
            .filter(|t| {
                t.in_flight.as_ref().is_some_and(|s| s.load(Ordering::Acquire) == 0)
                    && self.pool.since(t.queued) >= self.timeout / 2
            })
            .count();
        if overdue > 0 {
            self.pool.grow(overdue);
        }
        let saturated = self.pool.saturated();
        let mut facts = Vec::new();
        for (id, t) in &mut self.mounts {
            let Some(started) = &t.in_flight else { continue };
            if t.stale {
                continue;
            }
            let since = started.load(Ordering::Acquire);
            if since != 0 && self.pool.since(since) >= self.timeout {
                self.metrics.timeouts.inc();
            } else if since == 0 && saturated && self.pool.since(t.queued) >= self.timeout {
                self.metrics.queue_expired.inc();
            } else {
                continue;
            }
            t.stale = true;
            facts.push(Fact::MountUsage { id: id.clone(), usage: None, stale: true });
        }
        self.report_saturation();
        facts
    }

    /// Raises or clears the saturation condition in health.
    fn report_saturation(&self) {
        if self.pool.saturated() {
            let waiting = self
                .mounts
                .values()
                .filter(|t| t.in_flight.as_ref().is_some_and(|s| s.load(Ordering::Acquire) == 0))
                .count();
            self.conditions.raise(
                SATURATED_CONDITION,
                format!("all {MAX_THREADS} usage threads hang in statvfs; {waiting} mounts wait for one and are stale"),
            );
        } else if self.conditions.clear(SATURATED_CONDITION) {
            tracing::info!("usage threads free again");
        }
    }

    /// Threads the pool runs now.
    pub fn threads(&self) -> usize {
        self.pool.threads()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(id: &str, path: &str) -> Mount {
        let line = format!("1 1 0:1 / {path} rw - tmpfs tmpfs rw");
        let mut m = super::super::mountinfo::parse_line(&line).unwrap().into_mount();
        m.id = id.into();
        m
    }

    #[tokio::test]
    async fn new_mounts_are_sampled_at_once_and_unchanged_answers_are_quiet() {
        let (mut s, mut rx) = Sampler::new(Duration::from_secs(2), UsageMetrics::default(), Conditions::default());
        let tmp = std::env::temp_dir();
        s.set_mounts(&[mount("tmp", tmp.to_str().unwrap())]);
        assert!(s.busy());
        let done = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
        match s.on_done(done) {
            Some(Fact::MountUsage { id, usage: Some(_), stale: false }) => assert_eq!(id, "tmp"),
            other => panic!("{other:?}"),
        }
        assert!(!s.busy());
        // The same table again: nothing new to sample.
        s.set_mounts(&[mount("tmp", tmp.to_str().unwrap())]);
        assert!(!s.busy());
        s.sample_all();
        assert!(s.busy());
        // A query for a mount that went away is dropped.
        s.set_mounts(&[]);
        let done = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
        assert!(s.on_done(done).is_none());
    }

    #[test]
    fn dead_filesystem_errors_mark_stale_once() {
        let (mut s, _rx) = Sampler::new(Duration::from_secs(2), UsageMetrics::default(), Conditions::default());
        s.mounts.insert(
            "nas".into(),
            UsageWatch {
                path: "/mnt/nas".into(),
                dev: "0:9".into(),
                in_flight: Some(Arc::default()),
                queued: 0,
                stale: false,
                last: None,
            },
        );
        let f = s.on_done(Done { id: "nas".into(), result: Err(Errno::ENOTCONN) });
        assert!(matches!(f, Some(Fact::MountUsage { usage: None, stale: true, .. })));
        assert!(s.on_done(Done { id: "nas".into(), result: Err(Errno::ENOTCONN) }).is_none());
        assert!(s.on_done(Done { id: "nas".into(), result: Err(Errno::ENOENT) }).is_none());
    }

    #[test]
    fn at_the_cap_queued_queries_go_stale_after_their_deadline_and_recover() {
        let metrics = UsageMetrics::default();
        let conditions = Conditions::default();
        let (mut s, _rx) = Sampler::new(Duration::from_millis(20), metrics.clone(), conditions.clone());
        let stuck = s.pool.fake_hung(MAX_THREADS);
        std::thread::sleep(Duration::from_millis(25));
        // A healthy mount's query can only queue: every thread hangs and none may be added.
        s.update(&[mount("healthy", "/")], &[]);
        assert!(s.pool.saturated());
        assert_eq!(metrics.saturated.get(), 1);
        assert!(s.check_timeouts().is_empty(), "not past its deadline yet");
        assert!(conditions.is_raised(SATURATED_CONDITION));
        std::thread::sleep(Duration::from_millis(25));
        let facts = s.check_timeouts();
        assert!(matches!(facts.as_slice(), [Fact::MountUsage { id, usage: None, stale: true }] if id == "healthy"));
        assert_eq!(metrics.queue_expired.get(), 1);
        assert!(s.check_timeouts().is_empty(), "reported once");
        let message = &conditions.list()[0].message;
        assert!(message.contains("1 mounts wait"), "{message}");
        // The hung calls return: threads are free again, the condition clears, and the answer that
        // follows turns the mount fresh.
        drop(stuck);
        s.check_timeouts();
        assert!(!s.pool.saturated());
        assert!(!conditions.is_raised(SATURATED_CONDITION));
        let usage = Usage {
            total_bytes: 10,
            used_bytes: 5,
            available_bytes: 5,
            percent: 50.0,
            inodes_total: 1,
            inodes_used: 1,
            inodes_free: 0,
        };
        let fact = s.on_done(Done { id: "healthy".into(), result: Ok(usage) });
        assert!(matches!(fact, Some(Fact::MountUsage { stale: false, usage: Some(_), .. })));
    }

    #[test]
    fn a_query_running_past_the_timeout_marks_stale() {
        let (mut s, _rx) = Sampler::new(Duration::from_millis(1), UsageMetrics::default(), Conditions::default());
        let started = Arc::new(AtomicU64::new(1));
        s.mounts.insert(
            "nas".into(),
            UsageWatch {
                path: "/mnt/nas".into(),
                dev: "0:9".into(),
                in_flight: Some(started),
                queued: 0,
                stale: false,
                last: None,
            },
        );
        std::thread::sleep(Duration::from_millis(5));
        let facts = s.check_timeouts();
        assert!(matches!(facts.as_slice(), [Fact::MountUsage { stale: true, .. }]));
        assert!(s.check_timeouts().is_empty(), "reported once");
        // Still in flight: a new round does not start a second query.
        s.sample_all();
        assert_eq!(s.mounts["nas"].in_flight.as_ref().unwrap().load(Ordering::Acquire), 1);
    }
}
