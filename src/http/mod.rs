//! The HTTP side (SPEC §4): REST, SSE, Prometheus metrics and the OpenAPI
//! document, built by [`app`] so tests can drive it on any listener.

mod acknowledge;
pub mod actions;
mod api;
pub mod auth;
pub mod config;
mod dashboard;
mod error;
pub mod guard;
mod history;
pub mod limits;
mod openapi;
pub mod server;
mod sse;

use std::sync::Arc;

use axum::extract::FromRef;
use axum::routing::{get, post};
use axum::{Extension, Router};

use crate::agent::Agent;
use config::HttpConfig;
pub use error::ApiError;
pub use openapi::ApiDoc;

pub use server::serve;

/// What every handler may extract: the agent, and the HTTP configuration.
#[derive(Clone)]
pub struct AppState {
    pub agent: Arc<Agent>,
    pub config: Arc<HttpConfig>,
}

impl FromRef<AppState> for Arc<Agent> {
    fn from_ref(state: &AppState) -> Self {
        state.agent.clone()
    }
}

impl FromRef<AppState> for Arc<HttpConfig> {
    fn from_ref(state: &AppState) -> Self {
        state.config.clone()
    }
}

/// The router of every endpoint, sharing one agent, behind the [`guard`] (network, Host
/// header, token), which also covers the fallback: an unknown path without a token is a 401.
/// Without an action engine every action route answers 403.
pub fn app(agent: Arc<Agent>, config: HttpConfig) -> Router {
    app_with_actions(agent, config, None)
}

/// [`app`] with the action engine behind the POST routes.
pub fn app_with_actions(agent: Arc<Agent>, config: HttpConfig, engine: Option<crate::actions::Actions>) -> Router {
    let config = Arc::new(config);
    let guard = Arc::new(guard::Guard::new(agent.clone(), &config));
    let sse_slots = Arc::new(limits::SseSlots::new(config.max_sse_clients));
    Router::new()
        .route("/", get(dashboard::index))
        .route("/api/v1/snapshot", get(api::snapshot))
        .route("/api/v1/disks", get(api::disks))
        .route("/api/v1/disks/{id}", get(api::disk))
        .route("/api/v1/actions", get(actions::info))
        .route("/api/v1/disks/{id}/eject", post(actions::eject))
        .route("/api/v1/disks/{id}/spin_down", post(actions::spin_down))
        .route("/api/v1/disks/{id}/self_test", post(actions::self_test))
        .route("/api/v1/disks/{id}/acknowledge", post(acknowledge::disk))
        .route("/api/v1/mounts/{id}/unmount", post(actions::unmount))
        .route("/api/v1/mounts/{id}/acknowledge", post(acknowledge::mount))
        .route("/api/v1/arrays/{id}/acknowledge", post(acknowledge::array))
        .route("/api/v1/partitions/{id}/mount", post(actions::mount))
        .route("/api/v1/partitions", get(api::partitions))
        .route("/api/v1/mounts", get(api::mounts))
        .route("/api/v1/shares", get(api::shares))
        .route("/api/v1/arrays", get(api::arrays))
        .route("/api/v1/arrays/{id}", get(api::array))
        .route("/api/v1/events", get(api::events))
        .route("/api/v1/events/types", get(api::event_types))
        .route("/api/v1/events/stream", get(sse::stream))
        .route("/api/v1/health", get(api::health))
        .route("/api/v1/history", get(history::history))
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/metrics", get(api::metrics))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(Extension(sse_slots))
        .layer(Extension(actions::ActionsHandle(engine)))
        .layer(axum::middleware::from_fn_with_state(guard, guard::check))
        .with_state(AppState { agent, config })
}
