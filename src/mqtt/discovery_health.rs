//! Home Assistant entities of a disk's health and activity (SPEC §8, §9): temperature (°C,
//! measurement), SMART problem (following `attention`: on for watch and failing), attention
//! enum (reasons as attributes), an acknowledge button, power-state enum, power-on hours, read
//! and write rates (data_rate). Only for disks whose health or activity is watched, and each
//! only once the disk has given its value ([`has_value`]).

use serde_json::json;

use super::{entity, Entity};
use crate::model::selftest::SelfTestResult;
use crate::model::{Disk, PowerState};

pub(super) const HEALTH_KEYS: [&str; 6] =
    ["temperature", "smart_problem", "attention", "acknowledge", "power_state", "power_on_hours"];

pub(super) const IO_KEYS: [&str; 2] = ["read_rate", "write_rate"];

/// Whether the disk has ever given the value of the health entity `key`: a disk whose SMART
/// is unavailable (`health_note`) gets no SMART, temperature, power-on hours or power-state
/// entity that would stay unknown for ever; each is announced when its value appears. (A
/// reading is kept while the disk sleeps, so an entity does not come and go with standby.)
pub(super) fn has_value(d: &Disk, key: &str) -> bool {
    let health = d.health.as_deref();
    match key {
        "temperature" => health.is_some_and(|h| h.temperature_c.is_some()),
        "smart_problem" => d.attention.is_some() || health.is_some_and(|h| h.passed.is_some()),
        // The verdict and its button exist once a verdict does.
        "attention" | "acknowledge" => d.attention.is_some(),
        "power_on_hours" => health.is_some_and(|h| h.power_on_hours.is_some()),
        // Unknown is what a disk that cannot report its power mode says for ever.
        "power_state" => d.power_state.is_some_and(|p| p != PowerState::Unknown),
        _ => true,
    }
}

/// SPEC §8: temperature, SMART problem, power state and power-on hours of a disk whose health
/// is watched (its `power_state` is set).
pub(super) fn health_entities(name: &str, state: &str) -> Vec<Entity> {
    let states: Vec<&str> =
        [PowerState::Active, PowerState::Idle, PowerState::Standby, PowerState::Sleeping, PowerState::Unknown]
            .map(PowerState::as_str)
            .to_vec();
    let [attention, acknowledge] = super::attention::attention_entities(name, state);
    vec![
        entity(
            "sensor",
            "temperature",
            name,
            "Temperature".into(),
            json!({
                "state_topic": state,
                "value_template":
                    "{{ value_json.health.temperature_c if value_json.health and value_json.health.temperature_c is not none else None }}",
                "device_class": "temperature",
                "unit_of_measurement": "°C",
                "state_class": "measurement",
                "suggested_display_precision": 0,
                "json_attributes_topic": state,
                "json_attributes_template":
                    "{{ {'checked_at': value_json.health.checked_at if value_json.health else None, 'source': value_json.health.source if value_json.health else None} | to_json }}",
            }),
        ),
        entity(
            "binary_sensor",
            "smart_problem",
            name,
            "SMART".into(),
            json!({
                "state_topic": state,
                // SPEC §9: follows the attention verdict (on for watch and failing, unknown while
                // the disk cannot be read); the drive's own flag only where no verdict exists.
                "value_template":
                    "{{ ({'ok': 'OFF', 'watch': 'ON', 'failing': 'ON'}[value_json.attention.level] | default('None')) if value_json.attention else (('OFF' if value_json.health.passed else 'ON') if value_json.health and value_json.health.passed is not none else 'None') }}",
                "device_class": "problem",
                "json_attributes_topic": state,
                "json_attributes_template":
                    "{{ (value_json.health if value_json.health else {}) | to_json }}",
            }),
        ),
        attention,
        acknowledge,
        entity(
            "sensor",
            "power_state",
            name,
            "Power state".into(),
            json!({
                "state_topic": state,
                "value_template": "{{ value_json.power_state if value_json.power_state else None }}",
                "device_class": "enum",
                "options": states,
                "icon": "mdi:sleep",
                "json_attributes_topic": state,
                "json_attributes_template": "{{ {'note': value_json.health_note} | to_json }}",
            }),
        ),
        entity(
            "sensor",
            "power_on_hours",
            name,
            "Power-on hours".into(),
            json!({
                "state_topic": state,
                "value_template":
                    "{{ value_json.health.power_on_hours if value_json.health and value_json.health.power_on_hours is not none else None }}",
                "device_class": "duration",
                "unit_of_measurement": "h",
                "state_class": "total_increasing",
                "suggested_display_precision": 0,
                "entity_category": "diagnostic",
            }),
        ),
    ]
}

/// SPEC §8: read and write rates of a disk with activity samples, in MB/s.
pub(super) fn io_entities(name: &str, state: &str) -> Vec<Entity> {
    [("read_rate", "Read rate", "read_bytes_per_s"), ("write_rate", "Write rate", "write_bytes_per_s")]
        .into_iter()
        .map(|(key, what, field)| {
            entity(
                "sensor",
                key,
                name,
                what.into(),
                json!({
                    "state_topic": state,
                    "value_template":
                        format!("{{{{ (value_json.io.{field} / 1000000) | round(3) if value_json.io else None }}}}"),
                    "device_class": "data_rate",
                    "unit_of_measurement": "MB/s",
                    "state_class": "measurement",
                    "suggested_display_precision": 1,
                    "json_attributes_topic": state,
                    "json_attributes_template":
                        "{{ {'busy_percent': value_json.io.busy_percent, 'idle_seconds': value_json.io.idle_seconds} | to_json if value_json.io else '{}' }}",
                }),
            )
        })
        .collect()
}

/// SPEC §9: spin-ups and standby share over 24 hours, and what woke the disk last (its
/// process, unit, path and op as attributes). For disks with a sleep record.
pub(super) const SLEEP_KEYS: [&str; 3] = ["spin_ups", "standby_percent", "last_woken_by"];

pub(super) fn sleep_entities(name: &str, state: &str) -> Vec<Entity> {
    vec![
        entity(
            "sensor",
            "spin_ups",
            name,
            "Spin-ups (24 h)".into(),
            json!({
                "state_topic": state,
                "value_template": "{{ value_json.sleep.spin_ups_24h if value_json.sleep else None }}",
                "state_class": "measurement",
                "icon": "mdi:rotate-right",
            }),
        ),
        entity(
            "sensor",
            "standby_percent",
            name,
            "Standby (24 h)".into(),
            json!({
                "state_topic": state,
                "value_template": "{{ value_json.sleep.standby_percent_24h if value_json.sleep else None }}",
                "unit_of_measurement": "%",
                "state_class": "measurement",
                "icon": "mdi:sleep",
                "json_attributes_topic": state,
                "json_attributes_template":
                    "{{ {'standby_since': value_json.sleep.standby_since if value_json.sleep else None} | to_json }}",
            }),
        ),
        entity(
            "sensor",
            "last_woken_by",
            name,
            "Last woken by".into(),
            json!({
                "state_topic": state,
                "value_template":
                    "{{ (value_json.sleep.last_wake.comm or value_json.sleep.last_wake.op) if value_json.sleep and value_json.sleep.last_wake else None }}",
                "icon": "mdi:alarm",
                "json_attributes_topic": state,
                "json_attributes_template":
                    "{{ (value_json.sleep.last_wake if value_json.sleep and value_json.sleep.last_wake else {}) | to_json }}",
            }),
        ),
    ]
}

/// SPEC §9: the last self-test's result (kind, power-on hour and first failing LBA as
/// attributes) and the running test's progress. For disks with a self-test record.
pub(super) const SELF_TEST_KEYS: [&str; 2] = ["last_self_test", "self_test_progress"];

pub(super) fn self_test_entities(name: &str, state: &str) -> Vec<Entity> {
    let results: Vec<&str> =
        [SelfTestResult::Passed, SelfTestResult::Failed, SelfTestResult::Aborted, SelfTestResult::Interrupted]
            .map(SelfTestResult::as_str)
            .to_vec();
    vec![
        entity(
            "sensor",
            "last_self_test",
            name,
            "Last self-test".into(),
            json!({
                "state_topic": state,
                "value_template":
                    "{{ value_json.self_test.last.result if value_json.self_test and value_json.self_test.last else None }}",
                "device_class": "enum",
                "options": results,
                "icon": "mdi:clipboard-check-outline",
                "json_attributes_topic": state,
                "json_attributes_template":
                    "{{ {'kind': value_json.self_test.last.kind, 'at_hours': value_json.self_test.last.at_hours, 'lba_first_error': value_json.self_test.last.lba_first_error, 'next_due': value_json.self_test.next_due} | to_json if value_json.self_test and value_json.self_test.last else '{}' }}",
            }),
        ),
        entity(
            "sensor",
            "self_test_progress",
            name,
            "Self-test progress".into(),
            json!({
                "state_topic": state,
                // Done, in percent, while a test runs (the drive says what is left); none otherwise.
                "value_template":
                    "{{ (100 - (value_json.self_test.running.percent_remaining or 100)) if value_json.self_test and value_json.self_test.running else None }}",
                "unit_of_measurement": "%",
                "state_class": "measurement",
                "icon": "mdi:progress-check",
                "json_attributes_topic": state,
                "json_attributes_template":
                    "{{ {'kind': value_json.self_test.running.kind} | to_json if value_json.self_test and value_json.self_test.running else '{}' }}",
            }),
        ),
    ]
}
