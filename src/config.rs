//! Configuration (SPEC §6): built-in defaults → TOML file → `DISKWATCH_`
//! environment → command-line flags, merged with figment. Unknown keys and
//! bad values are errors that name the key.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

pub use crate::actions::config::ActionsConfig;
pub use crate::activity::ActivityConfig;
pub use crate::arrays::config::ArraysConfig;
pub use crate::events::config::EventsConfig;
pub use crate::forecast::ForecastConfig;
pub use crate::health::HealthConfig;
pub use crate::history::HistoryConfig;
pub use crate::http::config::HttpConfig;
pub use crate::mounts::config::MountsConfig;
pub use crate::mqtt::config::{DiscoveryMode, MqttConfig};
pub use crate::shares::config::SharesConfig;
pub use crate::udev::config::{UdevConfig, UdevMode};

pub use crate::secret::Secret;

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
    pub arrays: ArraysConfig,
    pub mqtt: MqttConfig,
    pub actions: ActionsConfig,
    pub health: HealthConfig,
    pub activity: ActivityConfig,
    pub history: HistoryConfig,
    #[serde(default)]
    pub sleep: crate::wake::SleepConfig,
    pub forecast: ForecastConfig,
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
            arrays: ArraysConfig::default(),
            mqtt: MqttConfig::default(),
            actions: ActionsConfig::default(),
            health: HealthConfig::default(),
            activity: ActivityConfig::default(),
            history: HistoryConfig::default(),
            sleep: crate::wake::SleepConfig::default(),
            forecast: ForecastConfig::default(),
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
        config.http.load_token().map_err(ConfigError::one)?;
        config.http.check_exposure().map_err(ConfigError::one)?;
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
        let mut config: Config =
            figment.extract().map_err(|e| ConfigError { messages: e.into_iter().map(|e| describe(&e)).collect() })?;
        // Under systemd, the MQTT password may come as a credential (LoadCredential=).
        config.mqtt.use_credentials(std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from).as_deref());
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        self.http.validate(&mut problems);
        self.events.validate(&mut problems);
        self.udev.validate(&mut problems);
        self.mounts.validate(&mut problems);
        self.shares.validate(&mut problems);
        self.arrays.validate(&mut problems);
        self.mqtt.validate(&mut problems);
        self.actions.validate(&mut problems);
        self.health.validate(&mut problems);
        self.activity.validate(&mut problems);
        self.history.validate(&mut problems);
        self.sleep.validate(&mut problems);
        self.forecast.validate(&mut problems);
        if !self.node_id.is_empty() && crate::model::sanitize_id(&self.node_id) != self.node_id {
            problems.push(format!("node_id: {:?} may hold only letters, digits, '_' and '-'", self.node_id));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { messages: problems })
        }
    }

    /// The node id in force (see [`crate::node::resolve`]); nothing is written.
    pub fn node_id(&self) -> String {
        crate::node::resolve(&self.node_id, &self.state_dir, crate::node::MACHINE_ID_FILES).id
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
    use std::time::Duration;

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
    fn mqtt_password_comes_from_systemd_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().to_str().unwrap();
        // No credential there: nothing changes.
        let c = load("[mqtt]\npassword = \"inline\"\n", &[("CREDENTIALS_DIRECTORY", creds)]).unwrap();
        assert_eq!(c.mqtt.password_file, None);
        // The unit's directory form names it diskwatch_mqtt_password; it wins over `password`.
        std::fs::write(dir.path().join("diskwatch_mqtt_password"), "s3cret\n").unwrap();
        let c = load("[mqtt]\npassword = \"inline\"\n", &[("CREDENTIALS_DIRECTORY", creds)]).unwrap();
        assert_eq!(c.mqtt.password_file, Some(dir.path().join("diskwatch_mqtt_password")));
        // A plain LoadCredential=mqtt_password:... comes first.
        std::fs::write(dir.path().join("mqtt_password"), "other").unwrap();
        let c = load("", &[("CREDENTIALS_DIRECTORY", creds)]).unwrap();
        assert_eq!(c.mqtt.password_file, Some(dir.path().join("mqtt_password")));
        // An explicit password_file is kept.
        let c = load("[mqtt]\npassword_file = \"/run/secrets/mqtt\"\n", &[("CREDENTIALS_DIRECTORY", creds)]).unwrap();
        assert_eq!(c.mqtt.password_file, Some(PathBuf::from("/run/secrets/mqtt")));
        // Outside systemd (no CREDENTIALS_DIRECTORY) nothing is looked up.
        assert_eq!(load("", &[]).unwrap().mqtt.password_file, None);
    }

    #[test]
    fn mqtt_removal_delays_default_short_for_removable_and_take_the_former_key() {
        let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml")).unwrap();
        let c = load(&example, &[]).unwrap();
        let day = 24 * 3600;
        assert_eq!(c.mqtt.removal_delays(), (Duration::from_secs(300), Duration::from_secs(7 * day)));
        let c = load("[mqtt]\nremove_after_removable = \"30s\"\nremove_after_fixed = \"1day\"\n", &[]).unwrap();
        assert_eq!(c.mqtt.removal_delays(), (Duration::from_secs(30), Duration::from_secs(day)));
        // `retention`, the former single key, still works and wins.
        let c = load("[mqtt]\nretention = \"2days\"\nremove_after_removable = \"30s\"\n", &[]).unwrap();
        assert_eq!(c.mqtt.removal_delays(), (Duration::from_secs(2 * day), Duration::from_secs(2 * day)));
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
    fn arrays_keys_layer_are_checked_and_documented_with_their_defaults() {
        let c = load("[arrays]\nmdstat = \"/tmp/mdstat\"\ninterval = \"5s\"\n", &[("DISKWATCH_ARRAYS__ZPOOL", "")])
            .unwrap();
        assert_eq!(c.arrays.mdstat, Path::new("/tmp/mdstat"));
        assert_eq!(c.arrays.interval, Duration::from_secs(5));
        assert_eq!(c.arrays.zpool, "");
        assert_eq!(c.arrays.progress_interval, Duration::from_secs(1));
        let e = load("[arrays]\nprogress_interval = \"0s\"\n", &[]).unwrap_err().to_string();
        assert!(e.starts_with("arrays.progress_interval:"), "{e}");
        let e = load("[arrays]\nmd = \"/proc/mdstat\"\n", &[]).unwrap_err().to_string();
        assert!(e.starts_with("arrays.md: unknown key"), "{e}");
        let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml")).unwrap();
        let c = load(&example, &[]).unwrap();
        assert_eq!(
            serde_json::to_value(&c.arrays).unwrap(),
            serde_json::to_value(crate::arrays::ArraysConfig::default()).unwrap()
        );
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
        assert_eq!(c.events.ring_max_bytes, 512 << 10);
        assert_eq!(c.events.journal_sync, JournalSync::Interval(Duration::from_secs(1)));
        let c = load("[events]\nring_max_bytes = 1048576\njournal_sync = \"batch\"\n", &[]).unwrap();
        assert_eq!((c.events.ring_max_bytes, c.events.journal_sync), (1 << 20, JournalSync::Batch));
        let c = load("", &[("DISKWATCH_EVENTS__JOURNAL_SYNC", "250ms")]).unwrap();
        assert_eq!(c.events.journal_sync, JournalSync::Interval(Duration::from_millis(250)));
        let e = load("[events]\njournal_sync = \"sometimes\"\n", &[]).unwrap_err().to_string();
        assert!(e.starts_with("events.journal_sync:") && e.contains("neither"), "{e}");
        let e = load("[events]\nring_max_bytes = 100\n", &[]).unwrap_err().to_string();
        assert!(e.starts_with("events.ring_max_bytes: must be at least"), "{e}");
        assert_eq!(c.mqtt.queue_max_bytes, 512 << 10);
        let c = load("[mqtt]\nqueue_max_bytes = 262144\n", &[]).unwrap();
        assert_eq!(c.mqtt.queue_max_bytes, 262_144);
        let e = load("[mqtt]\nqueue_max_bytes = 100\n", &[]).unwrap_err().to_string();
        assert!(e.starts_with("mqtt.queue_max_bytes: must be at least"), "{e}");
    }
}
