//! The scheduler's state and rules, with no I/O (the time is an argument): which disk gets
//! which test now, and what a log read or a start means for a disk's record.
//!
//! The rules (docs/selftest.md):
//! - a test is due `interval` after the last one of its kind that ran to its end (passed or
//!   failed); a long test resets the short clock too (it reads what a short test reads and more);
//! - a test starts only on a disk seen awake, or, with `wake_for_long`, a long test overdue
//!   by its interval plus `grace`; the start itself carries the `-n standby` check (the
//!   source), so a disk that went to sleep since is not woken either;
//! - never two members of one array at once, never more than `max_parallel` disks;
//! - a long test may start early, in the last quarter of its interval ([`EARLY`]), so that the
//!   members of one array, which test one at a time, do not all fall due together;
//! - a long test does not start when it would hold its array, for as long as the drive says
//!   it takes, past the deadline (due + `grace`) of a member whose deadline comes first;
//! - fresh tests before retries, short before long, then the earliest deadline first; an
//!   aborted or interrupted test is retried in the next window, at least `retry_after` later.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::config::SelfTestConfig;
use crate::model::selftest::{LastTest, RunningTest, SelfTest, SelfTestKind, SelfTestResult};
use crate::smartctl::selftest::SelfTestLog;

/// A disk as the scheduler sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskView {
    pub id: String,
    /// Seen active or idle by the health source (standby, sleeping, unknown: not awake).
    pub awake: bool,
    /// Arrays the disk or one of its partitions belongs to.
    pub arrays: Vec<String>,
}

/// A test to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start<'a> {
    pub id: &'a str,
    pub kind: SelfTestKind,
    /// Start without the power check (an owner-allowed overdue long test).
    pub wake: bool,
}

/// How early in its interval a long test may start: the last quarter (from day 22.5 of 30).
/// Six members of an array whose 25-hour long tests fall due together need six days one after
/// the other, more than the 2-day grace; a quarter of the monthly interval is 7.5 days, room
/// for them one by one. Earlier would test more often than the owner asked for little gain.
pub const EARLY: u32 = 4;

/// A test the plan may start.
struct Candidate<'a> {
    /// Order: a retry, a long test, the deadline (unix s), the disk.
    key: (bool, bool, u64, &'a str),
    start: Start<'a>,
    arrays: &'a [String],
    /// Not due yet (in its early window).
    early: bool,
    /// How long it holds the array (seconds, the drive's estimate).
    length: u64,
}

/// What a log read changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Nothing an event is made of (the record may still have changed: progress).
    Quiet,
    /// The test diskwatch saw running has ended.
    Finished(LastTest),
}

/// When each kind last ran to its end, persisted (`state_dir/selftest.json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clocks {
    /// Unix seconds.
    pub short: Option<u64>,
    pub long: Option<u64>,
}

impl Clocks {
    fn get(&self, kind: SelfTestKind) -> Option<u64> {
        match kind {
            SelfTestKind::Short => self.short,
            SelfTestKind::Long => self.long,
        }
    }

    fn set(&mut self, kind: SelfTestKind, at: u64) {
        match kind {
            SelfTestKind::Short => self.short = Some(at),
            SelfTestKind::Long => {
                self.long = Some(at);
                self.short = Some(self.short.map_or(at, |s| s.max(at)));
            }
        }
    }
}

/// One disk's record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Track {
    pub clocks: Clocks,
    pub running: Option<RunningTest>,
    /// Unix seconds when diskwatch started the running test (`None`: found running).
    pub started_at: Option<u64>,
    /// The drive says a test runs whose kind it does not name (ATA's status, a test someone
    /// else started): not shown as `running`, but it counts as one for the rules.
    pub foreign: bool,
    pub last: Option<LastTest>,
    /// Not before this (unix seconds): after an aborted test.
    pub retry_at: Option<u64>,
    /// Tests aborted or interrupted in a row (0 after one that ran to its end).
    pub aborts: u32,
    /// Unix seconds of the first sight: a disk never tested is due from then.
    pub first_seen: u64,
    /// The log was read once (history known).
    pub log_read: bool,
    /// Why the disk has no self-tests to give (not scheduled while set).
    pub unsupported: Option<String>,
    /// The drive's own estimate of its long test, in minutes (its log read): how long a long
    /// test holds the disk's array.
    pub long_minutes: Option<u64>,
}

impl Track {
    /// A test runs on the disk (diskwatch's or another's).
    pub fn busy(&self) -> bool {
        self.running.is_some() || self.foreign
    }
}

pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The scheduler.
#[derive(Debug, Clone)]
pub struct Engine {
    pub config: SelfTestConfig,
    pub tracks: BTreeMap<String, Track>,
    /// Clocks of disks not present now (unplugged, or not enumerated yet at start): kept, and
    /// given back when the disk comes.
    kept: BTreeMap<String, Clocks>,
}

impl Engine {
    pub fn new(config: SelfTestConfig) -> Self {
        Engine { config, tracks: BTreeMap::new(), kept: BTreeMap::new() }
    }

    /// Clocks kept from an earlier run, by disk (taken up as each disk appears).
    pub fn load(&mut self, clocks: BTreeMap<String, Clocks>) {
        for (id, c) in clocks {
            match self.tracks.get_mut(&id) {
                Some(t) => t.clocks = c,
                None => {
                    self.kept.insert(id, c);
                }
            }
        }
    }

    /// The clocks to persist: of the disks present and of those kept.
    pub fn clocks(&self) -> BTreeMap<String, Clocks> {
        let mut all = self.kept.clone();
        let present = self.tracks.iter().filter(|(_, t)| t.clocks != Clocks::default());
        all.extend(present.map(|(id, t)| (id.clone(), t.clocks)));
        all
    }

    /// Follows the disk set: new disks get a record (with their kept clocks), gone ones lose
    /// it but keep their clocks.
    pub fn set_disks(&mut self, disks: &[DiskView], now: SystemTime) {
        let ids: BTreeSet<&str> = disks.iter().map(|d| d.id.as_str()).collect();
        let gone: Vec<String> = self.tracks.keys().filter(|id| !ids.contains(id.as_str())).cloned().collect();
        for id in gone {
            if let Some(t) = self.tracks.remove(&id).filter(|t| t.clocks != Clocks::default()) {
                self.kept.insert(id, t.clocks);
            }
        }
        for d in disks {
            if !self.tracks.contains_key(&d.id) {
                let clocks = self.kept.remove(&d.id).unwrap_or_default();
                self.tracks.insert(d.id.clone(), Track { first_seen: unix(now), clocks, ..Track::default() });
            }
        }
    }

    /// When `kind` is due on a disk (unix seconds); `None` when that kind is off.
    pub fn due_at(&self, track: &Track, kind: SelfTestKind) -> Option<u64> {
        let interval = self.config.interval(kind)?.as_secs();
        Some(match track.clocks.get(kind) {
            Some(last) => last + interval,
            None => track.first_seen,
        })
    }

    /// The record as the state shows it.
    pub fn record(&self, id: &str) -> Option<SelfTest> {
        let t = self.tracks.get(id)?;
        if t.unsupported.is_some() && t.last.is_none() {
            return None;
        }
        let next = SelfTestKind::ALL
            .into_iter()
            .filter_map(|k| self.due_at(t, k))
            .min()
            .map(|s| t.retry_at.map_or(s, |r| s.max(r)))
            .map(|s| humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(s)).to_string());
        Some(SelfTest { running: t.running.clone(), last: t.last.clone(), next_due: next })
    }

    /// Disks whose log should be read now: awake, and a test is running or the history is not
    /// known yet. A disk seen asleep is not asked (a running test is read once it is awake
    /// again: the spin-down has most likely aborted it).
    pub fn wants_log(&self, disk: &DiskView) -> bool {
        disk.awake && self.tracks.get(&disk.id).is_some_and(|t| t.unsupported.is_none() && (t.busy() || !t.log_read))
    }

    /// When a kind's early window opens on a disk (unix seconds): for a long test the last
    /// [`EARLY`]th of its interval before it is due; for a short one `short_ahead` before (the
    /// time its array may be held by a member's long test: two minutes now rather than a wait
    /// behind it). Not after an abort (the disk's awake windows did not fit the test: it waits
    /// for its due date rather than being cut short again early).
    fn window_at(&self, track: &Track, kind: SelfTestKind, short_ahead: u64) -> Option<u64> {
        let due = self.due_at(track, kind)?;
        if track.aborts > 0 {
            return Some(due);
        }
        let ahead = match kind {
            SelfTestKind::Short => short_ahead,
            SelfTestKind::Long => self.config.interval(kind)?.as_secs() / u64::from(EARLY),
        };
        Some(due.saturating_sub(ahead))
    }

    /// How long a long test holds a disk's array (seconds): the drive's own estimate, else (NVMe,
    /// no log read yet) the grace, so that an early start waits for every member past its due
    /// date.
    fn long_length(&self, track: &Track) -> u64 {
        track.long_minutes.map_or(self.config.grace.as_secs(), |m| m * 60)
    }

    /// How long a member's long test may hold each array (the longest of its members), when
    /// long tests are on.
    fn array_holds<'a>(&self, disks: &'a [DiskView]) -> BTreeMap<&'a str, u64> {
        let mut holds: BTreeMap<&str, u64> = BTreeMap::new();
        if self.config.interval(SelfTestKind::Long).is_none() {
            return holds;
        }
        for d in disks {
            let Some(t) = self.tracks.get(&d.id).filter(|t| t.unsupported.is_none()) else { continue };
            for a in &d.arrays {
                let h = holds.entry(a.as_str()).or_default();
                *h = (*h).max(self.long_length(t));
            }
        }
        holds
    }

    /// The tests to start now, within the rules.
    pub fn plan<'a>(&self, disks: &'a [DiskView], now: SystemTime) -> Vec<Start<'a>> {
        let now = unix(now);
        let grace = self.config.grace.as_secs();
        let mut running = 0;
        let mut busy_arrays: BTreeSet<&str> = BTreeSet::new();
        for d in disks {
            if self.tracks.get(&d.id).is_some_and(Track::busy) {
                running += 1;
                busy_arrays.extend(d.arrays.iter().map(String::as_str));
            }
        }
        let holds = self.array_holds(disks);
        let mut candidates: Vec<Candidate<'a>> = Vec::new();
        for d in disks {
            let Some(t) = self.tracks.get(&d.id) else { continue };
            if t.busy() || t.unsupported.is_some() || t.retry_at.is_some_and(|r| r > now) {
                continue;
            }
            let short_ahead = d.arrays.iter().filter_map(|a| holds.get(a.as_str())).copied().max().unwrap_or(0);
            // Each kind whose window is open: (kind, due).
            let open: Vec<(SelfTestKind, u64)> = SelfTestKind::ALL
                .into_iter()
                .filter(|&k| self.window_at(t, k, short_ahead).is_some_and(|w| w <= now))
                .filter_map(|k| self.due_at(t, k).map(|due| (k, due)))
                .collect();
            let long = open.iter().find(|(k, _)| *k == SelfTestKind::Long).copied();
            for (kind, due) in open {
                // A long test reads all a short one reads: the short is left out when the long is
                // due, or both are early; it goes alone when it is due and the long is early
                // (two minutes now rather than a day's wait for the array), and first after an
                // aborted test (the long one did not fit the disk's awake window).
                if kind == SelfTestKind::Short && t.aborts == 0 {
                    if let Some((_, long_due)) = long {
                        if long_due <= now || due > now {
                            continue;
                        }
                    }
                }
                let early = due > now;
                let wake = !d.awake;
                if wake {
                    // History unknown or not due: never a wake.
                    let allowed = kind == SelfTestKind::Long
                        && self.config.wake_for_long
                        && !early
                        && now - due >= self.config.grace.as_secs();
                    if !allowed {
                        continue;
                    }
                } else if !t.log_read {
                    // History unknown: read the log first.
                    continue;
                }
                let length = match kind {
                    SelfTestKind::Long => self.long_length(t),
                    SelfTestKind::Short => self.config.poll.as_secs(),
                };
                candidates.push(Candidate {
                    key: (t.aborts > 0, kind == SelfTestKind::Long, due + grace, &d.id),
                    start: Start { id: &d.id, kind, wake },
                    arrays: &d.arrays,
                    early,
                    length,
                });
            }
        }
        // Fresh tests before retries (a disk whose tests keep being aborted does not hold its
        // array), short before long (two minutes, where a long test holds the array for
        // hours), then the earliest deadline first.
        candidates.sort_by(|a, b| a.key.cmp(&b.key));
        let mut out: Vec<Start<'a>> = Vec::new();
        for c in candidates {
            if running >= self.config.max_parallel {
                break;
            }
            if out.iter().any(|s| s.id == c.start.id) || c.arrays.iter().any(|a| busy_arrays.contains(a.as_str())) {
                continue;
            }
            if c.start.kind == SelfTestKind::Long && self.would_hold_back(&c, disks, now) {
                continue;
            }
            busy_arrays.extend(c.arrays.iter().map(String::as_str));
            running += 1;
            out.push(c.start);
        }
        out
    }

    /// Whether a long test would hold its array too long for another member (one asleep now,
    /// or it would have gone first): past that member's deadline when it comes first (earliest
    /// deadline first), or, for a test not due yet, past that member's due date (an early
    /// start must not make another member's test wait).
    fn would_hold_back(&self, c: &Candidate, disks: &[DiskView], now: u64) -> bool {
        let (own, ends) = (c.key.2, now + c.length);
        let grace = self.config.grace.as_secs();
        let members = disks.iter().filter(|d| d.id != c.start.id && d.arrays.iter().any(|a| c.arrays.contains(a)));
        // A member that could go next: known, not testing, and not a retry (retries go after
        // fresh tests) nor held off by one.
        let waits = |t: &&Track| {
            t.log_read && t.unsupported.is_none() && !t.busy() && t.aborts == 0 && t.retry_at.is_none_or(|r| r <= now)
        };
        members.filter_map(|d| self.tracks.get(&d.id)).filter(|t| waits(t)).any(|t| {
            let due = SelfTestKind::ALL.into_iter().filter_map(|k| self.due_at(t, k)).min();
            due.is_some_and(|due| (due + grace < own && due + grace < ends) || (c.early && due < ends))
        })
    }

    /// Whether a requested test may start on this disk now: `Err` says why not.
    pub fn may_start(&self, disk: &DiskView, disks: &[DiskView]) -> Result<(), Refused> {
        let t = self.tracks.get(&disk.id).ok_or(Refused::Unknown)?;
        if t.busy() {
            return Err(Refused::Running);
        }
        let others: Vec<&DiskView> = disks.iter().filter(|d| self.tracks.get(&d.id).is_some_and(Track::busy)).collect();
        if let Some(other) = others.iter().find(|o| o.arrays.iter().any(|a| disk.arrays.contains(a))) {
            return Err(Refused::ArrayBusy(other.id.clone()));
        }
        if others.len() >= self.config.max_parallel {
            return Err(Refused::MaxParallel(self.config.max_parallel));
        }
        Ok(())
    }

    /// A start was accepted by the drive.
    pub fn started(&mut self, id: &str, kind: SelfTestKind, now: SystemTime) {
        if let Some(t) = self.tracks.get_mut(id) {
            t.running = Some(RunningTest { kind, percent_remaining: None });
            t.started_at = Some(unix(now));
            t.retry_at = None;
        }
    }

    /// A start was refused by the drive (not standby): not tried again before `retry_after`.
    pub fn refused(&mut self, id: &str, now: SystemTime) {
        if let Some(t) = self.tracks.get_mut(id) {
            t.retry_at = Some(unix(now) + self.config.retry_after.as_secs());
        }
    }

    /// The device has no self-tests: it is left alone.
    pub fn unsupported(&mut self, id: &str, why: String) {
        if let Some(t) = self.tracks.get_mut(id) {
            t.unsupported = Some(why);
            t.running = None;
        }
    }

    /// Applies a log read.
    pub fn observe(&mut self, id: &str, log: &SelfTestLog, now: SystemTime) -> Change {
        let retry_after = self.config.retry_after.as_secs();
        let Some(t) = self.tracks.get_mut(id) else { return Change::Quiet };
        let now = unix(now);
        let hours_ago = |at: Option<u64>| -> Option<u64> {
            let (poh, at) = (log.power_on_hours?, at?);
            Some(now.saturating_sub(poh.saturating_sub(at) * 3600))
        };
        if !t.log_read {
            t.log_read = true;
            // History from the drive's own log where nothing was kept: the power-on hours
            // since its last complete test of each kind (a lower bound of the time since).
            for kind in SelfTestKind::ALL {
                if t.clocks.get(kind).is_none() {
                    if let Some(at) = log.newest_completed(kind).and_then(|e| hours_ago(e.at_hours)) {
                        t.clocks.set(kind, at.min(now));
                    }
                }
            }
            t.last = log.newest().map(last_of);
        }
        t.long_minutes = log.long_minutes.or(t.long_minutes);
        let was = t.running.clone();
        t.running = log.running_test(was.as_ref().map(|r| r.kind));
        t.foreign = log.running.is_some() && t.running.is_none();
        if was.is_none() && !t.foreign && t.running.is_none() {
            // Someone else's test may have ended: the newest entry is the last result.
            if let Some(e) = log.newest() {
                t.last = Some(last_of(e));
            }
        }
        match (was, &t.running) {
            (Some(w), None) => {
                // Ended: the newest entry is its outcome (the log is written when a test ends).
                let before = t.last.clone();
                let last = match log.newest().map(last_of) {
                    // A new entry: the outcome (the one before is still the newest when the
                    // drive dropped the test without logging it, as some do on a reset).
                    Some(e) if Some(&e) != before.as_ref() => e,
                    // Nothing was written: the drive dropped the test (a reset before it logged).
                    _ => LastTest {
                        kind: w.kind,
                        result: SelfTestResult::Interrupted,
                        at_hours: log.power_on_hours,
                        lba_first_error: None,
                    },
                };
                if last.result.completed() {
                    t.clocks.set(last.kind, now);
                    t.retry_at = None;
                    t.aborts = 0;
                } else {
                    // The next window, and later after each abort in a row (1×, 2×, 4× …
                    // `retry_after`, at most a day): a disk whose spin-down keeps cutting its
                    // long test short does not hold its array window after window.
                    t.aborts += 1;
                    let backoff = retry_after.saturating_mul(1 << (t.aborts - 1).min(10)).min(24 * 3600);
                    t.retry_at = Some(now + backoff.max(retry_after));
                }
                t.started_at = None;
                t.last = Some(last.clone());
                Change::Finished(last)
            }
            _ => Change::Quiet,
        }
    }
}

fn last_of(e: &crate::smartctl::selftest::LogEntry) -> LastTest {
    LastTest {
        kind: e.kind.unwrap_or(SelfTestKind::Short),
        result: e.result,
        at_hours: e.at_hours,
        lba_first_error: e.lba,
    }
}

/// Why a requested test was not started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the disk is not watched by the self-test scheduler")]
    Unknown,
    #[error("a self-test is already running on this disk")]
    Running,
    #[error("{0} is testing, a member of the same array: never two at once")]
    ArrayBusy(String),
    #[error("{0} disks are testing already (health.self_test.max_parallel)")]
    MaxParallel(usize),
}

impl Refused {
    /// The reason code of `action.failed`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::Unknown => "not_found",
            Refused::Running => "busy",
            Refused::ArrayBusy(_) => "array_busy",
            Refused::MaxParallel(_) => "max_parallel",
        }
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
