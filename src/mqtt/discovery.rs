//! Pure payload building: a snapshot in, every retained message the broker
//! should hold out (agent figures, per-object state and availability, Home
//! Assistant discovery in the device-based or per-component form).
//!
//! Entity names never repeat the device name: Home Assistant puts the device's name in
//! front ("WDC WD40EFRX (sda)" + "Temperature"). Devices are named and described in
//! [`devices`]; an entity whose value the agent can never know is not announced.

use serde_json::{json, Map, Value};

use super::config::DiscoveryMode;
use super::topics::{Kind, Naming};
use crate::model::{ActionKind, Disk, Mount, Snapshot};

/// Object key of the host's own messages; it is never removed.
pub const HOST: &str = "host";

/// One retained message, tagged with the object it belongs to (`host`, `disk/<id>`, …)
/// so that an object's topics can be found again when it goes away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retained {
    pub object: String,
    pub topic: String,
    pub payload: String,
    /// The object lives on a removable or loop disk: its topics are cleared after
    /// `mqtt.remove_after_removable` once it is gone, not `remove_after_fixed`.
    pub removable: bool,
}

/// The newest event, kept in the host's retained state so that "Last storage event" has a
/// value as soon as Home Assistant starts (the event stream itself is not retained).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LastEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub subject: String,
    pub time: String,
}

impl LastEvent {
    /// From a published CloudEvent's JSON (None if it is not one).
    pub fn from_json(json: &str) -> Option<Self> {
        let v: Value = serde_json::from_str(json).ok()?;
        let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        Some(Self {
            kind: field("type")?,
            id: field("id")?,
            subject: field("subject").unwrap_or_default(),
            time: field("time").unwrap_or_default(),
        })
    }
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

impl Entity {
    /// A diagnostic entity (Home Assistant lists it apart, under "Diagnostic").
    fn diagnostic(mut self) -> Self {
        self.config.insert("entity_category".into(), json!("diagnostic"));
        self
    }

    /// Created disabled: rarely useful; the user turns it on in Home Assistant.
    fn disabled(mut self) -> Self {
        self.config.insert("enabled_by_default".into(), json!(false));
        self
    }
}

/// The entities of one object, all on one Home Assistant device.
struct DiscoveryObject {
    /// `disk/<id>` etc.
    object: String,
    /// Name used in discovery topics and unique ids (`diskwatch_<node>_disk_<id>`).
    name: String,
    device: Value,
    entities: Vec<Entity>,
    /// See [`Retained::removable`].
    removable: bool,
}

/// Every retained message for `snapshot`: host state, object states and availabilities, discovery.
/// `last_event` is the newest event the agent published, if any.
pub fn plan(snapshot: &Snapshot, naming: &Naming, last_event: Option<&LastEvent>) -> Vec<Retained> {
    let mut out = Vec::new();
    let host = host_state(snapshot, last_event).to_string();
    out.push(Retained { object: HOST.into(), topic: naming.host_state(), payload: host, removable: false });
    let s = snapshot;
    for d in &s.disks {
        push_object(&mut out, naming, Kind::Disk, &d.id, json!(d), devices::removable(d));
    }
    for p in &s.partitions {
        push_object(&mut out, naming, Kind::Partition, &p.id, json!(p), devices::on_removable(Some(&p.disk_id), s));
    }
    for m in &s.mounts {
        push_object(&mut out, naming, Kind::Mount, &m.id, json!(m), devices::mount_removable(m, s));
    }
    for sh in &s.shares {
        push_object(&mut out, naming, Kind::Share, &sh.id, json!(sh), devices::on_removable(sh.disk_id.as_deref(), s));
    }
    for a in &s.arrays {
        push_object(&mut out, naming, Kind::Array, &a.id, json!(a), false);
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

fn push_object(out: &mut Vec<Retained>, naming: &Naming, kind: Kind, id: &str, state: Value, removable: bool) {
    let object = object_key(kind, id);
    out.push(Retained { object: object.clone(), topic: naming.state(kind, id), payload: state.to_string(), removable });
    let topic = naming.object_availability(kind, id);
    out.push(Retained { object, topic, payload: "online".into(), removable });
}

fn host_state(s: &Snapshot, last_event: Option<&LastEvent>) -> Value {
    json!({
        "disks": s.disks.len(),
        "partitions": s.partitions.len(),
        "mounts": s.mounts.len(),
        "shares": s.shares.len(),
        "last_event_id": s.last_event_id,
        "last_event": last_event,
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
                removable: object.removable,
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
                    removable: object.removable,
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
    out.extend(s.mounts.iter().map(|m| mount_object(m, s, naming)));
    // A share is a service of the host (Samba, NFS): its entity sits on the host device.
    out.extend(s.shares.iter().map(|sh| share_object(sh, s, naming)));
    out.extend(s.arrays.iter().map(|a| array_object(a, naming)));
    out
}

/// Data sizes are published in GB (the unit drives are sold in; Home Assistant converts to TB
/// or GiB on request): `expr` is the byte count's Jinja expression, `guard` when it exists.
fn gigabytes(expr: &str, guard: Option<&str>) -> String {
    let value = format!("({expr} / 1000000000) | round(3)");
    match guard {
        Some(guard) => format!("{{{{ {value} if {guard} else None }}}}"),
        None => format!("{{{{ {value} }}}}"),
    }
}

fn disk_object(d: &Disk, naming: &Naming) -> DiscoveryObject {
    let name = naming.disk_device(&d.id);
    let state = naming.state(Kind::Disk, &d.id);
    let avail = naming.object_availability(Kind::Disk, &d.id);
    let mut entities = vec![
        // State and availability in one: the entity stays available and shows off when unplugged.
        entity(
            "binary_sensor",
            "connected",
            &name,
            "Connected".into(),
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
            "Size".into(),
            json!({
                "state_topic": state,
                "value_template": gigabytes("value_json.size_bytes", None),
                "device_class": "data_size",
                "unit_of_measurement": "GB",
                "suggested_display_precision": 1,
            }),
        )
        .diagnostic(),
    ];
    let mut follow = vec!["size"];
    if d.power_state.is_some() {
        // Only what the disk can tell: no SMART entities for a disk without SMART, created
        // when the value first appears.
        entities.extend(health_entities(&name, &state).into_iter().filter(|e| health::has_value(d, e.key)));
        follow.extend(HEALTH_KEYS);
    }
    if d.io.is_some() {
        entities.extend(io_entities(&name, &state));
        follow.extend(IO_KEYS);
    }
    if d.sleep.is_some() {
        entities.extend(sleep_entities(&name, &state));
        follow.extend(SLEEP_KEYS);
    }
    if d.self_test.is_some() {
        entities.extend(self_test_entities(&name, &state));
        follow.extend(SELF_TEST_KEYS);
        if naming.actions.contains(&ActionKind::SelfTest) {
            let run = "Run short self-test";
            entities.push(button(
                naming,
                Kind::Disk,
                &d.id,
                &name,
                ActionKind::SelfTest,
                run,
                "mdi:play-circle-outline",
            ));
            follow.push("self_test");
        }
    }
    if naming.actions.contains(&ActionKind::Eject) && ejectable(d) {
        entities.push(button(naming, Kind::Disk, &d.id, &name, ActionKind::Eject, "Eject", "mdi:eject"));
        follow.push("eject");
    }
    if naming.actions.contains(&ActionKind::SpinDown) && d.rotational && !d.kernel_name.starts_with("loop") {
        entities.push(button(naming, Kind::Disk, &d.id, &name, ActionKind::SpinDown, "Spin down", "mdi:sleep"));
        follow.push("spin_down");
    }
    DiscoveryObject {
        object: object_key(Kind::Disk, &d.id),
        name,
        device: devices::disk_device(d, naming),
        // The connected sensor reads the availability topic itself; the others follow it.
        entities: with_object_availability(entities, &avail, &follow),
        removable: devices::removable(d),
    }
}

fn mount_object(m: &Mount, s: &Snapshot, naming: &Naming) -> DiscoveryObject {
    let name = devices::mount_identifier(naming, &m.id);
    let state = naming.state(Kind::Mount, &m.id);
    let avail = naming.object_availability(Kind::Mount, &m.id);
    let mut entities = vec![
        entity(
            "binary_sensor",
            "mounted",
            &name,
            "Mounted".into(),
            json!({"state_topic": avail, "payload_on": "online", "payload_off": "offline"}),
        ),
        entity(
            "binary_sensor",
            "read_only",
            &name,
            "Read-only".into(),
            json!({
                "state_topic": state,
                "value_template": "{{ 'ON' if value_json.read_only else 'OFF' }}",
                "device_class": "problem",
            }),
        ),
    ];
    // Usage is known once the filesystem answered statvfs (never for some pseudo filesystems).
    if m.usage.is_some() {
        entities.push(entity(
            "sensor",
            "used",
            &name,
            "Used".into(),
            json!({
                "state_topic": state,
                "value_template": "{{ (value_json.usage.percent | round(1)) if value_json.usage else None }}",
                "unit_of_measurement": "%",
                "state_class": "measurement",
                "suggested_display_precision": 1,
                "icon": "mdi:harddisk",
                "json_attributes_topic": state,
                "json_attributes_template":
                    "{{ {'mount_point': value_json.mount_point, 'source': value_json.source, 'fs_type': value_json.fs_type} | to_json }}",
            }),
        ));
        entities.push(entity(
            "sensor",
            "free",
            &name,
            "Free".into(),
            json!({
                "state_topic": state,
                "value_template": gigabytes("value_json.usage.available_bytes", Some("value_json.usage")),
                "device_class": "data_size",
                "unit_of_measurement": "GB",
                "state_class": "measurement",
                "suggested_display_precision": 1,
            }),
        ));
    }
    // SPEC §9: time to full, once a forecast exists (`[forecast] min_basis` of history);
    // unknown while the mount is flat or shrinking.
    if m.forecast.is_some() {
        entities.push(entity(
            "sensor",
            "days_until_full",
            &name,
            "Days until full".into(),
            json!({
                "state_topic": state,
                "value_template":
                    "{{ (value_json.forecast.full_in_seconds / 86400) | round(1) if value_json.forecast and value_json.forecast.full_in_seconds is not none else None }}",
                "unit_of_measurement": "d",
                "device_class": "duration",
                "suggested_display_precision": 1,
                "icon": "mdi:calendar-clock",
                "json_attributes_topic": state,
                "json_attributes_template":
                    "{{ {'low_days': ((value_json.forecast.low_seconds / 86400) | round(1)) if value_json.forecast.low_seconds is not none else None, 'high_days': ((value_json.forecast.high_seconds / 86400) | round(1)) if value_json.forecast.high_seconds is not none else None, 'basis_days': (value_json.forecast.basis_seconds / 86400) | round(2), 'bytes_per_day': value_json.forecast.bytes_per_day} | to_json if value_json.forecast else '{}' }}",
            }),
        ));
    }
    // SPEC §9: the verdict (full, fills soon) and its acknowledge button, once there is one.
    if m.attention.is_some() {
        entities.extend(attention_entities(&name, &state));
    }
    let system = crate::actions::machine::SYSTEM_MOUNTS.contains(&m.mount_point.as_str());
    if naming.actions.contains(&ActionKind::Unmount) && !system {
        entities.push(button(naming, Kind::Mount, &m.id, &name, ActionKind::Unmount, "Unmount", "mdi:eject-outline"));
    }
    DiscoveryObject {
        object: object_key(Kind::Mount, &m.id),
        device: devices::mount_device(m, s, naming),
        name,
        entities: with_object_availability(
            entities,
            &avail,
            &["read_only", "used", "free", "days_until_full", "attention", "acknowledge", "unmount"],
        ),
        removable: devices::mount_removable(m, s),
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
    name: &str,
    icon: &str,
) -> Entity {
    entity(
        "button",
        action.as_str(),
        object_name,
        name.into(),
        json!({
            "command_topic": naming.command(kind, id, action),
            "payload_press": "PRESS",
            "retain": false,
            "icon": icon,
        }),
    )
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
use health::{self_test_entities, SELF_TEST_KEYS};
use health::{sleep_entities, SLEEP_KEYS};

#[path = "discovery_attention.rs"]
mod attention;
use attention::attention_entities;

#[path = "discovery_devices.rs"]
pub mod devices;

#[path = "discovery_host.rs"]
mod host;
pub use devices::{array_label, disk_label, mount_label};
use host::{array_object, host_object, share_object};

#[cfg(test)]
#[path = "discovery_tests.rs"]
mod tests;
