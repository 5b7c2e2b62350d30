//! The OpenAPI 3 document, generated from the handlers and types by utoipa.

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::acknowledge;
use super::actions;
use super::api;
use super::dashboard;
use super::error::{ErrorBody, ErrorDetail};
use super::history;
use super::sse;
use crate::agent::{SinkState, SinkStatus};
use crate::arrays::{Array, ArrayKind, ArrayMember, ArrayState, ErrorCounts, MemberRole};
use crate::events::CloudEvent;
use crate::history::Series;
use crate::model::{
    Disk, DiskIo, Health, HealthSource, Mount, NfsClient, Partition, PowerState, Protocol, Share, Snapshot,
    SourceState, SourceStatus, Usage,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "diskwatch", description = "Storage-device monitoring agent: topology, events and live streams."),
    modifiers(&TokenAuth),
    security(("bearer" = []), ("cookie" = [])),
    paths(
        dashboard::index,
        api::snapshot,
        api::disks,
        api::disk,
        actions::info,
        actions::eject,
        actions::spin_down,
        actions::self_test,
        acknowledge::disk,
        acknowledge::mount,
        acknowledge::array,
        actions::unmount,
        actions::mount,
        api::partitions,
        api::mounts,
        api::shares,
        api::arrays,
        api::array,
        api::events,
        api::event_types,
        sse::stream,
        api::health,
        history::history,
        api::metrics,
        document
    ),
    components(schemas(
        Snapshot,
        Disk,
        PowerState,
        Health,
        HealthSource,
        DiskIo,
        Series,
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
        Array,
        ArrayKind,
        ArrayState,
        ArrayMember,
        MemberRole,
        ErrorCounts,
        CloudEvent,
        ErrorBody,
        ErrorDetail,
        api::EventsPage,
        api::EventType,
        api::Health,
        actions::Accepted,
        acknowledge::AckAnswer,
        crate::model::attention::Attention,
        crate::model::attention::Reason,
        crate::model::attention::Level,
        crate::model::attention::Severity,
        actions::MountBody,
        actions::SelfTestBody,
        crate::model::selftest::SelfTest,
        crate::model::selftest::RunningTest,
        crate::model::selftest::LastTest,
        crate::model::selftest::SelfTestKind,
        crate::model::selftest::SelfTestResult,
        actions::ActionsInfo,
        crate::model::ActionKind,
        crate::model::ActionRecord,
        crate::model::Holder,
        crate::metrics::Degradation
    ))
)]
pub struct ApiDoc;

/// The token schemes (used when `http.auth_token_file` is set): the header, or the cookie a
/// one-time `?token=` visit sets. `/api/v1/health` answers without them, with the status only.
struct TokenAuth;

impl Modify for TokenAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("the token of http.auth_token_file"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "diskwatch_token_<port>",
                "set by a visit with ?token=<token>, which answers 303 to the same URL without it",
            ))),
        );
    }
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", responses((status = 200, description = "OpenAPI 3 document")))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
