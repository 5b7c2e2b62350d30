//! The OpenAPI 3 document, generated from the handlers and types by utoipa.

use axum::Json;
use utoipa::OpenApi;

use super::api;
use super::error::{ErrorBody, ErrorDetail};
use super::sse;
use crate::agent::{SinkState, SinkStatus};
use crate::events::CloudEvent;
use crate::model::{Disk, Mount, NfsClient, Partition, Protocol, Share, Snapshot, SourceState, SourceStatus, Usage};

#[derive(OpenApi)]
#[openapi(
    info(title = "diskwatch", description = "Storage-device monitoring agent: topology, events and live streams."),
    paths(
        api::snapshot,
        api::disks,
        api::disk,
        api::partitions,
        api::mounts,
        api::shares,
        api::events,
        api::event_types,
        sse::stream,
        api::health,
        api::metrics,
        document
    ),
    components(schemas(
        Snapshot,
        Disk,
        Partition,
        Mount,
        Usage,
        Share,
        NfsClient,
        Protocol,
        SourceStatus,
        SourceState,
        SinkState,
        SinkStatus,
        CloudEvent,
        ErrorBody,
        ErrorDetail,
        api::EventsPage,
        api::EventType,
        api::Health,
        crate::metrics::Degradation
    ))
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", responses((status = 200, description = "OpenAPI 3 document")))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
