//! `GET /api/v1/history?metric=&object=&since=` (SPEC §8): one object's series from the
//! history store, at the store's resolution.

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::api::AgentState;
use super::error::{ApiError, ErrorBody};
use crate::history::{parse_since, unix_now, Metric, Series};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// `usage` (mount), `temperature`, `read_rate` or `write_rate` (disk).
    pub metric: String,
    /// The disk or mount id.
    pub object: String,
    /// RFC 3339 time, unix seconds, or a span back from now (`24h`); default: the whole retention.
    pub since: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/history",
    params(HistoryQuery),
    responses((status = 200, body = Series), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn history(
    State(agent): AgentState,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Series>, ApiError> {
    let Query(q) = query?;
    let history =
        agent.history().ok_or_else(|| ApiError::not_found("history is disabled ([history] enabled = false)"))?;
    let metric = Metric::parse(&q.metric).ok_or_else(|| {
        ApiError::bad_request(format!(
            "metric: {:?} is not one of {}",
            q.metric,
            Metric::ALL.map(Metric::as_str).join(", ")
        ))
    })?;
    if q.object.is_empty() {
        return Err(ApiError::bad_request("object: required"));
    }
    let since = match q.since.as_deref() {
        None | Some("") => 0,
        Some(s) => parse_since(s, unix_now())
            .ok_or_else(|| ApiError::bad_request(format!("since: {s:?} is neither a time nor a span like 24h")))?,
    };
    Ok(Json(history.query(&q.object, metric, since)))
}
