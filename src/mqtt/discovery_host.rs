//! Discovery of what lives on the host device or under it: the host's own entities (the
//! storage event, the last event, counts), one entity per share (a service of the host), and
//! one device per array (arrays span disks).

use serde_json::json;

use super::{devices, entity, object_key, with_object_availability, DiscoveryObject, HOST};
use crate::arrays::{Array, ArrayState};
use crate::events::EventKind;
use crate::model::{Share, Snapshot};
use crate::mqtt::topics::{Kind, Naming};

pub(super) fn host_object(naming: &Naming) -> DiscoveryObject {
    let name = naming.host_device();
    let events = naming.events();
    let host_state = naming.host_state();
    let event_types: Vec<&str> = EventKind::ALL.iter().map(|k| k.wire()).collect();
    let mut entities = vec![
        entity(
            "event",
            "storage_event",
            &name,
            "Storage event".into(),
            json!({
                "state_topic": events,
                "event_types": event_types,
                // A disk.woken event carries its wake (who, unit, path, op) as event attributes.
                "value_template":
                    "{{ {'event_type': value_json.type, 'id': value_json.id, 'subject': value_json.subject, 'last_wake': value_json.data.last_wake if value_json.type == 'disk.woken' else None} | to_json }}",
                "icon": "mdi:harddisk",
            }),
        ),
        // From the retained host state, so it has a value as soon as Home Assistant starts.
        entity(
            "sensor",
            "last_event",
            &name,
            "Last storage event".into(),
            json!({
                "state_topic": host_state,
                "value_template": "{{ value_json.last_event.type if value_json.last_event else None }}",
                "json_attributes_topic": host_state,
                "json_attributes_template":
                    "{{ {'id': value_json.last_event.id, 'subject': value_json.last_event.subject, 'time': value_json.last_event.time} | to_json if value_json.last_event else '{}' }}",
                "icon": "mdi:history",
            }),
        ),
        entity(
            "sensor",
            "last_event_id",
            &name,
            "Last event id".into(),
            json!({
                "state_topic": host_state,
                "value_template": "{{ value_json.last_event_id }}",
                "icon": "mdi:counter",
            }),
        )
        .diagnostic()
        .disabled(),
    ];
    for (key, label) in [("disks", "Disks"), ("partitions", "Partitions"), ("mounts", "Mounts"), ("shares", "Shares")] {
        let count = entity(
            "sensor",
            key,
            &name,
            label.into(),
            json!({
                "state_topic": host_state,
                "value_template": format!("{{{{ value_json.{key} }}}}"),
                "state_class": "measurement",
                "icon": "mdi:counter",
            }),
        )
        .diagnostic();
        // Partitions have no entities of their own: their count is rarely what one looks for.
        entities.push(if key == "partitions" { count.disabled() } else { count });
    }
    DiscoveryObject { object: HOST.into(), device: devices::host_device(naming), name, entities, removable: false }
}

pub(super) fn share_object(sh: &Share, s: &Snapshot, naming: &Naming) -> DiscoveryObject {
    let name = format!("diskwatch_{}_share_{}", naming.node_id, sh.id);
    let state = naming.state(Kind::Share, &sh.id);
    let avail = naming.object_availability(Kind::Share, &sh.id);
    let entities = vec![entity(
        "binary_sensor",
        "available",
        &name,
        format!("{} share {}", sh.protocol.as_str().to_uppercase(), sh.name),
        json!({
            "state_topic": state,
            "value_template": "{{ 'ON' if value_json.available else 'OFF' }}",
            "device_class": "connectivity",
            "icon": "mdi:folder-network",
            "json_attributes_topic": state,
            "json_attributes_template":
                "{{ {'path': value_json.path, 'enabled': value_json.enabled, 'read_only': value_json.read_only, 'mount': value_json.mount_id} | to_json }}",
        }),
    )];
    DiscoveryObject {
        object: object_key(Kind::Share, &sh.id),
        name,
        device: devices::host_device(naming),
        entities: with_object_availability(entities, &avail, &["available"]),
        removable: devices::on_removable(sh.disk_id.as_deref(), s),
    }
}

pub(super) fn array_object(a: &Array, naming: &Naming) -> DiscoveryObject {
    let name = format!("diskwatch_{}_array_{}", naming.node_id, a.id);
    let state = naming.state(Kind::Array, &a.id);
    let avail = naming.object_availability(Kind::Array, &a.id);
    let options: Vec<&str> = ArrayState::ALL.iter().map(|s| s.as_str()).collect();
    let mut entities = vec![
        entity(
            "sensor",
            "state",
            &name,
            "State".into(),
            json!({
                "state_topic": state,
                "value_template": "{{ value_json.state }}",
                "device_class": "enum",
                "options": options,
                "icon": "mdi:harddisk-plus",
                "json_attributes_topic": state,
                "json_attributes_template":
                    "{{ {'kind': value_json.kind, 'level': value_json.level, 'members': value_json.members | length, 'sync_action': value_json.sync_action} | to_json }}",
            }),
        ),
        entity(
            "binary_sensor",
            "degraded",
            &name,
            "Degraded".into(),
            json!({
                "state_topic": state,
                "value_template": "{{ 'ON' if value_json.state in ['degraded', 'recovering', 'failed'] else 'OFF' }}",
                "device_class": "problem",
                "json_attributes_topic": state,
                "json_attributes_template": "{{ {'degraded_count': value_json.degraded_count} | to_json }}",
            }),
        ),
        entity(
            "sensor",
            "sync",
            &name,
            "Sync progress".into(),
            json!({
                "state_topic": state,
                "value_template": "{{ value_json.sync_percent if value_json.sync_percent is not none else None }}",
                "unit_of_measurement": "%",
                "state_class": "measurement",
                "suggested_display_precision": 1,
                "icon": "mdi:progress-wrench",
            }),
        ),
    ];
    // SPEC §9: the verdict (degraded, failed, rebuilding) and its acknowledge button.
    if a.attention.is_some() {
        entities.extend(super::attention_entities(&name, &state));
    }
    DiscoveryObject {
        object: object_key(Kind::Array, &a.id),
        device: devices::array_device(a, &name, naming),
        name,
        entities: with_object_availability(
            entities,
            &avail,
            &["state", "degraded", "sync", "attention", "acknowledge"],
        ),
        removable: false,
    }
}
