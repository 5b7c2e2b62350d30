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
/// QoS 1 messages in flight before the client waits for acknowledgements: a full re-announce
/// (a few hundred messages) and an event burst go out without waiting on round trips. Events
/// in flight share their payload with the ring (`sink::publish_event`).
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

/// The URL with any `user:password@` part replaced, fit for logs and error messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://<redacted>@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// `mqtt://host[:port]` or `mqtts://host[:port]` (IPv6 hosts in brackets). Credentials in
/// the URL are refused: they would show wherever the URL does (health, logs, process lists).
pub fn parse_url(url: &str) -> Result<BrokerUrl, MqttError> {
    let bad = |why: &str| MqttError::Url { url: redact_url(url), reason: why.to_owned() };
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("mqtt://") {
        (false, r)
    } else {
        return Err(bad("must start with mqtt:// or mqtts://"));
    };
    let rest = rest.trim_end_matches('/');
    if rest.contains('@') {
        return Err(bad("credentials in the URL are not accepted: set mqtt.username and mqtt.password_file"));
    }
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
    options.set_inflight(INFLIGHT);
    options.set_last_will(LastWill::new(availability_topic, "offline", QoS::AtLeastOnce, true));
    let password = match &config.password_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|source| MqttError::Io { path: path.clone(), source })?
            .trim_end_matches(['\r', '\n'])
            .to_owned(),
        None => config.password.expose().to_owned(),
    };
    if !config.username.is_empty() {
        options.set_credentials(config.username.clone(), password);
    }
    if url.tls {
        options.set_transport(Transport::Tls(tls(config)?));
    }
    Ok(options)
}

/// TLS settings for mqtts: the CA bundle, and the client certificate with its key when set.
/// The files are read (and their PEM checked) here, and by `check-config`, so a wrong path is
/// reported at start-up with its key and name rather than as a handshake failure later.
pub fn tls(config: &MqttConfig) -> Result<TlsConfiguration, MqttError> {
    let read = |key: &'static str, path: &std::path::Path, label: &str| {
        let bad = |reason: String| MqttError::Tls { key, path: path.into(), reason };
        let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        if !contains_pem(&bytes, label) {
            return Err(bad(format!("no PEM {} in it", label.to_lowercase())));
        }
        Ok(bytes)
    };
    let ca_path = config.ca_file.clone().unwrap_or_else(|| SYSTEM_ROOTS.into());
    let ca = read("mqtt.ca_file", &ca_path, "CERTIFICATE")?;
    let client_auth = match (&config.client_cert, &config.client_key) {
        (Some(cert), Some(key)) => {
            Some((read("mqtt.client_cert", cert, "CERTIFICATE")?, read("mqtt.client_key", key, "PRIVATE KEY")?))
        }
        _ => None,
    };
    Ok(TlsConfiguration::Simple { ca, alpn: None, client_auth })
}

/// Whether `pem` holds a `-----BEGIN ...<label>-----` block (`PRIVATE KEY` also matches
/// `RSA PRIVATE KEY` and `EC PRIVATE KEY`).
fn contains_pem(pem: &[u8], label: &str) -> bool {
    let text = String::from_utf8_lossy(pem);
    text.lines().any(|l| l.starts_with("-----BEGIN ") && l.trim_end().ends_with(&format!("{label}-----")))
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
    fn credentials_in_the_url_are_refused_and_never_echoed() {
        for url in ["mqtt://user:hunter2@broker:1883", "mqtts://hunter2@broker", "mqtt://u:hunter2@[::1]:1"] {
            let e = parse_url(url).unwrap_err().to_string();
            assert!(!e.contains("hunter2"), "{e}");
            assert!(e.contains("mqtt.password_file"), "{e}");
        }
        assert_eq!(redact_url("mqtt://u:p@h:1/x@y"), "mqtt://<redacted>@h:1/x@y");
        assert_eq!(redact_url("mqtt://h:1"), "mqtt://h:1");
    }

    #[test]
    fn tls_reads_ca_and_client_pair() {
        let dir = tempfile::tempdir().unwrap();
        let pem = |name: &str, label: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, format!("-----BEGIN {label}-----\nAAAA\n-----END {label}-----\n")).unwrap();
            p
        };
        let config = MqttConfig {
            url: "mqtts://broker".into(),
            ca_file: Some(pem("ca.pem", "CERTIFICATE")),
            client_cert: Some(pem("c.pem", "CERTIFICATE")),
            client_key: Some(pem("k.pem", "EC PRIVATE KEY")),
            ..MqttConfig::default()
        };
        match tls(&config).unwrap() {
            TlsConfiguration::Simple { client_auth: Some((cert, key)), .. } => {
                assert!(cert.starts_with(b"-----BEGIN CERTIFICATE"));
                assert!(key.starts_with(b"-----BEGIN EC PRIVATE KEY"));
            }
            _ => panic!("no client auth"),
        }
        let swapped = MqttConfig { client_key: config.client_cert.clone(), ..config.clone() };
        let e = tls(&swapped).unwrap_err().to_string();
        assert!(e.starts_with("mqtt.client_key") && e.contains("c.pem") && e.contains("private key"), "{e}");
        let missing = MqttConfig { ca_file: Some(dir.path().join("none.pem")), ..config };
        let e = tls(&missing).unwrap_err().to_string();
        assert!(e.starts_with("mqtt.ca_file") && e.contains("none.pem"), "{e}");
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
