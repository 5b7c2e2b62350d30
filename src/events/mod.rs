//! Events as the agent publishes them: the type catalogue, the CloudEvents
//! envelope (SPEC §3), the compact published form, and the event log
//! (in-memory ring + on-disk journal, read back for history).

pub mod config;
pub mod history;
pub mod journal;
pub mod kind;
pub mod log;

pub use kind::EventKind;

use std::borrow::Cow;
use std::io::Write as _;
use std::time::SystemTime;

use bytes::Bytes;
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

/// An event as it travels from the core to the ring, the journal and the
/// sinks: held once, compactly, as its rendered SSE frame.
///
/// The frame (`id:`, `event:`, `data:` and the blank line) is the only copy
/// of the event's content; the CloudEvent JSON is a slice of it, shared by
/// SSE, MQTT, the journal and history queries without copying. Only the few
/// fields that filters need (sequence, type, subject, time) are kept parsed
/// beside it. A parsed [`CloudEvent`] is rebuilt on demand by [`Published::event`].
#[derive(Debug, Clone)]
pub struct Published {
    pub seq: u64,
    kind: Cow<'static, str>,
    subject: Box<str>,
    /// Milliseconds since the Unix epoch (the CloudEvent's `time`).
    time_ms: u64,
    frame: Bytes,
    /// Where the JSON starts in `frame` (it ends two bytes before the end).
    json_start: u32,
}

/// Heap bytes an event costs besides its frame: the `Arc` and struct, the
/// subject and the allocator's per-block headers, rounded up.
const OVERHEAD: usize = 160;

/// The fields of a journal line a filter needs; the rest is skipped.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    subject: Cow<'a, str>,
    #[serde(borrow, default)]
    time: Cow<'a, str>,
}

impl Published {
    /// Renders an event once; the parsed form is dropped.
    pub fn new(event: CloudEvent) -> Self {
        let seq = event.seq();
        let mut buf = Vec::with_capacity(512);
        // Writing into a Vec cannot fail, and a struct of strings and a `Value` always serialises.
        let _ = write!(buf, "id: {seq}\nevent: {}\ndata: ", event.kind);
        let json_start = buf.len();
        let _ = serde_json::to_writer(&mut buf, &event);
        let time_ms = parse_time_ms(&event.time);
        let kind = static_kind(&event.kind).map_or_else(|| Cow::Owned(event.kind), Cow::Borrowed);
        Self::finish(seq, kind, event.subject.into_boxed_str(), time_ms, buf, json_start)
    }

    /// An event read back from a journal line (the CloudEvent JSON, without its newline).
    pub fn from_json(line: &[u8]) -> Option<Self> {
        let head: Head<'_> = serde_json::from_slice(line).ok()?;
        let seq: u64 = head.id.parse().ok().filter(|s| *s > 0)?;
        if head.kind.contains(['\n', '\r']) {
            return None;
        }
        let mut buf = Vec::with_capacity(line.len() + 48);
        let _ = write!(buf, "id: {seq}\nevent: {}\ndata: ", head.kind);
        let json_start = buf.len();
        buf.extend_from_slice(line);
        let kind = static_kind(&head.kind).map_or_else(|| Cow::Owned(head.kind.into_owned()), Cow::Borrowed);
        Some(Self::finish(seq, kind, head.subject.into(), parse_time_ms(&head.time), buf, json_start))
    }

    fn finish(
        seq: u64,
        kind: Cow<'static, str>,
        subject: Box<str>,
        time_ms: u64,
        mut buf: Vec<u8>,
        json_start: usize,
    ) -> Self {
        buf.extend_from_slice(b"\n\n");
        // Exactly sized: `Bytes::from` a full Vec keeps the block without spare capacity.
        buf.shrink_to_fit();
        Self { seq, kind, subject, time_ms, frame: Bytes::from(buf), json_start: json_start as u32 }
    }

    /// The event type, e.g. `mount.mounted`.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// `<object kind>/<object id>`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The event's time, to the millisecond.
    pub fn time(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(self.time_ms)
    }

    /// The complete SSE message.
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }

    /// The CloudEvent as compact JSON (no trailing newline), as bytes sharing the frame.
    pub fn json_bytes(&self) -> Bytes {
        self.frame.slice(self.json_start as usize..self.frame.len() - 2)
    }

    /// The CloudEvent as compact JSON (no trailing newline).
    pub fn json(&self) -> &str {
        // The frame was built from a `String`-safe prefix and serde_json output (or a journal
        // line that serde_json parsed as JSON, hence UTF-8); the fallback is never taken.
        std::str::from_utf8(&self.frame[self.json_start as usize..self.frame.len() - 2]).unwrap_or_default()
    }

    /// The parsed CloudEvent (built on each call: for tests and rare consumers).
    pub fn event(&self) -> Option<CloudEvent> {
        serde_json::from_str(self.json()).ok()
    }

    /// Memory this event holds, for the ring's byte bound.
    pub fn held_bytes(&self) -> usize {
        self.frame.len() + self.subject.len() + OVERHEAD
    }
}

/// The catalogue's own `&'static str` for a known type, so held events need no copy of it.
fn static_kind(kind: &str) -> Option<&'static str> {
    EventKind::from_wire(kind).map(EventKind::wire)
}

fn parse_time_ms(time: &str) -> u64 {
    humantime::parse_rfc3339_weak(time)
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
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
        let p = Published::new(e.clone());
        let v: serde_json::Value = serde_json::from_str(p.json()).unwrap();
        assert_eq!(p.event().unwrap(), e);
        assert_eq!(p.frame().as_ref(), format!("id: 42\nevent: mount.mounted\ndata: {}\n\n", p.json()).as_bytes());
        let back = Published::from_json(p.json().as_bytes()).unwrap();
        assert_eq!(
            (back.seq, back.kind(), back.subject(), back.time()),
            (42, "mount.mounted", "mount/mnt_data", SystemTime::UNIX_EPOCH)
        );
        assert_eq!(back.frame(), p.frame());
        assert!(Published::from_json(b"{\"id\":\"x\",\"type\":\"a\"}").is_none());
        assert_eq!(v["id"], "42");
        assert_eq!(v["type"], "mount.mounted");
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["time"], "1970-01-01T00:00:00.000Z");
    }
}
