//! Home Assistant entities of a disk's health and activity (SPEC §8, §9): temperature (°C,
//! measurement), SMART problem (following `attention`: on for watch and failing), attention
//! enum (reasons as attributes), an acknowledge button, power-state enum, power-on hours, read
//! and write rates (data_rate). Only for disks whose health or activity is watched.

use serde_json::json;

use super::{entity, Entity};
use crate::model::attention::Level;
use crate::model::PowerState;

pub(super) const HEALTH_KEYS: [&str; 6] =
    ["temperature", "smart_problem", "attention", "acknowledge", "power_state", "power_on_hours"];

/// The command topic of a disk's acknowledge button, next to its state topic.
pub(super) fn acknowledge_topic(state: &str) -> String {
    format!("{}/acknowledge/set", state.strip_suffix("/state").unwrap_or(state))
}
pub(super) const IO_KEYS: [&str; 2] = ["read_rate", "write_rate"];

/// SPEC §8: temperature, SMART problem, power state and power-on hours of a disk whose health
/// is watched (its `power_state` is set).
pub(super) fn health_entities(name: &str, label: &str, state: &str) -> Vec<Entity> {
    let states: Vec<&str> =
        [PowerState::Active, PowerState::Idle, PowerState::Standby, PowerState::Sleeping, PowerState::Unknown]
            .map(PowerState::as_str)
            .to_vec();
    let levels: Vec<&str> = Level::ALL.map(Level::as_str).to_vec();
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
        entity(
            "sensor",
            "attention",
            name,
            format!("{label} attention"),
            json!({
                "state_topic": state,
                "value_template": "{{ value_json.attention.level if value_json.attention else None }}",
                "device_class": "enum",
                "options": levels,
                "icon": "mdi:harddisk-remove",
                "json_attributes_topic": state,
                "json_attributes_template":
                    "{{ {'reasons': value_json.attention.reasons, 'assessed_at': value_json.attention.assessed_at} | to_json if value_json.attention else '{}' }}",
            }),
        ),
        entity(
            "button",
            "acknowledge",
            name,
            format!("Acknowledge {label}"),
            json!({
                "command_topic": acknowledge_topic(state),
                "payload_press": "PRESS",
                "retain": false,
                "icon": "mdi:check-circle-outline",
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
