//! The web dashboard at `/`: one self-contained HTML page (inline CSS and JS,
//! no CDN) embedded in the binary, so it works offline and behind Home
//! Assistant ingress (it only uses relative URLs).

use axum::http::header;
use axum::response::IntoResponse;

/// The page, embedded at build time.
pub const PAGE: &str = include_str!("index.html");

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
        PAGE,
    )
}

#[cfg(test)]
mod tests {
    use super::PAGE;

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
}
