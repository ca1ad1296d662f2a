//! Answers only requests addressed to a name the service is known by: `localhost`, `127.0.0.1`,
//! `::1`, this machine's hostname, and what the operator adds (`--allowed-host`). Others get 403.
//!
//! Why: a web page on `evil.example` can point its own name at 127.0.0.1 (DNS rebinding) and
//! then call the service from the user's browser as if it were same-origin; no CORS setting
//! stops that, but the request still says `Host: evil.example`. The edge and local clients call
//! the service by one of the default names; any port is fine. `GET /ping` stays open for any
//! host, as health checks from platforms use whatever name they like and it reveals nothing.
//!
//! The name checked is the HTTP/1 `Host` header and the HTTP/2 `:authority` (hyper puts it in
//! the request's URI); a request naming no host is refused too. The refusal is a 403 with a
//! plain message naming the flag to use, and the same words as a gRPC status (PERMISSION_DENIED)
//! for gRPC clients. Matching ([`host_name`], [`AllowedHosts`]) is pure and unit-tested here.

use std::{collections::BTreeSet, sync::Arc};

use axum::{
    extract::{Request, State},
    http::{header::HOST, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};

/// The names every service answers to.
const DEFAULT_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The host names requests may be addressed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHosts {
    names: BTreeSet<String>,
}

impl AllowedHosts {
    /// The defaults, this machine's `hostname` if known, and the operator's `extra` names (each
    /// read as [`host_name`] reads a request's, so `[::1]` and `Name:8080` work too).
    pub fn new(extra: &[String], hostname: Option<&str>) -> AllowedHosts {
        let names = DEFAULT_HOSTS.into_iter().chain(hostname).chain(extra.iter().map(String::as_str));
        AllowedHosts { names: names.filter_map(host_name).collect() }
    }

    /// As [`AllowedHosts::new`], with this machine's hostname as the system reports it.
    pub fn with_own_hostname(extra: &[String]) -> AllowedHosts {
        let hostname = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok());
        AllowedHosts::new(extra, hostname.as_deref())
    }

    /// Whether a request whose Host (or :authority) is `authority` may be served.
    pub fn allows(&self, authority: &str) -> bool {
        host_name(authority).is_some_and(|name| self.names.contains(&name))
    }

    /// Every allowed name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }
}

/// The host name in a `Host` header or an `:authority`, as it is compared: lowercase, without
/// the port, the IPv6 brackets or a final dot. `None` when it is not a host (empty, a bad port).
pub fn host_name(authority: &str) -> Option<String> {
    let authority = authority.trim();
    let host = if let Some(rest) = authority.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        port_is_valid(after)?;
        inside
    } else if authority.matches(':').count() > 1 {
        authority // a bare IPv6 address, as an operator may write it (`::1`)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => {
                port_is_valid(&format!(":{port}"))?;
                host
            }
            None => authority,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// `Some` when `after` (what follows the host) is nothing or `:` and a port number.
fn port_is_valid(after: &str) -> Option<()> {
    match after.strip_prefix(':') {
        None if after.is_empty() => Some(()),
        Some(port) if !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()) => Some(()),
        _ => None,
    }
}

/// Every host a request names: its URI's authority (HTTP/2's `:authority`, or an absolute-form
/// HTTP/1 target) and each `Host` header. All of them must be allowed.
fn named_hosts(request: &Request) -> Vec<String> {
    let mut hosts: Vec<String> = request.uri().authority().map(|a| a.as_str().to_string()).into_iter().collect();
    for value in request.headers().get_all(HOST) {
        hosts.push(value.to_str().map(str::to_string).unwrap_or_else(|_| String::from("(unreadable)")));
    }
    hosts
}

/// The middleware: passes requests for allowed hosts (and `/ping`) on, refuses the others.
pub async fn guard(State(allowed): State<Arc<AllowedHosts>>, request: Request, next: Next) -> Response {
    if request.uri().path() == "/ping" {
        return next.run(request).await;
    }
    let hosts = named_hosts(&request);
    if hosts.is_empty() {
        return refuse("the request names no host (no Host header); this service answers requests for localhost\n");
    }
    if let Some(foreign) = hosts.iter().find(|h| !allowed.allows(h)) {
        let name = host_name(foreign).unwrap_or_else(|| foreign.clone());
        tracing::warn!(host = %foreign, "refused a request for a host this service does not answer to");
        return refuse(&format!(
            "host {name} is not allowed here; start the service with --allowed-host {name} to serve it\n"
        ));
    }
    next.run(request).await
}

/// 403 with `message` as plain text, and also as a gRPC status (PERMISSION_DENIED, in the
/// headers, as a trailers-only response carries it), so gRPC and gRPC-web clients report the
/// same words rather than failing to read a text body.
fn refuse(message: &str) -> Response {
    let grpc_message = percent_encode(message.trim_end());
    let headers = [
        ("content-type", "text/plain; charset=utf-8".to_string()),
        ("grpc-status", (tonic::Code::PermissionDenied as i32).to_string()),
        ("grpc-message", grpc_message),
    ];
    (StatusCode::FORBIDDEN, headers, message.to_string()).into_response()
}

/// `text` as gRPC wants a `grpc-message` value: bytes outside printable ASCII, and `%`, as `%XX`.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| if (0x20..0x7f).contains(&b) && b != b'%' { char::from(b).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_without_port_brackets_case_or_final_dot() {
        assert_eq!(host_name("localhost").as_deref(), Some("localhost"));
        assert_eq!(host_name("LocalHost:8080").as_deref(), Some("localhost"));
        assert_eq!(host_name("127.0.0.1:0").as_deref(), Some("127.0.0.1"));
        assert_eq!(host_name("[::1]").as_deref(), Some("::1"));
        assert_eq!(host_name("[::1]:8080").as_deref(), Some("::1"));
        assert_eq!(host_name("::1").as_deref(), Some("::1"));
        assert_eq!(host_name("[FE80::1]:443").as_deref(), Some("fe80::1"));
        assert_eq!(host_name("example.com.").as_deref(), Some("example.com"));
        for bad in ["", ":8080", "host:", "host:port", "host:123456", "[::1", "[::1]x", "[::1]:", "[]"] {
            assert_eq!(host_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_defaults_and_the_machines_own_name_are_allowed_on_any_port() {
        let allowed = AllowedHosts::new(&[], Some("agent-box"));
        for host in ["localhost", "localhost:8080", "127.0.0.1:8080", "[::1]:9", "LOCALHOST", "agent-box:80"] {
            assert!(allowed.allows(host), "{host}");
        }
        for host in ["evil.example", "evil.example:8080", "127.0.0.2", "localhost.evil.example", "", "[::2]"] {
            assert!(!allowed.allows(host), "{host}");
        }
    }

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(percent_encode("host a.b is not allowed; 100%"), "host a.b is not allowed; 100%25");
        assert_eq!(percent_encode("é\n"), "%C3%A9%0A");
    }

    #[test]
    fn the_operator_adds_names() {
        let allowed = AllowedHosts::new(&["Agent.Internal".into(), "[fd00::5]".into(), "svc:8080".into()], None);
        assert!(allowed.allows("agent.internal:8443"));
        assert!(allowed.allows("[fd00::5]:80"));
        assert!(allowed.allows("svc"));
        assert!(!allowed.allows("evil.example"));
        assert_eq!(
            allowed.names().collect::<Vec<_>>(),
            ["127.0.0.1", "::1", "agent.internal", "fd00::5", "localhost", "svc"]
        );
    }
}
