//! The SSE stream (`/api/v1/events/stream`): type filters, resume with
//! Last-Event-ID, resync, snapshot and notify-only modes, keep-alive.
//!
//! Every client follows the shared broadcast channel with its own cursor.
//! A client that falls more than `events.client_buffer` events behind gets a
//! `resync` event with a snapshot and continues from there: it never slows
//! the core or the other clients, and memory stays bounded by the channel.
//! Frames are rendered once per event and shared; ready events are sent in
//! one chunk.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::broadcast::Receiver;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Interval};
use tracing::debug;
use utoipa::IntoParams;

use super::config::HttpConfig;
use super::error::{ApiError, ErrorBody, ErrorDetail};
use super::limits::{SseSlots, SSE_RETRY_AFTER_SECS};
use crate::agent::Agent;
use crate::events::log::ResumeError;
use crate::events::{Published, TypeFilter};
use crate::metrics::LimitLabel;

/// Events sent in one chunk at most, so one busy client cannot hog a worker.
const CHUNK_EVENTS: usize = 256;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Comma-separated type globs, e.g. `disk.*,mount.mounted`.
    pub types: Option<String>,
    /// Resume after this id (the `Last-Event-ID` header wins).
    pub last_event_id: Option<u64>,
    /// Start with a `snapshot` event.
    #[serde(default)]
    pub snapshot: bool,
    /// Send only id, type and subject of each event.
    #[serde(default)]
    pub notify_only: bool,
}

/// Server-Sent Events: `id: <seq>`, `event: <type>`, `data: <CloudEvent>`.
#[utoipa::path(
    get,
    path = "/api/v1/events/stream",
    params(StreamQuery, ("Last-Event-ID" = Option<u64>, Header, description = "resume after this id")),
    responses(
        (status = 200, content_type = "text/event-stream", description = "the event stream", body = String),
        (status = 400, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "http.max_sse_clients streams are open (see Retry-After)")
    )
)]
pub async fn stream(
    State(agent): State<Arc<Agent>>,
    State(config): State<Arc<HttpConfig>>,
    Extension(slots): Extension<Arc<SseSlots>>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Some(slot) = slots.try_acquire() else {
        agent.metrics.http_limits.get_or_create(&LimitLabel { limit: "sse_clients".into() }).inc();
        slots.refused.hit(|| format!("max {}", config.max_sse_clients));
        let body = ErrorBody {
            error: ErrorDetail {
                code: "too_many_streams".into(),
                message: "http.max_sse_clients streams are open; try again later".into(),
            },
        };
        let retry = SSE_RETRY_AFTER_SECS.to_string();
        return Ok((StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, retry)], Json(body)).into_response());
    };
    let Query(q) = query?;
    let filter = TypeFilter::parse(q.types.as_deref()).map_err(|e| ApiError::bad_request(format!("types: {e}")))?;
    let header_id = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::bad_request("Last-Event-ID must be an event id (a whole number)"))?,
        ),
        None => None,
    };
    let resume_after = header_id.or(q.last_event_id);

    let mut client = Client {
        agent: agent.clone(),
        receiver: agent.log.subscribe(),
        pending: VecDeque::new(),
        filter,
        notify_only: q.notify_only,
        last_sent: 0,
        keepalive: keepalive(config.keepalive),
        done: false,
        _slot: slot,
    };
    match resume_after {
        Some(after) if after > agent.state().last_seq() => client.resync("unknown_id"),
        Some(after) => match agent.log.resume(after) {
            Ok(sub) => {
                client.receiver = sub.receiver;
                client.last_sent = after;
                let mut buf = BytesMut::new();
                for event in &sub.backlog {
                    client.push(event, &mut buf);
                }
                if !buf.is_empty() {
                    client.pending.push_back(buf.freeze());
                }
            }
            Err(ResumeError::TooOld) => client.resync("too_old"),
        },
        None if q.snapshot => {
            let snapshot = agent.snapshot();
            client.last_sent = snapshot.last_event_id;
            client.pending.push_back(frame(snapshot.last_event_id, "snapshot", &snapshot));
        }
        None => client.last_sent = agent.state().last_seq(),
    }
    debug!(after = ?resume_after, clients = agent.log.subscribers(), "SSE client connected");
    agent.metrics.sse_clients.inc();
    let body = Body::from_stream(futures_util::stream::unfold(client, Client::next));
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        body,
    )
        .into_response())
}

fn keepalive(period: std::time::Duration) -> Interval {
    let period = period.max(std::time::Duration::from_millis(10));
    let mut interval = tokio::time::interval_at(Instant::now() + period, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

/// One SSE message with a JSON payload.
fn frame<T: serde::Serialize>(id: u64, event: &str, data: &T) -> Bytes {
    let json = serde_json::to_string(data).unwrap_or_default();
    Bytes::from(format!("id: {id}\nevent: {event}\ndata: {json}\n\n"))
}

struct Client {
    agent: Arc<Agent>,
    receiver: Receiver<Arc<Published>>,
    /// Frames to send before following the channel (snapshot, backlog, resync).
    pending: VecDeque<Bytes>,
    filter: TypeFilter,
    notify_only: bool,
    /// Highest id already sent or covered by a snapshot: anything at or below is skipped.
    last_sent: u64,
    keepalive: Interval,
    done: bool,
    /// This stream's place among `http.max_sse_clients`, given back when it ends.
    _slot: OwnedSemaphorePermit,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.agent.metrics.sse_clients.dec();
    }
}

impl Client {
    /// Queues a `resync` event carrying a snapshot; the stream continues after it.
    fn resync(&mut self, reason: &str) {
        let snapshot = self.agent.snapshot();
        self.last_sent = snapshot.last_event_id;
        self.agent.metrics.sse_resyncs.inc();
        debug!(reason, last_event_id = snapshot.last_event_id, "SSE client resynced");
        let data = serde_json::json!({"reason": reason, "snapshot": snapshot});
        self.pending.push_back(frame(snapshot.last_event_id, "resync", &data));
    }

    fn push(&mut self, event: &Published, buf: &mut BytesMut) {
        if event.seq <= self.last_sent {
            return;
        }
        self.last_sent = event.seq;
        if !self.filter.matches(&event.event.kind) {
            return;
        }
        if self.notify_only {
            let data = serde_json::json!({
                "id": event.event.id, "type": event.event.kind, "subject": event.event.subject,
            });
            buf.extend_from_slice(&frame(event.seq, &event.event.kind, &data));
        } else {
            buf.extend_from_slice(&event.frame);
        }
    }

    /// Moves every event already waiting into `buf`, up to the chunk limit.
    fn drain_ready(&mut self, buf: &mut BytesMut) {
        for _ in 0..CHUNK_EVENTS {
            match self.receiver.try_recv() {
                Ok(event) => self.push(&event, buf),
                Err(TryRecvError::Lagged(_)) => {
                    self.flush_resync(buf);
                    return;
                }
                Err(TryRecvError::Empty | TryRecvError::Closed) => return,
            }
        }
    }

    fn flush_resync(&mut self, buf: &mut BytesMut) {
        self.resync("lagged");
        while let Some(frame) = self.pending.pop_front() {
            buf.extend_from_slice(&frame);
        }
    }

    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        if let Some(frame) = self.pending.pop_front() {
            return Some((Ok(frame), self));
        }
        if self.done {
            return None;
        }
        let mut buf = BytesMut::new();
        loop {
            tokio::select! {
                biased;
                received = self.receiver.recv() => match received {
                    Ok(event) => {
                        self.push(&event, &mut buf);
                        self.drain_ready(&mut buf);
                    }
                    Err(RecvError::Lagged(_)) => self.flush_resync(&mut buf),
                    Err(RecvError::Closed) => return None,
                },
                _ = self.agent.streams_done.cancelled() => {
                    // The core has published its last event: send what is left, then end.
                    self.drain_ready(&mut buf);
                    self.done = true;
                    return (!buf.is_empty()).then(|| (Ok(buf.freeze()), self));
                }
                _ = self.keepalive.tick() => return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), self)),
            }
            if !buf.is_empty() {
                return Some((Ok(buf.freeze()), self));
            }
        }
    }
}
