//! `diskwatch events`: recent history, or a live tail of the SSE stream that
//! reconnects with `Last-Event-ID` so nothing is missed or printed twice.

use std::io::Write;
use std::time::Duration;

use http_body_util::BodyExt;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::sse::{Message, Parser};
use super::{AgentClient, ClientError};
use crate::events::CloudEvent;

/// Pause before reconnecting after the stream ended or failed.
const RECONNECT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Default)]
pub struct EventsOptions {
    /// Comma-separated type globs (`disk.*,mount.mounted`).
    pub types: Option<String>,
    /// Print each event as its CloudEvent JSON line.
    pub json: bool,
    /// How many past events `history` prints.
    pub limit: usize,
}

/// One readable line: `time  id  type  subject  (changed fields)`.
pub fn format_event(event: &CloudEvent) -> String {
    let mut line = format!("{}  {:>6}  {:<18}  {}", event.time, event.id, event.kind, event.subject);
    if let Some(changed) = event.data.get("changed").and_then(|c| c.as_array()).filter(|c| !c.is_empty()) {
        let names: Vec<&str> = changed.iter().filter_map(|c| c.as_str()).collect();
        line.push_str(&format!("  ({})", names.join(", ")));
    }
    if let Some(message) = event.data.get("message").and_then(|m| m.as_str()) {
        line.push_str(&format!("  {message}"));
    }
    line
}

fn print(out: &mut impl Write, event: &CloudEvent, raw: &str, json: bool) -> std::io::Result<()> {
    if json {
        writeln!(out, "{raw}")?;
    } else {
        writeln!(out, "{}", format_event(event))?;
    }
    out.flush()
}

fn query(types: &Option<String>) -> String {
    match types {
        Some(t) if !t.is_empty() => format!("types={}", encode(t)),
        _ => String::new(),
    }
}

/// Percent-encodes a query value (type globs are ASCII; be strict anyway).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' | b',' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The last `limit` events from the agent's history.
pub async fn history(base: &str, options: &EventsOptions, out: &mut impl Write) -> Result<(), ClientError> {
    #[derive(serde::Deserialize)]
    struct Page {
        events: Vec<serde_json::Value>,
    }
    let client = AgentClient::new(base)?;
    let mut path = format!("/api/v1/events?limit={}", options.limit);
    let q = query(&options.types);
    if !q.is_empty() {
        path.push('&');
        path.push_str(&q);
    }
    let page: Page = client.get_json(&path).await?;
    for value in page.events {
        let event: CloudEvent = serde_json::from_value(value.clone())
            .map_err(|source| ClientError::Json { url: client.url(&path), source })?;
        print(out, &event, &value.to_string(), options.json)?;
    }
    Ok(())
}

/// Follows the live stream until `token` is cancelled; reconnects on its own.
/// Fails only when the very first connection fails (wrong URL, agent down).
pub async fn follow(
    base: &str,
    options: &EventsOptions,
    token: CancellationToken,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let client = AgentClient::new(base)?;
    let q = query(&options.types);
    let path = if q.is_empty() { "/api/v1/events/stream".to_owned() } else { format!("/api/v1/events/stream?{q}") };
    let mut last_id: Option<String> = None;
    let mut connected_once = false;
    loop {
        let headers: Vec<(&str, String)> = match &last_id {
            Some(id) => vec![("accept", "text/event-stream".to_owned()), ("last-event-id", id.clone())],
            None => vec![("accept", "text/event-stream".to_owned())],
        };
        let response = tokio::select! {
            _ = token.cancelled() => return Ok(()),
            r = client.get(&path, &headers) => r,
        };
        match response {
            Ok(response) => {
                connected_once = true;
                let mut body = response.into_body();
                let mut parser = Parser::default();
                loop {
                    let frame = tokio::select! {
                        _ = token.cancelled() => return Ok(()),
                        f = body.frame() => f,
                    };
                    let Some(Ok(frame)) = frame else { break };
                    let Ok(data) = frame.into_data() else { continue };
                    for message in parser.feed(&data) {
                        handle(&message, &mut last_id, options.json, out)?;
                    }
                }
                debug!("event stream ended; reconnecting");
            }
            Err(e) if !connected_once => return Err(e),
            Err(e) => debug!(error = %e, "reconnect failed; retrying"),
        }
        tokio::select! {
            _ = token.cancelled() => return Ok(()),
            _ = tokio::time::sleep(RECONNECT) => {}
        }
    }
}

fn handle(message: &Message, last_id: &mut Option<String>, json: bool, out: &mut impl Write) -> std::io::Result<()> {
    if let Some(id) = &message.id {
        *last_id = Some(id.clone());
    }
    if message.event == "resync" {
        let reason = serde_json::from_str::<serde_json::Value>(&message.data)
            .ok()
            .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(str::to_owned))
            .unwrap_or_default();
        writeln!(out, "-- resynced ({reason}): some events were missed; run `diskwatch snapshot` for the state")?;
        return out.flush();
    }
    match serde_json::from_str::<CloudEvent>(&message.data) {
        Ok(event) => print(out, &event, &message.data, json),
        Err(_) => {
            writeln!(out, "{} {}", message.event, message.data)?;
            out.flush()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_lines() {
        let event: CloudEvent = serde_json::from_value(serde_json::json!({
            "specversion": "1.0", "id": "42", "source": "diskwatch://nas", "type": "mount.remounted",
            "time": "2026-11-23T10:15:02.123Z", "subject": "mount/mnt_data", "datacontenttype": "application/json",
            "data": {"mount": {}, "changed": ["read_only", "options"]}
        }))
        .unwrap();
        assert_eq!(
            format_event(&event),
            "2026-11-23T10:15:02.123Z      42  mount.remounted     mount/mnt_data  (read_only, options)"
        );
    }

    #[test]
    fn resync_and_ids() {
        let mut last = None;
        let mut out = Vec::new();
        let msg = Message { id: Some("9".into()), event: "resync".into(), data: r#"{"reason":"too_old"}"#.into() };
        handle(&msg, &mut last, false, &mut out).unwrap();
        assert_eq!(last.as_deref(), Some("9"));
        assert!(String::from_utf8(out).unwrap().contains("resynced (too_old)"));
        assert_eq!(encode("disk.*,a b"), "disk.*,a%20b");
    }
}
