//! The sink's event queue: events waiting for the broker, oldest first,
//! bounded by count (`mqtt.queue_size`) and by memory (`mqtt.queue_max_bytes`:
//! what the queued events hold plus what the events handed to the client and
//! not yet acknowledged hold); beyond either bound the oldest queued are dropped.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::events::Published;

pub struct EventQueue {
    events: VecDeque<Arc<Published>>,
    /// Memory the queued events hold ([`Published::held_bytes`]).
    bytes: usize,
    /// Memory the events handed out and not yet acknowledged hold.
    sent: usize,
    max_len: usize,
    max_bytes: usize,
}

impl EventQueue {
    pub fn new(max_len: usize, max_bytes: usize) -> Self {
        Self { events: VecDeque::new(), bytes: 0, sent: 0, max_len: max_len.max(1), max_bytes }
    }

    /// Queues an event last; returns how many old events were dropped to make room.
    pub fn push_back(&mut self, event: Arc<Published>) -> u64 {
        self.bytes += event.held_bytes();
        self.events.push_back(event);
        self.trim()
    }

    /// Puts events (in order) back in front of the queue, as after a lost connection;
    /// returns how many of the oldest were dropped.
    pub fn requeue(&mut self, events: Vec<Arc<Published>>) -> u64 {
        for event in events.into_iter().rev() {
            self.sent = self.sent.saturating_sub(event.held_bytes());
            self.bytes += event.held_bytes();
            self.events.push_front(event);
        }
        self.trim()
    }

    pub fn front(&self) -> Option<&Arc<Published>> {
        self.events.front()
    }

    pub fn pop_front(&mut self) -> Option<Arc<Published>> {
        let event = self.events.pop_front()?;
        self.bytes -= event.held_bytes();
        Some(event)
    }

    /// Takes the oldest event to hand to the client; it counts against the memory bound until
    /// [`Self::acknowledged`] (or [`Self::requeue`] after a lost connection).
    pub fn hand_front(&mut self) -> Option<Arc<Published>> {
        let event = self.pop_front()?;
        self.sent += event.held_bytes();
        Some(event)
    }

    pub fn acknowledged(&mut self, event: &Published) {
        self.sent = self.sent.saturating_sub(event.held_bytes());
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Memory the queued events hold, and the events handed out and not yet acknowledged.
    pub fn bytes(&self) -> (usize, usize) {
        (self.bytes, self.sent)
    }

    pub fn limits(&self) -> (usize, usize) {
        (self.max_len, self.max_bytes)
    }

    /// Drops the oldest while over a bound; the newest event always stays.
    fn trim(&mut self) -> u64 {
        let mut dropped = 0;
        while self.events.len() > self.max_len || (self.bytes + self.sent > self.max_bytes && self.events.len() > 1) {
            self.pop_front();
            dropped += 1;
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{CloudEvent, EventKind};

    fn event(seq: u64, payload_len: usize) -> Arc<Published> {
        let data = serde_json::json!({ "pad": "x".repeat(payload_len) });
        let ev = CloudEvent::new(
            seq,
            "diskwatch/test",
            EventKind::MountUsage,
            std::time::SystemTime::now(),
            "m".into(),
            data,
        );
        Arc::new(Published::new(ev))
    }

    fn seqs(q: &mut EventQueue) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some(e) = q.pop_front() {
            out.push(e.seq);
        }
        out
    }

    #[test]
    fn count_bound_drops_the_oldest() {
        let mut q = EventQueue::new(3, usize::MAX);
        let dropped: u64 = (1..=5).map(|i| q.push_back(event(i, 10))).sum();
        assert_eq!(dropped, 2);
        assert_eq!(seqs(&mut q), [3, 4, 5]);
        assert_eq!(q.bytes(), (0, 0), "bytes follow pops");
    }

    #[test]
    fn byte_bound_drops_the_oldest_and_keeps_the_newest() {
        // Ids of one width, so every event holds the same.
        let one = event(11, 1000).held_bytes();
        let mut q = EventQueue::new(1000, one * 3);
        let dropped: u64 = (11..=20).map(|i| q.push_back(event(i, 1000))).sum();
        assert_eq!(dropped, 7);
        assert_eq!(q.bytes(), (one * 3, 0));
        assert_eq!(seqs(&mut q), [18, 19, 20]);
        // One event larger than the whole bound is still kept (the newest always is).
        let mut q = EventQueue::new(1000, 64);
        assert_eq!(q.push_back(event(1, 1000)), 0);
        assert_eq!(q.push_back(event(2, 1000)), 1);
        assert_eq!(seqs(&mut q), [2]);
    }

    #[test]
    fn events_awaiting_acknowledgement_count_against_the_memory_bound() {
        let one = event(11, 1000).held_bytes();
        let mut q = EventQueue::new(1000, one * 4);
        for i in 11..=14 {
            q.push_back(event(i, 1000));
        }
        let a = q.hand_front().unwrap();
        let b = q.hand_front().unwrap();
        assert_eq!(q.bytes(), (one * 2, one * 2));
        // Two in flight and two queued fill the bound: a new event pushes out the oldest queued.
        assert_eq!(q.push_back(event(15, 1000)), 1);
        assert_eq!(q.front().unwrap().seq, 14);
        q.acknowledged(&a);
        assert_eq!(q.push_back(event(16, 1000)), 0, "room again once acknowledged");
        // The connection drops: the unacknowledged one goes back in front, the oldest queued go.
        assert_eq!(q.requeue(vec![b]), 0);
        assert_eq!(seqs(&mut q), [12, 14, 15, 16]);
    }

    #[test]
    fn requeue_puts_events_back_in_order_within_the_bounds() {
        let mut q = EventQueue::new(4, usize::MAX);
        q.push_back(event(5, 10));
        q.push_back(event(6, 10));
        let dropped = q.requeue(vec![event(2, 10), event(3, 10), event(4, 10)]);
        assert_eq!(dropped, 1, "the oldest of the requeued goes");
        assert_eq!(seqs(&mut q), [3, 4, 5, 6]);
    }
}
