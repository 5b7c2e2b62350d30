//! The chaos suite: the agent under the failures a storage server really has, each with the
//! outcome an operator relies on. Every test takes the machine-wide lock (they mount, kill and
//! flood), prints its measured figures (docs/reliability.md quotes them), and cleans up with guards.
//!
//! - a blocking read hung in the kernel at SIGTERM: the process is gone within the drain time;
//! - kill -9 in a write loop: the journal stays readable, ids keep rising, restart works;
//! - disk full on state_dir (a small loop filesystem): the agent keeps running, health says
//!   `degraded`, and recovers once space frees;
//! - a flapping broker: the agent reconnects and the retained states end equal to the snapshot;
//! - 10 000 mounts appearing at once in the agent's mount namespace;
//! - probes that hang (FUSE filesystems that never answer statfs) beyond the usage pool's cap.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::fuse::BlockingFuse;
use common::mosquitto::{self, Mosquitto};
use common::{machine_lock, require_root, LoopDevice, MountGuard, TestAgent};
use diskwatch::agent::SinkState;
use diskwatch::state::Fact;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_diskwatch");
/// The binary's drain time after a signal (src/main.rs DRAIN).
const DRAIN: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(30);

/// The real binary, run by this test (optionally under a wrapper such as `unshare`); killed by
/// its PID on drop. Its log goes to a file kept for failure messages.
struct AgentProcess {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl AgentProcess {
    fn spawn(wrapper: &[&str], env: &[(&str, String)], log: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        cmd.args(["--listen", &format!("127.0.0.1:{port}")]);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("DISKWATCH_")) {
            cmd.env_remove(k);
        }
        cmd.env("DISKWATCH_NODE_ID", "chaos")
            .env("DISKWATCH_MQTT__ENABLED", "false")
            .env("DISKWATCH_UDEV__ENABLED", "false")
            .env("DISKWATCH_SHARES__ENABLED", "false")
            .env("DISKWATCH_MOUNTS__ENABLED", "false");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let file = File::options().create(true).append(true).open(log).expect("agent log");
        let child = cmd.stdout(Stdio::null()).stderr(file).spawn().expect("run diskwatch");
        Self { child: Some(child), port, log: log.to_path_buf() }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET `path`: status and body, or None while the agent does not answer.
    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().ok()?;
        let resp = client.get(self.url(path)).send().await.ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.text().await.ok()?))
    }

    async fn json(&self, path: &str) -> Value {
        let (_, body) = self.get(path).await.unwrap_or_else(|| panic!("GET {path} failed; log:\n{}", self.log_text()));
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// Waits until the agent serves HTTP; returns how long that took.
    async fn wait_serving(&mut self) -> Duration {
        let start = Instant::now();
        loop {
            if self.get("/api/v1/health").await.is_some() {
                return start.elapsed();
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("agent exited with {status}; log:\n{}", self.log_text());
            }
            assert!(start.elapsed() < WAIT, "agent never served HTTP; log:\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls `path` until `check` holds on its JSON, or panics after `timeout` with the last answer.
    async fn wait_json(&self, path: &str, timeout: Duration, check: impl Fn(&Value) -> bool) -> (Value, Duration) {
        let start = Instant::now();
        loop {
            if let Some((_, body)) = self.get(path).await {
                if let Ok(v) = serde_json::from_str::<Value>(&body) {
                    if check(&v) {
                        return (v, start.elapsed());
                    }
                    assert!(start.elapsed() < timeout, "{path} never matched: {v:#}\nlog:\n{}", self.log_text());
                }
            }
            assert!(start.elapsed() < timeout, "{path} never answered; log:\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A counter or gauge from /metrics (0 when absent).
    async fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.get("/metrics").await.expect("GET /metrics");
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .map_or(0.0, |v| v.trim().parse().unwrap_or(0.0))
    }

    /// Sends `signal` and waits (up to `timeout`) for the exit: the status and how long it took.
    fn signal_and_wait(&mut self, signal: Signal, timeout: Duration) -> (Option<std::process::ExitStatus>, Duration) {
        let start = Instant::now();
        kill(self.pid(), signal).expect("signal the agent");
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                self.child = None;
                return (Some(status), start.elapsed());
            }
            if start.elapsed() > timeout {
                return (None, start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A mountinfo file a test rewrites (atomically, by rename) to make the mounts source emit
/// events without touching the machine's mounts: `count` tmpfs entries under /chaos, the set
/// shifting with `round`.
fn write_mountinfo(path: &Path, round: usize, count: usize) {
    let mut text = String::new();
    for j in 0..count {
        if (j + round) % 3 == 0 {
            continue;
        }
        let id = 1000 + j;
        text.push_str(&format!("{id} 1 0:{id} / /chaos/m{j} rw,relatime shared:1 - tmpfs chaos{j} rw,size=1024k\n"));
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write mountinfo");
    std::fs::rename(&tmp, path).expect("replace mountinfo");
}

fn mountinfo_env(path: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("DISKWATCH_MOUNTS__ENABLED", "true".into()),
        ("DISKWATCH_MOUNTS__MOUNTINFO", path.display().to_string()),
        ("DISKWATCH_MOUNTS__REREAD_INTERVAL", "10ms".into()),
        ("DISKWATCH_MOUNTS__USAGE_INTERVAL", "1h".into()),
    ]
}

/// Ids of the events in a JSON history page, checked to rise strictly.
fn rising_ids(page: &Value) -> Vec<u64> {
    let ids: Vec<u64> =
        page["events"].as_array().expect("events").iter().map(|e| e["id"].as_str().unwrap().parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids do not rise: {ids:?}");
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_read_hung_at_sigterm_does_not_keep_the_process_alive() {
    if !require_root("a_blocking_read_hung_at_sigterm_does_not_keep_the_process_alive") {
        return;
    }
    let _lock = machine_lock();
    let dir = tempfile::tempdir().unwrap();
    // smb.conf lives on a "server" that stops answering: the shares reader blocks in the kernel.
    let fuse = BlockingFuse::mount(&dir.path().join("nas"));
    fuse.freeze();
    let smb = fuse.target.join("smb.conf");
    let env = vec![
        ("DISKWATCH_STATE_DIR", dir.path().join("state").display().to_string()),
        ("DISKWATCH_SHARES__ENABLED", "true".into()),
        ("DISKWATCH_SHARES__SAMBA", format!("[\"{}\"]", smb.display())),
        ("DISKWATCH_SHARES__NFS", "[]".into()),
    ];
    let mut agent = AgentProcess::spawn(&[], &env, &dir.path().join("agent.log"));
    agent.wait_serving().await;
    let start = Instant::now();
    while !fuse.request_waiting() {
        assert!(start.elapsed() < WAIT, "the shares reader never reached the FUSE file");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the reader sit in the kernel a moment, as a real hang would.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, took) = agent.signal_and_wait(Signal::SIGTERM, Duration::from_secs(15));
    eprintln!("chaos: SIGTERM with a blocking read hung in FUSE: process gone after {took:?} (drain {DRAIN:?})");
    let status = status.unwrap_or_else(|| panic!("still running {took:?} after SIGTERM; log:\n{}", agent.log_text()));
    assert!(status.success(), "exit status {status}; log:\n{}", agent.log_text());
    assert!(took < DRAIN + Duration::from_secs(1), "gone after {took:?}, beyond the drain time + 1 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_a_write_loop_leaves_a_readable_journal_and_rising_ids() {
    let _lock = machine_lock();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let table = dir.path().join("mountinfo");
    write_mountinfo(&table, 0, 60);
    let mut env = mountinfo_env(&table);
    env.push(("DISKWATCH_STATE_DIR", state.display().to_string()));
    let mut highest = 0u64;
    let mut round = 1;
    for kill_round in 0..6 {
        let mut agent = AgentProcess::spawn(&[], &env, &dir.path().join("agent.log"));
        let ready = agent.wait_serving().await;
        // What the journal gave back: readable, rising, and nothing below what was seen before
        // (events acknowledged by the page cache survive a kill -9).
        // Pages hold at most 10 000 events, oldest first: read from the last id seen before the kill.
        let page = agent.json(&format!("/api/v1/events?after_id={}&limit=10000", highest.saturating_sub(1))).await;
        let ids = rising_ids(&page);
        if highest > 0 {
            assert_eq!(ids.first().copied(), Some(highest), "round {kill_round}: journal lost events up to {highest}");
        }
        let recovered = ids.last().copied().unwrap_or(0).max(highest);
        // Churn, then kill in the middle of it.
        let churn_for = Duration::from_millis(300 + 150 * kill_round as u64);
        let start = Instant::now();
        while start.elapsed() < churn_for {
            write_mountinfo(&table, round, 60);
            round += 1;
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        let page = agent.json(&format!("/api/v1/events?after_id={recovered}&limit=10000")).await;
        let ids = rising_ids(&page);
        let last = *ids.last().expect("events after churn");
        assert!(last > recovered, "round {kill_round}: new ids ({last}) must follow the recovered ones ({recovered})");
        highest = last;
        write_mountinfo(&table, round, 60);
        round += 1;
        let (status, _) = agent.signal_and_wait(Signal::SIGKILL, Duration::from_secs(5));
        assert!(status.is_some(), "SIGKILL did not end the agent");
        let journal = std::fs::read(state.join("events.jsonl")).unwrap_or_default();
        let text = String::from_utf8_lossy(&journal);
        let lines = text.lines().count();
        let bad = text.lines().filter(|l| serde_json::from_str::<Value>(l).is_err()).count();
        eprintln!(
            "chaos: kill -9 round {kill_round}: up in {ready:?}, {recovered} recovered, killed at id ≥ {last}, \
             journal {lines} lines ({bad} unreadable, {} bytes)",
            journal.len()
        );
    }
    // A final start still works and says how many records it had to skip.
    let mut agent = AgentProcess::spawn(&[], &env, &dir.path().join("agent.log"));
    agent.wait_serving().await;
    let page = agent.json(&format!("/api/v1/events?after_id={}&limit=10000", highest.saturating_sub(1))).await;
    assert_eq!(rising_ids(&page).first().copied(), Some(highest));
    let health = agent.json("/api/v1/health").await;
    assert_eq!(health["status"], "ok", "{health:#}");
    let (status, _) = agent.signal_and_wait(Signal::SIGTERM, Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()));
    let skipped: Vec<String> =
        agent.log_text().lines().filter(|l| l.contains("unreadable records")).map(str::to_owned).collect();
    eprintln!("chaos: kill -9: restarts that skipped a torn record: {}", skipped.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_on_state_dir_degrades_health_and_recovers() {
    if !require_root("disk_full_on_state_dir_degrades_health_and_recovers") {
        return;
    }
    let _lock = machine_lock();
    let dir = tempfile::tempdir().unwrap();
    // A 4 MiB ext4 as state_dir.
    let disk = LoopDevice::new(4, &[]);
    common::sh("mkfs.ext4", &["-q", "-F", "-m", "0", &disk.device]);
    let state = dir.path().join("state");
    let _mount = MountGuard::new(&disk.device, &state, Some("ext4"), None);
    let table = dir.path().join("mountinfo");
    write_mountinfo(&table, 0, 60);
    let mut env = mountinfo_env(&table);
    env.push(("DISKWATCH_STATE_DIR", state.display().to_string()));
    let mut agent = AgentProcess::spawn(&[], &env, &dir.path().join("agent.log"));
    agent.wait_serving().await;
    // Fill the filesystem to the last block.
    let filler = state.join("filler");
    {
        use std::io::Write;
        let mut f = File::create(&filler).unwrap();
        let block = vec![0u8; 64 << 10];
        loop {
            if f.write_all(&block).is_err() {
                break;
            }
        }
        let small = [0u8; 512];
        while f.write_all(&small).is_ok() {}
        let _ = f.sync_all();
    }
    let mut round = 1;
    let full_at = Instant::now();
    let degraded = loop {
        write_mountinfo(&table, round, 60);
        round += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let health = agent.json("/api/v1/health").await;
        if health["status"] == "degraded" {
            break health;
        }
        assert!(full_at.elapsed() < WAIT, "health never degraded with a full state_dir: {health:#}");
    };
    let detected = full_at.elapsed();
    let conditions = degraded["degraded"].as_array().unwrap();
    assert!(conditions.iter().any(|c| c["condition"] == "journal_write"), "{degraded:#}");
    let message = conditions[0]["message"].as_str().unwrap_or_default().to_owned();
    // The agent goes on: events keep coming live while the disk is full.
    let before = agent.json("/api/v1/health").await["last_event_id"].as_u64().unwrap();
    for _ in 0..20 {
        write_mountinfo(&table, round, 60);
        round += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (after, _) =
        agent.wait_json("/api/v1/health", WAIT, |h| h["last_event_id"].as_u64().unwrap_or(0) > before).await;
    let errors = agent.metric("diskwatch_journal_errors_total").await;
    assert!(errors > 0.0, "journal write failures counted");
    assert_eq!(agent.metric("diskwatch_degraded{condition=\"journal_write\"}").await, 1.0);
    // Space frees: the next write succeeds and health turns ok.
    std::fs::remove_file(&filler).unwrap();
    let freed_at = Instant::now();
    let recovered = loop {
        write_mountinfo(&table, round, 60);
        round += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let health = agent.json("/api/v1/health").await;
        if health["status"] == "ok" {
            break freed_at.elapsed();
        }
        assert!(freed_at.elapsed() < WAIT, "health never recovered after space freed: {health:#}");
    };
    assert_eq!(agent.metric("diskwatch_degraded{condition=\"journal_write\"}").await, 0.0);
    let (status, _) = agent.signal_and_wait(Signal::SIGTERM, Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "log:\n{}", agent.log_text());
    // The journal written around the outage still loads.
    let mut again = AgentProcess::spawn(&[], &env, &dir.path().join("agent2.log"));
    again.wait_serving().await;
    let page = again.json("/api/v1/events?limit=100000").await;
    let ids = rising_ids(&page);
    eprintln!(
        "chaos: disk full: degraded after {detected:?} ({message:?}); {} events live while full \
         (last_event_id {before} → {}); {errors} failed journal writes; ok again {recovered:?} after space freed; \
         restart loads {} events",
        after["last_event_id"].as_u64().unwrap() - before,
        after["last_event_id"],
        ids.len()
    );
}

/// The retained state and availability topics equal the snapshot: every object's state as the
/// snapshot has it and `online`, and nothing else (removed objects are cleared after the retention).
async fn retained_equals_snapshot(broker: &Mosquitto, agent: &TestAgent) -> Result<(), String> {
    let snap = agent.running.as_ref().unwrap().agent.snapshot();
    let mut want = BTreeMap::new();
    for m in &snap.mounts {
        want.insert(format!("diskwatch/test/mount/{}/state", m.id), serde_json::to_value(m).unwrap());
        want.insert(format!("diskwatch/test/mount/{}/availability", m.id), Value::from("online"));
    }
    let got: BTreeMap<String, Value> =
        mosquitto::retained(broker.port, &["diskwatch/test/+/+/state", "diskwatch/test/+/+/availability"])
            .await
            .into_iter()
            .map(|(t, p)| (t.clone(), serde_json::from_str(&p).unwrap_or(Value::from(p))))
            .collect();
    if got == want {
        Ok(())
    } else {
        let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
        let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
        let differ = want.iter().filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v)).count();
        Err(format!("missing {missing:?}, extra {extra:?}, {differ} differ"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_broker_ends_with_retained_states_equal_to_the_snapshot() {
    let _lock = machine_lock();
    let mut broker = Mosquitto::start();
    let url = broker.url();
    let agent = TestAgent::start(
        |c| {
            c.mqtt.enabled = true;
            c.mqtt.url = url;
            // Removed mounts' topics are cleared soon, so the end state can be compared exactly.
            c.mqtt.remove_after_fixed = Duration::from_secs(2);
            c.mqtt.remove_after_removable = Duration::from_secs(2);
        },
        vec![],
    )
    .await;
    let sink_status = |agent: &TestAgent| {
        agent.running.as_ref().unwrap().agent.sink_statuses().into_iter().find(|s| s.name == "mqtt").unwrap().status
    };
    // Mounts come and go the whole time, so states change during every outage.
    let facts = agent.facts.clone();
    let churn = tokio::spawn(async move {
        for i in 0..u64::MAX {
            let mounts: Vec<_> = (0..20u64)
                .filter(|j| (j + i) % 4 != 0)
                .map(|j| mosquitto::mount(&format!("/srv/m{j}"), "tmpfs", &format!("0:{}", 200 + j), (i % 100) as f64))
                .collect();
            if facts.send(Fact::Mounts { mounts, initial: false }).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    });
    let mut flaps = 0;
    for i in 0..10u64 {
        tokio::time::sleep(Duration::from_millis(200 + 97 * (i % 5))).await;
        broker.kill();
        tokio::time::sleep(Duration::from_millis(150 + 61 * (i % 7))).await;
        broker.restart();
        flaps += 1;
    }
    churn.abort();
    let _ = churn.await;
    let settled_from = Instant::now();
    let mut last = Err(String::new());
    while settled_from.elapsed() < Duration::from_secs(60) {
        if sink_status(&agent) == SinkState::Connected {
            last = retained_equals_snapshot(&broker, &agent).await;
            if last.is_ok() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = settled_from.elapsed();
    let mounts = agent.running.as_ref().unwrap().agent.snapshot().mounts.len();
    eprintln!("chaos: broker flapping: {flaps} kill/restart cycles; consistent {took:?} after the last restart ({mounts} mounts): {last:?}");
    last.expect("retained states equal the snapshot after the broker flapped");
    assert_eq!(sink_status(&agent), SinkState::Connected);
    agent.stop().await;
}

/// Enters the mount namespace of `pid` on a thread of its own and runs `f` there.
fn in_mount_namespace<T: Send + 'static>(pid: Pid, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = File::open(format!("/proc/{pid}/ns/mnt")).expect("open the agent's mount namespace");
    std::thread::spawn(move || {
        // setns(CLONE_NEWNS) needs a thread that shares no filesystem context with others.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).expect("unshare CLONE_FS");
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNS).expect("setns into the agent's namespace");
        f()
    })
    .join()
    .expect("namespace thread")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_mounts_appearing_at_once() {
    if !require_root("ten_thousand_mounts_appearing_at_once") {
        return;
    }
    let _lock = machine_lock();
    const N: usize = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("flood");
    std::fs::create_dir(&base).unwrap();
    let env = vec![
        ("DISKWATCH_STATE_DIR", dir.path().join("state").display().to_string()),
        ("DISKWATCH_MOUNTS__ENABLED", "true".into()),
        // The flood is in the agent's own namespace, not PID 1's (the default table).
        ("DISKWATCH_MOUNTS__MOUNTINFO", "/proc/self/mountinfo".into()),
        ("DISKWATCH_EVENTS__RING_SIZE", "50000".into()),
    ];
    // The agent in a private mount namespace of its own: the flood never reaches the machine's
    // table, and it all goes when the agent does.
    let mut agent =
        AgentProcess::spawn(&["unshare", "--mount", "--propagation", "private"], &env, &dir.path().join("agent.log"));
    agent.wait_serving().await;
    let (mounts, _) = agent.wait_json("/api/v1/mounts", WAIT, |m| m.as_array().is_some_and(|a| !a.is_empty())).await;
    let baseline = mounts.as_array().unwrap().len();
    let mounted_before = agent.metric("diskwatch_events_total{type=\"mount.mounted\"}").await;
    let rss_before = agent.metric("diskwatch_resident_memory_bytes").await;
    let usage_before = agent.metric("diskwatch_events_total{type=\"mount.usage\"}").await;
    let target = base.clone();
    let made = in_mount_namespace(agent.pid(), move || {
        use nix::mount::{mount, MsFlags};
        mount(Some("chaos"), &target, Some("tmpfs"), MsFlags::empty(), Some("size=64m")).expect("tmpfs");
        let src = target.join("src");
        std::fs::create_dir(&src).unwrap();
        for i in 0..N {
            std::fs::create_dir(target.join(format!("m{i}"))).unwrap();
        }
        let start = Instant::now();
        for i in 0..N {
            mount(Some(&src), &target.join(format!("m{i}")), None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .expect("bind mount");
        }
        start.elapsed()
    });
    let flood_at = Instant::now();
    let want = mounted_before + (N + 1) as f64;
    loop {
        if agent.metric("diskwatch_events_total{type=\"mount.mounted\"}").await >= want {
            break;
        }
        assert!(flood_at.elapsed() < Duration::from_secs(120), "the flood never fully arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen_after = flood_at.elapsed();
    let (mounts, _) =
        agent.wait_json("/api/v1/mounts", WAIT, |m| m.as_array().is_some_and(|a| a.len() == baseline + N + 1)).await;
    let sampled = mounts.as_array().unwrap().iter().filter(|m| !m["usage"].is_null()).count();
    // Every new mount's first usage sample is announced (`mount.usage`); counting those is light,
    // where polling 10 000 mounts as JSON would itself slow the agent down.
    let usage_want = usage_before + (N + 1) as f64;
    loop {
        if agent.metric("diskwatch_events_total{type=\"mount.usage\"}").await >= usage_want {
            break;
        }
        assert!(flood_at.elapsed() < Duration::from_secs(180), "not every mount got its usage");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_sampled = flood_at.elapsed();
    let (mounts, _) = agent
        .wait_json("/api/v1/mounts", WAIT, |m| m.as_array().is_some_and(|a| a.iter().all(|m| !m["usage"].is_null())))
        .await;
    assert_eq!(mounts.as_array().unwrap().len(), baseline + N + 1);
    let health = agent.json("/api/v1/health").await;
    let rss_after = agent.metric("diskwatch_resident_memory_bytes").await;
    assert_eq!(health["status"], "ok", "{health:#}");
    // And all at once away again.
    let target = base.clone();
    in_mount_namespace(agent.pid(), move || {
        nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH).expect("detach the flood");
    });
    let (_, gone_after) = agent
        .wait_json("/api/v1/mounts", Duration::from_secs(120), |m| m.as_array().is_some_and(|a| a.len() == baseline))
        .await;
    let (status, _) = agent.signal_and_wait(Signal::SIGTERM, Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "log:\n{}", agent.log_text());
    eprintln!(
        "chaos: {N} bind mounts (+1 tmpfs) made in {made:?}; all {} mount.mounted events published {seen_after:?} \
         after the last mount ({sampled} with usage then, all {all_sampled:?} after the last mount); RSS {:.1} → {:.1} MiB; \
         all gone {gone_after:?} after the detach",
        N + 1,
        rss_before / 1048576.0,
        rss_after / 1048576.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_that_hang_past_the_pool_cap_degrade_and_recover() {
    if !require_root("probes_that_hang_past_the_pool_cap_degrade_and_recover") {
        return;
    }
    let _lock = machine_lock();
    const HUNG: usize = 34;
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        ("DISKWATCH_STATE_DIR", dir.path().join("state").display().to_string()),
        ("DISKWATCH_MOUNTS__ENABLED", "true".into()),
        ("DISKWATCH_MOUNTS__USAGE_TIMEOUT", "1s".into()),
        ("DISKWATCH_MOUNTS__USAGE_INTERVAL", "2s".into()),
    ];
    let mut agent = AgentProcess::spawn(&[], &env, &dir.path().join("agent.log"));
    agent.wait_serving().await;
    let mut fuses = Vec::new();
    for i in 0..HUNG {
        let fuse = BlockingFuse::mount(&dir.path().join(format!("nas{i}")));
        fuse.hang();
        fuses.push(fuse);
    }
    let stale_ids = |mounts: &Value| -> usize {
        mounts.as_array().unwrap().iter().filter(|m| m["fs_type"] == "fuse.diskwatchtest" && m["stale"] == true).count()
    };
    let (_, all_stale) = agent.wait_json("/api/v1/mounts", WAIT, |m| stale_ids(m) == HUNG).await;
    let (health, _) = agent.wait_json("/api/v1/health", WAIT, |h| h["status"] == "degraded").await;
    assert!(
        health["degraded"].as_array().unwrap().iter().any(|c| c["condition"] == "usage_pool_saturated"),
        "{health:#}"
    );
    let threads = agent.metric("diskwatch_usage_threads").await;
    assert!(threads <= 32.0, "the pool stays within its cap: {threads}");
    // A healthy filesystem mounted now can only queue: it is shown stale, not silently frozen.
    let late = dir.path().join("late");
    let mut late_mount = MountGuard::new("chaos-late", &late, Some("tmpfs"), Some("size=1m"));
    let late_point = late.display().to_string();
    let (_, late_stale) = agent
        .wait_json("/api/v1/mounts", WAIT, |m| {
            m.as_array().unwrap().iter().any(|m| m["mount_point"] == late_point.as_str() && m["stale"] == true)
        })
        .await;
    let expired = agent.metric("diskwatch_usage_queue_expired_total").await;
    assert!(expired >= 1.0, "queued queries that passed their deadline are counted");
    let hung_threads = agent.metric("diskwatch_usage_threads_hung").await;
    // The server answers again: everything recovers.
    for fuse in &fuses {
        fuse.release();
    }
    let (_, recovered) = agent
        .wait_json("/api/v1/mounts", WAIT, |m| {
            m.as_array().unwrap().iter().all(|m| m["stale"] == false)
                && m.as_array()
                    .unwrap()
                    .iter()
                    .any(|m| m["mount_point"] == late_point.as_str() && !m["usage"].is_null())
        })
        .await;
    let (_, healthy_after) = agent.wait_json("/api/v1/health", WAIT, |h| h["status"] == "ok").await;
    let (status, took) = agent.signal_and_wait(Signal::SIGTERM, Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "log:\n{}", agent.log_text());
    late_mount.unmount();
    drop(fuses);
    eprintln!(
        "chaos: {HUNG} hung statfs (usage_timeout 1s): all stale {all_stale:?} after the last was mounted, \
         {threads} threads ({hung_threads} hung, cap 32), a new healthy mount stale {late_stale:?} after it appeared \
         ({expired} queued queries expired); after release all fresh in {recovered:?}, health ok {healthy_after:?} later; \
         SIGTERM exit {took:?}"
    );
}
