//! REST handlers: the topology, event history, health and metrics.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::guard::Access;
use crate::agent::{Agent, SinkState, SinkStatus};
use crate::arrays::Array;
use crate::events::{CloudEvent, TypeFilter};
use crate::metrics::Degradation;
use crate::model::{Disk, Mount, Partition, Share, Snapshot, SourceStatus};

pub(super) type AgentState = State<Arc<Agent>>;

/// The whole topology with the id of the last event it reflects.
#[utoipa::path(get, path = "/api/v1/snapshot", responses((status = 200, body = Snapshot)))]
pub async fn snapshot(State(agent): AgentState) -> Json<Snapshot> {
    Json(agent.snapshot())
}

#[utoipa::path(get, path = "/api/v1/disks", responses((status = 200, body = Vec<Disk>)))]
pub async fn disks(State(agent): AgentState) -> Json<Vec<Disk>> {
    Json(agent.state().disks().cloned().collect())
}

#[utoipa::path(
    get,
    path = "/api/v1/disks/{id}",
    params(("id" = String, Path, description = "disk id")),
    responses((status = 200, body = Disk), (status = 404, body = ErrorBody))
)]
pub async fn disk(State(agent): AgentState, Path(id): Path<String>) -> Result<Json<Disk>, ApiError> {
    agent.state().disk(&id).cloned().map(Json).ok_or_else(|| ApiError::not_found(format!("no disk with id {id:?}")))
}

#[utoipa::path(get, path = "/api/v1/partitions", responses((status = 200, body = Vec<Partition>)))]
pub async fn partitions(State(agent): AgentState) -> Json<Vec<Partition>> {
    Json(agent.state().partitions().cloned().collect())
}

#[utoipa::path(get, path = "/api/v1/mounts", responses((status = 200, body = Vec<Mount>)))]
pub async fn mounts(State(agent): AgentState) -> Json<Vec<Mount>> {
    Json(agent.state().mounts().cloned().collect())
}

#[utoipa::path(get, path = "/api/v1/shares", responses((status = 200, body = Vec<Share>)))]
pub async fn shares(State(agent): AgentState) -> Json<Vec<Share>> {
    Json(agent.state().shares().cloned().collect())
}

/// md arrays, multi-device btrfs filesystems and ZFS pools.
#[utoipa::path(get, path = "/api/v1/arrays", responses((status = 200, body = Vec<Array>)))]
pub async fn arrays(State(agent): AgentState) -> Json<Vec<Array>> {
    Json(agent.state().arrays().cloned().collect())
}

#[utoipa::path(
    get,
    path = "/api/v1/arrays/{id}",
    params(("id" = String, Path, description = "array id: md-<uuid>, btrfs-<fsid> or zfs-<guid>")),
    responses((status = 200, body = Array), (status = 404, body = ErrorBody))
)]
pub async fn array(State(agent): AgentState, Path(id): Path<String>) -> Result<Json<Array>, ApiError> {
    agent.state().array(&id).cloned().map(Json).ok_or_else(|| ApiError::not_found(format!("no array with id {id:?}")))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Comma-separated type globs, e.g. `disk.*,mount.mounted`.
    pub types: Option<String>,
    /// Only events at or after this RFC 3339 time.
    pub since: Option<String>,
    /// Only events before this RFC 3339 time.
    pub until: Option<String>,
    /// Only events with a larger id.
    pub after_id: Option<u64>,
    /// At most this many events (default 100, at most 10000).
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventsPage {
    pub events: Vec<CloudEvent>,
    /// The newest event id the agent has emitted.
    pub last_event_id: u64,
}

/// Event history, oldest first: from the in-memory ring, and from the journal
/// for events the ring no longer holds.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    params(EventsQuery),
    responses((status = 200, body = EventsPage), (status = 400, body = ErrorBody))
)]
pub async fn events(
    State(agent): AgentState,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let filter = TypeFilter::parse(q.types.as_deref()).map_err(|e| ApiError::bad_request(format!("types: {e}")))?;
    let since = parse_time("since", q.since.as_deref())?;
    let until = parse_time("until", q.until.as_deref())?;
    let limit = q.limit.unwrap_or(100).min(10_000);
    let after = q.after_id.unwrap_or(0);
    let last_event_id = agent.state().last_seq();
    // Filtering (and reading the journal) happens on a blocking thread, on handles
    // copied out of the ring: the core's lock is held only for that copy.
    let log_agent = agent.clone();
    let events = tokio::task::spawn_blocking(move || {
        log_agent.log.history(after, limit, |e| {
            filter.matches(e.kind()) && since.is_none_or(|s| e.time() >= s) && until.is_none_or(|u| e.time() < u)
        })
    })
    .await
    .map_err(|e| ApiError::internal(format!("history query failed: {e}")))?;
    // The page is spliced from the events' stored JSON: nothing is parsed or re-rendered.
    let mut body = Vec::with_capacity(events.iter().map(|e| e.json().len() + 1).sum::<usize>() + 64);
    body.extend_from_slice(b"{\"events\":[");
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(event.json().as_bytes());
    }
    body.extend_from_slice(format!("],\"last_event_id\":{last_event_id}}}").as_bytes());
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

fn parse_time(name: &str, value: Option<&str>) -> Result<Option<SystemTime>, ApiError> {
    value
        .map(|v| {
            humantime::parse_rfc3339_weak(v)
                .map_err(|e| ApiError::bad_request(format!("{name}: {v:?} is not an RFC 3339 time: {e}")))
        })
        .transpose()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventType {
    #[serde(rename = "type")]
    pub kind: String,
    pub description: String,
}

/// The catalogue of event types.
#[utoipa::path(get, path = "/api/v1/events/types", responses((status = 200, body = Vec<EventType>)))]
pub async fn event_types() -> Json<Vec<EventType>> {
    Json(
        crate::events::catalogue()
            .map(|(kind, description)| EventType { kind: kind.to_owned(), description: description.to_owned() })
            .collect(),
    )
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when a part that is not required is down, or `down`.
    pub status: String,
    pub version: String,
    pub node_id: String,
    pub uptime_seconds: f64,
    pub last_event_id: u64,
    pub sources: Vec<SourceStatus>,
    pub sinks: Vec<SinkStatus>,
    /// Conditions that make the agent `degraded` while they hold: journal writes failing, every
    /// usage thread hung. Each is also `diskwatch_degraded{condition}` in /metrics.
    pub degraded: Vec<Degradation>,
}

/// Per-source and per-sink status; 503 when a required part is down. Open without the token,
/// but then only `{"status": ...}` is answered.
#[utoipa::path(
    get,
    path = "/api/v1/health",
    responses((status = 200, body = Health), (status = 503, body = Health))
)]
pub async fn health(State(agent): AgentState, access: Option<Extension<Access>>) -> Response {
    let (sources, last_event_id) = {
        let state = agent.state();
        (state.sources().cloned().collect::<Vec<_>>(), state.last_seq())
    };
    let sinks = agent.sink_statuses();
    let source_down = |s: &SourceStatus| s.status == crate::model::SourceState::Failed;
    let sink_down = |s: &SinkStatus| !matches!(s.status, SinkState::Connected | SinkState::Disabled);
    let required_down =
        sources.iter().any(|s| s.required && source_down(s)) || sinks.iter().any(|s| s.required && sink_down(s));
    let degraded = agent.metrics.conditions.list();
    let any_down = sources.iter().any(source_down) || sinks.iter().any(sink_down) || !degraded.is_empty();
    let (code, status) = match (required_down, any_down) {
        (true, _) => (StatusCode::SERVICE_UNAVAILABLE, "down"),
        (false, true) => (StatusCode::OK, "degraded"),
        _ => (StatusCode::OK, "ok"),
    };
    if matches!(access, Some(Extension(Access::StatusOnly))) {
        return (code, Json(serde_json::json!({ "status": status }))).into_response();
    }
    let body = Health {
        status: status.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        node_id: agent.node_id.clone(),
        uptime_seconds: agent.started.elapsed().as_secs_f64(),
        last_event_id,
        sources,
        sinks,
        degraded,
    };
    (code, Json(body)).into_response()
}

/// Prometheus metrics in the OpenMetrics text format.
#[utoipa::path(get, path = "/metrics", responses((status = 200, content_type = "application/openmetrics-text", body = String)))]
pub async fn metrics(State(agent): AgentState) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], agent.metrics.render())
        .into_response()
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no such endpoint: {}", uri.path()))
}

pub async fn method_not_allowed() -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: "only GET is served here".into(),
    }
}
