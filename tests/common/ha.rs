//! Home Assistant's own MQTT discovery schemas, run by tests/ha_validate.py in the venv that
//! scripts/ha-venv makes.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

/// A Python with the `homeassistant` package: `$var`, else `default` (scripts/ha-venv writes both
/// defaults: wrappers that run Home Assistant's Python in its Debian unstable chroot).
fn ha_python_from(var: &str, default: &str) -> Option<String> {
    let python = std::env::var(var).unwrap_or_else(|_| default.into());
    if Path::new(&python).exists() {
        return Some(python);
    }
    assert!(!super::in_ci(), "{python} missing: CI must run scripts/ha-venv so discovery is validated");
    eprintln!("skipping Home Assistant schema validation: {python} missing (run scripts/ha-venv)");
    None
}

/// Home Assistant's current release (device-based and per-component discovery).
pub fn ha_python() -> Option<String> {
    ha_python_from("DISKWATCH_HA_PYTHON", "/opt/diskwatch-ha-venv/bin/python")
}

/// One older release, kept to validate per-component discovery.
pub fn ha_python_old() -> Option<String> {
    ha_python_from("DISKWATCH_HA_PYTHON_OLD", "/opt/diskwatch-ha-venv/bin/python-old")
}

pub fn run_validator(python: &str, messages: &BTreeMap<String, String>, dir: &Path) {
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
