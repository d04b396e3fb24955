//! The operator dashboard at `GET /`: one HTML page, its script, stylesheet
//! and icon, embedded in the binary (plain files in `assets/`, no build step,
//! no external URL).
//!
//! The page holds no data: it polls `GET /api/v1/status` every 500 ms and
//! calls the drain/disable/enable API itself. So the page and its assets are
//! served without a token, and when `[admin] token` is set it is the page's
//! API calls that carry `Authorization: Bearer <token>`: the page takes the
//! token from `?token=` in its URL (`http://ADMIN/?token=SECRET`; it then
//! removes it from the address bar and keeps it in the tab's
//! `sessionStorage`), or asks for it in a form when the API answers 401.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const STYLE_CSS: &str = include_str!("../assets/style.css");
const FAVICON_SVG: &str = include_str!("../assets/favicon.svg");

/// Nothing but halb's own origin: the page works offline and a stray
/// reference to an outside URL fails loudly instead of leaking the operator's
/// view to a third party. Style attributes stay off; scripts set styles
/// through the DOM.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// The dashboard file at `path`, if `path` names one.
pub(crate) fn asset(path: &str) -> Option<Response<Full<Bytes>>> {
    let (body, content_type) = match path {
        "/" | "/index.html" => (INDEX_HTML, "text/html; charset=utf-8"),
        "/assets/app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "/assets/style.css" => (STYLE_CSS, "text/css; charset=utf-8"),
        "/assets/favicon.svg" | "/favicon.ico" => (FAVICON_SVG, "image/svg+xml"),
        _ => return None,
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Revalidate each time: after an upgrade the page and its script match.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The page's URL may carry the token.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_reference_is_served_and_local() {
        for reference in ["/assets/app.js", "/assets/style.css", "/assets/favicon.svg"] {
            assert!(
                INDEX_HTML.contains(reference),
                "index.html lacks {reference}"
            );
            assert!(asset(reference).is_some(), "{reference} is not served");
        }
        for file in [INDEX_HTML, APP_JS, STYLE_CSS, FAVICON_SVG] {
            for line in file.lines() {
                let outside = line.contains("https://")
                    || (line.contains("http://") && !line.contains("http://www.w3.org/2000/svg"));
                assert!(!outside, "an external URL in a dashboard asset: {line}");
            }
        }
    }

    #[test]
    fn unknown_paths_are_not_the_dashboards() {
        assert!(asset("/assets/missing.js").is_none());
        assert!(asset("/api/v1/status").is_none());
    }
}
