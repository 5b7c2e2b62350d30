//! Configuration (SPEC §6): built-in defaults → TOML file → `DISKWATCH_`
//! environment → command-line flags, merged with figment. Unknown keys and
//! bad values are errors that name the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// Where the configuration file is looked for when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/diskwatch/config.toml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub log_level: LogLevel,
    pub log_format: LogFormat,
    /// Empty: the sanitised hostname.
    pub node_id: String,
    /// Journal and persisted agent state.
    pub state_dir: PathBuf,
    /// Announce devices, mounts and shares found at start-up as `*.added` events.
    pub emit_initial: bool,
    pub http: HttpConfig,
    pub events: EventsConfig,
    pub udev: UdevConfig,
    pub mounts: MountsConfig,
    pub shares: SharesConfig,
    pub mqtt: MqttConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            log_level: LogLevel::Info,
            log_format: LogFormat::Text,
            node_id: String::new(),
            state_dir: PathBuf::from("/var/lib/diskwatch"),
            emit_initial: false,
            http: HttpConfig::default(),
            events: EventsConfig::default(),
            udev: UdevConfig::default(),
            mounts: MountsConfig::default(),
            shares: SharesConfig::default(),
            mqtt: MqttConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Interval of SSE keep-alive comments.
    #[serde(with = "humantime_serde")]
    pub keepalive: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { listen: SocketAddr::from(([127, 0, 0, 1], 8377)), keepalive: Duration::from_secs(15) }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Events held in memory for resume and history (older ones are read from the journal).
    pub ring_size: usize,
    /// Bytes the events held in memory may take, whatever their count.
    pub ring_max_bytes: usize,
    /// How many events a streaming client may fall behind before it is resynced.
    pub client_buffer: usize,
    /// Size of the journal file at which it is rotated.
    pub journal_max_bytes: u64,
    /// Rotated journal files kept besides the current one.
    pub journal_keep: usize,
    /// When journal writes reach stable storage: `"batch"` (before clients see
    /// the events) or an interval such as `"1s"` (the most history a power loss takes).
    pub journal_sync: crate::events::journal::JournalSync,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            ring_size: 10_000,
            ring_max_bytes: 2 << 20,
            client_buffer: 1024,
            journal_max_bytes: 16 << 20,
            journal_keep: 3,
            journal_sync: crate::events::journal::JournalSync::Interval(Duration::from_secs(1)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UdevMode {
    Auto,
    Udev,
    Kernel,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UdevConfig {
    pub enabled: bool,
    pub source: UdevMode,
    /// Kernel-name globs left out.
    pub exclude: Vec<String>,
    /// Kernel-name globs kept even when excluded.
    pub include: Vec<String>,
    /// Netlink socket receive buffer in bytes.
    pub receive_buffer: usize,
    /// Change events for one device arriving within this window are coalesced.
    #[serde(with = "humantime_serde")]
    pub coalesce: Duration,
    /// Root of sysfs (a test can point it elsewhere).
    pub sysfs: PathBuf,
}

impl Default for UdevConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            source: UdevMode::Auto,
            exclude: vec!["ram*".into(), "zram*".into(), "loop*".into()],
            include: Vec::new(),
            receive_buffer: 16 << 20,
            coalesce: Duration::from_millis(50),
            sysfs: PathBuf::from("/sys"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MountsConfig {
    pub enabled: bool,
    pub mountinfo: PathBuf,
    #[serde(with = "humantime_serde")]
    pub usage_interval: Duration,
    /// A usage query taking longer marks the mount stale.
    #[serde(with = "humantime_serde")]
    pub usage_timeout: Duration,
    /// Safety re-read of the mount table when no change notification came.
    #[serde(with = "humantime_serde")]
    pub reread_interval: Duration,
    /// Usage percentages whose crossing raises `mount.usage`.
    pub usage_thresholds: Vec<f64>,
    /// A move of at least this many percentage points raises `mount.usage`.
    pub usage_step: f64,
    /// Filesystem types kept even when excluded (e.g. "squashfs").
    pub include_fs_types: Vec<String>,
    /// Filesystem types left out, besides the built-in pseudo filesystems.
    pub exclude_fs_types: Vec<String>,
    /// Mount-point globs kept even when excluded.
    pub include_paths: Vec<String>,
    /// Mount-point globs left out.
    pub exclude_paths: Vec<String>,
}

impl Default for MountsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            mountinfo: PathBuf::from("/proc/self/mountinfo"),
            usage_interval: Duration::from_secs(30),
            usage_timeout: Duration::from_secs(2),
            reread_interval: Duration::from_secs(60),
            usage_thresholds: vec![80.0, 90.0, 95.0],
            usage_step: 1.0,
            include_fs_types: Vec::new(),
            exclude_fs_types: Vec::new(),
            include_paths: Vec::new(),
            exclude_paths: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SharesConfig {
    pub enabled: bool,
    /// Samba configuration files.
    pub samba: Vec<PathBuf>,
    /// NFS exports files and directories (`*.exports` inside).
    pub nfs: Vec<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub debounce: Duration,
    /// Share paths are checked again this often (besides on every mount change), so a
    /// removed or re-created share directory is noticed.
    #[serde(with = "humantime_serde")]
    pub recheck_interval: Duration,
}

impl Default for SharesConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            samba: vec![PathBuf::from("/etc/samba/smb.conf")],
            nfs: vec![PathBuf::from("/etc/exports"), PathBuf::from("/etc/exports.d")],
            debounce: Duration::from_millis(500),
            recheck_interval: Duration::from_secs(30),
        }
    }
}

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
    pub password: String,
    /// Read the password from this file (wins over `password`).
    pub password_file: Option<PathBuf>,
    /// CA bundle for mqtts; empty: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Empty: `diskwatch-<node_id>`.
    pub client_id: String,
    pub discovery_prefix: String,
    pub base_topic: String,
    pub discovery: DiscoveryMode,
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Events kept while the broker is unreachable.
    pub queue_size: usize,
    /// How long a removed object's discovery stays before it is cleared.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            url: "mqtt://127.0.0.1:1883".into(),
            username: String::new(),
            password: String::new(),
            password_file: None,
            ca_file: None,
            client_id: String::new(),
            discovery_prefix: "homeassistant".into(),
            base_topic: "diskwatch".into(),
            discovery: DiscoveryMode::Device,
            keep_alive: Duration::from_secs(30),
            queue_size: 1000,
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Values given on the command line; each one set overrides every other layer.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub log_level: Option<String>,
    pub listen: Option<String>,
    pub mqtt_url: Option<String>,
    pub node_id: Option<String>,
    pub emit_initial: bool,
}

/// A configuration that could not be loaded: one line per problem.
#[derive(Debug, thiserror::Error)]
#[error("{}", messages.join("\n"))]
pub struct ConfigError {
    pub messages: Vec<String>,
}

impl ConfigError {
    fn one(message: String) -> Self {
        Self { messages: vec![message] }
    }
}

impl Config {
    /// Loads the layers. `path`: the `--config` flag; without it the default
    /// path is read if it exists.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::load_from(path, overrides, Env::prefixed("DISKWATCH_").split("__"))
    }

    fn load_from(path: Option<&Path>, overrides: &Overrides, env: Env) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        let file = match path {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_PATH)).filter(|p| p.exists()),
        };
        if let Some(file) = file {
            // Read it ourselves so a missing or unreadable file is an error, not an empty layer.
            std::fs::read_to_string(&file)
                .map_err(|e| ConfigError::one(format!("cannot read config file {}: {e}", file.display())))?;
            figment = figment.merge(Toml::file_exact(&file));
        }
        figment = figment.merge(env);
        if let Some(v) = &overrides.log_level {
            figment = figment.merge(("log_level", v));
        }
        if let Some(v) = &overrides.listen {
            figment = figment.merge(("http.listen", v));
        }
        if let Some(v) = &overrides.mqtt_url {
            figment = figment.merge(("mqtt.url", v));
        }
        if let Some(v) = &overrides.node_id {
            figment = figment.merge(("node_id", v));
        }
        if overrides.emit_initial {
            figment = figment.merge(("emit_initial", true));
        }
        let config: Config =
            figment.extract().map_err(|e| ConfigError { messages: e.into_iter().map(|e| describe(&e)).collect() })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.events.ring_size == 0 {
            problems.push("events.ring_size: must be at least 1".to_owned());
        }
        if self.events.ring_max_bytes < 64 * 1024 {
            problems.push("events.ring_max_bytes: must be at least 65536".to_owned());
        }
        if self.events.client_buffer == 0 {
            problems.push("events.client_buffer: must be at least 1".to_owned());
        }
        if self.mounts.usage_interval.is_zero() {
            problems.push("mounts.usage_interval: must be longer than 0s".to_owned());
        }
        if self.mounts.usage_timeout.is_zero() {
            problems.push("mounts.usage_timeout: must be longer than 0s".to_owned());
        }
        if self.mounts.reread_interval.is_zero() {
            problems.push("mounts.reread_interval: must be longer than 0s".to_owned());
        }
        if let Err(e) = crate::mounts::filter::Filter::new(&self.mounts) {
            problems.push(e.to_string());
        }
        if self.mounts.usage_step <= 0.0 {
            problems.push("mounts.usage_step: must be above 0".to_owned());
        }
        for t in &self.mounts.usage_thresholds {
            if !(0.0..=100.0).contains(t) {
                problems.push(format!("mounts.usage_thresholds: {t} is not a percentage (0-100)"));
            }
        }
        for (key, globs) in [("udev.include", &self.udev.include), ("udev.exclude", &self.udev.exclude)] {
            for g in globs {
                if let Err(e) = globset::Glob::new(g) {
                    problems.push(format!("{key}: invalid glob {g:?}: {e}"));
                }
            }
        }
        if self.shares.recheck_interval.is_zero() {
            problems.push("shares.recheck_interval: must be longer than 0s".to_owned());
        }
        if !self.node_id.is_empty() && crate::model::sanitize_id(&self.node_id) != self.node_id {
            problems.push(format!("node_id: {:?} may hold only letters, digits, '_' and '-'", self.node_id));
        }
        if !(self.mqtt.url.starts_with("mqtt://") || self.mqtt.url.starts_with("mqtts://")) {
            problems.push(format!("mqtt.url: {:?} must start with mqtt:// or mqtts://", self.mqtt.url));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { messages: problems })
        }
    }

    /// The node id in force: the configured one, or the sanitised hostname.
    pub fn node_id(&self) -> String {
        if !self.node_id.is_empty() {
            return self.node_id.clone();
        }
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".to_owned());
        crate::model::sanitize_id(host.split('.').next().unwrap_or("localhost"))
    }
}

/// One line for one figment error: the key's path first, then what is wrong and where it came from.
fn describe(e: &figment::Error) -> String {
    let path = e.path.join(".");
    let origin = e
        .metadata
        .as_ref()
        .map(|m| match &m.source {
            Some(source) => format!(" (from {source})"),
            None => format!(" (from {})", m.name),
        })
        .unwrap_or_default();
    let what = match &e.kind {
        figment::error::Kind::UnknownField(field, _) => format!("unknown key `{field}`"),
        kind => kind.to_string(),
    };
    if path.is_empty() {
        format!("{what}{origin}")
    } else {
        format!("{path}: {what}{origin}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads `toml` as the config file with `env` set, in figment's jail (env is process-wide).
    #[allow(clippy::result_large_err)] // figment::Error is what the jail API returns
    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut out = None;
        figment::Jail::expect_with(|jail| {
            jail.create_file("config.toml", toml)?;
            for (k, v) in env {
                jail.set_env(k, v);
            }
            let path = Path::new("config.toml");
            out = Some(Config::load_from(Some(path), &Overrides::default(), Env::prefixed("DISKWATCH_").split("__")));
            Ok(())
        });
        out.expect("the jail ran the closure")
    }

    #[test]
    fn defaults_are_valid_and_match_spec() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8377");
        assert_eq!(c.events.ring_size, 10_000);
        assert_eq!(c.mounts.usage_interval, Duration::from_secs(30));
        assert_eq!(c.udev.exclude, ["ram*", "zram*", "loop*"]);
    }

    #[test]
    fn file_env_and_flags_layer_in_order() {
        let c = load(
            "log_level = \"warn\"\n[mounts]\nusage_interval = \"5s\"\n",
            &[("DISKWATCH_MOUNTS__USAGE_INTERVAL", "7s"), ("DISKWATCH_UDEV__INCLUDE", "[\"loop*\"]")],
        )
        .unwrap();
        assert_eq!(c.log_level, LogLevel::Warn);
        assert_eq!(c.mounts.usage_interval, Duration::from_secs(7));
        assert_eq!(c.udev.include, ["loop*"]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "log_level = \"warn\"").unwrap();
        let flags =
            Overrides { log_level: Some("debug".into()), listen: Some("127.0.0.1:9".into()), ..Default::default() };
        let c = Config::load_from(Some(&path), &flags, Env::prefixed("DISKWATCH_TEST_NONE_")).unwrap();
        assert_eq!(c.log_level, LogLevel::Debug);
        assert_eq!(c.http.listen.port(), 9);
    }

    #[test]
    fn errors_name_the_key() {
        let e = load("[http]\nlisten = \"127.0.0.1:1\"\nbogus = 1\n", &[]).unwrap_err().to_string();
        assert!(e.starts_with("http.bogus: unknown key"), "{e}");
        let e = load("[events]\nring_size = \"many\"\n", &[]).unwrap_err().to_string();
        assert!(e.starts_with("events.ring_size: invalid type"), "{e}");
        let e = load("[mounts]\nusage_interval = \"30 parsecs\"\n", &[]).unwrap_err().to_string();
        assert!(e.starts_with("mounts.usage_interval:"), "{e}");
        let e = load("", &[("DISKWATCH_EVENTS__RING_SIZE", "-3")]).unwrap_err().to_string();
        assert!(e.starts_with("events.ring_size:"), "{e}");
        let e = load("log_level = \"loud\"", &[]).unwrap_err().to_string();
        assert!(e.starts_with("log_level: unknown variant"), "{e}");
    }

    #[test]
    fn mount_filters_and_intervals_are_checked() {
        let e = load("[mounts]\nexclude_paths = [\"/mnt/[\"]\n", &[]).unwrap_err().to_string();
        assert!(e.starts_with("mounts.exclude_paths: invalid glob"), "{e}");
        let e = load("[mounts]\nreread_interval = \"0s\"\n", &[]).unwrap_err().to_string();
        assert!(e.starts_with("mounts.reread_interval:"), "{e}");
        let c = load("[mounts]\ninclude_paths = [\"/dev/shm\"]\ninclude_fs_types = [\"squashfs\"]\n", &[]).unwrap();
        assert_eq!(c.mounts.include_paths, ["/dev/shm"]);
    }

    #[test]
    fn event_memory_and_journal_durability_keys() {
        use crate::events::journal::JournalSync;
        let c = load("", &[]).unwrap();
        assert_eq!(c.events.ring_max_bytes, 2 << 20);
        assert_eq!(c.events.journal_sync, JournalSync::Interval(Duration::from_secs(1)));
        let c = load("[events]\nring_max_bytes = 1048576\njournal_sync = \"batch\"\n", &[]).unwrap();
        assert_eq!((c.events.ring_max_bytes, c.events.journal_sync), (1 << 20, JournalSync::Batch));
        let c = load("", &[("DISKWATCH_EVENTS__JOURNAL_SYNC", "250ms")]).unwrap();
        assert_eq!(c.events.journal_sync, JournalSync::Interval(Duration::from_millis(250)));
        let e = load("[events]\njournal_sync = \"sometimes\"\n", &[]).unwrap_err().to_string();
        assert!(e.starts_with("events.journal_sync:") && e.contains("neither"), "{e}");
        let e = load("[events]\nring_max_bytes = 100\n", &[]).unwrap_err().to_string();
        assert!(e.starts_with("events.ring_max_bytes: must be at least"), "{e}");
    }
}
