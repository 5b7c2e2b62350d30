//! The web dashboard at `/`: one self-contained HTML page (inline CSS and JS,
//! no CDN) embedded in the binary, so it works offline and behind Home
//! Assistant ingress (it only uses relative URLs).

use axum::http::header;
use axum::response::IntoResponse;

use std::sync::LazyLock;

/// The page as embedded at build time, with a marker where the server writes the event types.
const TEMPLATE: &str = include_str!("index.html");
const TYPES_PLACEHOLDER: &str = "__DISKWATCH_EVENT_TYPES__";

/// The page as served: the template with the event catalogue's wire names filled in.
pub static PAGE: LazyLock<String> = LazyLock::new(|| {
    let types: Vec<&str> = crate::events::EventKind::ALL.iter().map(|k| k.wire()).collect();
    // A list of plain strings always serialises.
    TEMPLATE.replacen(TYPES_PLACEHOLDER, &serde_json::to_string(&types).unwrap_or_default(), 1)
});

/// The dashboard: one self-contained HTML page.
#[utoipa::path(get, path = "/", responses((status = 200, content_type = "text/html", description = "the dashboard", body = String)))]
pub async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // The page is tiny and changes with the binary: always revalidate.
            (header::CACHE_CONTROL, "no-cache"),
            // Everything is inline or same-origin; nothing may be loaded from elsewhere.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src 'self' data:",
            ),
        ],
        PAGE.as_str(),
    )
}

#[cfg(test)]
mod tests {
    use super::{PAGE, TEMPLATE, TYPES_PLACEHOLDER};

    #[test]
    fn page_is_small_and_self_contained() {
        assert!(PAGE.len() <= 100 * 1024, "dashboard is {} bytes", PAGE.len());
        // The SVG namespace in the inline favicon is a name, not a request.
        let page = PAGE.replace("http://www.w3.org/2000/svg", "");
        for external in ["http://", "https://", "//cdn", "src=\"/", "href=\"/", "url("] {
            assert!(!page.contains(external), "dashboard references {external}");
        }
        // Absolute API paths would break behind Home Assistant ingress.
        assert!(!PAGE.contains("\"/api/"), "dashboard uses an absolute API path");
        assert!(PAGE.contains("\"api/v1/events/stream?snapshot=true\""));
    }

    #[test]
    fn page_lists_every_event_type_of_the_catalogue() {
        assert!(TEMPLATE.contains(TYPES_PLACEHOLDER));
        assert!(!PAGE.contains(TYPES_PLACEHOLDER));
        for kind in crate::events::EventKind::ALL {
            assert!(PAGE.contains(&format!("\"{}\"", kind.wire())), "{kind} missing from the dashboard");
        }
    }
}
