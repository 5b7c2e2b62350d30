//! Events as the agent publishes them: the type catalogue, the CloudEvents
//! envelope (SPEC §3), and the event log (in-memory ring + on-disk journal).

pub mod config;
pub mod journal;
pub mod kind;
pub mod log;

pub use kind::EventKind;

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every event type with its meaning, in catalogue order (derived from [`EventKind`]).
pub fn catalogue() -> impl Iterator<Item = (&'static str, &'static str)> {
    EventKind::ALL.iter().map(|k| (k.wire(), k.meaning()))
}

/// A CloudEvents 1.0 event as published on SSE, MQTT and in the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CloudEvent {
    pub specversion: String,
    /// The sequence number as a decimal string.
    pub id: String,
    /// `diskwatch://<node_id>`.
    pub source: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// RFC 3339 with milliseconds, UTC.
    pub time: String,
    /// `<object kind>/<object id>`, e.g. `mount/mnt_data`.
    pub subject: String,
    pub datacontenttype: String,
    /// The object's full state (its last state for removals) and, for changes, `changed`.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

impl CloudEvent {
    pub fn new(
        seq: u64,
        source: &str,
        kind: EventKind,
        time: SystemTime,
        subject: String,
        data: serde_json::Value,
    ) -> Self {
        Self {
            specversion: "1.0".to_owned(),
            id: seq.to_string(),
            source: source.to_owned(),
            kind: kind.wire().to_owned(),
            time: humantime::format_rfc3339_millis(time).to_string(),
            subject,
            datacontenttype: "application/json".to_owned(),
            data,
        }
    }

    /// The sequence number (the `id` parsed back; 0 if it is not a number).
    pub fn seq(&self) -> u64 {
        self.id.parse().unwrap_or(0)
    }
}

/// An event as it travels from the core to the sinks: rendered to JSON once,
/// shared by every consumer.
#[derive(Debug)]
pub struct Published {
    pub seq: u64,
    pub event: CloudEvent,
    /// The CloudEvent as compact JSON, without a trailing newline.
    pub json: String,
    /// The complete SSE message (`id:`, `event:`, `data:` and the blank line).
    pub frame: bytes::Bytes,
}

impl Published {
    /// The CloudEvent as compact JSON (what MQTT publishes).
    pub fn json(&self) -> &str {
        &self.json
    }

    pub fn new(event: CloudEvent) -> Self {
        let seq = event.seq();
        // Serialising a struct of strings and a `Value` cannot fail.
        let json = serde_json::to_string(&event).unwrap_or_default();
        let frame = bytes::Bytes::from(format!("id: {seq}\nevent: {}\ndata: {json}\n\n", event.kind));
        Self { seq, event, json, frame }
    }
}

/// Matches event types against comma-separated globs such as `disk.*,mount.mounted`.
#[derive(Debug, Clone)]
pub struct TypeFilter {
    set: Option<globset::GlobSet>,
}

impl TypeFilter {
    /// An empty or missing list matches everything.
    pub fn parse(list: Option<&str>) -> Result<Self, globset::Error> {
        let patterns: Vec<&str> = list.unwrap_or("").split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
        if patterns.is_empty() {
            return Ok(Self { set: None });
        }
        let mut builder = globset::GlobSetBuilder::new();
        for pattern in patterns {
            builder.add(globset::GlobBuilder::new(pattern).literal_separator(false).build()?);
        }
        Ok(Self { set: Some(builder.build()?) })
    }

    pub fn matches(&self, kind: &str) -> bool {
        self.set.as_ref().is_none_or(|set| set.is_match(kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_filter_globs() {
        let f = TypeFilter::parse(Some("disk.*, mount.mounted")).unwrap();
        assert!(f.matches("disk.added"));
        assert!(f.matches("mount.mounted"));
        assert!(!f.matches("mount.unmounted"));
        assert!(TypeFilter::parse(None).unwrap().matches("share.created"));
        assert!(TypeFilter::parse(Some("[")).is_err());
    }

    #[test]
    fn cloud_event_shape() {
        let e = CloudEvent::new(
            42,
            "diskwatch://nas1",
            EventKind::MountMounted,
            SystemTime::UNIX_EPOCH,
            "mount/mnt_data".into(),
            serde_json::json!({"mount": {}}),
        );
        let v: serde_json::Value = serde_json::from_str(&Published::new(e).json).unwrap();
        assert_eq!(v["id"], "42");
        assert_eq!(v["type"], "mount.mounted");
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["time"], "1970-01-01T00:00:00.000Z");
    }
}
