//! WebSocket sessions and their single-use tickets, kept in a Durable Object's storage. Both
//! backends need the same: Start creates a session for the task, a ticket opens one socket to it,
//! and a reconnect asks for a fresh ticket. Each object keeps its own sessions, so a session of one
//! backend (or one user) is unknown to every other object.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use worker::{Date, Env, ListOptions, Request, Response, State};

use crate::{
    api_error::error_response,
    entropy::random_id,
    front::auth::unauthenticated,
    front::internal::{public_origin, ticket_secret, TICKET_NONCE_HEADER, TICKET_SESSION_HEADER},
    front::route::Backend,
    front::site::{site_origin, websocket_url},
    front::ticket::{self, Ticket, TICKET_TTL_MS},
    grpc_web::{Code, GrpcStatus},
    socket::{is_websocket_upgrade, upgrade_required},
};

/// Storage key prefix of WebSocket sessions.
const SESSION_PREFIX: &str = "session:";
/// Storage key prefix of unused ticket nonces.
const TICKET_PREFIX: &str = "ticket:";

/// A WebSocket session: created by Start, opened by the WebSocket route.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Session {
    task_id: String,
    created_ms: u64,
}

/// The sessions of one object, whose WebSockets and reconnect tickets are served on the routes
/// of its `backend`.
pub struct Sessions<'a> {
    pub state: &'a State,
    pub env: &'a Env,
    pub backend: Backend,
}

/// See [`Sessions::ticket_ask`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketAsk {
    Session(String),
    Task(String),
}

impl Sessions<'_> {
    /// Creates a session for `task_id` and its first ticket; the reply body of a Start route.
    pub async fn start_reply(
        &self,
        req: &Request,
        user_id: &str,
        task_id: &str,
        state_name: &str,
    ) -> worker::Result<Response> {
        let session_id = random_id()?;
        let session = Session { task_id: task_id.to_string(), created_ms: Date::now().as_millis() };
        self.state.storage().put(&format!("{SESSION_PREFIX}{session_id}"), session).await?;
        let (ticket, websocket_url) = self.issue_ticket(req, user_id, &session_id).await?;
        Response::from_json(&serde_json::json!({
            "taskId": task_id,
            "state": state_name,
            "sessionId": session_id,
            "ticket": ticket,
            "websocketUrl": websocket_url,
        }))
    }

    /// What `POST <ticket_path>` asks for: `{"sessionId"}`, a fresh ticket for a reconnect, or
    /// `{"taskId"}`, a new session on one of the user's tasks (so any device can open any of the
    /// user's timelines, e.g. from the task list).
    ///
    /// # Errors
    /// INVALID_ARGUMENT for a body with neither.
    pub async fn ticket_ask(req: &mut Request) -> worker::Result<Result<TicketAsk, GrpcStatus>> {
        let body: serde_json::Value = req.json().await.unwrap_or_default();
        let text = |name: &str| body[name].as_str().filter(|value| !value.is_empty()).map(str::to_string);
        Ok(match (text("sessionId"), text("taskId")) {
            (Some(session_id), _) => Ok(TicketAsk::Session(session_id)),
            (None, Some(task_id)) => Ok(TicketAsk::Task(task_id)),
            (None, None) => Err(GrpcStatus::new(Code::InvalidArgument, "send {\"sessionId\"} or {\"taskId\"}")),
        })
    }

    /// A fresh ticket for a reconnect to `session_id` (NOT_FOUND unless it is this object's).
    pub async fn ticket_reply(&self, req: &Request, user_id: &str, session_id: &str) -> worker::Result<Response> {
        let session_id = session_id.to_string();
        if session_id.is_empty() || !self.exists(&session_id).await? {
            return error_response(&GrpcStatus::new(Code::NotFound, "no such session"));
        }
        let (ticket, websocket_url) = self.issue_ticket(req, user_id, &session_id).await?;
        Response::from_json(
            &serde_json::json!({"sessionId": session_id, "ticket": ticket, "websocketUrl": websocket_url}),
        )
    }

    /// Whether a WebSocket may open on `session_id`: the session must be this object's, the
    /// request an upgrade (426 otherwise), and a ticket must name it and be unused (its nonce is
    /// burned here). `Err` is the refusal.
    pub async fn admit(&self, req: &Request, session_id: &str) -> worker::Result<Result<(), Response>> {
        let not_found = || error_response(&GrpcStatus::new(Code::NotFound, "no such session"));
        if !self.exists(session_id).await? {
            return Ok(Err(not_found()?));
        }
        // After the session check (another user's session is only ever "not found"), before a
        // ticket is burned: a plain GET does not use it up.
        if !is_websocket_upgrade(req)? {
            return Ok(Err(upgrade_required("this route is a WebSocket: send Upgrade: websocket")?));
        }
        if let Some(nonce) = req.headers().get(TICKET_NONCE_HEADER)? {
            if req.headers().get(TICKET_SESSION_HEADER)?.as_deref() != Some(session_id) {
                return Ok(Err(not_found()?));
            }
            if !self.state.storage().delete(&format!("{TICKET_PREFIX}{nonce}")).await? {
                return Ok(Err(unauthenticated(&format!(
                    "the ticket was already used; ask POST {} for a new one",
                    self.backend.ticket_path()
                ))?));
            }
        }
        Ok(Ok(()))
    }

    async fn exists(&self, session_id: &str) -> worker::Result<bool> {
        let session: Option<Session> = self.state.storage().get(&format!("{SESSION_PREFIX}{session_id}")).await?;
        Ok(session.is_some())
    }

    /// A single-use ticket for a WebSocket to `session_id`, and the URL that carries it. The
    /// nonce is kept until the ticket is used or expires (then [`Sessions::prune`] drops it).
    async fn issue_ticket(&self, req: &Request, user_id: &str, session_id: &str) -> worker::Result<(String, String)> {
        let site = self.site(req).map_err(|status| worker::Error::RustError(status.message))?;
        let ticket = Ticket {
            user_id: user_id.to_string(),
            session_id: session_id.into(),
            nonce: random_id()?,
            expires_at_ms: Date::now().as_millis() + self.ticket_ttl_ms(),
        };
        self.state.storage().put(&format!("{TICKET_PREFIX}{}", ticket.nonce), ticket.expires_at_ms).await?;
        let text = ticket::issue(ticket_secret(self.env)?.as_bytes(), &ticket);
        let websocket_url =
            websocket_url(&site, &format!("{}{session_id}?ticket={text}", self.backend.socket_prefix()));
        Ok((text, websocket_url))
    }

    /// The site's origin, which the WebSocket URLs handed out are built on (see [`site_origin`]).
    ///
    /// # Errors
    /// INVALID_ARGUMENT when the request came for a host the edge cannot vouch for: without
    /// `PUBLIC_ORIGIN`, any host but a loopback one (a client's `Host` is not trusted).
    pub fn site(&self, req: &Request) -> Result<String, GrpcStatus> {
        let url = req.url().map_err(|e| GrpcStatus::new(Code::InvalidArgument, e.to_string()))?;
        site_origin(public_origin(self.env).as_deref(), url.as_str())
            .map_err(|m| GrpcStatus::new(Code::InvalidArgument, m))
    }

    /// How long a ticket is valid: `TICKET_TTL_SECONDS`, or [`TICKET_TTL_MS`].
    pub fn ticket_ttl_ms(&self) -> u64 {
        seconds_var(self.env, "TICKET_TTL_SECONDS").map(|s| s * 1000).unwrap_or(TICKET_TTL_MS)
    }

    /// Deletes the nonces of tickets that expired unused, and the sessions older than
    /// `SESSION_RETENTION_SECONDS` (default [`SESSION_RETENTION`]) but those of `running_tasks`.
    /// Answers when the next entry is due to go, if any remains.
    pub async fn prune(&self, now_ms: u64, running_tasks: &[String]) -> worker::Result<Option<u64>> {
        let retention_ms = seconds_var(self.env, "SESSION_RETENTION_SECONDS")
            .map(|s| s * 1000)
            .unwrap_or(SESSION_RETENTION.as_millis() as u64);
        let storage = self.state.storage();
        let mut expired = Vec::new();
        let mut next_due: Option<u64> = None;
        let mut note_due = |due: u64| next_due = Some(next_due.map_or(due, |next| next.min(due)));
        for entry in storage.list_with_options(ListOptions::new().prefix(TICKET_PREFIX)).await?.entries() {
            let (key, expires_at_ms): (String, u64) = serde_wasm_bindgen::from_value(entry?)?;
            match prune_decision(expires_at_ms, now_ms) {
                Prune::Now => expired.push(key),
                Prune::At(due) => note_due(due),
            }
        }
        for entry in storage.list_with_options(ListOptions::new().prefix(SESSION_PREFIX)).await?.entries() {
            let (key, session): (String, Session) = serde_wasm_bindgen::from_value(entry?)?;
            if running_tasks.contains(&session.task_id) {
                continue;
            }
            match prune_decision(session.created_ms + retention_ms, now_ms) {
                Prune::Now => expired.push(key),
                Prune::At(due) => note_due(due),
            }
        }
        // Storage deletes at most 128 keys per call.
        for keys in expired.chunks(128) {
            storage.delete_multiple(keys.to_vec()).await?;
        }
        Ok(next_due)
    }

    /// How many sessions and unused tickets are stored (for the operator's storage report).
    pub async fn counts(&self) -> worker::Result<(usize, usize)> {
        let storage = self.state.storage();
        let sessions = storage.list_with_options(ListOptions::new().prefix(SESSION_PREFIX)).await?.size() as usize;
        let tickets = storage.list_with_options(ListOptions::new().prefix(TICKET_PREFIX)).await?.size() as usize;
        Ok((sessions, tickets))
    }
}

/// How long a session outlives its creation unless `SESSION_RETENTION_SECONDS` says otherwise:
/// as long as a browser sign-in lasts, so a page can reopen any task it remembers.
pub const SESSION_RETENTION: Duration = Duration::from_secs(crate::front::auth::SESSION_TTL_SECONDS);

/// Whether a stored entry that lapses at `due_ms` goes now or later.
#[derive(Debug, PartialEq, Eq)]
enum Prune {
    Now,
    At(u64),
}

fn prune_decision(due_ms: u64, now_ms: u64) -> Prune {
    if due_ms <= now_ms {
        Prune::Now
    } else {
        Prune::At(due_ms)
    }
}

/// A whole number of seconds from the var `name`, if set and readable.
fn seconds_var(env: &Env, name: &str) -> Option<u64> {
    env.var(name).ok().and_then(|v| v.to_string().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_goes_once_its_time_has_come_not_before() {
        assert_eq!(prune_decision(1_000, 999), Prune::At(1_000));
        assert_eq!(prune_decision(1_000, 1_000), Prune::Now);
        assert_eq!(prune_decision(1_000, 5_000), Prune::Now);
    }
}
