//! The process heap: gives memory freed after a burst back to the system.
//!
//! glibc keeps freed chunks for reuse; after an event flood, a plug storm or a
//! big HTTP answer the agent's resident memory would stay at its high-water
//! mark. [`Trimmer`] returns it once the agent has been quiet for a moment
//! (docs/events.md has the figures).

use std::time::Duration;

use tokio::time::Instant;

/// How long the agent must be quiet after activity before the heap is trimmed.
pub const QUIET: Duration = Duration::from_secs(1);
/// During a long burst, the heap is trimmed at most this often.
pub const BUSY_EVERY: Duration = Duration::from_secs(10);

/// When to trim: [`QUIET`] after the last activity, or [`BUSY_EVERY`] into a burst that does not end.
#[derive(Debug, Default)]
pub struct Trimmer {
    quiet_at: Option<Instant>,
    busy_since: Option<Instant>,
}

impl Trimmer {
    /// Something allocated and freed (a batch of events, devices came or went).
    pub fn touched(&mut self, now: Instant) {
        self.quiet_at = Some(now + QUIET);
        self.busy_since.get_or_insert(now);
    }

    /// When the next trim is due, if any activity is waiting for one.
    pub fn due_at(&self) -> Option<Instant> {
        let quiet = self.quiet_at?;
        Some(self.busy_since.map_or(quiet, |b| quiet.min(b + BUSY_EVERY)))
    }

    /// Waits until the next trim is due (forever when nothing is waiting), then marks it done.
    pub async fn due(&mut self) {
        match self.due_at() {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
        self.trimmed();
    }

    fn trimmed(&mut self) {
        self.quiet_at = None;
        self.busy_since = None;
    }
}

/// Returns the heap's free pages to the system, off the caller's thread (it holds the allocator
/// lock while it walks the free chunks).
pub fn trim_in_background() {
    drop(tokio::task::spawn_blocking(trim));
}

/// Returns the heap's free pages to the system now.
pub fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap memory to the system; no pointer is involved.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_when_quiet_or_after_a_long_burst() {
        let t0 = Instant::now();
        let mut t = Trimmer::default();
        assert_eq!(t.due_at(), None, "nothing happened: no trim");
        t.touched(t0);
        assert_eq!(t.due_at(), Some(t0 + QUIET));
        // Activity keeps pushing the quiet deadline, up to BUSY_EVERY after the burst began.
        t.touched(t0 + Duration::from_millis(500));
        assert_eq!(t.due_at(), Some(t0 + Duration::from_millis(500) + QUIET));
        t.touched(t0 + BUSY_EVERY - Duration::from_millis(100));
        assert_eq!(t.due_at(), Some(t0 + BUSY_EVERY));
    }

    #[test]
    fn a_trim_clears_what_was_waiting() {
        let mut t = Trimmer::default();
        t.touched(Instant::now());
        t.trimmed();
        assert_eq!(t.due_at(), None);
        // The next burst starts its own BUSY_EVERY clock.
        let later = Instant::now() + Duration::from_secs(60);
        t.touched(later);
        assert_eq!(t.due_at(), Some(later + QUIET));
    }
}
