//! The SSE stream (`/api/v1/events/stream`): type filters, resume with
//! Last-Event-ID, resync, snapshot and notify-only modes, keep-alive.
//!
//! Every client follows the shared broadcast channel with its own cursor.
//! A client that falls more than `events.client_buffer` events behind gets a
//! `resync` event with a snapshot and continues from there: it never slows
//! the core or the other clients, and memory stays bounded by the channel.
//! Frames are rendered once per event and shared; ready events are sent in
//! one chunk.
//!
//! A client resuming after an id the ring no longer holds is replayed from
//! the journal, chunk by chunk as it reads, until it reaches the ring; then
//! it follows the channel. Only a hole in the history (events lost from the
//! journal) or an id from before the agent's current run (the storage may
//! have changed while the agent was down) is answered with a resync.

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
use crate::events::history::ReadLimit;
use crate::events::{Published, TypeFilter};
use crate::metrics::LimitLabel;

/// Events sent in one chunk at most, so one busy client cannot hog a worker.
const CHUNK_EVENTS: usize = 256;
/// Events read from the journal per step of a replay.
const REPLAY_CHUNK: ReadLimit = ReadLimit { events: CHUNK_EVENTS, bytes: 256 * 1024 };

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
        receiver: None,
        pending: VecDeque::new(),
        filter,
        notify_only: q.notify_only,
        last_sent: 0,
        keepalive: keepalive(config.keepalive),
        done: false,
        _slot: slot,
    };
    let run_start_after = agent.log.run_start_after();
    match resume_after {
        Some(after) if after > agent.state().last_seq() => {
            client.follow();
            client.resync("unknown_id");
        }
        Some(after) if after <= run_start_after && run_start_after > 0 => {
            // From an earlier run: what changed while the agent was down has no events.
            client.follow();
            client.resync("restarted");
        }
        Some(after) => {
            client.last_sent = after;
            if let Some(buf) = client.follow_from_ring() {
                client.pending.push_back(buf);
            }
        }
        None if q.snapshot => {
            client.follow();
            let snapshot = agent.snapshot();
            client.last_sent = snapshot.last_event_id;
            client.pending.push_back(frame(snapshot.last_event_id, "snapshot", &snapshot));
        }
        None => {
            client.follow();
            client.last_sent = agent.state().last_seq();
        }
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
    /// The channel followed; `None` while replaying from the journal.
    receiver: Option<Receiver<Arc<Published>>>,
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
    /// Follows new events from now on.
    fn follow(&mut self) {
        self.receiver = Some(self.agent.log.subscribe());
    }

    /// When the ring holds every event after `last_sent`: follows the channel from
    /// there and returns the held ones as frames (`Some` even when empty). `None`
    /// leaves the client replaying from the journal.
    fn follow_from_ring(&mut self) -> Option<Bytes> {
        if !self.agent.log.holds_after(self.last_sent) {
            return None;
        }
        let sub = self.agent.log.resume(self.last_sent).ok()?;
        self.receiver = Some(sub.receiver);
        let mut buf = BytesMut::new();
        for event in &sub.backlog {
            self.push(event, &mut buf);
        }
        Some(buf.freeze())
    }

    /// One step of a replay: the next chunk from the journal, or the switch to
    /// the ring once it holds the rest. A hole in the journal ends in a resync.
    async fn replay_step(&mut self) -> Bytes {
        if let Some(buf) = self.follow_from_ring() {
            return buf;
        }
        let after = self.last_sent;
        let agent = self.agent.clone();
        let chunk =
            tokio::task::spawn_blocking(move || agent.log.journal_after(after, REPLAY_CHUNK)).await.unwrap_or_default();
        let mut buf = BytesMut::new();
        let mut contiguous = !chunk.is_empty();
        for event in &chunk {
            if event.seq != self.last_sent + 1 {
                contiguous = false;
                break;
            }
            self.push(event, &mut buf);
        }
        if !contiguous {
            // The ring may have caught the rest meanwhile; otherwise history has a hole.
            match self.follow_from_ring() {
                Some(held) => buf.extend_from_slice(&held),
                None => {
                    debug!(after = self.last_sent, "history after this id is not in the journal");
                    self.follow();
                    self.flush_resync(&mut buf, "too_old");
                }
            }
        }
        buf.freeze()
    }

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
        if !self.filter.matches(event.kind()) {
            return;
        }
        if self.notify_only {
            let data = serde_json::json!({
                "id": event.seq.to_string(), "type": event.kind(), "subject": event.subject(),
            });
            buf.extend_from_slice(&frame(event.seq, event.kind(), &data));
        } else {
            buf.extend_from_slice(event.frame());
        }
    }

    /// Moves every event already waiting into `buf`, up to the chunk limit.
    fn drain_ready(&mut self, buf: &mut BytesMut) {
        for _ in 0..CHUNK_EVENTS {
            let Some(receiver) = self.receiver.as_mut() else { return };
            match receiver.try_recv() {
                Ok(event) => self.push(&event, buf),
                Err(TryRecvError::Lagged(_)) => {
                    self.flush_resync(buf, "lagged");
                    return;
                }
                Err(TryRecvError::Empty | TryRecvError::Closed) => return,
            }
        }
    }

    fn flush_resync(&mut self, buf: &mut BytesMut, reason: &str) {
        self.resync(reason);
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
        while self.receiver.is_none() {
            if self.agent.streams_done.is_cancelled() {
                return None;
            }
            let chunk = self.replay_step().await;
            if !chunk.is_empty() {
                return Some((Ok(chunk), self));
            }
        }
        let mut buf = BytesMut::new();
        loop {
            let receiver = self.receiver.as_mut()?;
            tokio::select! {
                biased;
                received = receiver.recv() => match received {
                    Ok(event) => {
                        self.push(&event, &mut buf);
                        self.drain_ready(&mut buf);
                    }
                    Err(RecvError::Lagged(_)) => self.flush_resync(&mut buf, "lagged"),
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
