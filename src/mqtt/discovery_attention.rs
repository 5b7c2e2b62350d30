//! Home Assistant entities of an object's attention verdict (SPEC §9), the same for disks,
//! mounts and arrays: an enum sensor (the level; the reasons as attributes) and an acknowledge
//! button whose command topic sits next to the object's state topic.

use serde_json::json;

use super::{entity, Entity};
use crate::model::attention::Level;

/// The command topic of an object's acknowledge button, next to its state topic.
pub(super) fn acknowledge_topic(state: &str) -> String {
    format!("{}/acknowledge/set", state.strip_suffix("/state").unwrap_or(state))
}

/// The attention sensor and the acknowledge button of the object published on `state`.
pub(super) fn attention_entities(name: &str, state: &str) -> [Entity; 2] {
    let levels: Vec<&str> = Level::ALL.map(Level::as_str).to_vec();
    [
        entity(
            "sensor",
            "attention",
            name,
            "Attention".into(),
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
            "Acknowledge".into(),
            json!({
                "command_topic": acknowledge_topic(state),
                "payload_press": "PRESS",
                "retain": false,
                "icon": "mdi:check-circle-outline",
            }),
        ),
    ]
}
