//! One disk's sleep over the last 24 hours: when it was seen asleep, when it woke and why.
//! Pure: times come in as arguments.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use super::rfc3339;
use crate::model::sleep::{Sleep, SleepPeriod, Wake};

/// The window the statistics cover.
pub const WINDOW: Duration = Duration::from_secs(24 * 3600);
/// At most this many periods and wakes are kept (a disk that wakes every few minutes still
/// gets a readable band; the counts stay exact).
const KEEP: usize = 96;

/// What is known of one disk's sleep.
#[derive(Debug, Clone)]
pub struct Ledger {
    /// When this disk was first watched: the standby share is over the watched time.
    first_seen: SystemTime,
    asleep_since: Option<SystemTime>,
    /// Closed asleep periods in the window, oldest first (all of them: the share is exact).
    periods: VecDeque<(SystemTime, SystemTime)>,
    /// Times of the wakes in the window (all of them, for the count).
    wake_times: VecDeque<SystemTime>,
    /// The newest wakes, for the markers.
    wakes: VecDeque<Wake>,
}

impl Ledger {
    pub fn new(now: SystemTime) -> Self {
        Ledger {
            first_seen: now,
            asleep_since: None,
            periods: VecDeque::new(),
            wake_times: VecDeque::new(),
            wakes: VecDeque::new(),
        }
    }

    pub fn asleep(&self) -> bool {
        self.asleep_since.is_some()
    }

    /// The disk is seen asleep at `now`; returns whether that is news.
    pub fn fell_asleep(&mut self, now: SystemTime) -> bool {
        if self.asleep_since.is_some() {
            return false;
        }
        self.asleep_since = Some(now);
        true
    }

    /// The disk woke at `at` for the reason in `wake` (its `at` and `slept_seconds` are filled
    /// in here). Returns the completed wake, or None when the disk was not asleep.
    pub fn woke(&mut self, at: SystemTime, mut wake: Wake) -> Option<Wake> {
        let since = self.asleep_since.take()?;
        let at = at.max(since);
        self.periods.push_back((since, at));
        wake.at = rfc3339(at);
        wake.slept_seconds = Some(at.duration_since(since).unwrap_or_default().as_secs());
        self.wake_times.push_back(at);
        self.wakes.push_back(wake.clone());
        while self.wakes.len() > KEEP {
            self.wakes.pop_front();
        }
        Some(wake)
    }

    /// The record at `now` (drops what left the window).
    pub fn record(&mut self, now: SystemTime) -> Sleep {
        let start = now.checked_sub(WINDOW).unwrap_or(SystemTime::UNIX_EPOCH);
        while self.periods.front().is_some_and(|(_, to)| *to < start) {
            self.periods.pop_front();
        }
        while self.wake_times.front().is_some_and(|t| *t < start) {
            self.wake_times.pop_front();
        }
        while self.wakes.front().is_some_and(|w| humantime::parse_rfc3339(&w.at).is_ok_and(|t| t < start)) {
            self.wakes.pop_front();
        }
        let open = self.asleep_since.map(|s| (s, now));
        let clip = |(from, to): (SystemTime, SystemTime)| to.duration_since(from.max(start)).unwrap_or_default();
        let asleep: Duration = self.periods.iter().copied().chain(open).map(clip).sum();
        let watched = now.duration_since(self.first_seen.max(start)).unwrap_or_default();
        let standby_percent_24h = if watched.is_zero() {
            if self.asleep() {
                100.0
            } else {
                0.0
            }
        } else {
            (asleep.as_secs_f64() / watched.as_secs_f64() * 100.0).clamp(0.0, 100.0)
        };
        let mut periods_24h: Vec<SleepPeriod> = self
            .periods
            .iter()
            .map(|(f, t)| SleepPeriod { from: rfc3339((*f).max(start)), to: Some(rfc3339(*t)) })
            .collect();
        if let Some(since) = self.asleep_since {
            periods_24h.push(SleepPeriod { from: rfc3339(since.max(start)), to: None });
        }
        Sleep {
            spin_ups_24h: self.wake_times.len() as u32,
            standby_percent_24h: (standby_percent_24h * 10.0).round() / 10.0,
            standby_since: self.asleep_since.map(rfc3339),
            last_wake: self.wakes.back().cloned(),
            periods_24h,
            wakes_24h: self.wakes.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::sleep::WakeOp;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn counts_wakes_and_standby_share_over_the_window() {
        let mut l = Ledger::new(at(0));
        assert!(l.woke(at(10), Wake::default()).is_none(), "awake disks do not wake");
        assert!(l.fell_asleep(at(100)));
        assert!(!l.fell_asleep(at(150)), "already asleep");
        let r = l.record(at(200));
        assert_eq!((r.spin_ups_24h, r.standby_percent_24h), (0, 50.0));
        assert!(r.standby_since.is_some());
        assert_eq!(r.periods_24h.len(), 1);
        assert!(r.periods_24h[0].to.is_none());
        let w = l.woke(at(300), Wake { comm: Some("cat".into()), op: WakeOp::Read, ..Wake::default() }).unwrap();
        assert_eq!(w.slept_seconds, Some(200));
        let r = l.record(at(400));
        assert_eq!((r.spin_ups_24h, r.standby_percent_24h), (1, 50.0));
        assert_eq!(r.last_wake.as_ref().unwrap().comm.as_deref(), Some("cat"));
        assert!(r.standby_since.is_none());
        // A day later the wake and the period have left the window.
        let r = l.record(at(400 + 24 * 3600));
        assert_eq!((r.spin_ups_24h, r.standby_percent_24h), (0, 0.0));
        assert!(r.periods_24h.is_empty() && r.wakes_24h.is_empty());
    }

    #[test]
    fn many_wakes_keep_an_exact_count_and_a_bounded_list() {
        let mut l = Ledger::new(at(0));
        for i in 0..200 {
            l.fell_asleep(at(i * 60));
            l.woke(at(i * 60 + 30), Wake::default());
        }
        let r = l.record(at(200 * 60));
        assert_eq!(r.spin_ups_24h, 200);
        assert_eq!(r.wakes_24h.len(), KEEP);
        assert!((r.standby_percent_24h - 50.0).abs() < 1.0, "{}", r.standby_percent_24h);
    }
}
