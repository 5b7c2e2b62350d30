//! The MQTT sink against a real Mosquitto: Home Assistant schema validation,
//! a loop device's life, broker outages, HA restarts and removal retention.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::mosquitto::{self, Mosquitto, Recorder};
use common::TestAgent;
use diskwatch::config::{Config, DiscoveryMode};
use diskwatch::state::Fact;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

fn mqtt_config(config: &mut Config, broker: &Mosquitto) {
    config.mqtt.enabled = true;
    config.mqtt.url = broker.url();
}

/// A disk with one labelled partition mounted at /mnt/data, a tmpfs on /srv, a share under /mnt/data.
async fn feed_topology(agent: &TestAgent) {
    let disk = mosquitto::disk("wwn-0x5000c500a", "sdx", "8:240", 4 << 40);
    let part = mosquitto::partition("part-1", "wwn-0x5000c500a", "sdx1", "8:241", "Data");
    agent.facts.send(Fact::BlockDevices { disks: vec![disk], partitions: vec![part], initial: false }).await.unwrap();
    let mounts = vec![mosquitto::mount("/mnt/data", "/dev/sdx1", "8:241", 42.5), {
        let mut m = mosquitto::mount("/srv", "tmpfs", "0:99", 3.0);
        m.fs_type = "tmpfs".into();
        m
    }];
    agent.facts.send(Fact::Mounts { mounts, initial: false }).await.unwrap();
    let shares = vec![mosquitto::share("media", "/mnt/data/media")];
    agent.facts.send(Fact::Shares { shares, initial: false }).await.unwrap();
}

/// The Python with the `homeassistant` package: $DISKWATCH_HA_PYTHON, else the venv scripts/ha-venv makes.
fn ha_python() -> Option<String> {
    let python = std::env::var("DISKWATCH_HA_PYTHON").unwrap_or_else(|_| "/opt/diskwatch-ha-venv/bin/python".into());
    if Path::new(&python).exists() {
        return Some(python);
    }
    assert!(!common::in_ci(), "{python} missing: CI must run scripts/ha-venv so discovery is validated");
    eprintln!("skipping Home Assistant schema validation: {python} missing (run scripts/ha-venv)");
    None
}

fn run_validator(python: &str, messages: &BTreeMap<String, String>, dir: &Path) {
    let list: Vec<Value> =
        messages.iter().map(|(t, p)| serde_json::json!({"topic": t, "payload": p})).collect::<Vec<_>>();
    let file = dir.join("discovery.json");
    std::fs::write(&file, serde_json::to_string(&list).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ha_validate.py");
    let out = std::process::Command::new(python).arg(&script).arg(&file).output().expect("run ha_validate.py");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{text}");
    assert!(out.status.success(), "Home Assistant rejected discovery payloads:\n{text}");
}

#[tokio::test]
async fn discovery_payloads_pass_home_assistant_schemas() {
    let Some(python) = ha_python() else { return };
    for mode in [DiscoveryMode::Device, DiscoveryMode::Component] {
        let broker = Mosquitto::start();
        let agent = TestAgent::start(
            |c| {
                mqtt_config(c, &broker);
                c.mqtt.discovery = mode;
            },
            vec![],
        )
        .await;
        feed_topology(&agent).await;
        let rec = Recorder::start(broker.port, "t-schema", &["homeassistant/#"]).await;
        let expected = match mode {
            DiscoveryMode::Device => 5,
            DiscoveryMode::Component => 7 + 2 + 2 * 4 + 1,
        };
        rec.wait_for(WAIT, "all discovery configs", |m| {
            m.iter().map(|r| r.topic.as_str()).collect::<std::collections::BTreeSet<_>>().len() >= expected
        })
        .await;
        let configs = mosquitto::retained(broker.port, &["homeassistant/#"]).await;
        assert_eq!(configs.len(), expected, "{mode:?}: {:#?}", configs.keys());
        run_validator(&python, &configs, agent.state_dir.path());
        agent.stop().await;
    }
}
