//! Why won't my disks sleep (issue 24), end to end with the real binary: loop disks whose
//! standby is simulated by tests/fixtures/smartctl/recorder.sh (smartctl's real standby output
//! and exit status 2 until the test flips the disk to an active drive's output), so any block
//! I/O to them while "asleep" is a wake. Each row of the matrix makes one kind of wake from a
//! separate, named process and asserts the cause diskwatch names.
//!
//! The real binary, not an in-process agent: diskwatch leaves itself and every process it
//! starts out of its trace (tracefs `set_event_notrace_pid` with `event-fork`), so a test
//! process hosting the agent could not start a process that gets named.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::ha::{ha_python, run_validator};
use common::wake::{describe, drop_caches, named, provoke, Agent, Fixture, Replay, ACTIVE, WAIT};
use common::{machine_lock, require_root, sh};
use diskwatch::mqtt::config::MqttConfig;
use diskwatch::mqtt::topics::Naming;
use serde_json::Value;

/// A sysctl set for the test, restored on drop.
struct Sysctl {
    path: &'static str,
    old: String,
}

impl Sysctl {
    fn set(path: &'static str, value: &str) -> Self {
        let old = std::fs::read_to_string(path).unwrap();
        std::fs::write(path, value).unwrap();
        Sysctl { path, old }
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = std::fs::write(self.path, self.old.trim());
    }
}

/// A cgroup v2 directory (`/sys/fs/cgroup/unified/<path>` or `/sys/fs/cgroup/<path>`), its
/// processes killed and the directories removed on drop.
struct UnitCgroup {
    dirs: Vec<PathBuf>,
}

impl UnitCgroup {
    fn new(path: &str) -> Self {
        let root = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .into_iter()
            .map(PathBuf::from)
            .find(|r| r.join("cgroup.procs").exists() && r.join("cgroup.subtree_control").exists())
            .expect("a cgroup v2 hierarchy");
        let mut dirs = Vec::new();
        let mut dir = root;
        for part in path.split('/') {
            dir = dir.join(part);
            std::fs::create_dir_all(&dir).unwrap();
            dirs.push(dir.clone());
        }
        UnitCgroup { dirs }
    }

    fn add(&self, pid: u32) {
        std::fs::write(self.dirs.last().unwrap().join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

impl Drop for UnitCgroup {
    fn drop(&mut self) {
        for dir in self.dirs.iter().rev() {
            for _ in 0..50 {
                let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.split_whitespace() {
                    let _ = Command::new("kill").arg(pid).status();
                }
                if std::fs::remove_dir(dir).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// One row of the matrix: what was done, the cause expected and the cause named.
struct Row {
    what: &'static str,
    expected: String,
    named: String,
    correct: bool,
}

fn judge(what: &'static str, wake: &Option<Value>, comm: &str, op: &str) -> Row {
    let correct = wake.as_ref().is_some_and(|w| w["comm"] == comm && w["op"] == op);
    Row { what, expected: format!("{comm} ({op})"), named: describe(wake), correct }
}

/// The matrix: every row's cause named; the share named correctly printed (target ≥ 90 %).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wake_matrix_names_each_cause() {
    if !require_root("wake_matrix_names_each_cause") {
        return;
    }
    let _lock = machine_lock();
    let replay = Replay::new();
    let fx = Fixture::new();
    replay.map(&fx.disk.device, ACTIVE);
    let agent = Agent::start(&replay, "").await;
    let name = fx.disk.name();
    let disk = agent
        .wait_disk(&name, "active with a sleep record", |d| d["power_state"] == "active" && d["sleep"].is_object())
        .await;
    assert_eq!(disk["sleep"]["spin_ups_24h"], 0);
    let mut rows = Vec::new();

    // 1. A named process reading a cold file (it keeps the file open: the path is named).
    let reader = named(fx.bin.path(), "tail", "coldreader");
    let cold = fx.path("cold");
    drop_caches();
    let wake = provoke(&agent, &replay, &fx, WAIT, || {
        Some(Command::new(&reader).args(["-f", &cold]).stdout(Stdio::null()).spawn().unwrap())
    })
    .await;
    let mut row = judge("read a cold file", &wake, "coldreader", "read");
    let path_named = wake.as_ref().is_some_and(|w| w["path"] == cold.as_str());
    row.correct &= path_named;
    rows.push(row);

    // 2. Writing with fsync (metadata warm, as on a disk that spun down with a warm cache).
    let writer = named(fx.bin.path(), "dd", "fsyncwriter");
    let synced = fx.path("synced");
    let wake = provoke(&agent, &replay, &fx, WAIT, || {
        let args = ["if=/dev/zero", &format!("of={synced}"), "bs=4k", "count=1", "conv=notrunc,fsync", "status=none"];
        Some(Command::new(&writer).args(args).spawn().unwrap())
    })
    .await;
    rows.push(judge("write with fsync", &wake, "fsyncwriter", "write"));

    // 3. Writeback after the dirty expiry (shortened to 2 s): the flusher writes, the task
    //    that dirtied the page is named.
    {
        let _expire = Sysctl::set("/proc/sys/vm/dirty_expire_centisecs", "200");
        let _period = Sysctl::set("/proc/sys/vm/dirty_writeback_centisecs", "100");
        let dirtier = named(fx.bin.path(), "dd", "dirtywriter");
        let dirtied = fx.path("dirtied");
        let wake = provoke(&agent, &replay, &fx, WAIT, || {
            let args = ["if=/dev/zero", &format!("of={dirtied}"), "bs=4k", "count=1", "conv=notrunc", "status=none"];
            assert!(Command::new(&dirtier).args(args).status().unwrap().success());
            None
        })
        .await;
        let mut row = judge("writeback after the dirty expiry", &wake, "dirtywriter", "write");
        // Issued by a kernel thread (the flusher), named after the task that dirtied the page.
        let issuer = wake.as_ref().and_then(|w| w["issuer"].as_str()).unwrap_or("");
        row.correct &= issuer.starts_with("kworker/") || issuer.starts_with("jbd2/");
        row.named.push_str(&format!(" issued by {issuer}"));
        rows.push(row);
    }

    // 4. `stat` on a cold directory: metadata.
    let stat = named(fx.bin.path(), "stat", "coldstat");
    let dir = fx.path("dirs/d250");
    drop_caches();
    let wake = provoke(&agent, &replay, &fx, WAIT, || {
        assert!(Command::new(&stat).arg(&dir).stdout(Stdio::null()).status().unwrap().success());
        None
    })
    .await;
    rows.push(judge("stat a cold directory", &wake, "coldstat", "metadata"));

    // 5. blkid run by another process (what udev's probing and many tools do).
    let part = fx.disk.partition(1);
    drop_caches();
    let wake = provoke(&agent, &replay, &fx, WAIT, || {
        let out = Command::new("blkid").args(["-p", "-c", "/dev/null", &part]).output().unwrap();
        assert!(out.status.success(), "blkid: {}", String::from_utf8_lossy(&out.stderr));
        None
    })
    .await;
    rows.push(judge("blkid by another process", &wake, "blkid", "read"));

    // 6. A process in a service's cgroup (cgroup v2, where systemd puts a unit's processes):
    //    the unit is named from /proc/<pid>/cgroup. The cgroup is made by hand here (this
    //    machine's tests run without systemd as PID 1).
    {
        let cgroup = UnitCgroup::new("wake-test.slice/wake-reader.service");
        let other = fx.path("dirtied");
        drop_caches();
        let wake = provoke(&agent, &replay, &fx, WAIT, || {
            let mut kid = Command::new("sh")
                .args(["-c", &format!("read go; exec {} -f {other}", reader.display())])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            cgroup.add(kid.id());
            writeln!(kid.stdin.take().unwrap()).unwrap();
            Some(kid)
        })
        .await;
        // Opening a cold path may first read its inode (metadata), then the data: either is the
        // first request, depending on which blocks the drop left cached.
        let mut row = judge("read by a process in wake-reader.service", &wake, "coldreader", "read");
        row.correct = wake.as_ref().is_some_and(|w| {
            w["comm"] == "coldreader"
                && (w["op"] == "read" || w["op"] == "metadata")
                && w["unit"] == "wake-reader.service"
        });
        row.expected = "coldreader (read or metadata) in wake-reader.service".into();
        rows.push(row);
    }

    // 7. `smartctl -a` by another process. On a loop device smartctl finds no device type and
    //    sends nothing (and an SG_IO on a loop fails with ENOTTY before any request exists): the
    //    real outcome is no I/O, so the correct answer is "no wake". A pass-through request on a
    //    real disk (rwbs N) is covered by the trace parser's tests.
    let wake = provoke(&agent, &replay, &fx, Duration::from_secs(5), || {
        for args in [vec!["-a", &fx.disk.device[..]], vec!["-d", "sat", "-a", &fx.disk.device[..]]] {
            let _ = Command::new("smartctl").args(args).stdout(Stdio::null()).status();
        }
        None
    })
    .await;
    rows.push(Row {
        what: "smartctl -a / -d sat -a by another process (loop: no request)",
        expected: "no wake".into(),
        named: describe(&wake),
        correct: wake.is_none(),
    });
    // Wake it for real so the agent's view ends where the rows began.
    common::sh("dd", &[&format!("if={part}"), "of=/dev/null", "bs=4k", "count=1", "iflag=direct", "status=none"]);
    agent.wait_disk(&name, "awake", |d| d["power_state"] != "standby").await;

    let correct = rows.iter().filter(|r| r.correct).count();
    println!("\n| row | expected | named | correct |\n|---|---|---|---|");
    for r in &rows {
        println!("| {} | {} | {} | {} |", r.what, r.expected, r.named, if r.correct { "yes" } else { "NO" });
    }
    let percent = correct as f64 * 100.0 / rows.len() as f64;
    println!("named correctly: {correct}/{} = {percent:.0} %", rows.len());

    // The wake history is the journal's: every wake is in GET /api/v1/events?types=disk.woken,
    // and the disk's record counts them.
    let wakes = agent.wakes(&name).await;
    let attributed = rows.iter().filter(|r| r.named != "no wake").count();
    assert!(wakes.len() >= attributed, "{} wakes in the history, {attributed} rows woke", wakes.len());
    assert!(wakes.iter().all(|e| e["type"] == "disk.woken" && e["data"]["last_wake"]["at"].is_string()));
    let disk =
        agent.wait_disk(&name, "counted", |d| d["sleep"]["spin_ups_24h"].as_u64() >= Some(wakes.len() as u64)).await;
    assert!(disk["sleep"]["wakes_24h"].as_array().unwrap().len() >= attributed);
    assert!(disk["sleep"]["standby_percent_24h"].as_f64().unwrap() > 0.0);
    // Home Assistant: spin-ups, standby share and "last woken by" of this disk pass Home
    // Assistant's own discovery schemas; the event entity carries the wake.
    let snapshot: diskwatch::model::Snapshot = serde_json::from_value(agent.get("/api/v1/snapshot").await).unwrap();
    let naming = Naming::new(&MqttConfig::default(), "test");
    let configs: BTreeMap<String, String> = diskwatch::mqtt::discovery::plan(&snapshot, &naming, None)
        .into_iter()
        .filter(|r| r.topic.starts_with("homeassistant/"))
        .map(|r| (r.topic, r.payload))
        .collect();
    let disk_config = configs
        .values()
        .map(|p| serde_json::from_str::<Value>(p).unwrap())
        .find(|c| {
            c["cmps"]["last_woken_by"].is_object() && c["device"]["name"].as_str().is_some_and(|n| n.contains(&name))
        })
        .unwrap_or_else(|| panic!("no sleep entities for {name}: {configs:#?}"));
    let cmps = &disk_config["cmps"];
    assert_eq!(cmps["standby_percent"]["unit_of_measurement"], "%");
    assert_eq!(cmps["spin_ups"]["state_class"], "measurement");
    assert!(configs.values().any(|p| p.contains("disk.woken") && p.contains("last_wake")));
    if let Some(python) = ha_python() {
        run_validator(&python, &configs, agent.dir.path());
    }
    for r in &rows {
        assert!(r.correct, "row '{}': expected {}, named {}\n{}", r.what, r.expected, r.named, agent.log());
    }
    assert!(percent >= 90.0);
}

/// A trace instance of the test's own, following one process tree (`set_event_pid` with
/// `event-fork`): every block request and pass-through command it sends to `devs`.
struct OwnTrace {
    dir: PathBuf,
}

impl OwnTrace {
    fn new(pid: u32, devs: &[String]) -> Self {
        let root = Path::new("/sys/kernel/tracing");
        if !root.join("instances").is_dir() {
            sh("mount", &["-t", "tracefs", "tracefs", root.to_str().unwrap()]);
        }
        let dir = root.join(format!("instances/wake-test-{}", std::process::id()));
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).unwrap();
        let this = OwnTrace { dir };
        this.write("options/event-fork", "1");
        this.write("options/record-tgid", "1");
        let tids: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        this.write("set_event_pid", &tids.join(" "));
        let filter = devs
            .iter()
            .map(|d| {
                let (ma, mi) = d.split_once(':').unwrap();
                format!("dev == {}", (ma.parse::<u64>().unwrap() << 20) | mi.parse::<u64>().unwrap())
            })
            .collect::<Vec<_>>()
            .join(" || ");
        for event in ["block/block_bio_queue", "block/block_rq_issue"] {
            this.write(&format!("events/{event}/filter"), &filter);
            this.write(&format!("events/{event}/enable"), "1");
        }
        this
    }

    fn write(&self, file: &str, value: &str) {
        std::fs::write(self.dir.join(file), value).unwrap_or_else(|e| panic!("{file}: {e}"));
    }

    /// Also follows `pid` (and what it starts).
    fn follow(&self, pid: u32) {
        let mut f = std::fs::OpenOptions::new().append(true).open(self.dir.join("set_event_pid")).unwrap();
        write!(f, "{pid}").unwrap();
    }

    /// The recorded events (comment lines left out).
    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("trace"))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for OwnTrace {
    fn drop(&mut self) {
        for event in ["block/block_bio_queue", "block/block_rq_issue"] {
            let _ = std::fs::write(self.dir.join(format!("events/{event}/enable")), "0");
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// diskwatch's own I/O to a sleeping disk, every part on, counted by a trace of the agent's
/// process tree: 0. The run lasts `WAKE_SOAK_SECS` (60 s by default), with HTTP readers, the
/// history recorder saving every 5 s and the health and activity sources polling in it.
/// Every 30 s a synthetic `change` uevent (as `udevadm trigger` sends) goes to the disk and its
/// partition: the kernel-mode udev source must not probe a sleeping disk for it (it once did,
/// with 76 libblkid reads from its `blkid` thread).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diskwatch_never_does_io_to_a_sleeping_disk() {
    if !require_root("diskwatch_never_does_io_to_a_sleeping_disk") {
        return;
    }
    // WAKE_SOAK_ALONGSIDE=1 (for an hour-long WAKE_SOAK_SECS): no machine lock, and the agent
    // watches only this test's disk, so other tests run meanwhile; they may wake the disk (the
    // wake assertions below then fail), but the count of diskwatch's own requests stays exact.
    let alongside = std::env::var_os("WAKE_SOAK_ALONGSIDE").is_some();
    let _lock = (!alongside).then(machine_lock);
    let secs: u64 = std::env::var("WAKE_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let replay = Replay::new();
    let fx = Fixture::new();
    replay.map(&fx.disk.device, ACTIVE);
    let history = "[history]\nresolution = \"1s\"\nsave_interval = \"5s\"\n";
    let agent = if alongside {
        let name = fx.disk.name();
        Agent::start_watching(&replay, &format!("\"{name}\", \"{name}p*\""), history).await
    } else {
        Agent::start(&replay, history).await
    };
    let name = fx.disk.name();
    agent.wait_disk(&name, "active", |d| d["power_state"] == "active").await;
    drop_caches();
    replay.map(&fx.disk.device, "standby");
    agent
        .wait_disk(&name, "asleep and armed", |d| {
            d["power_state"] == "standby" && d["sleep"]["standby_since"].is_string()
        })
        .await;
    let instance = PathBuf::from(format!("/sys/kernel/tracing/instances/diskwatch-{}", agent.pid()));
    assert!(instance.is_dir(), "the agent traces in its own instance");
    let devs = vec![fx.disk.dev(), common::dev_of(&fx.disk.partition(1))];
    let trace = OwnTrace::new(agent.pid(), &devs);
    let started = Instant::now();
    let uevents = [
        PathBuf::from(format!("/sys/class/block/{name}/uevent")),
        PathBuf::from(format!("/sys/class/block/{name}p1/uevent")),
    ];
    let mut last_change = None::<Instant>;
    let mut last_report = Instant::now();
    let history = format!("/api/v1/history?metric=read_rate&object=dev-{name}&since=1h");
    let answer = reqwest::get(agent.url(&history)).await.expect("history");
    assert!(answer.status().is_success(), "{history}: {}", answer.status());
    while started.elapsed() < Duration::from_secs(secs) {
        if last_report.elapsed() >= Duration::from_secs(600) {
            let (s, n) = (started.elapsed().as_secs(), trace.lines().len());
            let woken = agent.wakes(&name).await.len();
            println!("diskwatch's own requests to the sleeping disk after {s} s: {n} (wakes by anyone: {woken})");
            last_report = Instant::now();
        }
        if last_change.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
            for uevent in &uevents {
                std::fs::write(uevent, "change").unwrap_or_else(|e| panic!("{}: {e}", uevent.display()));
            }
            last_change = Some(Instant::now());
        }
        for path in ["/api/v1/snapshot", "/api/v1/events?limit=100", history.as_str()] {
            let _ = reqwest::get(agent.url(path)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let own = trace.lines();
    let disk = agent.wait_disk(&name, "still asleep", |_| true).await;
    let wakes = agent.wakes(&name).await;
    println!("diskwatch's own requests to the sleeping disk in {secs} s, every part on: {}", own.len());
    // Another process waking the disk ends the experiment (the disk is awake, and diskwatch may
    // then read it): say which process, before blaming diskwatch.
    // diskwatch's own tasks: its pid and every thread or child the own trace saw ("comm-tid").
    let mut own_tasks: std::collections::HashSet<u64> =
        own.iter().filter_map(|l| l.split_whitespace().next()?.rsplit('-').next()?.parse().ok()).collect();
    own_tasks.insert(u64::from(agent.pid()));
    let foreign: Vec<&Value> = wakes
        .iter()
        .filter(|w| w["data"]["last_wake"]["pid"].as_u64().is_none_or(|pid| !own_tasks.contains(&pid)))
        .collect();
    assert!(
        foreign.is_empty(),
        "another process woke the test's disk, so the soak measured nothing after it (first: {} pid {}); \
         diskwatch's requests after that wake are not to a sleeping disk:\n{foreign:#?}",
        foreign[0]["data"]["last_wake"]["comm"],
        foreign[0]["data"]["last_wake"]["pid"]
    );
    assert!(own.is_empty(), "diskwatch sent I/O to a sleeping disk:\n{}", own.join("\n"));
    assert_eq!(disk["power_state"], "standby", "{disk:#}");
    assert!(wakes.is_empty(), "{wakes:#?}");
    let log = std::fs::read_to_string(replay.dir.path().join("argv.log")).unwrap_or_default();
    assert!(!log.contains("WOKE"), "a smartctl run without -n standby:\n{log}");

    // The control: the same trace does see a process it follows reading the disk.
    let part = fx.disk.partition(1);
    let mut reader = Command::new("sh")
        .args(["-c", &format!("sleep 0.5; exec dd if={part} of=/dev/null bs=4k count=1 iflag=direct status=none")])
        .spawn()
        .unwrap();
    trace.follow(reader.id());
    assert!(reader.wait().unwrap().success());
    let seen = trace.lines();
    assert!(seen.iter().any(|l| l.contains("block_bio_queue") && l.contains("[dd]")), "{seen:?}");
    // And diskwatch names it.
    let wake = agent.wait_disk(&name, "woken by dd", |d| d["sleep"]["last_wake"]["comm"] == "dd").await;
    assert_eq!(wake["sleep"]["last_wake"]["op"], "read");
    drop(trace);
    let mut agent = agent;
    agent.stop();
    assert!(!instance.exists(), "the agent's trace instance is removed at stop");
}

/// Without tracefs (a path where none can be mounted), a wake is still counted from the power
/// state and the I/O counters; its cause is `unknown` and the source status says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tracefs_wakes_are_counted_with_cause_unknown() {
    if !require_root("without_tracefs_wakes_are_counted_with_cause_unknown") {
        return;
    }
    let _lock = machine_lock();
    let replay = Replay::new();
    let fx = Fixture::new();
    replay.map(&fx.disk.device, ACTIVE);
    let agent = Agent::start(&replay, "[sleep]\ntracefs = \"/nonexistent/tracing\"\n").await;
    let name = fx.disk.name();
    agent.wait_disk(&name, "active", |d| d["power_state"] == "active" && d["sleep"].is_object()).await;
    let wake = provoke(&agent, &replay, &fx, WAIT, || {
        let part = fx.disk.partition(1);
        common::sh("dd", &[&format!("if={part}"), "of=/dev/null", "bs=4k", "count=1", "iflag=direct", "status=none"]);
        None
    })
    .await
    .expect("the wake is counted");
    assert_eq!(wake["op"], "unknown");
    assert!(wake["pid"].is_null() && wake["comm"].is_null());
    assert!(wake["note"].as_str().unwrap().contains("/nonexistent/tracing"), "{wake:#}");
    let snap = agent.get("/api/v1/snapshot").await;
    let source = snap["sources"].as_array().unwrap().iter().find(|s| s["name"] == "sleep").unwrap().clone();
    assert_eq!(source["status"], "failed", "{source:#}");
    assert!(source["message"].as_str().unwrap().contains("causes unknown"), "{source:#}");
    let disk = agent.wait_disk(&name, "counted", |d| d["sleep"]["spin_ups_24h"] == 1).await;
    assert_eq!(disk["sleep"]["last_wake"]["op"], "unknown");
}

/// The dashboard's 24-hour band in headless Chromium: asleep periods, a marker per wake whose
/// title names the cause, the counts beside it; a new wake arrives live as `disk.woken`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_draws_the_sleep_band_with_wake_markers() {
    use diskwatch::model::sleep::{Sleep, SleepPeriod, Wake, WakeOp};
    use diskwatch::state::Fact;
    let agent = common::TestAgent::start(|_| {}, vec![]).await;
    let mut browser = common::dashboard::Browser::launch();
    browser.cmd(&format!("goto {}", agent.url("/")));
    browser.cmd("wait #status[data-state=live]");
    let d = common::dashboard::disk(1);
    agent.facts.send(Fact::DiskUpsert(d.clone())).await.unwrap();
    let at = |ago: u64| {
        humantime::format_rfc3339_millis(std::time::SystemTime::now() - Duration::from_secs(ago)).to_string()
    };
    let wake = |ago: u64, comm: Option<&str>, op: WakeOp| Wake {
        at: at(ago),
        pid: comm.map(|_| 4242),
        comm: comm.map(str::to_owned),
        unit: comm.map(|_| "plex.service".to_owned()),
        op,
        note: comm.is_none().then(|| "tracing is off".to_owned()),
        ..Wake::default()
    };
    let first = wake(3 * 3600, Some("coldreader"), WakeOp::Read);
    let sleep = Sleep {
        spin_ups_24h: 1,
        standby_percent_24h: 41.5,
        standby_since: Some(at(600)),
        last_wake: Some(first.clone()),
        periods_24h: vec![
            SleepPeriod { from: at(8 * 3600), to: Some(first.at.clone()) },
            SleepPeriod { from: at(600), to: None },
        ],
        wakes_24h: vec![first],
    };
    agent.facts.send(Fact::DiskSleep { id: d.id.clone(), sleep: Box::new(sleep.clone()), woken: true }).await.unwrap();
    let card = format!("[data-disk-id=\"{}\"]", d.id);
    browser.cmd(&format!("wait {card} [data-sleep-band] [data-wake]"));
    let text = browser.cmd(&format!("text {card} [data-sleep]"));
    assert!(text.contains("1 spin-ups") && text.contains("41.5% standby"), "{text}");
    assert!(text.contains("coldreader [4242] (read) · plex.service"), "{text}");
    let title = browser.cmd(&format!("text {card} [data-wake] title"));
    assert!(title.contains("woken by coldreader"), "{title}");
    // A second wake (cause unknown) arrives live: a second marker.
    let second = wake(60, None, WakeOp::Unknown);
    let mut more = sleep;
    more.spin_ups_24h = 2;
    more.standby_since = None;
    more.periods_24h[1].to = Some(second.at.clone());
    more.last_wake = Some(second.clone());
    more.wakes_24h.push(second);
    agent.facts.send(Fact::DiskSleep { id: d.id.clone(), sleep: Box::new(more), woken: true }).await.unwrap();
    browser.cmd(&format!("wait {card} [data-wake]:nth-of-type(2)"));
    let text = browser.cmd(&format!("text {card} [data-sleep]"));
    assert!(text.contains("2 spin-ups") && text.contains("unknown: tracing is off"), "{text}");
    let log = browser.cmd("text #log");
    assert!(log.contains("disk.woken"), "{log}");
    assert_eq!(browser.cmd("errors"), "[]", "the page threw");
    browser.cmd(&format!("screenshot {}", common::dashboard::artifacts_dir().join("dashboard-sleep.png").display()));
    drop(browser);
    agent.stop().await;
}
