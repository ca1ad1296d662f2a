//! The site's own origin and what a browser's request must show to act for its user. A session
//! cookie travels with every request a browser makes to the site, whichever page asked for it, so
//! a request authenticated by cookie alone proves nothing about who wrote it: state-changing
//! routes and WebSocket upgrades then require the site's own `Origin` (and a JSON or gRPC-web
//! body, which no plain cross-site form can send). Bearer tokens are not sent by browsers on
//! their own, so token clients are unaffected. The site's origin also builds the WebSocket URLs
//! the edge hands out: it comes from the `PUBLIC_ORIGIN` var, never from the request's `Host`,
//! which only loopback development may trust.

use worker::Url;

/// Largest request body the edge accepts (a Start's prompt is at most 100 kB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How a request proved its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// `Authorization: Bearer <API token>`: sent only by code that holds the token.
    Token,
    /// The browser session cookie: sent by the browser with any request to the site.
    Cookie,
}

/// What a cookie-authenticated request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// GET or HEAD: reads only.
    Read,
    /// A state-changing JSON route.
    Json,
    /// A gRPC-web call passed through to the service.
    GrpcWeb,
    /// A WebSocket upgrade.
    Upgrade,
}

/// The site's origin (`scheme://host[:port]`): `PUBLIC_ORIGIN` when configured, otherwise the
/// request's own origin if its host is a loopback one (local development).
///
/// # Errors
/// A message for the operator when neither applies (the request's `Host` cannot be trusted).
pub fn site_origin(configured: Option<&str>, request_url: &str) -> Result<String, String> {
    if let Some(configured) = configured.map(str::trim).filter(|c| !c.is_empty()) {
        return Url::parse(configured)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
            .map(|url| url.origin().ascii_serialization())
            .ok_or_else(|| format!("PUBLIC_ORIGIN ({configured}) is not an http(s) origin"));
    }
    let url = Url::parse(request_url).map_err(|e| format!("the request URL is unreadable: {e}"))?;
    match url.host_str() {
        Some(host) if is_loopback(host) => Ok(url.origin().ascii_serialization()),
        host => Err(format!(
            "PUBLIC_ORIGIN is not set and {} is not a loopback host: set PUBLIC_ORIGIN to the site's origin",
            host.unwrap_or("the request's host")
        )),
    }
}

/// The WebSocket URL of `path` on the site at `origin` (`http` → `ws`, `https` → `wss`).
pub fn websocket_url(origin: &str, path_and_query: &str) -> String {
    let origin = origin.strip_prefix("https://").map(|rest| format!("wss://{rest}")).unwrap_or_else(|| {
        origin.strip_prefix("http://").map(|rest| format!("ws://{rest}")).unwrap_or_else(|| origin.to_string())
    });
    format!("{origin}{path_and_query}")
}

/// Whether a request authenticated by `proof` may go on.
///
/// # Errors
/// Why not, for a 403.
pub fn check_browser_request(
    proof: Proof,
    kind: RequestKind,
    origin: Option<&str>,
    content_type: Option<&str>,
    site_origin: &str,
) -> Result<(), String> {
    if proof == Proof::Token || kind == RequestKind::Read {
        return Ok(());
    }
    match origin {
        Some(origin) if origin.trim_end_matches('/') == site_origin => {}
        Some(origin) => {
            return Err(format!(
                "a request signed in by cookie must come from {site_origin}, not {}",
                origin.chars().take(200).collect::<String>()
            ))
        }
        None => return Err(format!("a request signed in by cookie must carry Origin: {site_origin}")),
    }
    let media_type = content_type.unwrap_or_default().split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match kind {
        RequestKind::Json if media_type != "application/json" => {
            Err("a request signed in by cookie must send Content-Type: application/json".into())
        }
        RequestKind::GrpcWeb if !media_type.starts_with("application/grpc-web") => {
            Err("a gRPC-web call signed in by cookie must send Content-Type: application/grpc-web+proto".into())
        }
        _ => Ok(()),
    }
}

/// Whether `host` (as in a URL, IPv6 in brackets) names this machine.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: &str = "https://autopilot.example";

    #[test]
    fn the_configured_origin_wins_over_the_requests_host() {
        let origin = site_origin(Some("https://autopilot.example/"), "http://evil.example/api/container/start");
        assert_eq!(origin.unwrap(), SITE);
        assert!(site_origin(Some("javascript:alert(1)"), "http://127.0.0.1:8787/").is_err());
    }

    #[test]
    fn without_public_origin_only_loopback_hosts_are_trusted() {
        assert_eq!(site_origin(None, "http://127.0.0.1:8787/api/x").unwrap(), "http://127.0.0.1:8787");
        assert_eq!(site_origin(None, "http://localhost:8787/").unwrap(), "http://localhost:8787");
        assert_eq!(site_origin(None, "http://[::1]:8787/").unwrap(), "http://[::1]:8787");
        let refused = site_origin(Some(""), "https://rebound.example/api/container/start").unwrap_err();
        assert!(refused.contains("PUBLIC_ORIGIN"), "{refused}");
    }

    #[test]
    fn websocket_urls_follow_the_sites_scheme() {
        assert_eq!(
            websocket_url(SITE, "/api/container/ws/s?ticket=t"),
            "wss://autopilot.example/api/container/ws/s?ticket=t"
        );
        assert_eq!(websocket_url("http://127.0.0.1:8787", "/w"), "ws://127.0.0.1:8787/w");
    }

    #[test]
    fn a_cookie_post_from_a_foreign_origin_is_refused() {
        let json = Some("application/json");
        let foreign = check_browser_request(Proof::Cookie, RequestKind::Json, Some("https://evil.example"), json, SITE);
        assert!(foreign.unwrap_err().contains("must come from https://autopilot.example"));
        assert!(check_browser_request(Proof::Cookie, RequestKind::Json, None, json, SITE).is_err());
        assert!(check_browser_request(Proof::Cookie, RequestKind::Json, Some(SITE), json, SITE).is_ok());
    }

    #[test]
    fn a_cookie_post_of_a_simple_content_type_is_refused() {
        let plain = check_browser_request(Proof::Cookie, RequestKind::Json, Some(SITE), Some("text/plain"), SITE);
        assert!(plain.unwrap_err().contains("application/json"));
        let charset = Some("application/json; charset=utf-8");
        assert!(check_browser_request(Proof::Cookie, RequestKind::Json, Some(SITE), charset, SITE).is_ok());
        let form = Some("application/x-www-form-urlencoded");
        assert!(check_browser_request(Proof::Cookie, RequestKind::GrpcWeb, Some(SITE), form, SITE).is_err());
    }

    #[test]
    fn a_cookie_websocket_upgrade_needs_the_sites_origin() {
        let other = check_browser_request(
            Proof::Cookie,
            RequestKind::Upgrade,
            Some("https://sub.autopilot.example"),
            None,
            SITE,
        );
        assert!(other.is_err());
        assert!(check_browser_request(Proof::Cookie, RequestKind::Upgrade, Some(SITE), None, SITE).is_ok());
    }

    #[test]
    fn token_clients_and_reads_are_unaffected() {
        assert!(check_browser_request(Proof::Token, RequestKind::Json, None, Some("text/plain"), SITE).is_ok());
        assert!(
            check_browser_request(Proof::Cookie, RequestKind::Read, Some("https://evil.example"), None, SITE).is_ok()
        );
    }
}
