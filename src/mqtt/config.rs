//! Configuration of the MQTT sink (`[mqtt]`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscoveryMode {
    /// `homeassistant/device/<id>/config` with `cmps` (HA 2024.11+).
    Device,
    /// One topic per entity, for older Home Assistant.
    Component,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    pub enabled: bool,
    /// `mqtt://host:port` or `mqtts://host:port`.
    pub url: String,
    pub username: String,
    /// Shown nowhere (health, logs, check-config); prefer `password_file`.
    pub password: Secret,
    /// Read the password from this file (wins over `password`).
    pub password_file: Option<PathBuf>,
    /// CA bundle (PEM) for mqtts; empty: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for brokers that authenticate clients by certificate.
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub client_key: Option<PathBuf>,
    /// Empty: `diskwatch-<node_id>`.
    pub client_id: String,
    pub discovery_prefix: String,
    pub base_topic: String,
    pub discovery: DiscoveryMode,
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Events kept while the broker is unreachable (or slower than the events).
    pub queue_size: usize,
    /// The same queue bounded by the memory its events hold (bytes).
    pub queue_max_bytes: usize,
    /// How long a removed object's entities stay in Home Assistant (unavailable) before its
    /// discovery is cleared, for objects on removable media, USB, MMC and loop devices.
    #[serde(with = "humantime_serde")]
    pub remove_after_removable: Duration,
    /// The same for everything else: fixed disks, their mounts and shares, arrays.
    #[serde(with = "humantime_serde")]
    pub remove_after_fixed: Duration,
    /// Former name of both delays (one value for all objects): when set, it wins over them.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub retention: Option<Duration>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            url: "mqtt://127.0.0.1:1883".into(),
            username: String::new(),
            password: Secret::default(),
            password_file: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
            client_id: String::new(),
            discovery_prefix: "homeassistant".into(),
            base_topic: "diskwatch".into(),
            discovery: DiscoveryMode::Device,
            keep_alive: Duration::from_secs(30),
            queue_size: 1000,
            queue_max_bytes: 512 << 10,
            remove_after_removable: Duration::from_secs(5 * 60),
            remove_after_fixed: Duration::from_secs(7 * 24 * 3600),
            retention: None,
        }
    }
}

/// Names of the systemd credential (`LoadCredential=`, `SetCredentialEncrypted=`) that holds the
/// MQTT password: `mqtt_password`, or `diskwatch_mqtt_password`, the name the shipped unit's
/// `LoadCredential=diskwatch:/etc/diskwatch/credentials` gives to the file
/// `/etc/diskwatch/credentials/mqtt_password` (docs/systemd.md).
pub const MQTT_PASSWORD_CREDENTIALS: [&str; 2] = ["mqtt_password", "diskwatch_mqtt_password"];

impl MqttConfig {
    /// How long removed objects stay: (removable, fixed), the former `retention` winning.
    pub fn removal_delays(&self) -> (Duration, Duration) {
        match self.retention {
            Some(r) => (r, r),
            None => (self.remove_after_removable, self.remove_after_fixed),
        }
    }

    /// Takes the password from systemd's credentials directory (`$CREDENTIALS_DIRECTORY`) when
    /// one of [`MQTT_PASSWORD_CREDENTIALS`] is there and no `password_file` is configured: it
    /// then wins over `password`, as `password_file` does.
    pub fn use_credentials(&mut self, dir: Option<&Path>) {
        if self.password_file.is_some() {
            return;
        }
        if let Some(dir) = dir {
            self.password_file = MQTT_PASSWORD_CREDENTIALS.iter().map(|n| dir.join(n)).find(|p| p.is_file());
        }
    }

    /// Adds one line per invalid value to `problems`.
    pub fn validate(&self, problems: &mut Vec<String>) {
        // The whole URL is parsed now, so a bad port fails at start-up and not in the sink.
        if let Err(e) = super::connection::parse_url(&self.url) {
            problems.push(e.to_string());
        }
        if self.queue_max_bytes < 64 * 1024 {
            problems.push("mqtt.queue_max_bytes: must be at least 65536".to_owned());
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            problems.push("mqtt.client_cert and mqtt.client_key: set both or neither".to_owned());
        } else if self.enabled && self.url.starts_with("mqtts://") {
            // The TLS files are read now, so a wrong path fails check-config, not the handshake.
            if let Err(e) = super::connection::tls(self) {
                problems.push(e.to_string());
            }
        }
    }
}
