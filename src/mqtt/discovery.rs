//! Pure payload building: a snapshot in, every retained message the broker
//! should hold out (agent figures, per-object state and availability, Home
//! Assistant discovery in the device-based or per-component form).

use serde_json::{json, Map, Value};

use super::config::DiscoveryMode;
use super::topics::{Kind, Naming};
use crate::arrays::{Array, ArrayKind, ArrayState};
use crate::events::EventKind;
use crate::model::{ActionKind, Disk, Mount, Share, Snapshot};

/// Object key of the host's own messages; it is never removed.
pub const HOST: &str = "host";

/// One retained message, tagged with the object it belongs to (`host`, `disk/<id>`, …)
/// so that an object's topics can be found again when it goes away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retained {
    pub object: String,
    pub topic: String,
    pub payload: String,
}

/// One Home Assistant entity before it is wrapped for a discovery form.
struct Entity {
    component: &'static str,
    /// Short key, unique within its object (`used`, `connected`).
    key: &'static str,
    config: Map<String, Value>,
    /// The object's availability topic, when this entity goes unavailable with the object.
    object_availability: Option<String>,
}

/// The entities of one object, all on one Home Assistant device.
struct DiscoveryObject {
    /// `disk/<id>` etc.
    object: String,
    /// Name used in discovery topics and unique ids (`diskwatch_<node>_disk_<id>`).
    name: String,
    device: Value,
    entities: Vec<Entity>,
}

/// Every retained message for `snapshot`: host state, object states and availabilities, discovery.
pub fn plan(snapshot: &Snapshot, naming: &Naming) -> Vec<Retained> {
    let mut out = Vec::new();
    out.push(Retained { object: HOST.into(), topic: naming.host_state(), payload: host_state(snapshot).to_string() });
    for d in &snapshot.disks {
        push_object(&mut out, naming, Kind::Disk, &d.id, json!(d));
    }
    for p in &snapshot.partitions {
        push_object(&mut out, naming, Kind::Partition, &p.id, json!(p));
    }
    for m in &snapshot.mounts {
        push_object(&mut out, naming, Kind::Mount, &m.id, json!(m));
    }
    for s in &snapshot.shares {
        push_object(&mut out, naming, Kind::Share, &s.id, json!(s));
    }
    for a in &snapshot.arrays {
        push_object(&mut out, naming, Kind::Array, &a.id, json!(a));
    }
    for object in discovery_objects(snapshot, naming) {
        out.extend(render(&object, naming));
    }
    out
}

/// The object key of a state topic owner.
pub fn object_key(kind: Kind, id: &str) -> String {
    format!("{}/{}", kind.as_str(), id)
}

fn push_object(out: &mut Vec<Retained>, naming: &Naming, kind: Kind, id: &str, state: Value) {
    let object = object_key(kind, id);
    out.push(Retained { object: object.clone(), topic: naming.state(kind, id), payload: state.to_string() });
    out.push(Retained { object, topic: naming.object_availability(kind, id), payload: "online".into() });
}

fn host_state(s: &Snapshot) -> Value {
    json!({
        "disks": s.disks.len(),
        "partitions": s.partitions.len(),
        "mounts": s.mounts.len(),
        "shares": s.shares.len(),
        "last_event_id": s.last_event_id,
    })
}

/// Wraps one object's entities in discovery messages of the configured form.
fn render(object: &DiscoveryObject, naming: &Naming) -> Vec<Retained> {
    let origin = json!({"name": "diskwatch", "sw_version": naming.version});
    // Every entity needs the agent online; most also need their object present ("all").
    let entity_config = |e: &Entity| {
        let mut c = e.config.clone();
        let mut availability = vec![json!({"topic": naming.availability()})];
        availability.extend(e.object_availability.iter().map(|t| json!({"topic": t})));
        c.insert("availability".into(), json!(availability));
        c.insert("availability_mode".into(), json!("all"));
        c.insert("qos".into(), json!(1));
        c
    };
    match naming.mode {
        DiscoveryMode::Device => {
            let mut cmps = Map::new();
            for e in &object.entities {
                let mut c = entity_config(e);
                c.insert("platform".into(), json!(e.component));
                cmps.insert(e.key.into(), Value::Object(c));
            }
            let payload = json!({
                "device": object.device,
                "origin": origin,
                "cmps": cmps,
            });
            vec![Retained {
                object: object.object.clone(),
                topic: naming.device_config(&object.name),
                payload: payload.to_string(),
            }]
        }
        DiscoveryMode::Component => object
            .entities
            .iter()
            .map(|e| {
                let mut c = entity_config(e);
                c.insert("device".into(), object.device.clone());
                c.insert("origin".into(), origin.clone());
                Retained {
                    object: object.object.clone(),
                    topic: naming.component_config(e.component, &object.name, e.key),
                    payload: Value::Object(c).to_string(),
                }
            })
            .collect(),
    }
}

/// Builds an entity: unique_id and default_entity_id from the object name and key.
fn entity(component: &'static str, key: &'static str, object_name: &str, name: String, rest: Value) -> Entity {
    let mut config = Map::new();
    let uid = format!("{object_name}_{key}");
    config.insert("name".into(), json!(name));
    config.insert("unique_id".into(), json!(uid));
    config.insert("default_entity_id".into(), json!(format!("{component}.{}", entity_slug(&uid))));
    if let Value::Object(rest) = rest {
        config.extend(rest);
    }
    Entity { component, key, config, object_availability: None }
}

/// An entity id's object part: lowercase letters, digits and single underscores.
pub fn entity_slug(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        let c = if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' };
        if !(c == '_' && (out.is_empty() || out.ends_with('_'))) {
            out.push(c);
        }
    }
    out.trim_end_matches('_').to_owned()
}

fn discovery_objects(s: &Snapshot, naming: &Naming) -> Vec<DiscoveryObject> {
    let mut out = vec![host_object(naming)];
    out.extend(s.disks.iter().map(|d| disk_object(d, naming)));
    for m in &s.mounts {
        let label = mount_label(m, s);
        let device = attached_device(m.disk_id.as_deref(), s, naming);
        out.push(mount_object(m, &label, device, naming));
    }
    for sh in &s.shares {
        let device = attached_device(sh.disk_id.as_deref(), s, naming);
        out.push(share_object(sh, device, naming));
    }
    // An array spans disks: its entities live on the host device.
    out.extend(s.arrays.iter().map(|a| array_object(a, naming)));
    out
}

/// A device reference by identifier: the disk's device when the disk is present, else the host's.
fn attached_device(disk_id: Option<&str>, s: &Snapshot, naming: &Naming) -> Value {
    let id = match disk_id {
        Some(d) if s.disks.iter().any(|disk| disk.id == d) => naming.disk_device(d),
        _ => naming.host_device(),
    };
    json!({"identifiers": [id]})
}

fn host_object(naming: &Naming) -> DiscoveryObject {
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
        entity(
            "sensor",
            "last_event",
            &name,
            "Last storage event".into(),
            json!({
                "state_topic": events,
                "value_template": "{{ value_json.type }}",
                "json_attributes_topic": events,
                "json_attributes_template":
                    "{{ {'id': value_json.id, 'subject': value_json.subject, 'time': value_json.time} | to_json }}",
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
                "entity_category": "diagnostic",
                "icon": "mdi:counter",
            }),
        ),
    ];
    for (key, label) in [("disks", "Disks"), ("partitions", "Partitions"), ("mounts", "Mounts"), ("shares", "Shares")] {
        entities.push(entity(
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
        ));
    }
    DiscoveryObject {
        object: HOST.into(),
        device: json!({
            "identifiers": [name],
            "name": format!("diskwatch {}", naming.node_id),
            "manufacturer": "diskwatch",
            "model": "Storage monitor",
            "sw_version": naming.version,
        }),
        name,
        entities,
    }
}

/// "WDC WD40EFRX (sdb)", or the kernel name alone.
pub fn disk_label(d: &Disk) -> String {
    match d.model.as_deref().map(str::trim).filter(|m| !m.is_empty()) {
        Some(model) => format!("{} ({})", model.replace('_', " "), d.kernel_name),
        None => d.kernel_name.clone(),
    }
}

fn disk_object(d: &Disk, naming: &Naming) -> DiscoveryObject {
    let name = naming.disk_device(&d.id);
    let state = naming.state(Kind::Disk, &d.id);
    let avail = naming.object_availability(Kind::Disk, &d.id);
    let label = disk_label(d);
    let mut device = json!({
        "identifiers": [name],
        "name": label,
        "via_device": naming.host_device(),
    });
    for (key, value) in [("manufacturer", &d.vendor), ("model", &d.model), ("serial_number", &d.serial)] {
        if let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            device[key] = json!(v);
        }
    }
    let mut entities = vec![
        // State and availability in one: the entity stays available and shows off when unplugged.
        entity(
            "binary_sensor",
            "connected",
            &name,
            format!("{label} connected"),
            json!({
                "state_topic": avail,
                "payload_on": "online",
                "payload_off": "offline",
                "device_class": "plug",
            }),
        ),
        entity(
            "sensor",
            "size",
            &name,
            format!("{label} size"),
            json!({
                "state_topic": state,
                "value_template": "{{ value_json.size_bytes }}",
                "device_class": "data_size",
                "unit_of_measurement": "B",
                "entity_category": "diagnostic",
            }),
        ),
    ];
    let mut follow = vec!["size"];
    if d.power_state.is_some() {
        entities.extend(health_entities(&name, &label, &state));
        follow.extend(HEALTH_KEYS);
    }
    if d.io.is_some() {
        entities.extend(io_entities(&name, &label, &state));
        follow.extend(IO_KEYS);
    }
    if d.sleep.is_some() {
        entities.extend(sleep_entities(&name, &label, &state));
        follow.extend(SLEEP_KEYS);
    }
    if naming.actions.contains(&ActionKind::Eject) && ejectable(d) {
        entities.push(button(
            naming,
            Kind::Disk,
            &d.id,
            &name,
            ActionKind::Eject,
            format!("Eject {label}"),
            "mdi:eject",
        ));
        follow.push("eject");
    }
    if naming.actions.contains(&ActionKind::SpinDown) && d.rotational && !d.kernel_name.starts_with("loop") {
        let b =
            button(naming, Kind::Disk, &d.id, &name, ActionKind::SpinDown, format!("Spin down {label}"), "mdi:sleep");
        entities.push(b);
        follow.push("spin_down");
    }
    DiscoveryObject {
        object: object_key(Kind::Disk, &d.id),
        name,
        device,
        // The connected sensor reads the availability topic itself; the others follow it.
        entities: with_object_availability(entities, &avail, &follow),
    }
}

/// "Data (sdb1)": the filesystem label (else the mount point) and the source device's name.
pub fn mount_label(m: &Mount, s: &Snapshot) -> String {
    let fs_label = m
        .partition_id
        .as_deref()
        .and_then(|p| s.partitions.iter().find(|x| x.id == p))
        .and_then(|p| p.fs_label.clone())
        .filter(|l| !l.is_empty());
    let what = fs_label.unwrap_or_else(|| m.mount_point.clone());
    let dev = m.source.rsplit('/').next().unwrap_or(&m.source);
    if dev.is_empty() || dev == what {
        what
    } else {
        format!("{what} ({dev})")
    }
}

fn mount_object(m: &Mount, label: &str, device: Value, naming: &Naming) -> DiscoveryObject {
    let name = format!("diskwatch_{}_mount_{}", naming.node_id, m.id);
    let state = naming.state(Kind::Mount, &m.id);
    let avail = naming.object_availability(Kind::Mount, &m.id);
    let entities = vec![
        entity(
            "binary_sensor",
            "mounted",
            &name,
            format!("{label} mounted"),
            json!({"state_topic": avail, "payload_on": "online", "payload_off": "offline"}),
        ),
        entity(
            "binary_sensor",
            "read_only",
            &name,
            format!("{label} read-only"),
            json!({
                "state_topic": state,
                "value_template": "{{ 'ON' if value_json.read_only else 'OFF' }}",
                "device_class": "problem",
            }),
        ),
        entity(
            "sensor",
            "used",
            &name,
            format!("{label} used"),
            json!({
                "state_topic": state,
                "value_template": "{{ (value_json.usage.percent | round(1)) if value_json.usage else None }}",
                "unit_of_measurement": "%",
                "state_class": "measurement",
                "icon": "mdi:harddisk",
                "json_attributes_topic": state,
                "json_attributes_template":
                    "{{ {'mount_point': value_json.mount_point, 'source': value_json.source, 'fs_type': value_json.fs_type} | to_json }}",
            }),
        ),
        entity(
            "sensor",
            "free",
            &name,
            format!("{label} free"),
            json!({
                "state_topic": state,
                "value_template": "{{ value_json.usage.available_bytes if value_json.usage else None }}",
                "device_class": "data_size",
                "unit_of_measurement": "B",
                "state_class": "measurement",
            }),
        ),
    ];
    let mut entities = entities;
    let system = crate::actions::machine::SYSTEM_MOUNTS.contains(&m.mount_point.as_str());
    if naming.actions.contains(&ActionKind::Unmount) && !system {
        entities.push(button(
            naming,
            Kind::Mount,
            &m.id,
            &name,
            ActionKind::Unmount,
            format!("Unmount {label}"),
            "mdi:eject-outline",
        ));
    }
    DiscoveryObject {
        object: object_key(Kind::Mount, &m.id),
        name,
        device,
        entities: with_object_availability(entities, &avail, &["read_only", "used", "free", "unmount"]),
    }
}

fn share_object(sh: &Share, device: Value, naming: &Naming) -> DiscoveryObject {
    let name = format!("diskwatch_{}_share_{}", naming.node_id, sh.id);
    let state = naming.state(Kind::Share, &sh.id);
    let avail = naming.object_availability(Kind::Share, &sh.id);
    let label = format!("{} share {}", sh.protocol.as_str().to_uppercase(), sh.name);
    let entities = vec![entity(
        "binary_sensor",
        "available",
        &name,
        format!("{label} available"),
        json!({
            "state_topic": state,
            "value_template": "{{ 'ON' if value_json.available else 'OFF' }}",
            "device_class": "connectivity",
            "json_attributes_topic": state,
            "json_attributes_template":
                "{{ {'path': value_json.path, 'enabled': value_json.enabled, 'read_only': value_json.read_only} | to_json }}",
        }),
    )];
    DiscoveryObject {
        object: object_key(Kind::Share, &sh.id),
        name,
        device,
        entities: with_object_availability(entities, &avail, &["available"]),
    }
}

/// Disks an eject button is offered for: removable, on USB, or a loop device.
pub fn ejectable(d: &Disk) -> bool {
    d.removable || d.bus.as_deref() == Some("usb") || d.kernel_name.starts_with("loop")
}

/// A button publishing `PRESS` to the action's command topic; the outcome arrives on the
/// event stream (the host's event entity) as `action.succeeded` / `action.failed`.
fn button(
    naming: &Naming,
    kind: Kind,
    id: &str,
    object_name: &str,
    action: ActionKind,
    name: String,
    icon: &str,
) -> Entity {
    entity(
        "button",
        action.as_str(),
        object_name,
        name,
        json!({
            "command_topic": naming.command(kind, id, action),
            "payload_press": "PRESS",
            "retain": false,
            "icon": icon,
        }),
    )
}

/// "md0 raid1", "btrfs data raid1", "zfs tank raidz1".
pub fn array_label(a: &Array) -> String {
    let name = if a.kind == ArrayKind::Md { a.name.clone() } else { format!("{} {}", a.kind.as_str(), a.name) };
    match a.level.as_deref() {
        Some(level) => format!("{name} {level}"),
        None => name,
    }
}

fn array_object(a: &Array, naming: &Naming) -> DiscoveryObject {
    let name = format!("diskwatch_{}_array_{}", naming.node_id, a.id);
    let state = naming.state(Kind::Array, &a.id);
    let avail = naming.object_availability(Kind::Array, &a.id);
    let label = array_label(a);
    let options: Vec<&str> = ArrayState::ALL.iter().map(|s| s.as_str()).collect();
    let entities = vec![
        entity(
            "sensor",
            "state",
            &name,
            format!("{label} state"),
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
            format!("{label} degraded"),
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
            format!("{label} sync progress"),
            json!({
                "state_topic": state,
                "value_template": "{{ value_json.sync_percent if value_json.sync_percent is not none else None }}",
                "unit_of_measurement": "%",
                "state_class": "measurement",
                "icon": "mdi:progress-wrench",
            }),
        ),
    ];
    DiscoveryObject {
        object: object_key(Kind::Array, &a.id),
        name,
        device: json!({"identifiers": [naming.host_device()]}),
        entities: with_object_availability(entities, &avail, &["state", "degraded", "sync"]),
    }
}

/// Entities named in `keys` also depend on the object's availability topic, so
/// they show unavailable, not stale, the moment the object goes away.
fn with_object_availability(mut entities: Vec<Entity>, avail: &str, keys: &[&str]) -> Vec<Entity> {
    for e in &mut entities {
        if keys.contains(&e.key) {
            e.object_availability = Some(avail.to_owned());
        }
    }
    entities
}

#[path = "discovery_health.rs"]
mod health;
use health::{health_entities, io_entities, HEALTH_KEYS, IO_KEYS};
use health::{sleep_entities, SLEEP_KEYS};

#[cfg(test)]
#[path = "discovery_tests.rs"]
mod tests;
