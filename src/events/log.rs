//! The event log: a ring of recent events bounded by count and bytes, the
//! broadcast channel that fans new events out to the sinks, and history
//! older than the ring read back from the journal.
//!
//! Appending and subscribing happen under one lock, so a subscriber that
//! reads the ring and then follows the channel sees every event exactly once.
//! That lock is the one the core takes to publish: readers hold it only to
//! copy `Arc` handles out, never while filtering or reading the journal.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::broadcast;

use super::history::{JournalFiles, ReadLimit};
use super::Published;

/// Events read from the journal per step of a history query.
const JOURNAL_CHUNK: ReadLimit = ReadLimit { events: 1024, bytes: 1 << 20 };

/// A subscription that starts right after `backlog`.
pub struct Subscription {
    /// Events after the requested id still held in the ring, oldest first.
    pub backlog: Vec<Arc<Published>>,
    /// New events, from the first one not in `backlog`.
    pub receiver: broadcast::Receiver<Arc<Published>>,
}

/// What went wrong when resuming after an id.
#[derive(Debug, PartialEq, Eq)]
pub enum ResumeError {
    /// The events right after that id have left the ring.
    TooOld,
}

/// How many events the ring holds at most.
#[derive(Debug, Clone, Copy)]
pub struct RingLimits {
    pub events: usize,
    /// Held bytes (frames plus per-event overhead, [`Published::held_bytes`]).
    pub bytes: usize,
}

#[derive(Default)]
struct Ring {
    events: VecDeque<Arc<Published>>,
    bytes: usize,
}

impl Ring {
    fn push(&mut self, event: Arc<Published>, limits: RingLimits) {
        self.bytes += event.held_bytes();
        self.events.push_back(event);
        // The newest event always stays, whatever its size.
        while self.events.len() > limits.events || self.bytes > limits.bytes && self.events.len() > 1 {
            if let Some(old) = self.events.pop_front() {
                self.bytes -= old.held_bytes();
            }
        }
    }
}

pub struct EventLog {
    ring: Mutex<Ring>,
    limits: RingLimits,
    sender: broadcast::Sender<Arc<Published>>,
    /// The journal's files, for history older than the ring.
    journal: Option<Arc<JournalFiles>>,
    /// Ids at or below this were issued by an earlier run of the agent.
    run_start_after: u64,
}

impl EventLog {
    /// Subscribers may fall `client_buffer` events behind.
    pub fn new(limits: RingLimits, client_buffer: usize, recovered: Vec<Arc<Published>>) -> Self {
        let (sender, _) = broadcast::channel(client_buffer.max(1));
        let limits = RingLimits { events: limits.events.max(1), bytes: limits.bytes };
        let mut ring = Ring::default();
        let run_start_after = recovered.last().map_or(0, |e| e.seq);
        for event in recovered {
            ring.push(event, limits);
        }
        Self { ring: Mutex::new(ring), limits, sender, journal: None, run_start_after }
    }

    /// Serves history older than the ring from the journal's files; ids up to
    /// `run_start_after` belong to earlier runs.
    pub fn with_journal(mut self, journal: Arc<JournalFiles>, run_start_after: u64) -> Self {
        self.journal = Some(journal);
        self.run_start_after = run_start_after;
        self
    }

    fn ring(&self) -> MutexGuard<'_, Ring> {
        // A panic while holding this lock leaves the ring consistent (push/pop only).
        self.ring.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds events to the ring and hands them to every subscriber.
    pub fn append(&self, events: &[Arc<Published>]) {
        let mut ring = self.ring();
        for event in events {
            ring.push(event.clone(), self.limits);
            // No receiver is not an error: nobody is streaming right now.
            let _ = self.sender.send(event.clone());
        }
    }

    /// A subscription to new events only.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        let _ring = self.ring();
        self.sender.subscribe()
    }

    /// A subscription that resumes after `after_id` from the ring: the held events
    /// after it, then new ones.
    pub fn resume(&self, after_id: u64) -> Result<Subscription, ResumeError> {
        let ring = self.ring();
        let receiver = self.sender.subscribe();
        if let Some(first) = ring.events.front() {
            if after_id + 1 < first.seq {
                return Err(ResumeError::TooOld);
            }
        }
        let start = ring.events.partition_point(|e| e.seq <= after_id);
        Ok(Subscription { backlog: ring.events.range(start..).cloned().collect(), receiver })
    }

    /// Handles of the held events after `after_id`, and the id of the oldest held event.
    fn held_after(&self, after_id: u64) -> (Option<u64>, Vec<Arc<Published>>) {
        let ring = self.ring();
        let start = ring.events.partition_point(|e| e.seq <= after_id);
        (ring.events.front().map(|e| e.seq), ring.events.range(start..).cloned().collect())
    }

    /// Held events after `after_id` matching `keep` (the ring only: never blocks on files).
    pub fn recent(&self, after_id: u64, keep: impl Fn(&Published) -> bool) -> Vec<Arc<Published>> {
        let (_, held) = self.held_after(after_id);
        held.into_iter().filter(|e| keep(e)).collect()
    }

    /// Whether the ring still holds every event after `after_id`.
    pub fn holds_after(&self, after_id: u64) -> bool {
        self.ring().events.front().is_none_or(|first| after_id + 1 >= first.seq)
    }

    /// Journal events after `after_id` (blocking file I/O: call from a blocking
    /// thread). Empty without a journal or when it cannot be read.
    pub fn journal_after(&self, after_id: u64, limit: ReadLimit) -> Vec<Arc<Published>> {
        let Some(journal) = &self.journal else { return Vec::new() };
        journal.read_range(after_id, u64::MAX, limit).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read history from the journal");
            Vec::new()
        })
    }

    /// Events after `after_id` matching `keep`, oldest first, at most `limit`:
    /// from the journal where the ring no longer holds them, then from the ring.
    /// May read files: call from a blocking thread.
    pub fn history(&self, after_id: u64, limit: usize, keep: impl Fn(&Published) -> bool) -> Vec<Arc<Published>> {
        let (first_held, held) = self.held_after(after_id);
        let mut out = Vec::new();
        if let Some(journal) = &self.journal {
            let before = first_held.unwrap_or(u64::MAX);
            let mut cursor = after_id;
            while out.len() < limit && cursor + 1 < before {
                let chunk = match journal.read_range(cursor, before, JOURNAL_CHUNK) {
                    Ok(chunk) => chunk,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read history from the journal");
                        break;
                    }
                };
                let Some(last) = chunk.last() else { break };
                cursor = last.seq;
                out.extend(chunk.into_iter().filter(|e| keep(e)).take(limit - out.len()));
            }
        }
        let rest = limit.saturating_sub(out.len());
        out.extend(held.into_iter().filter(|e| keep(e)).take(rest));
        out
    }

    /// Ids at or below this were issued before the agent's current run.
    pub fn run_start_after(&self) -> u64 {
        self.run_start_after
    }

    /// Sequence number of the newest held event (0 when empty).
    pub fn last_seq(&self) -> u64 {
        self.ring().events.back().map_or(0, |e| e.seq)
    }

    pub fn len(&self) -> usize {
        self.ring().events.len()
    }

    /// Bytes the held events take ([`Published::held_bytes`]).
    pub fn held_bytes(&self) -> usize {
        self.ring().bytes
    }

    pub fn is_empty(&self) -> bool {
        self.ring().events.is_empty()
    }

    /// Number of subscribers currently following the log.
    pub fn subscribers(&self) -> usize {
        self.sender.receiver_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::CloudEvent;

    fn ev(seq: u64) -> Arc<Published> {
        Arc::new(Published::new(CloudEvent::new(
            seq,
            "diskwatch://t",
            crate::events::EventKind::DiskAdded,
            std::time::SystemTime::UNIX_EPOCH,
            "disk/x".into(),
            serde_json::Value::Null,
        )))
    }

    fn count(events: usize) -> RingLimits {
        RingLimits { events, bytes: usize::MAX }
    }

    fn seqs(events: &[Arc<Published>]) -> Vec<u64> {
        events.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn ring_is_bounded_and_resume_is_exact() {
        let log = EventLog::new(count(3), 16, vec![]);
        log.append(&(1..=5).map(ev).collect::<Vec<_>>());
        assert_eq!(log.len(), 3);
        assert_eq!(log.resume(1).err(), Some(ResumeError::TooOld));
        let sub = log.resume(2).unwrap();
        assert_eq!(seqs(&sub.backlog), [3, 4, 5]);
        let mut sub = log.resume(4).unwrap();
        assert_eq!(sub.backlog.len(), 1);
        log.append(&[ev(6)]);
        assert_eq!(sub.receiver.try_recv().unwrap().seq, 6);
        assert!(log.resume(6).unwrap().backlog.is_empty());
    }

    #[test]
    fn ring_is_bounded_by_bytes() {
        let one = ev(1).held_bytes();
        let log = EventLog::new(RingLimits { events: 100, bytes: one * 4 + one / 2 }, 16, vec![]);
        log.append(&(1..=10).map(ev).collect::<Vec<_>>());
        assert_eq!(log.len(), 4);
        assert!(log.held_bytes() <= one * 4 + one / 2);
        assert!(!log.holds_after(5) && log.holds_after(6));
        // One event larger than the bound is still held: the newest always stays.
        let log = EventLog::new(RingLimits { events: 100, bytes: 1 }, 16, vec![]);
        log.append(&[ev(1), ev(2)]);
        assert_eq!(log.len(), 1);
    }

    #[test]
    fn history_filters_and_limits() {
        let log = EventLog::new(count(10), 16, (1..=4).map(ev).collect());
        let got = log.history(0, 2, |e| e.seq % 2 == 0);
        assert_eq!(seqs(&got), [2, 4]);
        assert_eq!(log.history(0, 1, |_| true).len(), 1);
        assert_eq!(seqs(&log.history(2, 10, |_| true)), [3, 4]);
        assert_eq!(log.last_seq(), 4);
    }

    #[test]
    fn history_older_than_the_ring_comes_from_the_journal() {
        use crate::events::journal::{Journal, JournalOptions, JournalSync};
        let dir = tempfile::tempdir().unwrap();
        let options = JournalOptions {
            max_bytes: 64 * 1024,
            keep: 100,
            sync: JournalSync::Batch,
            hwm_block: 10,
            ring_events: 5,
            ring_bytes: usize::MAX,
        };
        let (mut journal, _) = Journal::open(dir.path(), options).unwrap();
        let log = EventLog::new(count(5), 16, vec![]).with_journal(journal.files(), 0);
        for seq in 1..=3000 {
            let batch = [ev(seq)];
            journal.append(&batch).unwrap();
            log.append(&batch);
        }
        assert_eq!(seqs(&log.history(0, 3, |_| true)), [1, 2, 3]);
        let all = log.history(0, usize::MAX, |_| true);
        assert_eq!(seqs(&all), (1..=3000).collect::<Vec<_>>(), "journal then ring: no gap, no duplicate");
        let odd = log.history(1990, 1000, |e| e.seq % 2 == 1);
        assert_eq!(seqs(&odd), (1991..=2999).step_by(2).collect::<Vec<_>>());
        assert_eq!(seqs(&log.journal_after(2500, ReadLimit { events: 2, bytes: usize::MAX })), [2501, 2502]);
    }
}
