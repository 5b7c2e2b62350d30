//! `POST /api/v1/{disks,mounts,arrays}/{id}/acknowledge` (SPEC §9): quiets an object's
//! current attention reasons until their values change. Token-guarded like the action routes
//! (same rules: the token is needed even on loopback; a cookie needs the
//! `X-Diskwatch-Action` header), but not an action on the hardware, so `[actions]` need not
//! allow anything.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

use super::actions::{requester, unauthorized, ActionsHandle};
use super::config::HttpConfig;
use super::error::{ApiError, ErrorBody};
use crate::actions::acknowledge::AckError;
use crate::agent::Agent;
use crate::attention::Acknowledgeable;

/// The answer to an acknowledgement.
#[derive(Debug, Serialize, ToSchema)]
pub struct AckAnswer {
    /// `disk/<id>`, `mount/<id>` or `array/<id>`.
    pub subject: String,
    /// The reason codes acknowledged, at their current values.
    pub acknowledged: Vec<String>,
    /// The newest event id when it was taken: the resulting `*.attention_changed` (if the
    /// level or the unacknowledged set changed) comes after it.
    pub after_event_id: u64,
}

/// Acknowledges every current attention reason of a disk: each stays quiet (does not count
/// towards the level) until its value changes; kept across restarts.
#[utoipa::path(
    post,
    path = "/api/v1/disks/{id}/acknowledge",
    params(("id" = String, Path, description = "disk id")),
    responses(
        (status = 200, body = AckAnswer, description = "recorded; attention follows as disk.attention_changed"),
        (status = 401, body = ErrorBody, description = "no token, or the wrong one"),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the disk has no attention verdict yet"),
        (status = 503, body = ErrorBody, description = "the acknowledgement could not be recorded")
    )
)]
pub async fn disk(
    State(agent): State<Arc<Agent>>,
    State(config): State<Arc<HttpConfig>>,
    Extension(actions): Extension<ActionsHandle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    acknowledge(Acknowledgeable::Disk, &agent, &config, &actions, &headers, &id).await
}

/// Acknowledges every current attention reason of a mount (`mount_full`, `fills_soon`): each
/// stays quiet until its value changes (`fills_soon` going from "7d" to "24h" is news again);
/// kept across restarts.
#[utoipa::path(
    post,
    path = "/api/v1/mounts/{id}/acknowledge",
    params(("id" = String, Path, description = "mount id")),
    responses(
        (status = 200, body = AckAnswer, description = "recorded; attention follows as mount.attention_changed"),
        (status = 401, body = ErrorBody, description = "no token, or the wrong one"),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the mount has no attention verdict yet (no usage read)"),
        (status = 503, body = ErrorBody, description = "the acknowledgement could not be recorded")
    )
)]
pub async fn mount(
    State(agent): State<Arc<Agent>>,
    State(config): State<Arc<HttpConfig>>,
    Extension(actions): Extension<ActionsHandle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    acknowledge(Acknowledgeable::Mount, &agent, &config, &actions, &headers, &id).await
}

/// Acknowledges every current attention reason of an array (`array_degraded` etc.): each
/// stays quiet until its value changes (a second member lost is news again); kept across
/// restarts.
#[utoipa::path(
    post,
    path = "/api/v1/arrays/{id}/acknowledge",
    params(("id" = String, Path, description = "array id")),
    responses(
        (status = 200, body = AckAnswer, description = "recorded; attention follows as array.attention_changed"),
        (status = 401, body = ErrorBody, description = "no token, or the wrong one"),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the array has no attention verdict yet"),
        (status = 503, body = ErrorBody, description = "the acknowledgement could not be recorded")
    )
)]
pub async fn array(
    State(agent): State<Arc<Agent>>,
    State(config): State<Arc<HttpConfig>>,
    Extension(actions): Extension<ActionsHandle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    acknowledge(Acknowledgeable::Array, &agent, &config, &actions, &headers, &id).await
}

async fn acknowledge(
    kind: Acknowledgeable,
    agent: &Agent,
    config: &HttpConfig,
    actions: &ActionsHandle,
    headers: &HeaderMap,
    id: &str,
) -> Response {
    if let Err(why) = requester(config, headers) {
        return unauthorized(why);
    }
    let Some(actions) = &actions.0 else {
        let message = "acknowledging needs the running agent's action engine".to_owned();
        return ApiError { status: StatusCode::SERVICE_UNAVAILABLE, code: "unavailable", message }.into_response();
    };
    let after_event_id = agent.log.last_seq();
    let current = agent.state().attention_of(kind, id);
    match actions.acknowledge(kind, id, current).await {
        Ok(done) => Json(AckAnswer { subject: done.subject, acknowledged: done.codes, after_event_id }).into_response(),
        Err(e @ AckError::NotFound { .. }) => ApiError::not_found(e.to_string()).into_response(),
        Err(e @ AckError::NotAssessed { .. }) => {
            ApiError { status: StatusCode::CONFLICT, code: "conflict", message: e.to_string() }.into_response()
        }
        Err(e) => ApiError { status: StatusCode::SERVICE_UNAVAILABLE, code: "unavailable", message: e.to_string() }
            .into_response(),
    }
}
