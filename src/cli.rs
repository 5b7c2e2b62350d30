//! The command line (SPEC §6): flags, subcommands, and the Go-style
//! single-dash long flags (`-loglevel debug`) that existing users type.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Overrides;

#[derive(Debug, Parser)]
#[command(
    name = "diskwatch",
    version,
    about = "Storage-device monitoring agent: disks, mounts and shares as live events over SSE and MQTT"
)]
pub struct Cli {
    /// Configuration file [default: /etc/diskwatch/config.toml when it exists]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// trace, debug, info, warn or error (also `-loglevel debug`)
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// The agent's flags, before the subcommand (or with none: `run` is the default).
    #[command(flatten)]
    pub agent: AgentArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Flags of the agent itself: they mean something to `run` and `check-config` only, so the
/// client subcommands (`token`, `snapshot`, `events`) do not list them.
#[derive(Debug, Clone, Default, Args)]
pub struct AgentArgs {
    /// HTTP listen address, e.g. 127.0.0.1:8377
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// MQTT broker, e.g. mqtt://127.0.0.1:1883
    #[arg(long, value_name = "URL")]
    pub mqtt_url: Option<String>,
    /// Node id used in event sources and MQTT topics
    #[arg(long, value_name = "ID")]
    pub node_id: Option<String>,
    /// Announce what is found at start-up as *.added / mount.mounted / share.created events
    #[arg(long)]
    pub emit_initial: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent (the default)
    Run {
        #[command(flatten)]
        agent: AgentArgs,
    },
    /// Check the configuration and exit (78 when it is invalid)
    CheckConfig {
        #[command(flatten)]
        agent: AgentArgs,
    },
    /// Print the version
    Version,
    /// Print a running agent's topology (disks, partitions, mounts, shares) and exit
    Snapshot {
        /// Print the API's JSON instead of tables
        #[arg(long)]
        json: bool,
        /// The agent's address [default: http://<http.listen from the configuration>]
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
    /// Manage the API token (`http.auth_token_file`)
    Token {
        #[command(subcommand)]
        action: TokenCommand,
    },
    /// Serve one smartctl request of the agent on standard input and output, checked against
    /// the allow-list (for diskwatch-smartctl@.service, started per connection; docs/health.md)
    SmartctlHelper {
        /// smartctl: a path, or a name on /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
        #[arg(long, value_name = "PATH", default_value = "smartctl")]
        smartctl: PathBuf,
        /// Longest smartctl run in seconds, whatever the request asks
        #[arg(long, value_name = "SECONDS", default_value_t = 300)]
        max_timeout: u64,
    },
    /// Print a running agent's recent events, or follow them live
    Events {
        /// Keep following the live stream (Ctrl-C stops)
        #[arg(long, short = 'f')]
        follow: bool,
        /// Comma-separated type globs, e.g. `disk.*,mount.mounted`
        #[arg(long, value_name = "GLOBS")]
        types: Option<String>,
        /// Print each event as its CloudEvent JSON line
        #[arg(long)]
        json: bool,
        /// How many past events to print without --follow
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// The agent's address [default: http://<http.listen from the configuration>]
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Write a new random token to a file only its owner can read (mode 0600)
    Generate {
        /// Where to write it [default: http.auth_token_file from the configuration]
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// Replace an existing token file
        #[arg(long)]
        force: bool,
        /// Also print the token on standard output
        #[arg(long)]
        print: bool,
    },
}

impl Cli {
    /// The configuration overrides of the flags: the agent's flags given after `run` /
    /// `check-config` win over those before it.
    pub fn overrides(&self) -> Overrides {
        let top = &self.agent;
        let sub = match &self.command {
            Some(Command::Run { agent }) | Some(Command::CheckConfig { agent }) => Some(agent),
            _ => None,
        };
        let pick = |f: fn(&AgentArgs) -> &Option<String>| sub.and_then(|a| f(a).clone()).or_else(|| f(top).clone());
        Overrides {
            log_level: self.log_level.clone(),
            listen: pick(|a| &a.listen),
            mqtt_url: pick(|a| &a.mqtt_url),
            node_id: pick(|a| &a.node_id),
            emit_initial: top.emit_initial || sub.is_some_and(|a| a.emit_initial),
        }
    }
}

/// Long flags that may be written with one dash, and their canonical spelling.
const GO_STYLE: &[(&str, &str)] = &[
    ("loglevel", "log-level"),
    ("log-level", "log-level"),
    ("config", "config"),
    ("listen", "listen"),
    ("mqtt-url", "mqtt-url"),
    ("node-id", "node-id"),
    ("emit-initial", "emit-initial"),
];

/// Rewrites `-loglevel debug` / `-loglevel=debug` (and the other long flags
/// written with one dash) to clap's `--log-level` form.
pub fn normalize_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    args.into_iter()
        .map(|arg| {
            let Some(text) = arg.to_str() else { return arg };
            let Some(rest) = text.strip_prefix('-').filter(|r| !r.starts_with('-')) else { return arg };
            let (name, value) = match rest.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (rest, None),
            };
            match GO_STYLE.iter().find(|(alias, _)| alias.eq_ignore_ascii_case(name)) {
                Some((_, canonical)) => match value {
                    Some(v) => OsString::from(format!("--{canonical}={v}")),
                    None => OsString::from(format!("--{canonical}")),
                },
                None => arg,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(normalize_args(args.iter().map(OsString::from))).unwrap()
    }

    #[test]
    fn go_style_log_level() {
        assert_eq!(parse(&["diskwatch", "-loglevel", "debug"]).log_level.as_deref(), Some("debug"));
        assert_eq!(parse(&["diskwatch", "-loglevel=debug"]).log_level.as_deref(), Some("debug"));
        assert_eq!(parse(&["diskwatch", "--log-level", "warn", "run"]).log_level.as_deref(), Some("warn"));
        assert_eq!(parse(&["diskwatch", "-config=/x.toml", "check-config"]).config, Some(PathBuf::from("/x.toml")));
        assert!(Cli::try_parse_from(normalize_args(["diskwatch", "-bogus"].map(OsString::from))).is_err());
    }

    #[test]
    fn agent_flags_belong_to_the_agent_not_to_token_generate() {
        use clap::CommandFactory;
        let mut cli = Cli::command();
        // Propagates the global flags (--config, --log-level) to the subcommands, as parsing does.
        cli.build();
        let generate =
            cli.find_subcommand_mut("token").and_then(|t| t.find_subcommand_mut("generate")).expect("token generate");
        let help = generate.render_long_help().to_string();
        for flag in ["--listen", "--mqtt-url", "--emit-initial", "--node-id"] {
            assert!(!help.contains(flag), "token generate --help lists {flag}:\n{help}");
        }
        assert!(help.contains("--file") && help.contains("--config"), "{help}");
        assert!(Cli::try_parse_from(["diskwatch", "token", "generate", "--listen", "x"]).is_err());
        // Before the subcommand, after `run`, or with none: as before.
        assert_eq!(
            parse(&["diskwatch", "--listen", "0.0.0.0:1", "run"]).overrides().listen.as_deref(),
            Some("0.0.0.0:1")
        );
        assert_eq!(
            parse(&["diskwatch", "run", "--listen", "0.0.0.0:2"]).overrides().listen.as_deref(),
            Some("0.0.0.0:2")
        );
        assert!(parse(&["diskwatch", "-emit-initial"]).overrides().emit_initial);
        assert_eq!(
            parse(&["diskwatch", "check-config", "-mqtt-url=mqtt://b:1"]).overrides().mqtt_url.as_deref(),
            Some("mqtt://b:1")
        );
    }

    #[test]
    fn client_subcommands() {
        let cli = parse(&["diskwatch", "events", "--follow", "--types", "disk.*", "--url", "http://h:1"]);
        match cli.command {
            Some(Command::Events { follow, types, url, json, limit }) => {
                assert!(follow && !json);
                assert_eq!(types.as_deref(), Some("disk.*"));
                assert_eq!(url.as_deref(), Some("http://h:1"));
                assert_eq!(limit, 50);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["diskwatch", "snapshot", "--json"]).command,
            Some(Command::Snapshot { json: true, url: None })
        ));
    }
}
