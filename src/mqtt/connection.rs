//! Connection settings: the broker URL parsed, credentials, TLS, the last
//! will, and the reconnect backoff.

use std::time::Duration;

use rumqttc::{LastWill, MqttOptions, QoS, TlsConfiguration, Transport};

use super::config::MqttConfig;
use super::MqttError;

/// Where the system keeps its CA roots on Debian and derivatives.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Largest packet either way: discovery payloads are a few KiB, object states less.
const MAX_PACKET: usize = 1 << 20;
/// QoS 1 messages in flight before the client waits for acknowledgements.
const INFLIGHT: u16 = 1000;
/// First reconnect delay and the cap of the exponential backoff.
pub const BACKOFF_BASE: Duration = Duration::from_millis(250);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// A parsed broker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

/// `mqtt://host[:port]` or `mqtts://host[:port]` (IPv6 hosts in brackets).
pub fn parse_url(url: &str) -> Result<BrokerUrl, MqttError> {
    let bad = |why: &str| MqttError::Url { url: url.to_owned(), reason: why.to_owned() };
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("mqtt://") {
        (false, r)
    } else {
        return Err(bad("must start with mqtt:// or mqtts://"));
    };
    let rest = rest.trim_end_matches('/');
    let default_port = if tls { 8883 } else { 1883 };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        match after.strip_prefix(':') {
            Some(p) => (host, p.parse().map_err(|_| bad("bad port"))?),
            None if after.is_empty() => (host, default_port),
            None => return Err(bad("junk after the host")),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| bad("bad port"))?),
            None => (rest, default_port),
        }
    };
    if host.is_empty() || host.contains('/') {
        return Err(bad("no host"));
    }
    Ok(BrokerUrl { tls, host: host.to_owned(), port })
}

/// Client options from the configuration: id, keep-alive, credentials, TLS and the last will.
pub fn options(config: &MqttConfig, node_id: &str, availability_topic: &str) -> Result<MqttOptions, MqttError> {
    let url = parse_url(&config.url)?;
    let client_id = if config.client_id.is_empty() { format!("diskwatch-{node_id}") } else { config.client_id.clone() };
    let mut options = MqttOptions::new(client_id, url.host.clone(), url.port);
    options.set_keep_alive(config.keep_alive.max(Duration::from_secs(5)));
    options.set_clean_session(true);
    options.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    // A full re-announce is a few hundred QoS 1 messages: a wide window keeps it from
    // waiting on round trips for acknowledgements.
    options.set_inflight(INFLIGHT);
    options.set_last_will(LastWill::new(availability_topic, "offline", QoS::AtLeastOnce, true));
    let password = match &config.password_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|source| MqttError::Io { path: path.clone(), source })?
            .trim_end_matches(['\r', '\n'])
            .to_owned(),
        None => config.password.clone(),
    };
    if !config.username.is_empty() {
        options.set_credentials(config.username.clone(), password);
    }
    if url.tls {
        let path = config.ca_file.clone().unwrap_or_else(|| SYSTEM_ROOTS.into());
        let ca = std::fs::read(&path).map_err(|source| MqttError::Io { path, source })?;
        options.set_transport(Transport::Tls(TlsConfiguration::Simple { ca, alpn: None, client_auth: None }));
    }
    Ok(options)
}

/// Delay before reconnect attempt `attempt` (0-based): exponential, capped, with
/// "equal jitter" (half fixed, half random) so a fleet does not reconnect in step.
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX));
    let capped = exp.min(BACKOFF_MAX);
    capped.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("mqtt://127.0.0.1:1884").unwrap(),
            BrokerUrl { tls: false, host: "127.0.0.1".into(), port: 1884 }
        );
        assert_eq!(parse_url("mqtts://broker").unwrap(), BrokerUrl { tls: true, host: "broker".into(), port: 8883 });
        assert_eq!(parse_url("mqtt://[::1]:1900/").unwrap(), BrokerUrl { tls: false, host: "::1".into(), port: 1900 });
        assert_eq!(parse_url("mqtt://[::1]").unwrap().port, 1883);
        for bad in ["http://x", "mqtt://", "mqtt://h:port", "mqtt://[::1", "mqtt://h/x:1"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        assert_eq!(backoff(0, 1.0), BACKOFF_BASE);
        assert_eq!(backoff(0, 0.0), BACKOFF_BASE / 2);
        assert_eq!(backoff(3, 1.0), BACKOFF_BASE * 8);
        assert_eq!(backoff(40, 1.0), BACKOFF_MAX);
        assert!(backoff(40, 0.0) >= BACKOFF_MAX / 2);
    }

    #[test]
    fn options_carry_will_credentials_and_id() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        let config = MqttConfig {
            url: "mqtt://127.0.0.1:1999".into(),
            username: "u".into(),
            password_file: Some(pw),
            ..MqttConfig::default()
        };
        let o = options(&config, "nas1", "diskwatch/nas1/availability").unwrap();
        assert_eq!(o.client_id(), "diskwatch-nas1");
        assert_eq!(o.broker_address(), ("127.0.0.1".to_owned(), 1999));
        assert_eq!(o.credentials(), Some(("u".to_owned(), "s3cret".to_owned())));
        let will = o.last_will().unwrap();
        assert_eq!(will.topic, "diskwatch/nas1/availability");
        assert!(will.retain);
        let missing = MqttConfig { password_file: Some(dir.path().join("nope")), ..config };
        assert!(matches!(options(&missing, "n", "t"), Err(MqttError::Io { .. })));
    }
}
