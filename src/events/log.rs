//! The in-memory event log: a bounded ring of recent events for history and
//! resume, and the broadcast channel that fans new events out to the sinks.
//!
//! Appending and subscribing happen under one lock, so a subscriber that
//! reads the ring and then follows the channel sees every event exactly once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::broadcast;

use super::Published;

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

pub struct EventLog {
    ring: Mutex<VecDeque<Arc<Published>>>,
    capacity: usize,
    sender: broadcast::Sender<Arc<Published>>,
}

impl EventLog {
    /// `capacity` events kept for history; subscribers may fall `client_buffer` events behind.
    pub fn new(capacity: usize, client_buffer: usize, recovered: Vec<Arc<Published>>) -> Self {
        let (sender, _) = broadcast::channel(client_buffer.max(1));
        let mut ring: VecDeque<Arc<Published>> = recovered.into_iter().collect();
        while ring.len() > capacity {
            ring.pop_front();
        }
        Self { ring: Mutex::new(ring), capacity: capacity.max(1), sender }
    }

    fn ring(&self) -> MutexGuard<'_, VecDeque<Arc<Published>>> {
        // A panic while holding this lock leaves the ring consistent (push/pop only).
        self.ring.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds events to the ring and hands them to every subscriber.
    pub fn append(&self, events: &[Arc<Published>]) {
        let mut ring = self.ring();
        for event in events {
            if ring.len() == self.capacity {
                ring.pop_front();
            }
            ring.push_back(event.clone());
            // No receiver is not an error: nobody is streaming right now.
            let _ = self.sender.send(event.clone());
        }
    }

    /// A subscription to new events only.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        let _ring = self.ring();
        self.sender.subscribe()
    }

    /// A subscription that resumes after `after_id`: the held events after it, then new ones.
    pub fn resume(&self, after_id: u64) -> Result<Subscription, ResumeError> {
        let ring = self.ring();
        let receiver = self.sender.subscribe();
        if let Some(first) = ring.front() {
            if after_id + 1 < first.seq {
                return Err(ResumeError::TooOld);
            }
        }
        let start = ring.partition_point(|e| e.seq <= after_id);
        Ok(Subscription { backlog: ring.range(start..).cloned().collect(), receiver })
    }

    /// Held events matching `keep`, oldest first, at most `limit`.
    pub fn query(&self, limit: usize, keep: impl Fn(&Published) -> bool) -> Vec<Arc<Published>> {
        self.ring().iter().filter(|e| keep(e)).take(limit).cloned().collect()
    }

    /// Sequence number of the newest held event (0 when empty).
    pub fn last_seq(&self) -> u64 {
        self.ring().back().map_or(0, |e| e.seq)
    }

    pub fn len(&self) -> usize {
        self.ring().len()
    }

    pub fn is_empty(&self) -> bool {
        self.ring().is_empty()
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

    #[test]
    fn ring_is_bounded_and_resume_is_exact() {
        let log = EventLog::new(3, 16, vec![]);
        log.append(&(1..=5).map(ev).collect::<Vec<_>>());
        assert_eq!(log.len(), 3);
        assert_eq!(log.resume(1).err(), Some(ResumeError::TooOld));
        let sub = log.resume(2).unwrap();
        assert_eq!(sub.backlog.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4, 5]);
        let mut sub = log.resume(4).unwrap();
        assert_eq!(sub.backlog.len(), 1);
        log.append(&[ev(6)]);
        assert_eq!(sub.receiver.try_recv().unwrap().seq, 6);
        assert!(log.resume(6).unwrap().backlog.is_empty());
    }

    #[test]
    fn query_filters_and_limits() {
        let log = EventLog::new(10, 16, (1..=4).map(ev).collect());
        let got = log.query(2, |e| e.seq % 2 == 0);
        assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 4]);
        assert_eq!(log.query(1, |_| true).len(), 1);
        assert_eq!(log.last_seq(), 4);
    }
}
