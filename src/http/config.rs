//! Configuration of the HTTP side (`[http]`): the listen address, and who may ask what
//! (token, networks, Host names) within which limits.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

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

impl HttpConfig {
    /// Adds one line per invalid value to `problems`.
    pub fn validate(&self, problems: &mut Vec<String>) {
        for (key, list) in [("http.allow_from", &self.allow_from), ("http.anonymous_from", &self.anonymous_from)] {
            for entry in list {
                if let Err(e) = parse_net(entry) {
                    problems.push(format!("{key}: {e}"));
                }
            }
        }
        if self.max_sse_clients == 0 {
            problems.push("http.max_sse_clients: must be at least 1".to_owned());
        }
        if self.max_connections < 2 {
            problems.push("http.max_connections: must be at least 2".to_owned());
        }
        if self.header_read_timeout.is_zero() {
            problems.push("http.header_read_timeout: must be longer than 0s".to_owned());
        }
        if self.idle_timeout.is_zero() {
            problems.push("http.idle_timeout: must be longer than 0s".to_owned());
        }
        for host in &self.allowed_hosts {
            if host.is_empty() || host.contains(['/', ' ', ':']) && host.parse::<IpAddr>().is_err() {
                problems.push(format!("http.allowed_hosts: {host:?} is not a host name (no scheme, port or path)"));
            }
        }
    }

    /// Reads `auth_token_file` when set: a missing, unreadable, empty or short token is a
    /// configuration error, so the agent never runs believing it is protected when it is not.
    pub fn load_token(&mut self) -> Result<(), String> {
        if self.auth_token_file.as_os_str().is_empty() {
            return Ok(());
        }
        let token =
            super::auth::read_token_file(&self.auth_token_file).map_err(|e| format!("http.auth_token_file: {e}"))?;
        self.auth_token = Some(token);
        Ok(())
    }

    /// Secure by default, as Mosquitto 2 is: an address others can reach is served only with
    /// a token, or when `allow_anonymous` says so explicitly.
    pub fn check_exposure(&self) -> Result<(), String> {
        if self.listen.ip().is_loopback() || self.auth_token.is_some() || self.allow_anonymous {
            return Ok(());
        }
        Err(format!(
            "http.listen {} is reachable from other machines but no token is set: set http.auth_token_file \
             (create one with `diskwatch token generate`) or http.allow_anonymous = true",
            self.listen
        ))
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
