//! Configuration (SPEC §6): built-in defaults → TOML file → `DISKWATCH_`
//! environment → command-line flags, merged with figment. Unknown keys and
//! bad values are errors that name the key.

use std::net::{IpAddr, SocketAddr};
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
    /// Empty: the id remembered in `state_dir`, else the sanitised hostname plus a
    /// hash of the machine id (see [`crate::node`]).
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
    /// File holding the API token; empty: no token (then only loopback may be served,
    /// unless `allow_anonymous`).
    pub auth_token_file: PathBuf,
    /// Serve a non-loopback address without a token.
    pub allow_anonymous: bool,
    /// Host header names accepted besides loopback names, IP addresses, this machine's
    /// hostname and the listen address; `.example.com` also matches subdomains, `*` any name.
    pub allowed_hosts: Vec<String>,
    /// Client networks (CIDR, or single addresses) allowed; empty: any that can connect.
    pub allow_from: Vec<String>,
    /// Client networks that need no token (a proxy that authenticates its users itself,
    /// such as Home Assistant's ingress at 172.30.32.2).
    pub anonymous_from: Vec<String>,
    /// Concurrent SSE streams; more are answered 503 with Retry-After.
    pub max_sse_clients: usize,
    /// Concurrent connections; beyond it the longest-idle connection is closed, or the
    /// new one refused when none is idle.
    pub max_connections: usize,
    /// Time a client has to send a request's headers, and the longest wait for the next
    /// request on a kept-alive connection.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A connection that moves no byte of a response for this long is closed (a client
    /// that stopped reading).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// The token read from `auth_token_file` at load time (never serialised or printed).
    #[serde(skip)]
    pub auth_token: Option<Secret>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8377)),
            keepalive: Duration::from_secs(15),
            auth_token_file: PathBuf::new(),
            allow_anonymous: false,
            allowed_hosts: Vec::new(),
            allow_from: Vec::new(),
            anonymous_from: Vec::new(),
            max_sse_clients: 256,
            max_connections: 512,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            auth_token: None,
        }
    }
}

/// A secret string (token, password): its `Debug` never shows it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"<redacted>\"" })
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// A CIDR list entry: `10.0.0.0/8`, `fd00::/8`, or one address.
pub fn parse_net(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<ipnet::IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<IpAddr>().map(ipnet::IpNet::from).map_err(|_| format!("{text:?} is not an address or a CIDR network"))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Events held in memory for resume and history.
    pub ring_size: usize,
    /// How many events a streaming client may fall behind before it is resynced.
    pub client_buffer: usize,
    /// Size of the journal file at which it is rotated.
    pub journal_max_bytes: u64,
    /// Rotated journal files kept besides the current one.
    pub journal_keep: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self { ring_size: 10_000, client_buffer: 1024, journal_max_bytes: 8 << 20, journal_keep: 2 }
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

    /// Loads and checks the layers, but neither reads the token file nor applies the
    /// exposure rule: for `diskwatch token generate`, which creates that file.
    pub fn load_without_token(path: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::extract(path, overrides, Env::prefixed("DISKWATCH_").split("__"))
    }

    fn load_from(path: Option<&Path>, overrides: &Overrides, env: Env) -> Result<Self, ConfigError> {
        let mut config = Self::extract(path, overrides, env)?;
        config.http.auth_token = config.load_token()?;
        config.check_exposure()?;
        Ok(config)
    }

    fn extract(path: Option<&Path>, overrides: &Overrides, env: Env) -> Result<Self, ConfigError> {
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

    /// Reads `http.auth_token_file` when set: a missing, unreadable, empty or short token is a
    /// configuration error, so the agent never runs believing it is protected when it is not.
    fn load_token(&self) -> Result<Option<Secret>, ConfigError> {
        let path = &self.http.auth_token_file;
        if path.as_os_str().is_empty() {
            return Ok(None);
        }
        let token = crate::http::auth::read_token_file(path)
            .map_err(|e| ConfigError::one(format!("http.auth_token_file: {e}")))?;
        Ok(Some(token))
    }

    /// Secure by default, as Mosquitto 2 is: an address others can reach is served only with
    /// a token, or when `allow_anonymous` says so explicitly.
    fn check_exposure(&self) -> Result<(), ConfigError> {
        if self.http.listen.ip().is_loopback() || self.http.auth_token.is_some() || self.http.allow_anonymous {
            return Ok(());
        }
        Err(ConfigError::one(format!(
            "http.listen {} is reachable from other machines but no token is set: set http.auth_token_file \
             (create one with `diskwatch token generate`) or http.allow_anonymous = true",
            self.http.listen
        )))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.events.ring_size == 0 {
            problems.push("events.ring_size: must be at least 1".to_owned());
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
        if let Err(e) = crate::mqtt::connection::parse_url(&self.mqtt.url) {
            problems.push(e.to_string());
        }
        if self.mqtt.client_cert.is_some() != self.mqtt.client_key.is_some() {
            problems.push("mqtt.client_cert and mqtt.client_key: set both or neither".to_owned());
        }
        for (key, list) in
            [("http.allow_from", &self.http.allow_from), ("http.anonymous_from", &self.http.anonymous_from)]
        {
            for entry in list {
                if let Err(e) = parse_net(entry) {
                    problems.push(format!("{key}: {e}"));
                }
            }
        }
        if self.http.max_sse_clients == 0 {
            problems.push("http.max_sse_clients: must be at least 1".to_owned());
        }
        if self.http.max_connections < 2 {
            problems.push("http.max_connections: must be at least 2".to_owned());
        }
        if self.http.header_read_timeout.is_zero() {
            problems.push("http.header_read_timeout: must be longer than 0s".to_owned());
        }
        if self.http.idle_timeout.is_zero() {
            problems.push("http.idle_timeout: must be longer than 0s".to_owned());
        }
        for host in &self.http.allowed_hosts {
            if host.is_empty() || host.contains(['/', ' ', ':']) && host.parse::<IpAddr>().is_err() {
                problems.push(format!("http.allowed_hosts: {host:?} is not a host name (no scheme, port or path)"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { messages: problems })
        }
    }

    /// The node id in force (see [`crate::node::resolve`]); nothing is written.
    pub fn node_id(&self) -> String {
        crate::node::resolve(self, crate::node::MACHINE_ID_FILES).id
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
}
