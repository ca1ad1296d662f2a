//! Where a tunnel frame's answer goes. Every browser socket and HTTP caller of a user shares one
//! machine socket, and each chooses its own request ids, so the relay rewrites the id of each
//! `ClientFrame` it sends the machine into a routed id naming the asker, and reads the asker back
//! from the id of every `ServerFrame` the machine answers with. The route lives in the id itself,
//! so it survives the Durable Object hibernating between frames.

use crate::bridge::Encoding;

/// Who asked, and under which id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyRoute {
    /// A browser socket (named by its socket id), which speaks `encoding` and chose `request_id`.
    Socket { socket_id: String, encoding: Encoding, request_id: String },
    /// An HTTP request of the edge itself (e.g. `POST /api/tunnel/start`), waiting in memory.
    Http { call_id: String },
    /// The relay's own follow of a task into its archive: the task's events.
    ArchiveEvents { task_id: String },
    /// The relay's own follow of a task into its archive: the task's final Status.
    ArchiveEnd { task_id: String },
}

impl ReplyRoute {
    /// The request id the machine sees.
    pub fn to_request_id(&self) -> String {
        match self {
            ReplyRoute::Socket { socket_id, encoding, request_id } => {
                let encoding = match encoding {
                    Encoding::Binary => 'b',
                    Encoding::Json => 'j',
                };
                format!("s/{socket_id}/{encoding}/{request_id}")
            }
            ReplyRoute::Http { call_id } => format!("h/{call_id}"),
            ReplyRoute::ArchiveEvents { task_id } => format!("a/{task_id}"),
            ReplyRoute::ArchiveEnd { task_id } => format!("e/{task_id}"),
        }
    }

    /// The route a machine's request id names; `None` for an id the relay never issued.
    pub fn parse(request_id: &str) -> Option<ReplyRoute> {
        if let Some(call_id) = request_id.strip_prefix("h/") {
            return (!call_id.is_empty()).then(|| ReplyRoute::Http { call_id: call_id.to_string() });
        }
        // Task ids are the service's (UUIDs).
        let task_id = |id: &str| {
            let ok = !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            ok.then(|| id.to_string())
        };
        if let Some(id) = request_id.strip_prefix("a/") {
            return task_id(id).map(|task_id| ReplyRoute::ArchiveEvents { task_id });
        }
        if let Some(id) = request_id.strip_prefix("e/") {
            return task_id(id).map(|task_id| ReplyRoute::ArchiveEnd { task_id });
        }
        let rest = request_id.strip_prefix("s/")?;
        let (socket_id, rest) = rest.split_once('/')?;
        let (encoding, request_id) = rest.split_once('/')?;
        let encoding = match encoding {
            "b" => Encoding::Binary,
            "j" => Encoding::Json,
            _ => return None,
        };
        // Socket ids are the relay's own (UUIDs); anything else was not issued here.
        if socket_id.is_empty() || !socket_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return None;
        }
        Some(ReplyRoute::Socket { socket_id: socket_id.to_string(), encoding, request_id: request_id.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_routes_round_trip_any_client_request_id() {
        for request_id in ["events-1", "", "a/b/c", "ünïcode"] {
            for encoding in [Encoding::Binary, Encoding::Json] {
                let route =
                    ReplyRoute::Socket { socket_id: "0f3e-Ab12".into(), encoding, request_id: request_id.into() };
                assert_eq!(ReplyRoute::parse(&route.to_request_id()), Some(route));
            }
        }
        let http = ReplyRoute::Http { call_id: "c9".into() };
        assert_eq!(http.to_request_id(), "h/c9");
        assert_eq!(ReplyRoute::parse("h/c9"), Some(http));
        for route in [
            ReplyRoute::ArchiveEvents { task_id: "7c1e-42".into() },
            ReplyRoute::ArchiveEnd { task_id: "7c1e-42".into() },
        ] {
            assert_eq!(ReplyRoute::parse(&route.to_request_id()), Some(route));
        }
    }

    #[test]
    fn ids_the_relay_never_issued_route_nowhere() {
        for id in
            ["", "events-1", "h/", "s/", "s/abc", "s/abc/x/r1", "s//b/r1", "s/a_b/b/r1", "x/abc/b/r1", "a/", "e/x/y"]
        {
            assert_eq!(ReplyRoute::parse(id), None, "{id:?}");
        }
    }
}
