//! Which web pages may call the service from a browser (CORS): none, unless the operator names
//! their origins (`--cors-origin`).
//!
//! The edge calls the service server to server, where CORS plays no part; a browser only needs
//! it to call the service directly. Answering every origin (`*`), as the service once did, let
//! any page the user visits drive the service on their machine or network, so each origin is now
//! named explicitly, and `*` is refused.

use axum::http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Headers a gRPC-web client sends, which a browser must be allowed to send.
const GRPC_WEB_REQUEST_HEADERS: [&str; 5] =
    ["content-type", "x-grpc-web", "x-user-agent", "grpc-timeout", "authorization"];
/// Headers a gRPC-web client must be allowed to read back.
const GRPC_WEB_RESPONSE_HEADERS: [&str; 3] = ["grpc-status", "grpc-message", "grpc-status-details-bin"];

/// The CORS layer allowing exactly `origins` (as [`parse_origin`] gives them), or `None` when
/// there are none: then responses carry no CORS header at all.
pub fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> =
        origins.iter().map(|o| HeaderValue::from_str(o).expect("parse_origin gives ASCII origins")).collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::POST, Method::GET, Method::OPTIONS])
            .allow_headers(GRPC_WEB_REQUEST_HEADERS.map(HeaderName::from_static))
            .expose_headers(GRPC_WEB_RESPONSE_HEADERS.map(HeaderName::from_static)),
    )
}

/// Checks one `--cors-origin` value and gives it as browsers send it in `Origin`:
/// `scheme://host[:port]`, lowercase, without a default port or a trailing slash.
///
/// # Errors
/// It is not an http(s) origin (a path, credentials, `*` or garbage), in words for people.
pub fn parse_origin(text: &str) -> Result<String, String> {
    let text = text.trim();
    let hint = "give an origin such as https://app.example.com";
    if text == "*" {
        return Err(format!("\"*\" would let every web page call the service; {hint}"));
    }
    let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not an origin ({e}); {hint}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!("{text:?} is not an http or https origin; {hint}"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(format!("{text:?} has more than scheme, host and port; {hint}"));
    }
    Ok(url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_given_as_browsers_send_them() {
        assert_eq!(parse_origin("https://OK.example"), Ok("https://ok.example".into()));
        assert_eq!(parse_origin("https://ok.example/"), Ok("https://ok.example".into()));
        assert_eq!(parse_origin("https://ok.example:443"), Ok("https://ok.example".into()));
        assert_eq!(parse_origin("http://localhost:5173"), Ok("http://localhost:5173".into()));
        assert_eq!(parse_origin(" http://[::1]:8080 "), Ok("http://[::1]:8080".into()));
    }

    #[test]
    fn anything_but_an_origin_is_refused() {
        for bad in ["*", "ok.example", "https://ok.example/app", "https://u:p@ok.example", "ftp://x", "https://x?q", ""]
        {
            assert!(parse_origin(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_origin("*").unwrap_err().contains("every web page"));
    }

    #[test]
    fn no_origins_means_no_cors_layer() {
        assert!(cors_layer(&[]).is_none());
        assert!(cors_layer(&["https://ok.example".into()]).is_some());
    }
}
