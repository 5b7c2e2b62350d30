//! Topic names of the MQTT sink (SPEC §5): agent availability, per-object state
//! and availability, the event stream, and Home Assistant discovery topics.

use super::config::{DiscoveryMode, MqttConfig};

/// Object kinds that get their own state topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Disk,
    Partition,
    Mount,
    Share,
    Array,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Disk => "disk",
            Kind::Partition => "partition",
            Kind::Mount => "mount",
            Kind::Share => "share",
            Kind::Array => "array",
        }
    }
}

/// Everything that names topics and Home Assistant identifiers, derived once from the config.
#[derive(Debug, Clone)]
pub struct Naming {
    pub node_id: String,
    /// `diskwatch/<node_id>`.
    pub base: String,
    pub discovery_prefix: String,
    pub mode: DiscoveryMode,
    pub version: String,
    /// Actions announced as Home Assistant buttons (empty unless actions are enabled).
    pub actions: Vec<crate::model::ActionKind>,
}

impl Naming {
    pub fn new(config: &MqttConfig, node_id: &str) -> Self {
        Self {
            node_id: node_id.to_owned(),
            base: format!("{}/{}", config.base_topic.trim_end_matches('/'), node_id),
            discovery_prefix: config.discovery_prefix.trim_end_matches('/').to_owned(),
            mode: config.discovery,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            actions: Vec::new(),
        }
    }

    /// The agent's availability (also the last will).
    pub fn availability(&self) -> String {
        format!("{}/availability", self.base)
    }

    /// Host-level figures (object counts, last event id).
    pub fn host_state(&self) -> String {
        format!("{}/state", self.base)
    }

    pub fn events(&self) -> String {
        format!("{}/events", self.base)
    }

    pub fn state(&self, kind: Kind, id: &str) -> String {
        format!("{}/{}/{}/state", self.base, kind.as_str(), id)
    }

    pub fn object_availability(&self, kind: Kind, id: &str) -> String {
        format!("{}/{}/{}/availability", self.base, kind.as_str(), id)
    }

    /// The command topic of a button: `<base>/<kind>/<id>/<action>/set`.
    pub fn command(&self, kind: Kind, id: &str, action: crate::model::ActionKind) -> String {
        format!("{}/{}/{}/{}/set", self.base, kind.as_str(), id, action.as_str())
    }

    /// The subscription covering every command topic.
    pub fn commands(&self) -> String {
        format!("{}/+/+/+/set", self.base)
    }

    /// The action a command topic asks for: (object kind, object id, action).
    pub fn parse_command<'a>(&self, topic: &'a str) -> Option<(&'a str, &'a str, crate::model::ActionKind)> {
        let rest = topic.strip_prefix(self.base.as_str())?.strip_prefix('/')?.strip_suffix("/set")?;
        let mut parts = rest.split('/');
        let (kind, id, action) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        Some((kind, id, crate::model::ActionKind::from_wire(action)?))
    }

    /// The object an acknowledge button's topic (`<base>/<kind>/<id>/acknowledge/set`) is for.
    pub fn parse_acknowledge<'a>(&self, topic: &'a str) -> Option<(&'a str, &'a str)> {
        let rest = topic.strip_prefix(self.base.as_str())?.strip_prefix('/')?.strip_suffix("/acknowledge/set")?;
        let (kind, id) = rest.split_once('/')?;
        (!id.contains('/')).then_some((kind, id))
    }

    /// Where Home Assistant announces itself (`online` after a restart).
    pub fn ha_status(&self) -> String {
        format!("{}/status", self.discovery_prefix)
    }

    /// Device-based discovery topic of one discovery object.
    pub fn device_config(&self, object: &str) -> String {
        format!("{}/device/{}/config", self.discovery_prefix, object)
    }

    /// Per-component discovery topic of one entity.
    pub fn component_config(&self, component: &str, object: &str, entity: &str) -> String {
        format!("{}/{}/{}/{}/config", self.discovery_prefix, component, object, entity)
    }

    /// Identifier of the host's Home Assistant device.
    pub fn host_device(&self) -> String {
        format!("diskwatch_{}", self.node_id)
    }

    /// Identifier of a disk's Home Assistant device.
    pub fn disk_device(&self, disk_id: &str) -> String {
        format!("diskwatch_{}_disk_{}", self.node_id, disk_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_follow_the_spec() {
        let config = MqttConfig { base_topic: "diskwatch/".into(), ..MqttConfig::default() };
        let n = Naming::new(&config, "nas1");
        assert_eq!(n.availability(), "diskwatch/nas1/availability");
        assert_eq!(n.state(Kind::Mount, "mnt_data"), "diskwatch/nas1/mount/mnt_data/state");
        assert_eq!(n.object_availability(Kind::Disk, "wwn-1"), "diskwatch/nas1/disk/wwn-1/availability");
        assert_eq!(n.events(), "diskwatch/nas1/events");
        assert_eq!(n.ha_status(), "homeassistant/status");
        use crate::model::ActionKind;
        let cmd = n.command(Kind::Disk, "usb-X", ActionKind::Eject);
        assert_eq!(cmd, "diskwatch/nas1/disk/usb-X/eject/set");
        assert_eq!(n.parse_command(&cmd), Some(("disk", "usb-X", ActionKind::Eject)));
        assert_eq!(
            n.parse_command("diskwatch/nas1/mount/mnt_x/spin_down/set"),
            Some(("mount", "mnt_x", ActionKind::SpinDown))
        );
        assert_eq!(n.parse_command("diskwatch/nas1/disk/a/explode/set"), None);
        assert_eq!(n.parse_command("diskwatch/nas2/disk/a/eject/set"), None);
        assert_eq!(n.commands(), "diskwatch/nas1/+/+/+/set");
        assert_eq!(n.device_config("diskwatch_nas1"), "homeassistant/device/diskwatch_nas1/config");
        assert_eq!(
            n.component_config("sensor", "diskwatch_nas1", "last_event"),
            "homeassistant/sensor/diskwatch_nas1/last_event/config"
        );
    }
}
