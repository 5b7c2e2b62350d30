//! Scheduled SMART self-tests end to end (issue 23): the real agent with the health and
//! self-test sources, smartctl replaced by tests/fixtures/smartctl/selftest-recorder.sh, which
//! logs every invocation and replays real `smartctl --json` outputs per device. Four disks are
//! fed as facts (sda..sdd; sdb and sdc one md array, sdd in standby): the scheduler tests the
//! awake ones, never sdb and sdc together, never sends sdd anything but the power check, and
//! what it sees arrives as events, in the REST state and as attention.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::facts::whole_disk;
use common::ha::{ha_python, run_validator};
use common::mosquitto::{self, Mosquitto, Recorder as MqttRecorder};
use common::TestAgent;
use diskwatch::model::array::{Array, ArrayKind, ArrayMember, MemberRole};
use diskwatch::model::ActionKind;
use diskwatch::secret::Secret;
use diskwatch::state::Fact;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);
const TOKEN: &str = "self-test-token";

struct Recorder {
    dir: tempfile::TempDir,
}

impl Recorder {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smartctl");
        std::fs::copy(fixtures.join("selftest-recorder.sh"), dir.path().join("smartctl")).unwrap();
        std::fs::write(dir.path().join("fixtures"), fixtures.to_str().unwrap()).unwrap();
        Recorder { dir }
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("smartctl")
    }

    fn set(&self, disk: &str, what: &str, fixture: &str) {
        std::fs::write(self.dir.path().join(format!("{disk}.{what}")), fixture).unwrap();
    }

    fn calls(&self, disk: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("argv.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.ends_with(&format!("/dev/{disk}")))
            .map(str::to_owned)
            .collect()
    }
}

async fn events(agent: &TestAgent) -> Vec<Value> {
    let page = agent.get_json("/api/v1/events?types=disk.self_test_*,action.*&limit=1000").await;
    page["events"].as_array().cloned().unwrap_or_default()
}

async fn wait_events(agent: &TestAgent, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let e = events(agent).await;
        if check(&e) {
            return e;
        }
        assert!(tokio::time::Instant::now() < deadline, "events never matched: {e:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn of<'a>(events: &'a [Value], kind: &str, disk: &str) -> Option<&'a Value> {
    events.iter().find(|e| e["type"] == kind && e["subject"] == format!("disk/{disk}"))
}

fn seq(e: &Value) -> u64 {
    e["id"].as_str().unwrap().parse().unwrap()
}

async fn post(agent: &TestAgent, disk: &str, body: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(agent.url(&format!("/api/v1/disks/{disk}/self_test")))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn scheduled_and_requested_tests_keep_sleep_and_arrays() {
    let rec = Recorder::new();
    // Every disk answers as a Samsung 860 EVO whose last short test was 134 power-on hours ago.
    for d in ["sda", "sdb", "sdc", "sdd"] {
        rec.set(d, "health", "sata-ssd-samsung-860evo.json");
        rec.set(d, "log", "sata-ssd-samsung-860evo.json");
        // Asleep until the array is known, so no plan is made without it.
        rec.set(d, "asleep", "");
    }
    // Once started: sda runs (WD140EDFZ, "in progress, 10% remaining"); sdb's test fails with a
    // read failure (JMicron/Hitachi, LBA 494591083); sdc's passes (a MegaRAID member's log).
    rec.set("sda", "after-start", "ata-hdd-wd140edfz.json");
    rec.set("sdb", "after-start", "corpus/smart-prom-next--usbjmicron_a_when_failed_now.json");
    rec.set("sdc", "after-start", "corpus/scrutiny--smart-megaraid0.json");
    let sysfs = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let token_file = work.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let bin = rec.bin();
    let sys = sysfs.path().to_owned();
    let broker = Mosquitto::start();
    let (port, url) = (broker.port, broker.url());
    let agent = TestAgent::start(
        move |c| {
            c.health.enabled = true;
            c.health.smartctl = bin;
            c.health.interval = Duration::from_millis(300);
            c.health.sysfs = sys;
            c.health.self_test.short = Duration::from_secs(24 * 3600);
            c.health.self_test.long = Duration::ZERO;
            c.health.self_test.max_parallel = 3;
            c.health.self_test.poll = Duration::from_millis(200);
            c.actions.enabled = true;
            c.actions.allow = vec![ActionKind::SelfTest];
            c.http.auth_token_file = token_file;
            c.http.auth_token = Some(Secret::new(TOKEN));
            // Reads without the token from here; actions need it always.
            c.http.anonymous_from = vec!["127.0.0.1/32".into()];
            c.mqtt.enabled = true;
            c.mqtt.url = url;
        },
        Vec::new(),
    )
    .await;
    for (i, name) in ["sda", "sdb", "sdc", "sdd"].into_iter().enumerate() {
        agent.facts.send(Fact::DiskUpsert(whole_disk(name, name, &format!("8:{}", i * 16)))).await.unwrap();
    }
    let mut md = Array::new(ArrayKind::Md, "md0", Some("u-md0".into()));
    md.members = vec![
        ArrayMember::new(Some("sdb".into()), MemberRole::Active, Some(0)),
        ArrayMember::new(Some("sdc".into()), MemberRole::Active, Some(1)),
    ];
    agent.facts.send(Fact::Arrays { arrays: vec![md], initial: false }).await.unwrap();
    agent.wait_snapshot(WAIT, |s| s["disks"][1]["arrays"].as_array().is_some_and(|a| !a.is_empty())).await;
    for d in ["sda", "sdb", "sdc"] {
        std::fs::remove_file(rec.dir.path().join(format!("{d}.asleep"))).unwrap();
    }

    // The scheduler: sda and one member of the array at once; the other member only after the
    // first one's test has ended, though max_parallel is 3.
    let both = |e: &[Value]| ["sdb", "sdc"].iter().all(|d| of(e, "disk.self_test_finished", d).is_some());
    let e = wait_events(&agent, both).await;
    let (first, second) = {
        let (b, c) =
            (of(&e, "disk.self_test_started", "sdb").unwrap(), of(&e, "disk.self_test_started", "sdc").unwrap());
        if seq(b) < seq(c) {
            ("sdb", "sdc")
        } else {
            ("sdc", "sdb")
        }
    };
    let first_done = of(&e, "disk.self_test_finished", first).unwrap();
    let second_started = of(&e, "disk.self_test_started", second).unwrap();
    assert!(seq(first_done) < seq(second_started), "{first} and {second} tested at once: {e:#?}");
    let started_b = of(&e, "disk.self_test_started", "sdb").unwrap();
    assert_eq!(started_b["data"]["kind"], "short");
    assert_eq!(started_b["data"]["by"], "schedule");
    let finished_b = of(&e, "disk.self_test_finished", "sdb").unwrap();
    assert_eq!(
        finished_b["data"]["last"],
        json!({"kind": "short", "result": "failed", "at_hours": 16402, "lba_first_error": 494591083})
    );
    assert!(of(&e, "disk.self_test_started", "sda").is_some());
    assert!(of(&e, "disk.self_test_started", "sdd").is_none());

    // The state: sda runs with the drive's progress; sdb failed, and its attention says so.
    let snap = agent
        .wait_snapshot(WAIT, |s| {
            s["disks"][0]["self_test"]["running"]["percent_remaining"] == 10
                && s["disks"][2]["self_test"]["last"]["result"] == "passed"
        })
        .await;
    assert_eq!(snap["disks"][0]["self_test"]["running"]["kind"], "short");
    let b = &snap["disks"][1];
    assert_eq!(b["attention"]["level"], "failing");
    let reason = b["attention"]["reasons"].as_array().unwrap().iter().find(|r| r["code"] == "last_self_test_failed");
    assert!(reason.unwrap()["text"].as_str().unwrap().contains("LBA 494591083"), "{b:#}");
    assert!(b["self_test"]["next_due"].is_string());
    // sdd was never read: nothing known but that a test is due (it waits for the disk to wake).
    let d = &snap["disks"][3]["self_test"];
    assert!(d["last"].is_null() && d["running"].is_null() && d["next_due"].is_string(), "{d:#}");

    // Requests: sdd sleeps (refused, not woken), sda is testing already, a bad body is 400.
    let (status, _) = post(&agent, "sdd", r#"{"kind": "long"}"#).await;
    assert_eq!(status, 202);
    let (status, _) = post(&agent, "sda", r#"{"kind": "short"}"#).await;
    assert_eq!(status, 202);
    let (status, body) = post(&agent, "sda", r#"{"kind": "weekly"}"#).await;
    assert_eq!(status, 400, "{body}");
    let e = wait_events(&agent, |e| e.iter().filter(|e| e["type"] == "action.failed").count() == 2).await;
    let reasons: Vec<(&str, &str)> = e
        .iter()
        .filter(|e| e["type"] == "action.failed")
        .map(|e| (e["subject"].as_str().unwrap(), e["data"]["action"]["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(reasons, [("disk/sdd", "asleep"), ("disk/sda", "busy")]);

    // Never woken: every run for sdd carried the power check, and none started a test.
    let d = rec.calls("sdd");
    assert!(!d.is_empty());
    assert!(d.iter().all(|c| c.contains("-n standby") && !c.starts_with("WOKE")), "{d:#?}");
    assert!(d.iter().any(|c| c.contains("-t long")), "the request reached the drive with -n standby: {d:#?}");
    for disk in ["sda", "sdb", "sdc"] {
        let starts: Vec<String> = rec.calls(disk).into_iter().filter(|c| c.contains(" -t ")).collect();
        assert!(starts.iter().all(|c| c.contains("-n standby,2,3")), "{starts:?}");
    }
    // MQTT: the retained state carries the same record; Home Assistant gets the last result,
    // the progress and the button, and its schemas accept them.
    let topic = "homeassistant/device/diskwatch_test_disk_sda/config";
    let mqtt = MqttRecorder::start(port, "t-self-test", &["diskwatch/test/#", "homeassistant/#"]).await;
    mqtt.wait_for(WAIT, "self-test entities", |m| {
        m.iter().any(|r| r.topic == topic && r.payload.contains("self_test_progress"))
    })
    .await;
    let held = mosquitto::retained(port, &["diskwatch/test/#", "homeassistant/#"]).await;
    let rest = agent.get_json("/api/v1/disks/sdb").await;
    let state: Value = serde_json::from_str(&held["diskwatch/test/disk/sdb/state"]).unwrap();
    assert_eq!(state["self_test"], rest["self_test"]);
    let config: Value = serde_json::from_str(&held[topic]).unwrap();
    let cmps = &config["cmps"];
    assert_eq!(cmps["last_self_test"]["device_class"], "enum");
    assert_eq!(cmps["self_test_progress"]["unit_of_measurement"], "%");
    assert_eq!(cmps["self_test"]["command_topic"], "diskwatch/test/disk/sda/self_test/set");
    if let Some(python) = ha_python() {
        let configs = held.into_iter().filter(|(t, _)| t.starts_with("homeassistant/")).collect();
        run_validator(&python, &configs, agent.state_dir.path());
    }

    // The button goes through the action path: a short test on sdc, by "mqtt".
    rec.set("sdc", "after-start", "ata-hdd-wd140edfz.json");
    mqtt.client
        .publish("diskwatch/test/disk/sdc/self_test/set", rumqttc::QoS::AtLeastOnce, false, "PRESS")
        .await
        .unwrap();
    let e = wait_events(&agent, |e| {
        e.iter()
            .any(|e| e["type"] == "disk.self_test_started" && e["subject"] == "disk/sdc" && e["data"]["by"] == "mqtt")
    })
    .await;
    let ok = e.iter().find(|e| e["type"] == "action.succeeded").expect("the press succeeded");
    assert_eq!(
        (ok["subject"].as_str(), ok["data"]["action"]["action"].as_str()),
        (Some("disk/sdc"), Some("self_test"))
    );
    assert_eq!(ok["data"]["action"]["requested_by"], "mqtt");

    // The clocks are kept: sdb's failed test counts as done.
    let kept: Value =
        serde_json::from_slice(&std::fs::read(agent.state_dir.path().join("selftest.json")).unwrap()).unwrap();
    assert!(kept["sdb"]["short"].is_u64(), "{kept}");
    agent.stop().await;
}
