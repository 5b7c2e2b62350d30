//! The scheduler rules: awake only, array exclusion, `max_parallel`, `wake_for_long` with its
//! grace, aborted tests retried, history from the drive's log.

use super::*;
use crate::smartctl::selftest::{parse_log, LogEntry};

const H: u64 = 3600;
const D: u64 = 24 * H;
const T0: u64 = 1_800_000_000;

fn at(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(s)
}

fn disk(id: &str, awake: bool, arrays: &[&str]) -> DiskView {
    DiskView { id: id.into(), awake, arrays: arrays.iter().map(|a| a.to_string()).collect() }
}

fn idle_log(poh: u64) -> SelfTestLog {
    SelfTestLog { power_on_hours: Some(poh), supported: true, ..SelfTestLog::default() }
}

/// An engine whose disks all had their log read (no history: everything due at T0).
fn engine(config: SelfTestConfig, disks: &[DiskView]) -> Engine {
    let mut e = Engine::new(config);
    e.set_disks(disks, at(T0));
    for d in disks {
        e.observe(&d.id, &idle_log(100), at(T0));
    }
    e
}

fn ids(starts: &[Start]) -> Vec<String> {
    starts.iter().map(|s| format!("{}:{}", s.id, s.kind.as_str())).collect()
}

#[test]
fn awake_only_and_long_first() {
    let disks = [disk("a", true, &[]), disk("b", false, &[])];
    let e = engine(SelfTestConfig::default(), &disks);
    assert_eq!(ids(&e.plan(&disks, at(T0 + 60))), ["a:long"]);
}

#[test]
fn history_unknown_reads_the_log_first() {
    let disks = [disk("a", true, &[])];
    let mut e = Engine::new(SelfTestConfig::default());
    e.set_disks(&disks, at(T0));
    assert!(e.wants_log(&disks[0]));
    assert!(e.plan(&disks, at(T0)).is_empty());
    assert!(!e.wants_log(&disk("a", false, &[])), "an asleep disk's log is not read");
    // The WD140EDFZ log: its last extended test 1730-1624 = 106 power-on hours ago, its last short
    // 22 hours ago, and a test is running (started by someone else): nothing new is started.
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/smartctl/ata-hdd-wd140edfz.json"))
            .unwrap();
    let log = parse_log(&serde_json::from_str(&text).unwrap());
    assert_eq!(e.observe("a", &log, at(T0)), Change::Quiet);
    let t = &e.tracks["a"];
    assert_eq!(t.clocks.long, Some(T0 - 106 * H));
    assert_eq!(t.clocks.short, Some(T0 - 22 * H));
    assert!(t.running.is_none() && t.foreign, "ATA's status has no kind: shown as nobody's, counted as running");
    let r = e.record("a").unwrap();
    assert_eq!(r.last.as_ref().unwrap().at_hours, Some(1708));
    let due = humantime::parse_rfc3339(r.next_due.as_deref().unwrap()).unwrap();
    assert_eq!(unix(due), T0 - 22 * H + 7 * D, "the short test is due first");
    assert!(e.plan(&disks, at(T0)).is_empty(), "nothing due yet");
    assert!(e.plan(&disks, at(T0 + 7 * D)).is_empty(), "the drive's own test still runs");
    assert!(e.wants_log(&disks[0]), "its progress is followed");
    e.observe("a", &idle_log(1900), at(T0 + 7 * D));
    assert_eq!(ids(&e.plan(&disks, at(T0 + 7 * D))), ["a:short"]);
}

#[test]
fn never_two_members_of_one_array_and_max_parallel() {
    let disks = [
        disk("a1", true, &["md-a"]),
        disk("a2", true, &["md-a"]),
        disk("b1", true, &["md-b"]),
        disk("b2", true, &["md-b"]),
        disk("c", true, &[]),
    ];
    let config = SelfTestConfig { max_parallel: 3, ..SelfTestConfig::default() };
    let mut e = engine(config, &disks);
    let plan = ids(&e.plan(&disks, at(T0 + 60)));
    assert_eq!(plan, ["a1:long", "b1:long", "c:long"]);
    e.started("a1", SelfTestKind::Long, at(T0 + 60));
    // a1 runs: a2 waits for it even with room to spare.
    e.config.max_parallel = 10;
    let plan = ids(&e.plan(&disks, at(T0 + 120)));
    assert_eq!(plan, ["b1:long", "c:long"]);
    assert_eq!(e.may_start(&disks[1], &disks), Err(Refused::ArrayBusy("a1".into())));
    e.config.max_parallel = 1;
    assert!(e.plan(&disks, at(T0 + 120)).is_empty());
    assert_eq!(e.may_start(&disks[4], &disks), Err(Refused::MaxParallel(1)));
    assert_eq!(e.may_start(&disks[0], &disks), Err(Refused::Running));
}

#[test]
fn wake_for_long_only_past_interval_plus_grace() {
    let disks = [disk("a", false, &[])];
    let config = SelfTestConfig { wake_for_long: true, ..SelfTestConfig::default() };
    let mut e = engine(config.clone(), &disks);
    e.tracks.get_mut("a").unwrap().clocks = Clocks { short: Some(T0), long: Some(T0) };
    // Due at T0+30d; the grace is 2d: no wake before T0+32d, and never for a short test.
    assert!(e.plan(&disks, at(T0 + 31 * D)).is_empty());
    assert_eq!(e.plan(&disks, at(T0 + 32 * D)), [Start { id: "a", kind: SelfTestKind::Long, wake: true }]);
    e.tracks.get_mut("a").unwrap().clocks.long = Some(T0 + 29 * D);
    assert!(e.plan(&disks, at(T0 + 40 * D)).is_empty(), "short overdue, long not: no wake");
    // Without the owner's leave, never.
    let mut e = engine(SelfTestConfig::default(), &disks);
    e.tracks.get_mut("a").unwrap().clocks = Clocks { short: Some(T0), long: Some(T0) };
    assert!(e.plan(&disks, at(T0 + 300 * D)).is_empty());
}

#[test]
fn aborted_is_reported_and_retried_in_the_next_window() {
    let disks = [disk("a", true, &[])];
    let mut e = engine(SelfTestConfig::default(), &disks);
    e.started("a", SelfTestKind::Long, at(T0));
    let running = SelfTestLog { running: Some((None, Some(60))), ..idle_log(101) };
    assert_eq!(e.observe("a", &running, at(T0 + 600)), Change::Quiet);
    assert_eq!(e.record("a").unwrap().running.unwrap().percent_remaining, Some(60));
    // The disk spun down mid-test: the drive logs "Aborted by host".
    let aborted = SelfTestLog {
        entries: vec![LogEntry {
            kind: Some(SelfTestKind::Long),
            result: SelfTestResult::Aborted,
            at_hours: Some(102),
            lba: None,
        }],
        ..idle_log(102)
    };
    let Change::Finished(last) = e.observe("a", &aborted, at(T0 + 2 * H)) else { panic!("finished") };
    assert_eq!(last.result, SelfTestResult::Aborted);
    assert!(e.record("a").unwrap().running.is_none());
    // Not a completed test: still due, but only from the next window on, and the short test
    // (also due, never run) first: it fits a window the long one did not.
    assert!(e.plan(&disks, at(T0 + 2 * H + 60)).is_empty());
    assert_eq!(ids(&e.plan(&disks, at(T0 + 3 * H + 60))), ["a:short"]);
    // A disk seen asleep is not asked for its running test's progress.
    e.started("a", SelfTestKind::Short, at(T0 + 3 * H + 60));
    assert!(!e.wants_log(&disk("a", false, &[])));
    assert!(e.wants_log(&disks[0]));
    let short_done = SelfTestLog {
        entries: vec![LogEntry {
            kind: Some(SelfTestKind::Short),
            result: SelfTestResult::Passed,
            at_hours: Some(103),
            lba: None,
        }],
        ..idle_log(103)
    };
    e.observe("a", &short_done, at(T0 + 3 * H + 300));
    assert_eq!(ids(&e.plan(&disks, at(T0 + 3 * H + 360))), ["a:long"]);
    // Completed, it is not due again for 30 days, and the short clock moved with it.
    e.started("a", SelfTestKind::Long, at(T0 + 4 * H));
    let passed = SelfTestLog {
        entries: vec![LogEntry {
            kind: Some(SelfTestKind::Long),
            result: SelfTestResult::Passed,
            at_hours: Some(120),
            lba: None,
        }],
        ..idle_log(120)
    };
    assert!(
        matches!(e.observe("a", &passed, at(T0 + 20 * H)), Change::Finished(l) if l.result == SelfTestResult::Passed)
    );
    assert_eq!(e.tracks["a"].clocks, Clocks { short: Some(T0 + 20 * H), long: Some(T0 + 20 * H) });
    assert!(e.plan(&disks, at(T0 + 6 * D)).is_empty());
}

#[test]
fn retries_wait_behind_fresh_tests_of_the_same_array() {
    let disks = [disk("a1", true, &["md"]), disk("a2", true, &["md"])];
    let mut e = engine(SelfTestConfig::default(), &disks);
    // a1 is far more overdue, but its last long test was aborted: a2's fresh test goes first.
    e.tracks.get_mut("a1").unwrap().clocks = Clocks { short: Some(T0), long: Some(T0 - 60 * D) };
    e.tracks.get_mut("a1").unwrap().aborts = 1;
    e.tracks.get_mut("a2").unwrap().clocks = Clocks { short: Some(T0), long: Some(T0 - 31 * D) };
    assert_eq!(ids(&e.plan(&disks, at(T0 + H))), ["a2:long"]);
}

#[test]
fn aborts_in_a_row_back_off() {
    let disks = [disk("a", true, &[])];
    let mut e = engine(SelfTestConfig::default(), &disks);
    let mut t = T0;
    let mut waits = Vec::new();
    for n in 0..7u64 {
        e.started("a", SelfTestKind::Short, at(t));
        let aborted = SelfTestLog {
            entries: vec![LogEntry {
                kind: Some(SelfTestKind::Short),
                result: SelfTestResult::Aborted,
                at_hours: Some(200 + n),
                lba: None,
            }],
            ..idle_log(200 + n)
        };
        e.observe("a", &aborted, at(t + 60));
        waits.push((e.tracks["a"].retry_at.unwrap() - (t + 60)) / H);
        t += 2 * D;
    }
    assert_eq!(waits, [1, 2, 4, 8, 16, 24, 24]);
}

#[test]
fn a_test_that_leaves_no_entry_is_interrupted() {
    let disks = [disk("a", true, &[])];
    let mut e = engine(SelfTestConfig::default(), &disks);
    e.started("a", SelfTestKind::Short, at(T0));
    let Change::Finished(last) = e.observe("a", &idle_log(101), at(T0 + 600)) else { panic!("finished") };
    assert_eq!((last.kind, last.result), (SelfTestKind::Short, SelfTestResult::Interrupted));
}

#[test]
fn clocks_survive_and_off_kinds_are_never_due() {
    let disks = [disk("a", true, &[])];
    let config = SelfTestConfig { short: Duration::ZERO, ..SelfTestConfig::default() };
    let mut e = engine(config.clone(), &disks);
    e.tracks.get_mut("a").unwrap().clocks.long = Some(T0);
    let saved = e.clocks();
    let mut back = Engine::new(config);
    back.load(saved);
    // Before the disks are known (start-up), and while one is unplugged, its clocks stay.
    back.set_disks(&[], at(T0 + D));
    assert_eq!(back.clocks()["a"].long, Some(T0));
    back.set_disks(&disks, at(T0 + D));
    back.set_disks(&[], at(T0 + D));
    assert_eq!(back.clocks()["a"].long, Some(T0));
    back.set_disks(&disks, at(T0 + D));
    back.observe("a", &idle_log(200), at(T0 + D));
    assert_eq!(back.tracks["a"].clocks.long, Some(T0));
    // Due at T0+30d, early from the last quarter of the interval (7.5 days before).
    assert!(back.plan(&disks, at(T0 + 22 * D)).is_empty());
    assert_eq!(ids(&back.plan(&disks, at(T0 + 23 * D))), ["a:long"]);
}

/// An array `md` of `n` members, all awake but `asleep`, each long test 1479 min (the
/// WD140EDFZ's `polling_minutes.extended`), clocks set by `clocks(i)`.
fn array(n: usize, asleep: &[&str], clocks: impl Fn(usize) -> Clocks) -> (Vec<DiskView>, Engine) {
    let disks: Vec<DiskView> =
        (1..=n).map(|i| format!("a{i}")).map(|id| disk(&id, !asleep.contains(&id.as_str()), &["md"])).collect();
    let mut e = engine(SelfTestConfig::default(), &disks);
    for (i, d) in disks.iter().enumerate() {
        let t = e.tracks.get_mut(&d.id).unwrap();
        t.long_minutes = Some(1479);
        t.clocks = clocks(i + 1);
    }
    (disks, e)
}

#[test]
fn a_long_test_starts_early_only_in_the_last_quarter_of_its_interval() {
    let disks = [disk("a", true, &[])];
    let mut e = engine(SelfTestConfig::default(), &disks);
    // Long due at T0+30d: early from T0+22.5d; a short test (two minutes) is never early on a
    // disk outside an array (nothing holds it back).
    e.tracks.get_mut("a").unwrap().clocks = Clocks { short: Some(T0 + 20 * D), long: Some(T0) };
    assert!(e.plan(&disks, at(T0 + 22 * D)).is_empty());
    assert_eq!(e.plan(&disks, at(T0 + 22 * D + 12 * H)), [Start { id: "a", kind: SelfTestKind::Long, wake: false }]);
    e.tracks.get_mut("a").unwrap().clocks = Clocks { short: Some(T0), long: Some(T0 + 20 * D) };
    assert!(e.plan(&disks, at(T0 + 7 * D - 60)).is_empty());
    assert_eq!(ids(&e.plan(&disks, at(T0 + 7 * D))), ["a:short"]);
    // Never early on a sleeping disk, even with wake_for_long; never early after an abort.
    e.tracks.get_mut("a").unwrap().clocks = Clocks { short: Some(T0 + 25 * D), long: Some(T0) };
    e.config.wake_for_long = true;
    assert!(e.plan(&[disk("a", false, &[])], at(T0 + 29 * D)).is_empty());
    e.tracks.get_mut("a").unwrap().aborts = 1;
    assert!(e.plan(&disks, at(T0 + 29 * D)).is_empty());
    assert_eq!(ids(&e.plan(&disks, at(T0 + 30 * D))), ["a:long"]);
}

#[test]
fn earliest_deadline_first_across_an_arrays_members() {
    // Three members due 3, 2 and 1 days ago (not past their grace yet): the one due first goes.
    let (disks, e) = array(3, &[], |i| Clocks { short: Some(T0), long: Some(T0 - 30 * D + (i as u64) * D) });
    assert_eq!(ids(&e.plan(&disks, at(T0 + 3 * D))), ["a1:long"]);
    // a1 asleep, its deadline 10 h away: a2's 24.6-hour test would hold the array past it, so
    // a2 waits for a1 (a3 too).
    let (disks, e) = array(2, &["a1"], |i| Clocks {
        short: Some(T0),
        long: Some(if i == 1 { T0 - 30 * D - 38 * H } else { T0 - 30 * D - H }),
    });
    assert!(e.plan(&disks, at(T0)).is_empty());
    // a1's deadline 30 h away: a2's test ends before it, a2 goes.
    let (disks, e) = array(2, &["a1"], |i| Clocks {
        short: Some(T0),
        long: Some(if i == 1 { T0 - 30 * D - 18 * H } else { T0 - 30 * D - H }),
    });
    assert_eq!(ids(&e.plan(&disks, at(T0))), ["a2:long"]);
}

#[test]
fn an_early_long_test_leaves_room_for_the_members_due_during_it() {
    // a1's long test is due in 3 days (early now); a2's short is due in 10 h, within a1's
    // 24.6 hours: a2's two-minute test goes first, ahead of its due date.
    let clocks = |short_due_in: u64| {
        move |i: usize| {
            if i == 1 {
                Clocks { short: Some(T0), long: Some(T0 + 3 * D - 30 * D) }
            } else {
                Clocks { short: Some(T0 + short_due_in - 7 * D), long: Some(T0) }
            }
        }
    };
    let (disks, e) = array(2, &[], clocks(10 * H));
    assert_eq!(ids(&e.plan(&disks, at(T0))), ["a2:short"]);
    // a2 asleep: a1 does not start early, it would make a2's test wait past its due date.
    let (disks, e) = array(2, &["a2"], clocks(10 * H));
    assert!(e.plan(&disks, at(T0)).is_empty());
    // a2's short due in 30 h, after a1's test ends: a1 starts early.
    let (disks, e) = array(2, &["a2"], clocks(30 * H));
    assert_eq!(ids(&e.plan(&disks, at(T0))), ["a1:long"]);
    // Due now, a1 is not held back by a2's due date (10 h after a1's), only by an earlier
    // deadline.
    let (disks, e) = array(2, &["a2"], clocks(3 * D + 10 * H));
    assert_eq!(ids(&e.plan(&disks, at(T0 + 3 * D))), ["a1:long"]);
}
