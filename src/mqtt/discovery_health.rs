//! Home Assistant entities of a disk's health and activity (SPEC §8): temperature (°C,
//! measurement), SMART problem, power-state enum, power-on hours, read and write rates
//! (data_rate). Only for disks whose health or activity is watched.

use serde_json::json;

use super::{entity, Entity};
use crate::model::PowerState;

pub(super) const HEALTH_KEYS: [&str; 4] = ["temperature", "smart_problem", "power_state", "power_on_hours"];
pub(super) const IO_KEYS: [&str; 2] = ["read_rate", "write_rate"];

/// SPEC §8: temperature, SMART problem, power state and power-on hours of a disk whose health
/// is watched (its `power_state` is set).
pub(super) fn health_entities(name: &str, label: &str, state: &str) -> Vec<Entity> {
    let states: Vec<&str> =
        [PowerState::Active, PowerState::Idle, PowerState::Standby, PowerState::Sleeping, PowerState::Unknown]
            .map(PowerState::as_str)
            .to_vec();
    vec![
        entity(
            "sensor",
            "temperature",
            name,
            format!("{label} temperature"),
            json!({
                "state_topic": state,
                "value_template":
                    "{{ value_json.health.temperature_c if value_json.health and value_json.health.temperature_c is not none else None }}",
                "device_class": "temperature",
                "unit_of_measurement": "°C",
                "state_class": "measurement",
                "json_attributes_topic": state,
                "json_attributes_template":
                    "{{ {'checked_at': value_json.health.checked_at if value_json.health else None, 'source': value_json.health.source if value_json.health else None} | to_json }}",
            }),
        ),
        entity(
            "binary_sensor",
            "smart_problem",
            name,
            format!("{label} SMART"),
            json!({
                "state_topic": state,
                "value_template":
                    "{{ ('OFF' if value_json.health.passed else 'ON') if value_json.health and value_json.health.passed is not none else 'None' }}",
                "device_class": "problem",
                "json_attributes_topic": state,
                "json_attributes_template":
                    "{{ (value_json.health if value_json.health else {}) | to_json }}",
            }),
        ),
        entity(
            "sensor",
            "power_state",
            name,
            format!("{label} power state"),
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
            format!("{label} power-on hours"),
            json!({
                "state_topic": state,
                "value_template":
                    "{{ value_json.health.power_on_hours if value_json.health and value_json.health.power_on_hours is not none else None }}",
                "device_class": "duration",
                "unit_of_measurement": "h",
                "state_class": "total_increasing",
                "entity_category": "diagnostic",
            }),
        ),
    ]
}

/// SPEC §8: read and write rates of a disk with activity samples.
pub(super) fn io_entities(name: &str, label: &str, state: &str) -> Vec<Entity> {
    [("read_rate", "read rate", "read_bytes_per_s"), ("write_rate", "write rate", "write_bytes_per_s")]
        .into_iter()
        .map(|(key, what, field)| {
            entity(
                "sensor",
                key,
                name,
                format!("{label} {what}"),
                json!({
                    "state_topic": state,
                    "value_template": format!("{{{{ value_json.io.{field} if value_json.io else None }}}}"),
                    "device_class": "data_rate",
                    "unit_of_measurement": "B/s",
                    "state_class": "measurement",
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

pub(super) fn sleep_entities(name: &str, label: &str, state: &str) -> Vec<Entity> {
    vec![
        entity(
            "sensor",
            "spin_ups",
            name,
            format!("{label} spin-ups (24 h)"),
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
            format!("{label} standby (24 h)"),
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
            format!("{label} last woken by"),
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
