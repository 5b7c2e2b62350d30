//! The attention rules over a corpus of real `smartctl --json` outputs
//! (tests/fixtures/smartctl/corpus, sources in its SOURCES.md): no false alarm on a healthy
//! drive, no miss on a damaged one, and every smartctl version's layout parses.
//!
//! The ground truth is read from the JSON here, independently of the parser: the raw values
//! of ATA 5/187/188/197/198, `smart_status.passed`, NVMe `critical_warning` and `media_errors`,
//! SCSI grown defects, pending defects and uncorrected errors.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use diskwatch::attention::disk::{Baselines, Limits};
use diskwatch::attention::{assess, Acks};
use diskwatch::model::attention::Level;
use diskwatch::smartctl::{interpret, Answer};
use serde_json::Value;

const LIMITS: Limits = Limits { temperature_critical: 60.0 };

/// What the JSON says, read directly.
#[derive(Debug, Default)]
struct Truth {
    failed: bool,
    backblaze_nonzero: bool,
    critical_warning: bool,
    /// SMART failed, pending or uncorrectable sectors, NVMe media errors, a critical warning.
    damaged: bool,
}

fn raw(json: &Value, id: u64) -> u64 {
    json.pointer("/ata_smart_attributes/table")
        .and_then(Value::as_array)
        .and_then(|t| t.iter().find(|a| a["id"].as_u64() == Some(id)))
        .and_then(|a| a.pointer("/raw/value").and_then(Value::as_u64))
        .unwrap_or(0)
}

fn truth(json: &Value) -> Truth {
    let n = |p: &str| json.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let failed = json.pointer("/smart_status/passed").and_then(Value::as_bool) == Some(false);
    let backblaze_nonzero = [5, 187, 188, 197, 198].iter().any(|id| raw(json, *id) > 0);
    let critical_warning = n("/nvme_smart_health_information_log/critical_warning") > 0;
    let scsi_uncorrected: u64 = ["read", "write", "verify"]
        .iter()
        .map(|k| n(&format!("/scsi_error_counter_log/{k}/total_uncorrected_errors")))
        .sum();
    let damaged = failed
        || critical_warning
        || raw(json, 197) > 0
        || raw(json, 198) > 0
        || raw(json, 187) > 0
        || n("/nvme_smart_health_information_log/media_errors") > 0
        || n("/scsi_pending_defects/count") > 0
        || scsi_uncorrected > 0;
    Truth { failed, backblaze_nonzero, critical_warning, damaged }
}

struct Row {
    file: String,
    version: String,
    level: Option<Level>,
    codes: Vec<String>,
    truth: Truth,
}

fn corpus() -> Vec<Row> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smartctl/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let json: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let status = json.pointer("/smartctl/exit_status").and_then(Value::as_i64).unwrap_or(0) as i32;
            let version = json
                .pointer("/smartctl/version")
                .and_then(Value::as_array)
                .map(|v| format!("{}.{}", v[0], v[1]))
                .unwrap_or_else(|| "?".into());
            let (level, codes) = match interpret(status, &text) {
                Answer::Reading(r) => {
                    let h = r.into_health("t".into());
                    // A first reading: its own counts are the baselines of the rising rules.
                    let found = diskwatch::attention::disk::reasons(&h, Baselines::of(&h), LIMITS);
                    let a = assess(found, None, &Acks::new(), None, "t");
                    (Some(a.level), a.reasons.iter().map(|r| r.code.clone()).collect())
                }
                _ => (None, vec![]),
            };
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            Row { file, version, level, codes, truth: truth(&json) }
        })
        .collect()
}

/// 0 failing where nothing calls for it; every damaged drive not ok; prints the table that
/// docs/health.md quotes (`cargo test --test attention -- --nocapture`).
#[test]
fn corpus_no_false_failing_and_no_missed_damage() {
    let rows = corpus();
    assert!(rows.len() >= 150, "corpus has {} outputs", rows.len());
    let mut false_failing = Vec::new();
    let mut missed = Vec::new();
    for r in &rows {
        let t = &r.truth;
        if !t.backblaze_nonzero && !t.failed && !t.critical_warning && r.level == Some(Level::Failing) {
            false_failing.push(format!("{} {:?}", r.file, r.codes));
        }
        if t.damaged && r.level.is_none_or(|l| l == Level::Ok) {
            missed.push(format!("{} {:?}", r.file, r.level));
        }
    }
    let mut levels: BTreeMap<String, usize> = BTreeMap::new();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for r in &rows {
        *levels.entry(r.level.map_or("no SMART reading".into(), |l| l.as_str().to_owned())).or_default() += 1;
        for c in &r.codes {
            *reasons.entry(c.clone()).or_default() += 1;
        }
    }
    let damaged = rows.iter().filter(|r| r.truth.damaged).count();
    println!(
        "corpus: {} outputs, {damaged} with damage (failed, pending/uncorrectable, media errors, critical warning)",
        rows.len()
    );
    println!("| level | outputs |\n|---|---|");
    for (l, n) in &levels {
        println!("| {l} | {n} |");
    }
    println!("| reason | outputs |\n|---|---|");
    for (c, n) in &reasons {
        println!("| `{c}` | {n} |");
    }
    for r in rows.iter().filter(|r| r.level.is_some_and(|l| l != Level::Ok)) {
        println!("{:<60} {:<8} {:?}", r.file, r.level.map_or("-", |l| l.as_str()), r.codes);
    }
    println!("false failing: {}; missed: {}", false_failing.len(), missed.len());
    assert!(false_failing.is_empty(), "failing without cause: {false_failing:#?}");
    assert!(missed.is_empty(), "damage not flagged: {missed:#?}");
}

/// Outputs that carry no SMART data at all: a RAID controller's virtual disk (smartctl exit
/// status 4, only the SCSI inquiry).
const NO_READING: &[&str] = &["scrutiny--smart-raid.json"];

/// Real outputs of smartctl 7.0 to 7.4 (their JSON layouts differ) each give a reading.
#[test]
fn every_smartctl_version_in_the_corpus_parses() {
    let rows = corpus();
    let mut by_version: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for r in &rows {
        let e = by_version.entry(r.version.clone()).or_default();
        e.0 += 1;
        e.1 += usize::from(r.level.is_some());
    }
    println!("{by_version:?}");
    for v in ["7.0", "7.1", "7.2", "7.3", "7.4"] {
        let (n, read) = by_version.get(v).copied().unwrap_or_default();
        assert!(n > 0, "no output of smartctl {v} in the corpus");
        assert!(read > 0, "smartctl {v}: no output gives a reading");
    }
    let unread: Vec<&str> = rows.iter().filter(|r| r.level.is_none()).map(|r| r.file.as_str()).collect();
    assert_eq!(unread, NO_READING, "outputs without a reading");
}

const TOKEN: &str = "s3cret-attention-token";

async fn get(agent: &common::TestAgent, path: &str) -> Value {
    reqwest::Client::new().get(agent.url(path)).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap()
}

async fn wait_disk(agent: &common::TestAgent, id: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let d = get(agent, &format!("/api/v1/disks/{id}")).await;
        if check(&d) {
            return d;
        }
        assert!(tokio::time::Instant::now() < deadline, "disk never matched: {d:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A real reading fed to a running agent.
fn fact(id: &str, fixture: &str, at: &str) -> diskwatch::state::Fact {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smartctl").join(fixture);
    let text = std::fs::read_to_string(path).unwrap();
    let Answer::Reading(r) = interpret(0, &text) else { panic!("{fixture} does not parse") };
    diskwatch::state::Fact::DiskHealth {
        id: id.into(),
        power_state: diskwatch::model::PowerState::Active,
        health: Some(r.into_health(at.into())),
        note: None,
    }
}

/// The owner's path end to end: a drive with one reallocated sector is `watch` with one
/// `disk.attention_changed`; `POST /acknowledge` (token needed) quiets it; the same value again
/// stays quiet, also after a restart (kept in state_dir); a new value is news again.
#[tokio::test]
async fn acknowledge_holds_until_the_value_changes_and_survives_a_restart() {
    let state_dir = tempfile::tempdir().unwrap();
    let dir = state_dir.path().to_path_buf();
    let token_file = dir.join("api-token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let start = |dir: std::path::PathBuf| {
        let token_file = token_file.clone();
        common::TestAgent::start(
            move |c| {
                c.state_dir = dir;
                c.http.auth_token_file = token_file;
                c.http.auth_token = Some(diskwatch::config::Secret::new(TOKEN));
            },
            vec![],
        )
    };
    let id = "wwn-0x5000c500a1";
    let agent = start(dir.clone()).await;
    let disk = common::mosquitto::disk(id, "sdq", "65:0", 1 << 40);
    let block =
        || diskwatch::state::Fact::BlockDevices { disks: vec![disk.clone()], partitions: vec![], initial: false };
    agent.facts.send(block()).await.unwrap();
    agent.facts.send(fact(id, "ata-hdd-st3500418as-realloc-1.json", "t1")).await.unwrap();
    let d = wait_disk(&agent, id, |d| !d["attention"].is_null()).await;
    assert_eq!(d["attention"]["level"], "watch", "{d:#}");
    assert_eq!(d["attention"]["reasons"][0]["code"], "reallocated_sectors");
    let url = agent.url(&format!("/api/v1/disks/{id}/acknowledge"));
    let client = reqwest::Client::new();
    assert_eq!(client.post(&url).send().await.unwrap().status(), 401, "the token is needed");
    let missing = client.post(agent.url("/api/v1/disks/nope/acknowledge")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let answer: Value = client.post(&url).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["acknowledged"][0], "reallocated_sectors", "{answer}");
    let d = wait_disk(&agent, id, |d| d["attention"]["level"] == "ok").await;
    assert_eq!(d["attention"]["reasons"][0]["acknowledged"], true);
    agent.facts.send(fact(id, "ata-hdd-st3500418as-realloc-1.json", "t2")).await.unwrap();
    wait_disk(&agent, id, |d| d["attention"]["assessed_at"] == "t2").await;
    let events = get(&agent, "/api/v1/events?types=disk.attention_changed").await;
    let levels: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["disk"]["attention"]["level"].as_str().unwrap())
        .collect();
    assert_eq!(levels, ["watch", "ok"], "one event per change");
    agent.stop().await;
    assert!(dir.join(diskwatch::attention::store::FILE).exists());

    // Restart: the acknowledgement holds for the same value, and a new value is news.
    let again = start(dir.clone()).await;
    again.facts.send(block()).await.unwrap();
    again.facts.send(fact(id, "ata-hdd-st3500418as-realloc-1.json", "t3")).await.unwrap();
    let d = wait_disk(&again, id, |d| !d["attention"].is_null()).await;
    assert_eq!(d["attention"]["level"], "ok", "acknowledged before the restart: {d:#}");
    again.facts.send(fact(id, "ata-hdd-st3500418as-realloc-304.json", "t4")).await.unwrap();
    let d = wait_disk(&again, id, |d| d["attention"]["assessed_at"] == "t4").await;
    assert_eq!(d["attention"]["level"], "watch");
    assert_eq!(d["attention"]["reasons"][0]["value"], 304);
    assert_eq!(d["attention"]["reasons"][0]["acknowledged"], false);
    again.stop().await;
}

/// Home Assistant: the SMART problem sensor follows attention (on for watch, although the drive
/// says PASSED), the attention sensor carries the reasons, and the acknowledge button quiets
/// them; the entities pass Home Assistant's schemas.
#[tokio::test]
async fn home_assistant_attention_entities_and_the_acknowledge_button() {
    use common::mosquitto::{self, Mosquitto, Recorder};
    let broker = Mosquitto::start();
    let url = broker.url();
    let agent = common::TestAgent::start(
        |c| {
            c.mqtt.enabled = true;
            c.mqtt.url = url;
        },
        vec![],
    )
    .await;
    let id = "wwn-0x5000c500a2";
    let d = mosquitto::disk(id, "sdr", "65:16", 1 << 40);
    agent
        .facts
        .send(diskwatch::state::Fact::BlockDevices { disks: vec![d], partitions: vec![], initial: false })
        .await
        .unwrap();
    agent.facts.send(fact(id, "ata-hdd-st3500418as-realloc-1.json", "t1")).await.unwrap();
    let rec = Recorder::start(broker.port, "t-attention", &["diskwatch/#", "homeassistant/#"]).await;
    let state_topic = format!("diskwatch/test/disk/{id}/state");
    rec.wait_for(Duration::from_secs(20), "attention in the state", |m| {
        m.iter().any(|r| r.topic == state_topic && r.payload.contains("\"level\":\"watch\""))
    })
    .await;
    let configs = mosquitto::retained(broker.port, &["homeassistant/#"]).await;
    let all: String = configs.values().cloned().collect();
    let problem = configs.values().find(|c| c.contains("smart_problem")).expect("SMART problem entity");
    assert!(problem.contains("value_json.attention.level"), "{problem}");
    let command = format!("diskwatch/test/disk/{id}/acknowledge/set");
    assert!(all.contains(&command), "no acknowledge button");
    assert!(all.contains("\"options\":[\"ok\",\"watch\",\"unknown\",\"failing\"]"), "no attention enum");
    if let Some(python) = common::ha::ha_python() {
        common::ha::run_validator(&python, &configs, agent.state_dir.path());
    }
    rec.client.publish(command, rumqttc::QoS::AtLeastOnce, false, "PRESS").await.unwrap();
    rec.wait_for(Duration::from_secs(20), "acknowledged", |m| {
        m.iter().any(|r| r.topic == state_topic && r.payload.contains("\"level\":\"ok\""))
    })
    .await;
    let snap = agent.get_json(&format!("/api/v1/disks/{id}")).await;
    assert_eq!(snap["attention"]["reasons"][0]["acknowledged"], true, "{snap:#}");
    agent.stop().await;
}

/// The dashboard opens with "Needs attention" above the storage tree: a failing disk with its
/// reasons, worst first; once acknowledged, the empty state says all is well and since when
/// (headless Chromium).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_lists_what_needs_attention() {
    use common::dashboard::{artifacts_dir, Browser};
    let agent = common::TestAgent::start(|_| {}, vec![]).await;
    let id = "wwn-0x5000c500a3";
    let d = common::mosquitto::disk(id, "sds", "65:32", 1 << 40);
    agent
        .facts
        .send(diskwatch::state::Fact::BlockDevices { disks: vec![d], partitions: vec![], initial: false })
        .await
        .unwrap();
    agent.facts.send(fact(id, "usb-jmicron-hitachi-failing.json", "t1")).await.unwrap();
    let mut browser = Browser::launch();
    browser.cmd(&format!("goto {}", agent.url("/")));
    browser.cmd("wait #status[data-state=live]");
    browser.cmd("wait #attention [data-level=failing]");
    let text = browser.cmd("text #attention");
    assert!(text.contains("failing") && text.contains("/dev/sds"), "{text}");
    assert!(text.contains("cannot be read now"), "the pending-sector reason: {text}");
    // Above the storage tree.
    let order = browser.cmd(
        "eval document.querySelector('#attention').compareDocumentPosition(document.querySelector('#topology')) & 4",
    );
    assert!(order.contains('4'), "attention list not above the tree: {order}");
    browser.cmd(&format!("screenshot {}", artifacts_dir().join("dashboard-attention.png").display()));
    // Acknowledged (the state fact the route and the button send): all is well, and since when.
    let acks = {
        let snap = agent.get_json(&format!("/api/v1/disks/{id}")).await;
        let a: diskwatch::model::attention::Attention = serde_json::from_value(snap["attention"].clone()).unwrap();
        diskwatch::attention::acknowledge_all(&a)
    };
    agent.facts.send(diskwatch::state::Fact::Acknowledge { subject: format!("disk/{id}"), acks }).await.unwrap();
    browser.cmd("wait #attention [data-all-well]");
    let text = browser.cmd("text #attention");
    assert!(text.contains("all is well") && text.contains("since"), "{text}");
    assert_eq!(browser.cmd("errors"), "[]", "the page threw");
    drop(browser);
    agent.stop().await;
}

/// Mounts and arrays, like disks: `POST /api/v1/{mounts,arrays}/{id}/acknowledge` quiets the
/// current reasons; the same value stays quiet (also after a restart: kept in state_dir); a
/// worse level (a mount's `fills_soon` going from "7d" to "24h", an array losing a second
/// member) is news again.
#[tokio::test]
async fn mounts_and_arrays_acknowledge_until_the_reason_changes_and_survive_a_restart() {
    use common::dashboard::{disk, mount, partition, usage};
    use diskwatch::arrays::{Array, ArrayKind, ArrayMember, ArrayState, MemberRole};
    use diskwatch::model::Forecast;
    use diskwatch::state::Fact;
    let state_dir = tempfile::tempdir().unwrap();
    let dir = state_dir.path().to_path_buf();
    let start = |dir: std::path::PathBuf| {
        common::TestAgent::start(
            move |c| {
                c.state_dir = dir;
                c.http.auth_token = Some(diskwatch::config::Secret::new(TOKEN));
            },
            vec![],
        )
    };
    let d = disk(7);
    let p = partition(&d, 1);
    let m = mount(&p, "/mnt/fill");
    let mount_id = m.id.clone();
    // The slow end of the interval within a week (watch) or a day (failing), on 8 days of basis.
    let forecast = |full_h: u64, slow_h: u64| Forecast {
        full_in_seconds: Some(full_h * 3600),
        low_seconds: Some(full_h * 1800),
        high_seconds: Some(slow_h * 3600),
        basis_seconds: 8 * 86_400,
        bytes_per_day: 1_000_000_000,
    };
    let mut array = Array::new(ArrayKind::Md, "md7", Some("7e0c8a4c-5b0a-4d43-9d3e-0d6b1d2f4a11".into()));
    array.level = Some("raid5".into());
    array.raid_disks = Some(4);
    array.members = (0..4).map(|i| ArrayMember::new(Some(format!("sd{i}")), MemberRole::Active, Some(i))).collect();
    array.state = ArrayState::Degraded;
    array.degraded_count = 1;
    array.members[3].role = MemberRole::Faulty;
    let array_id = array.id.clone();
    let feed = |agent: &common::TestAgent, fc: Forecast, array: Array| {
        let facts = agent.facts.clone();
        let (d, p, m, id) = (d.clone(), p.clone(), m.clone(), mount_id.clone());
        async move {
            facts.send(Fact::BlockDevices { disks: vec![d], partitions: vec![p], initial: false }).await.unwrap();
            facts.send(Fact::Mounts { mounts: vec![m], initial: false }).await.unwrap();
            facts.send(Fact::MountUsage { id: id.clone(), usage: Some(usage(60.0)), stale: false }).await.unwrap();
            facts.send(Fact::MountForecasts { forecasts: vec![(id, Some(fc))] }).await.unwrap();
            facts.send(Fact::Arrays { arrays: vec![array], initial: false }).await.unwrap();
        }
    };
    let attention = |snap: &Value, list: &str, id: &str| {
        snap[list]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["id"] == id)
            .map(|o| o["attention"].clone())
            .unwrap_or_default()
    };
    let until = |agent: &common::TestAgent, list: &'static str, id: String, level: &'static str| {
        let agent_url = agent.url("/api/v1/snapshot");
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                let req = reqwest::Client::new().get(&agent_url).bearer_auth(TOKEN);
                let snap: Value = req.send().await.unwrap().json().await.unwrap();
                let a = attention(&snap, list, &id);
                if a["level"] == level {
                    return a;
                }
                assert!(tokio::time::Instant::now() < deadline, "{list} {id} never {level}: {a:#}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let client = reqwest::Client::new();
    let ack = |kind: &str, id: &str| {
        let url = format!("/api/v1/{kind}/{id}/acknowledge");
        (client.clone(), url)
    };

    let agent = start(dir.clone()).await;
    feed(&agent, forecast(72, 120), array.clone()).await;
    let a = until(&agent, "mounts", mount_id.clone(), "watch").await;
    assert_eq!(a["reasons"][0]["code"], "fills_soon", "{a:#}");
    until(&agent, "arrays", array_id.clone(), "failing").await;
    for (kind, id, code) in [("mounts", &mount_id, "fills_soon"), ("arrays", &array_id, "array_degraded")] {
        let (client, path) = ack(kind, id);
        assert_eq!(client.post(agent.url(&path)).send().await.unwrap().status(), 401, "the token is needed");
        let answer: Value =
            client.post(agent.url(&path)).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
        assert_eq!(answer["acknowledged"], serde_json::json!([code]), "{answer}");
        assert_eq!(answer["subject"], format!("{}/{id}", kind.trim_end_matches('s')));
        let missing = client.post(agent.url(&format!("/api/v1/{kind}/nope/acknowledge"))).bearer_auth(TOKEN);
        assert_eq!(missing.send().await.unwrap().status(), 404);
    }
    until(&agent, "mounts", mount_id.clone(), "ok").await;
    until(&agent, "arrays", array_id.clone(), "ok").await;
    // The estimate moves within the week: still the same reason value, still quiet.
    agent
        .facts
        .send(Fact::MountForecasts { forecasts: vec![(mount_id.clone(), Some(forecast(60, 100)))] })
        .await
        .unwrap();
    // Worse: the slow end within a day, a second member lost. News again.
    agent
        .facts
        .send(Fact::MountForecasts { forecasts: vec![(mount_id.clone(), Some(forecast(10, 20)))] })
        .await
        .unwrap();
    let a = until(&agent, "mounts", mount_id.clone(), "failing").await;
    assert_eq!(
        (a["reasons"][0]["value"].as_str(), a["reasons"][0]["acknowledged"].as_bool()),
        (Some("24h"), Some(false))
    );
    let mut worse = array.clone();
    worse.degraded_count = 2;
    worse.state = ArrayState::Failed;
    agent.facts.send(Fact::Arrays { arrays: vec![worse.clone()], initial: false }).await.unwrap();
    let a = until(&agent, "arrays", array_id.clone(), "failing").await;
    assert_eq!(a["reasons"][0]["acknowledged"], false, "{a:#}");
    let events = get(&agent, "/api/v1/events?types=mount.attention_changed").await;
    let levels: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["mount"]["attention"]["level"].as_str().unwrap())
        .collect();
    assert_eq!(levels, ["watch", "ok", "failing"], "one event per change, none for the moved estimate");
    // The mount's failing verdict acknowledged too, then a restart: both hold at their values.
    let (client, path) = ack("mounts", &mount_id);
    assert_eq!(client.post(agent.url(&path)).bearer_auth(TOKEN).send().await.unwrap().status(), 200);
    let (client, path) = ack("arrays", &array_id);
    assert_eq!(client.post(agent.url(&path)).bearer_auth(TOKEN).send().await.unwrap().status(), 200);
    until(&agent, "mounts", mount_id.clone(), "ok").await;
    until(&agent, "arrays", array_id.clone(), "ok").await;
    agent.stop().await;

    let again = start(dir.clone()).await;
    feed(&again, forecast(10, 20), worse).await;
    // Both come back acknowledged.
    let a = until(&again, "mounts", mount_id.clone(), "ok").await;
    assert_eq!(a["reasons"][0]["acknowledged"], true, "acknowledged before the restart: {a:#}");
    until(&again, "arrays", array_id.clone(), "ok").await;
    again.stop().await;
}

/// The rising rules' baselines survive a restart (`state_dir/attention-baselines.json`): CRC
/// errors that rose while the agent was down are a reason after the start, not the new
/// baseline. A bad file is a warning: the baselines start over, the acknowledgements stay.
#[tokio::test]
async fn rising_rule_baselines_survive_a_restart() {
    let state_dir = tempfile::tempdir().unwrap();
    let dir = state_dir.path().to_path_buf();
    let start = |dir: std::path::PathBuf| {
        common::TestAgent::start(
            move |c| {
                c.state_dir = dir;
                c.http.auth_token = Some(diskwatch::config::Secret::new(TOKEN));
            },
            vec![],
        )
    };
    let id = "wwn-0x5000c500a4";
    let disk = common::mosquitto::disk(id, "sdt", "65:48", 1 << 40);
    let block =
        || diskwatch::state::Fact::BlockDevices { disks: vec![disk.clone()], partitions: vec![], initial: false };
    // The real reading (199 UDMA_CRC_Error_Count = 0), and the same drive with its CRC count risen.
    let crc = |n: u64, at: &str| {
        let mut f = fact(id, "ata-hdd-st3500418as-realloc-1.json", at);
        if let diskwatch::state::Fact::DiskHealth { health: Some(h), .. } = &mut f {
            assert_eq!(h.crc_errors, Some(0), "the fixture's 199");
            h.crc_errors = Some(n);
        }
        f
    };
    let codes = |d: &Value| -> Vec<String> {
        d["attention"]["reasons"].as_array().unwrap().iter().map(|r| r["code"].as_str().unwrap().to_owned()).collect()
    };
    let file = dir.join(diskwatch::attention::baselines::FILE);

    let agent = start(dir.clone()).await;
    agent.facts.send(block()).await.unwrap();
    agent.facts.send(crc(0, "t1")).await.unwrap();
    let d = wait_disk(&agent, id, |d| d["attention"]["assessed_at"] == "t1").await;
    assert!(!codes(&d).contains(&"crc_errors_rising".to_owned()), "{d:#}");
    // Acknowledge the reallocated sector, to see that a bad baselines file loses nothing else.
    let url = agent.url(&format!("/api/v1/disks/{id}/acknowledge"));
    let client = reqwest::Client::new();
    assert_eq!(client.post(&url).bearer_auth(TOKEN).send().await.unwrap().status(), 200);
    wait_disk(&agent, id, |d| d["attention"]["level"] == "ok").await;
    agent.stop().await;
    let saved: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(saved[id]["crc_errors"], 0, "{saved}");

    // Down while the cable went bad: 0 -> 4 CRC errors. After the start, a rise.
    let again = start(dir.clone()).await;
    again.facts.send(block()).await.unwrap();
    again.facts.send(crc(4, "t2")).await.unwrap();
    let d = wait_disk(&again, id, |d| d["attention"]["assessed_at"] == "t2").await;
    assert_eq!(codes(&d), ["reallocated_sectors", "crc_errors_rising"], "{d:#}");
    assert_eq!(d["attention"]["level"], "watch");
    again.stop().await;

    // A bad file: the agent starts, the baselines start over (4 is the new baseline), the
    // reallocated sector's acknowledgement holds, and the file is written anew.
    std::fs::write(&file, b"{\"wwn-0x5000c500a4\": {\"crc_errors\": ").unwrap();
    let third = start(dir.clone()).await;
    third.facts.send(block()).await.unwrap();
    third.facts.send(crc(4, "t3")).await.unwrap();
    let d = wait_disk(&third, id, |d| d["attention"]["assessed_at"] == "t3").await;
    assert_eq!(codes(&d), ["reallocated_sectors"], "{d:#}");
    assert_eq!(d["attention"]["level"], "ok", "the acknowledgement is kept: {d:#}");
    third.stop().await;
    let saved: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(saved[id]["crc_errors"], 4, "{saved}");
}

/// Home Assistant's *Acknowledge* button of a mount: announced once the mount has a verdict,
/// and a press quiets a full mount's reason (the button of an array takes the same path).
#[tokio::test]
async fn home_assistant_acknowledge_button_of_a_mount() {
    use common::dashboard::{disk, mount, partition, usage};
    use common::mosquitto::{Mosquitto, Recorder};
    use diskwatch::state::Fact;
    let broker = Mosquitto::start();
    let url = broker.url();
    let agent = common::TestAgent::start(
        |c| {
            c.mqtt.enabled = true;
            c.mqtt.url = url;
        },
        vec![],
    )
    .await;
    let d = disk(8);
    let p = partition(&d, 1);
    let m = mount(&p, "/mnt/full");
    let id = m.id.clone();
    agent.facts.send(Fact::BlockDevices { disks: vec![d], partitions: vec![p], initial: false }).await.unwrap();
    agent.facts.send(Fact::Mounts { mounts: vec![m], initial: false }).await.unwrap();
    agent.facts.send(Fact::MountUsage { id: id.clone(), usage: Some(usage(99.0)), stale: false }).await.unwrap();
    let rec = Recorder::start(broker.port, "t-mount-ack", &["diskwatch/#", "homeassistant/#"]).await;
    let command = format!("diskwatch/test/mount/{id}/acknowledge/set");
    let config_topic = format!("homeassistant/device/diskwatch_test_mount_{id}/config");
    rec.wait_for(Duration::from_secs(20), "the mount's acknowledge button", |m| {
        m.iter().any(|r| r.topic == config_topic && r.payload.contains(&command))
    })
    .await;
    let state_topic = format!("diskwatch/test/mount/{id}/state");
    let level = |r: &common::mosquitto::Received, level: &str| {
        r.topic == state_topic
            && serde_json::from_str::<Value>(&r.payload).is_ok_and(|s| s["attention"]["level"] == level)
    };
    rec.wait_for(Duration::from_secs(20), "failing", |m| m.iter().any(|r| level(r, "failing"))).await;
    rec.client.publish(command, rumqttc::QoS::AtLeastOnce, false, "PRESS").await.unwrap();
    rec.wait_for(Duration::from_secs(20), "acknowledged", |m| m.iter().any(|r| level(r, "ok"))).await;
    let snap = agent.get_json("/api/v1/snapshot").await;
    let a = &snap["mounts"].as_array().unwrap().iter().find(|m| m["id"] == id.as_str()).unwrap()["attention"];
    assert_eq!(
        (a["reasons"][0]["code"].as_str(), a["reasons"][0]["acknowledged"].as_bool()),
        (Some("mount_full"), Some(true))
    );
    agent.stop().await;
}
