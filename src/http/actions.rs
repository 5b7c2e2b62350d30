//! The action routes (SPEC §8): `POST /api/v1/disks/{id}/eject`, `/disks/{id}/spin_down`,
//! `/mounts/{id}/unmount`, `/partitions/{id}/mount`, and `/disks/{id}/self_test` (SPEC §9). Each answers 202 with an action id;
//! the outcome is an `action.succeeded` / `action.failed` event.
//!
//! The token is needed always, even on loopback and from `http.anonymous_from`: the guard in
//! front lets tokenless requests through when no token is configured, these routes do not.
//! A cookie-authenticated request must also carry `X-Diskwatch-Action: 1`: a header a
//! cross-site form cannot send, and that a cross-origin script cannot send without a CORS
//! preflight this server never grants, so another page on the same host cannot press the
//! buttons with the dashboard's cookie.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::token_matches;
use super::config::HttpConfig;
use super::error::{ApiError, ErrorBody};
use super::guard;
use crate::actions::{Actions, Refusal, Request, Requester};
use crate::agent::Agent;
use crate::model::selftest::SelfTestKind;
use crate::model::ActionKind;

/// The engine, when the agent has one (`None`: every action answers 403).
#[derive(Clone, Default)]
pub struct ActionsHandle(pub Option<Actions>);

/// The header a cookie-authenticated action request must carry.
pub const ACTION_HEADER: &str = "x-diskwatch-action";

/// The answer to an accepted action.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// The action id; the outcome event carries it in `data.action.id`.
    pub id: String,
    pub action: ActionKind,
    /// `disk/<id>`, `mount/<id>` or `partition/<id>`: the outcome event's subject.
    pub object: String,
    /// The newest event id when the action was accepted: stream from here
    /// (`Last-Event-ID`, `types=action.*`) and the outcome cannot be missed.
    pub after_event_id: u64,
}

/// Body of `POST /partitions/{id}/mount` (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MountBody {
    /// Mount read-write (needs `actions.mount_read_write = true`); read-only by default.
    #[serde(default)]
    pub read_write: bool,
}

fn forbidden(message: String) -> ApiError {
    ApiError { status: StatusCode::FORBIDDEN, code: "forbidden", message }
}

pub(super) fn unauthorized(message: &str) -> Response {
    let mut response = ApiError { status: StatusCode::UNAUTHORIZED, code: "unauthorized", message: message.to_owned() }
        .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer realm=\"diskwatch\""));
    response
}

/// Who asks: the token's name, when the request carries the token; else why not (for a 401).
pub(super) fn requester(config: &HttpConfig, headers: &HeaderMap) -> Result<Requester, &'static str> {
    let Some(token) = &config.auth_token else {
        return Err("actions need the API token, and none is set: set http.auth_token_file");
    };
    let name =
        config.auth_token_file.file_name().map_or_else(|| "token".to_owned(), |n| n.to_string_lossy().into_owned());
    if let Some(given) = guard::bearer(headers) {
        if token_matches(token, given) {
            return Ok(Requester::Token(name));
        }
        return Err("wrong token");
    }
    match guard::cookie(headers, &guard::cookie_name(config)) {
        Some(given) if token_matches(token, given) => {
            if headers.get(ACTION_HEADER).is_some() {
                Ok(Requester::Token(name))
            } else {
                Err("a cookie-authenticated action needs the X-Diskwatch-Action header")
            }
        }
        _ => Err("actions need the token: `Authorization: Bearer <token>`"),
    }
}

// The request's parts as the routes have them (the body's mount and self-test options among them).
#[allow(clippy::too_many_arguments)]
async fn run(
    agent: &Agent,
    config: &HttpConfig,
    actions: &ActionsHandle,
    headers: &HeaderMap,
    kind: ActionKind,
    object_id: String,
    read_write: bool,
    self_test: Option<SelfTestKind>,
) -> Response {
    let Some(actions) = &actions.0 else {
        return forbidden(Refusal::Disabled.to_string()).into_response();
    };
    if !actions.config().allows(kind) {
        let refusal = if actions.config().enabled { Refusal::NotAllowed(kind.as_str()) } else { Refusal::Disabled };
        return forbidden(refusal.to_string()).into_response();
    }
    let requester = match requester(config, headers) {
        Ok(r) => r,
        Err(why) => return unauthorized(why),
    };
    let after_event_id = agent.log.last_seq();
    let request = Request { kind, object_id: object_id.clone(), read_write, self_test, requester };
    match actions.request(request) {
        Ok(id) => {
            let object = format!("{}/{}", kind.object(), object_id);
            (StatusCode::ACCEPTED, Json(Accepted { id, action: kind, object, after_event_id })).into_response()
        }
        Err(refusal @ Refusal::NotFound { .. }) => ApiError::not_found(refusal.to_string()).into_response(),
        Err(refusal @ Refusal::Busy { .. }) => {
            ApiError { status: StatusCode::CONFLICT, code: "conflict", message: refusal.to_string() }.into_response()
        }
        Err(refusal) => forbidden(refusal.to_string()).into_response(),
    }
}

/// Unmounts every mount of a removable disk's partitions, flushes and powers it off (a loop
/// device is detached). Refused for the disk holding `/` or another system mount, swap, an
/// array member, or a busy mount.
#[utoipa::path(
    post,
    path = "/api/v1/disks/{id}/eject",
    params(("id" = String, Path, description = "disk id")),
    responses(
        (status = 202, body = Accepted, description = "accepted: the outcome arrives as action.succeeded / action.failed"),
        (status = 401, body = ErrorBody, description = "no token, or the wrong one"),
        (status = 403, body = ErrorBody, description = "actions disabled or this one not allowed"),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "another action runs on this disk")
    )
)]
pub async fn eject(
    State(agent): State<Arc<Agent>>,
    State(config): State<Arc<HttpConfig>>,
    Extension(actions): Extension<ActionsHandle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    run(&agent, &config, &actions, &headers, ActionKind::Eject, id, false, None).await
}

/// Puts a rotational disk in standby (ATA STANDBY IMMEDIATE); non-rotational disks are refused.
#[utoipa::path(
    post,
    path = "/api/v1/disks/{id}/spin_down",
    params(("id" = String, Path, description = "disk id")),
    responses(
        (status = 202, body = Accepted),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)
    )
)]
pub async fn spin_down(
    State(agent): State<Arc<Agent>>,
    State(config): State<Arc<HttpConfig>>,
    Extension(actions): Extension<ActionsHandle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    run(&agent, &config, &actions, &headers, ActionKind::SpinDown, id, false, None).await
}

/// Unmounts a mount, never lazily; a busy mount fails naming the processes holding it.
#[utoipa::path(
    post,
    path = "/api/v1/mounts/{id}/unmount",
    params(("id" = String, Path, description = "mount id")),
    responses(
        (status = 202, body = Accepted),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)
    )
)]
pub async fn unmount(
    State(agent): State<Arc<Agent>>,
    State(config): State<Arc<HttpConfig>>,
    Extension(actions): Extension<ActionsHandle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    run(&agent, &config, &actions, &headers, ActionKind::Unmount, id, false, None).await
}

/// Mounts a partition below `actions.mount_root` (`nosuid,nodev`, read-only unless asked and allowed).
#[utoipa::path(
    post,
    path = "/api/v1/partitions/{id}/mount",
    params(("id" = String, Path, description = "partition id")),
    request_body(content = Option<MountBody>, description = "optional; empty means read-only"),
    responses(
        (status = 202, body = Accepted),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)
    )
)]
pub async fn mount(
    State(agent): State<Arc<Agent>>,
    State(config): State<Arc<HttpConfig>>,
    Extension(actions): Extension<ActionsHandle>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let body: MountBody = match optional_body(&body) {
        Ok(b) => b,
        Err(e) => return bad_body(&config, &headers, e),
    };
    run(&agent, &config, &actions, &headers, ActionKind::Mount, id, body.read_write, None).await
}

/// Body of `POST /disks/{id}/self_test`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SelfTestBody {
    /// `short` (minutes) or `long` (the whole surface: hours).
    pub kind: SelfTestKind,
}

/// No body: the short test.
impl Default for SelfTestBody {
    fn default() -> Self {
        SelfTestBody { kind: SelfTestKind::Short }
    }
}

/// Starts a SMART self-test now on an awake disk: never on a disk in standby (the outcome is
/// `action.failed` with reason `asleep`), never beside a running test of a member of the same
/// array (`array_busy`) or beyond `health.self_test.max_parallel` (`max_parallel`).
/// Progress and result follow in the disk's `self_test` and the `disk.self_test_*` events.
#[utoipa::path(
    post,
    path = "/api/v1/disks/{id}/self_test",
    params(("id" = String, Path, description = "disk id")),
    request_body(content = Option<SelfTestBody>, description = r#"{"kind": "short"} or {"kind": "long"}; empty means short"#),
    responses(
        (status = 202, body = Accepted, description = "accepted: the outcome arrives as action.succeeded / action.failed"),
        (status = 400, body = ErrorBody, description = "a body that is not {\"kind\": \"short\" | \"long\"}"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)
    )
)]
pub async fn self_test(
    State(agent): State<Arc<Agent>>,
    State(config): State<Arc<HttpConfig>>,
    Extension(actions): Extension<ActionsHandle>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    // No body: the short test, as Home Assistant's button runs it.
    match optional_body::<SelfTestBody>(&body) {
        Ok(b) => run(&agent, &config, &actions, &headers, ActionKind::SelfTest, id, false, Some(b.kind)).await,
        Err(e) => bad_body(&config, &headers, e),
    }
}

/// An optional JSON body: empty (or only whitespace) is `T::default()`.
fn optional_body<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> Result<T, serde_json::Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        serde_json::from_slice(body)
    }
}

/// A body that does not parse. Who asks is checked before what is asked: a request without
/// the token learns nothing (401), one with it gets 400 and why.
fn bad_body(config: &HttpConfig, headers: &HeaderMap, e: serde_json::Error) -> Response {
    match requester(config, headers) {
        Err(why) => unauthorized(why),
        Ok(_) => ApiError::bad_request(format!("body: {e}")).into_response(),
    }
}

/// What the actions of this agent are (for the dashboard's buttons).
#[derive(Debug, Serialize, ToSchema)]
pub struct ActionsInfo {
    pub enabled: bool,
    /// The actions allowed (empty when disabled).
    pub allow: Vec<ActionKind>,
    pub mount_root: String,
    pub mount_read_write: bool,
    pub timeout_seconds: u64,
}

/// The actions this agent takes, and their settings (`[actions]`).
#[utoipa::path(get, path = "/api/v1/actions", responses((status = 200, body = ActionsInfo)))]
pub async fn info(Extension(actions): Extension<ActionsHandle>) -> Json<ActionsInfo> {
    let config = actions.0.as_ref().map(|a| a.config().clone()).unwrap_or_default();
    Json(ActionsInfo {
        enabled: config.enabled,
        allow: config.allowed(),
        mount_root: config.mount_root.display().to_string(),
        mount_read_write: config.mount_read_write,
        timeout_seconds: config.timeout.as_secs(),
    })
}
