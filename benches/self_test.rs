//! Self-test scheduling over a simulated fortnight (issue 23): 12 disks in two md arrays of
//! six, with random use and quiet periods, driven through the real scheduler
//! (`diskwatch::selftest::round`, `engine`) with a fake clock. The drives are simulated: each
//! answers the scheduler's log reads with a real smartctl JSON output (WDC WD140EDFZ for one
//! array, a MegaRAID-attached HDD for the other: tests/fixtures/smartctl) whose self-test
//! status and log are advanced with the entries of real logs ("Completed without error",
//! "Aborted by host", "in progress, N0% remaining"), parsed by the agent's own parser.
//!
//! The drives' power: a disk is in use for 10 min to 6 h, then quiet for 1 to 20 h; quiet, it
//! spins down 30 min after the last command. Two set-ups: the drive's own timer (`hdparm -S`),
//! which every command resets, the scheduler's progress reads included; or `hd-idle`, which
//! watches the kernel's I/O counters (SMART commands do not move them) and spins a disk down
//! in the middle of a test: the drive logs "Aborted by host". The health source's view of the
//! power state is refreshed every 30 min, and at once when I/O wakes a disk.
//!
//! Printed: due tests that ran within interval + grace (count/total, worst lateness), tests
//! started early (before they were due, in the last quarter of their interval), spin-ups
//! caused by the scheduler (0 without `wake_for_long`), the most members of one array testing
//! at once, the most tests at once, aborted tests and their retries.
//!
//! `cargo bench --bench self_test`

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use diskwatch::model::selftest::{SelfTestKind, SelfTestNews, SelfTestResult};
use diskwatch::selftest::engine::{Clocks, DiskView, Engine};
use diskwatch::selftest::round::{self, Drives, Target};
use diskwatch::selftest::SelfTestConfig;
use diskwatch::smartctl::selftest::{interpret_log, interpret_start, LogAnswer, StartAnswer};

const MIN: u64 = 60;
const H: u64 = 3600;
const D: u64 = 24 * H;
const T0: u64 = 1_800_000_000;
const DAYS: u64 = 14;
const STEP: u64 = MIN;
const HEALTH_EVERY: u64 = 30 * MIN;
const SPIN_DOWN_AFTER: u64 = 30 * MIN;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/smartctl/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("JSON")
}

/// The real log entries and statuses the drives' answers are made of.
struct Parts {
    short_passed: Value,
    long_passed: Value,
    aborted: Value,
    in_progress: Value,
    idle: Value,
    standby: String,
}

impl Parts {
    fn load() -> Self {
        let evo = fixture("sata-ssd-samsung-860evo.json");
        let table = &evo["ata_smart_self_test_log"]["extended"]["table"];
        let megaraid = fixture("corpus/scrutiny--smart-megaraid1.json");
        let wd = fixture("ata-hdd-wd140edfz.json");
        let standby = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/smartctl/standby-smartctl-7.3.txt"
        ))
        .expect("standby output");
        Parts {
            short_passed: table[0].clone(),
            long_passed: table[3].clone(),
            aborted: megaraid["ata_smart_self_test_log"]["standard"]["table"][0].clone(),
            in_progress: wd["ata_smart_data"]["self_test"]["status"].clone(),
            idle: evo["ata_smart_data"]["self_test"]["status"].clone(),
            standby,
        }
    }
}

struct Running {
    kind: SelfTestKind,
    started: u64,
    ends: u64,
}

struct Disk {
    id: String,
    array: String,
    template: Value,
    long_minutes: u64,
    hd_idle: bool,
    poh0: u64,
    /// Truth.
    awake: bool,
    in_use_until: u64,
    next_use: u64,
    last_command: u64,
    running: Option<Running>,
    entries: Vec<Value>,
    /// The health source's view.
    known_awake: bool,
}

#[derive(Default)]
struct Figures {
    spin_ups_caused: u64,
    standby_answers: u64,
    commands: u64,
    aborted: u64,
    completed: u64,
    max_array_members: usize,
    max_concurrent: usize,
}

struct Sim {
    now: u64,
    disks: Vec<Disk>,
    parts: Parts,
    figures: Figures,
    rng: StdRng,
}

struct SimDrives(RefCell<Sim>);

impl Sim {
    fn disk(&mut self, id: &str) -> &mut Disk {
        self.disks.iter_mut().find(|d| d.id == id).expect("disk")
    }

    /// A command reaches the drive: `Err` is the standby answer (the power check).
    fn command(&mut self, id: &str, wake: bool) -> Result<(), String> {
        let now = self.now;
        self.figures.commands += 1;
        let standby = self.parts.standby.clone();
        let d = self.disks.iter_mut().find(|d| d.id == id).expect("disk");
        if !d.awake {
            if !wake {
                self.figures.standby_answers += 1;
                return Err(standby);
            }
            d.awake = true;
            self.figures.spin_ups_caused += 1;
        }
        d.last_command = now;
        Ok(())
    }

    fn answer(&mut self, id: &str) -> String {
        let (now, parts) = (self.now, &self.parts);
        let d = self.disks.iter_mut().find(|d| d.id == id).expect("disk");
        let mut j = d.template.clone();
        j["power_on_time"]["hours"] = json!(d.poh0 + (now - T0) / H);
        j["smartctl"]["exit_status"] = json!(0);
        j["ata_smart_data"]["self_test"]["status"] = match &d.running {
            Some(r) => {
                let left = (r.ends - now) * 10 / (r.ends - r.started).max(1) + 1;
                let mut s = parts.in_progress.clone();
                s["value"] = json!(0xF0 + left.min(9));
                s["remaining_percent"] = json!(left.min(9) * 10);
                s
            }
            None => parts.idle.clone(),
        };
        let key = if j["ata_smart_self_test_log"].get("extended").is_some() { "extended" } else { "standard" };
        j["ata_smart_self_test_log"][key]["table"] = json!(d.entries.iter().take(21).collect::<Vec<_>>());
        j.to_string()
    }

    /// The drive's side of time: tests end, use comes and goes, disks spin down.
    fn advance(&mut self) {
        let now = self.now;
        let (short_passed, long_passed, aborted) =
            (self.parts.short_passed.clone(), self.parts.long_passed.clone(), self.parts.aborted.clone());
        for d in &mut self.disks {
            let poh = d.poh0 + (now - T0) / H;
            if d.running.as_ref().is_some_and(|r| r.ends <= now) {
                let r = d.running.take().expect("running");
                let mut e = if r.kind == SelfTestKind::Long { long_passed.clone() } else { short_passed.clone() };
                e["lifetime_hours"] = json!(poh);
                d.entries.insert(0, e);
                self.figures.completed += 1;
            }
            if now >= d.next_use {
                d.in_use_until = now + self.rng.random_range(10 * MIN..6 * H);
                d.next_use = d.in_use_until + self.rng.random_range(H..20 * H);
                if !d.awake {
                    d.awake = true;
                    // The health source sees the I/O at once.
                    d.known_awake = true;
                }
                d.last_command = now;
            }
            let idle_since = if d.hd_idle { d.in_use_until } else { d.in_use_until.max(d.last_command) };
            if d.awake && now >= d.in_use_until && now >= idle_since + SPIN_DOWN_AFTER {
                d.awake = false;
                if let Some(r) = d.running.take() {
                    let mut e = aborted.clone();
                    e["type"] = if r.kind == SelfTestKind::Long {
                        long_passed["type"].clone()
                    } else {
                        short_passed["type"].clone()
                    };
                    e["lifetime_hours"] = json!(poh);
                    d.entries.insert(0, e);
                    self.figures.aborted += 1;
                }
            }
            if (now - T0) % HEALTH_EVERY == 0 {
                d.known_awake = d.awake;
            }
        }
        let mut per_array: BTreeMap<&str, usize> = BTreeMap::new();
        for d in self.disks.iter().filter(|d| d.running.is_some()) {
            *per_array.entry(&d.array).or_default() += 1;
        }
        let concurrent: usize = per_array.values().sum();
        self.figures.max_concurrent = self.figures.max_concurrent.max(concurrent);
        self.figures.max_array_members =
            self.figures.max_array_members.max(per_array.values().copied().max().unwrap_or(0));
    }
}

impl Drives for SimDrives {
    async fn log(&self, disk: &str, _devnode: &str) -> Result<LogAnswer, String> {
        let mut sim = self.0.borrow_mut();
        Ok(match sim.command(disk, false) {
            Err(standby) => interpret_log(2, &standby, true),
            Ok(()) => interpret_log(0, &sim.answer(disk), true),
        })
    }

    async fn start(&self, disk: &str, _devnode: &str, kind: SelfTestKind, wake: bool) -> Result<StartAnswer, String> {
        let mut sim = self.0.borrow_mut();
        if let Err(standby) = sim.command(disk, wake) {
            return Ok(interpret_start(2, &standby, true));
        }
        let now = sim.now;
        let d = sim.disk(disk);
        if d.running.is_some() {
            return Ok(interpret_start(4, r#"{"smartctl":{"version":[7,3],"exit_status":4}}"#, true));
        }
        let minutes = if kind == SelfTestKind::Long { d.long_minutes } else { 2 };
        d.running = Some(Running { kind, started: now, ends: now + minutes * MIN });
        Ok(interpret_start(0, r#"{"smartctl":{"version":[7,3],"exit_status":0}}"#, true))
    }
}

/// Due tests and how late they ran.
#[derive(Default)]
struct Dues {
    /// Per disk and kind: the time it came due (unix s).
    due: BTreeMap<(String, SelfTestKind), u64>,
    total: u64,
    in_time: u64,
    worst_late: u64,
    /// Tests that ended aborted or interrupted (each is retried in a later window).
    not_completed: u64,
    /// kind → (in time, total).
    by: BTreeMap<&'static str, (u64, u64)>,
    /// Tests started before they were due, in their early window: not a due test (their
    /// interval restarts at their end), counted apart so the totals stay comparable.
    early: u64,
}

impl Dues {
    fn count(&mut self, kind: SelfTestKind, in_time: bool, late: u64) {
        self.total += 1;
        self.worst_late = self.worst_late.max(late);
        self.in_time += u64::from(in_time);
        let e = self.by.entry(kind.as_str()).or_default();
        e.0 += u64::from(in_time);
        e.1 += 1;
    }
}

fn simulate(hd_idle: bool, wake_for_long: bool, seed: u64) -> (Figures, Dues) {
    let config = SelfTestConfig { wake_for_long, ..SelfTestConfig::default() };
    let grace = config.grace.as_secs();
    let intervals = |k: SelfTestKind| config.interval(k).expect("on").as_secs();
    let mut rng = StdRng::seed_from_u64(seed);
    let wd = fixture("ata-hdd-wd140edfz.json");
    let megaraid = fixture("corpus/scrutiny--smart-megaraid1.json");
    let mut disks = Vec::new();
    let mut clocks = BTreeMap::new();
    for i in 0..12 {
        let (array, template, long_minutes) = if i < 6 { ("md-a", &wd, 1479) } else { ("md-b", &megaraid, 503) };
        let template = template.clone();
        let poh0 = template["power_on_time"]["hours"].as_u64().expect("hours");
        let id = format!("disk{i:02}");
        // The last tests before the fortnight: a week and a month back at most.
        let c = Clocks { short: Some(T0 - rng.random_range(0..7 * D)), long: Some(T0 - rng.random_range(0..30 * D)) };
        clocks.insert(id.clone(), c);
        let next_use = T0 + rng.random_range(0..12 * H);
        disks.push(Disk {
            id,
            array: array.to_owned(),
            template,
            long_minutes,
            hd_idle,
            poh0,
            awake: false,
            in_use_until: T0,
            next_use,
            last_command: T0,
            running: None,
            entries: Vec::new(),
            known_awake: false,
        });
    }
    let mut dues = Dues::default();
    for (id, c) in &clocks {
        for k in SelfTestKind::ALL {
            let last = if k == SelfTestKind::Long { c.long } else { c.short };
            dues.due.insert((id.clone(), k), last.expect("set") + intervals(k));
        }
    }
    let mut engine = Engine::new(config.clone());
    engine.load(clocks);
    let sim = SimDrives(RefCell::new(Sim { now: T0, disks, parts: Parts::load(), figures: Figures::default(), rng }));
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let poll = config.poll.as_secs();
    let mut last_known: Vec<bool> = vec![false; 12];
    let mut started_at: BTreeMap<String, u64> = BTreeMap::new();
    let end = T0 + DAYS * D;
    let mut now = T0;
    while now < end {
        sim.0.borrow_mut().now = now;
        sim.0.borrow_mut().advance();
        let (targets, known): (Vec<Target>, Vec<bool>) = {
            let s = sim.0.borrow();
            let t = s
                .disks
                .iter()
                .map(|d| Target {
                    view: DiskView { id: d.id.clone(), awake: d.known_awake, arrays: vec![d.array.clone()] },
                    devnode: format!("/dev/{}", d.id),
                })
                .collect();
            (t, s.disks.iter().map(|d| d.known_awake).collect())
        };
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(now);
        // A round every poll, and when the health source's view changed (as the task does).
        let all = (now - T0) % poll == 0;
        if all || known != last_known {
            let news = rt.block_on(round::round(&mut engine, &sim, &targets, all, at));
            for (id, n) in news {
                match n {
                    SelfTestNews::Started { .. } => {
                        started_at.insert(id, now);
                    }
                    SelfTestNews::Finished(last) if last.result.completed() => {
                        let started = started_at.get(&id).copied().unwrap_or(now);
                        let kinds: &[SelfTestKind] = if last.kind == SelfTestKind::Long {
                            &[SelfTestKind::Long, SelfTestKind::Short]
                        } else {
                            &[SelfTestKind::Short]
                        };
                        for &k in kinds {
                            let due = dues.due[&(id.clone(), k)];
                            if due <= started {
                                let late = started - due;
                                dues.count(k, late <= grace, late);
                            } else if k == last.kind {
                                dues.early += 1;
                            }
                            dues.due.insert((id.clone(), k), now + intervals(k));
                        }
                    }
                    SelfTestNews::Finished(last) if last.result != SelfTestResult::Passed => dues.not_completed += 1,
                    SelfTestNews::Finished(_) => {}
                }
            }
        }
        last_known = known;
        now += STEP;
    }
    // Tests still due at the end: late if past their grace.
    let pending: Vec<((String, SelfTestKind), u64)> = dues.due.iter().map(|(k, v)| (k.clone(), *v)).collect();
    for ((_, k), due) in pending {
        if due + grace < end {
            dues.count(k, false, end - due);
        }
    }
    let figures = std::mem::take(&mut sim.0.borrow_mut().figures);
    (figures, dues)
}

fn hours(s: u64) -> String {
    format!("{:.1} h", s as f64 / 3600.0)
}

fn main() {
    println!("self-test scheduling, simulated fortnight: 12 disks in 2 md arrays of 6, random use and standby");
    println!("defaults: short 7d, long 30d, max_parallel 2, grace 2d, progress read every 5 min\n");
    for (hd_idle, wake_for_long) in [(false, false), (false, true), (true, false), (true, true)] {
        let mut agg = (0u64, 0u64, 0u64, 0u64, 0usize, 0usize, 0u64, 0u64, 0u64, 0u64);
        let mut early = 0u64;
        let mut by: BTreeMap<&'static str, (u64, u64)> = BTreeMap::new();
        for seed in 1..=10u64 {
            let (f, d) = simulate(hd_idle, wake_for_long, seed);
            agg.0 += d.in_time;
            agg.1 += d.total;
            agg.2 = agg.2.max(d.worst_late);
            agg.3 += f.spin_ups_caused;
            agg.4 = agg.4.max(f.max_array_members);
            agg.5 = agg.5.max(f.max_concurrent);
            agg.6 += f.aborted;
            agg.7 += f.completed;
            agg.8 += f.standby_answers;
            agg.9 += f.commands;
            early += d.early;
            for (k, (a, t)) in d.by {
                let e = by.entry(k).or_default();
                e.0 += a;
                e.1 += t;
            }
        }
        let how = if hd_idle { "hd-idle (I/O counters)" } else { "the drive's timer (hdparm -S)" };
        println!("spin-down by {how}, wake_for_long = {wake_for_long} (10 seeds):");
        println!("  due tests run within interval + grace: {}/{} (worst lateness {})", agg.0, agg.1, hours(agg.2));
        for (kind, (a, t)) in &by {
            println!("    {kind:5} tests: {a}/{t}");
        }
        println!(
            "  tests started early, before due:       {early} (all tests in time: {}/{})",
            agg.0 + early,
            agg.1 + early
        );
        println!("  spin-ups caused by the scheduler:     {}", agg.3);
        println!("  max members of one array testing:     {}", agg.4);
        println!("  max tests at once:                    {}", agg.5);
        println!("  tests completed / aborted (retried):  {} / {}", agg.7, agg.6);
        println!("  smartctl runs / answered standby:     {} / {}", agg.9, agg.8);
    }
}
