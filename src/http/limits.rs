//! Limits of the HTTP side: the SSE client slots, and the log line of a limit hit, written
//! once per burst (the first hit, then at most one line per [`BURST_WINDOW`] with the number
//! of hits since), so a flood of refusals does not become a flood of log lines.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::warn;

/// One log line per limit in this window at most.
pub const BURST_WINDOW: Duration = Duration::from_secs(10);
/// What a refused SSE client is told to wait before trying again.
pub const SSE_RETRY_AFTER_SECS: u64 = 10;

/// Rate-limited logging of one kind of limit hit.
pub struct Burst {
    what: &'static str,
    state: Mutex<BurstState>,
}

#[derive(Default)]
struct BurstState {
    last_line: Option<Instant>,
    /// Hits since the last line.
    unlogged: u64,
}

impl Burst {
    pub const fn new(what: &'static str) -> Self {
        Self { what, state: Mutex::new(BurstState { last_line: None, unlogged: 0 }) }
    }

    /// Records a hit; logs it (with `detail`) unless a line was written within the window.
    /// Returns whether a line was written.
    pub fn hit(&self, detail: impl FnOnce() -> String) -> bool {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.unlogged += 1;
        if state.last_line.is_some_and(|t| now.duration_since(t) < BURST_WINDOW) {
            return false;
        }
        let hits = std::mem::take(&mut state.unlogged);
        state.last_line = Some(now);
        drop(state);
        warn!(hits, detail = %detail(), "{}", self.what);
        true
    }
}

/// The SSE client slots (`http.max_sse_clients`); a stream holds its permit until it ends.
pub struct SseSlots {
    slots: Arc<Semaphore>,
    pub refused: Burst,
}

impl SseSlots {
    pub fn new(max: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max)),
            refused: Burst::new("SSE client refused: http.max_sse_clients reached"),
        }
    }

    pub fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_burst() {
        let burst = Burst::new("test limit");
        assert!(burst.hit(String::new));
        for _ in 0..1000 {
            assert!(!burst.hit(String::new));
        }
        assert_eq!(burst.state.lock().unwrap().unlogged, 1000);
        burst.state.lock().unwrap().last_line = Some(Instant::now() - BURST_WINDOW);
        assert!(burst.hit(String::new));
        assert_eq!(burst.state.lock().unwrap().unlogged, 0);
    }

    #[test]
    fn sse_slots_are_returned() {
        let slots = SseSlots::new(2);
        let a = slots.try_acquire().unwrap();
        let _b = slots.try_acquire().unwrap();
        assert!(slots.try_acquire().is_none());
        drop(a);
        assert!(slots.try_acquire().is_some());
    }
}
