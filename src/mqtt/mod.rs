//! The MQTT sink (SPEC §5): agent availability with a last will, retained
//! per-object state and availability, a QoS 1 CloudEvent stream, and Home
//! Assistant discovery, kept true through broker outages and HA restarts.
//!
//! - [`topics`]: topic names and Home Assistant identifiers.
//! - [`discovery`]: pure payload building from a snapshot.
//! - [`retained`]: what the broker holds; removals and their retention.
//! - [`connection`]: client options (URL, TLS, credentials, will) and backoff.
//! - [`sink`]: the task that owns the event loop.

pub mod config;
pub mod connection;
pub mod discovery;
mod queue;
pub mod retained;
pub mod sink;
pub mod topics;

use std::path::PathBuf;

pub use sink::run;

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("mqtt.url: {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{key}: {path}: {reason}")]
    Tls { key: &'static str, path: PathBuf, reason: String },
    #[error("{path}: not a diskwatch MQTT state file: {source}")]
    StateFile { path: PathBuf, source: serde_json::Error },
}
