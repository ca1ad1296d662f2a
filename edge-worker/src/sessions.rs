//! WebSocket sessions and their single-use tickets, kept in a Durable Object's storage. Both
//! backends need the same: Start creates a session for the task, a ticket opens one socket to it,
//! and a reconnect asks for a fresh ticket. Each object keeps its own sessions, so a session of one
//! backend (or one user) is unknown to every other object.

use serde::{Deserialize, Serialize};
use worker::{Date, Env, Request, Response, State};

use crate::{
    api_error::error_response,
    auth::unauthenticated,
    entropy::random_id,
    grpc_web::{Code, GrpcStatus},
    routes::{ticket_secret, TICKET_NONCE_HEADER, TICKET_SESSION_HEADER},
    ticket::{self, Ticket, TICKET_TTL_MS},
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

/// The sessions of one object, whose WebSockets are served under `ws_path` (e.g.
/// `/api/container/ws/`) and whose reconnect tickets come from `ticket_path`.
pub struct Sessions<'a> {
    pub state: &'a State,
    pub env: &'a Env,
    pub ws_path: &'static str,
    pub ticket_path: &'static str,
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

    /// `POST <ticket_path>` `{"sessionId"}`: a fresh ticket for a reconnect.
    pub async fn ticket_route(&self, mut req: Request, user_id: &str) -> worker::Result<Response> {
        let body: serde_json::Value = req.json().await.unwrap_or_default();
        let session_id = body["sessionId"].as_str().unwrap_or_default().to_string();
        if session_id.is_empty() || !self.exists(&session_id).await? {
            return error_response(&GrpcStatus::new(Code::NotFound, "no such session"));
        }
        let (ticket, websocket_url) = self.issue_ticket(&req, user_id, &session_id).await?;
        Response::from_json(
            &serde_json::json!({"sessionId": session_id, "ticket": ticket, "websocketUrl": websocket_url}),
        )
    }

    /// Whether a WebSocket may open on `session_id`: the session must be this object's, and a
    /// ticket must name it and be unused (its nonce is burned here). `Err` is the refusal.
    pub async fn admit(&self, req: &Request, session_id: &str) -> worker::Result<Result<(), Response>> {
        let not_found = || error_response(&GrpcStatus::new(Code::NotFound, "no such session"));
        if !self.exists(session_id).await? {
            return Ok(Err(not_found()?));
        }
        if let Some(nonce) = req.headers().get(TICKET_NONCE_HEADER)? {
            if req.headers().get(TICKET_SESSION_HEADER)?.as_deref() != Some(session_id) {
                return Ok(Err(not_found()?));
            }
            if !self.state.storage().delete(&format!("{TICKET_PREFIX}{nonce}")).await? {
                return Ok(Err(unauthenticated(&format!(
                    "the ticket was already used; ask POST {} for a new one",
                    self.ticket_path
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
    /// nonce is kept until the ticket is used or expires.
    async fn issue_ticket(&self, req: &Request, user_id: &str, session_id: &str) -> worker::Result<(String, String)> {
        let ticket = Ticket {
            user_id: user_id.to_string(),
            session_id: session_id.into(),
            nonce: random_id()?,
            expires_at_ms: Date::now().as_millis() + TICKET_TTL_MS,
        };
        self.state.storage().put(&format!("{TICKET_PREFIX}{}", ticket.nonce), ticket.expires_at_ms).await?;
        let text = ticket::issue(ticket_secret(self.env)?.as_bytes(), &ticket);
        let url = req.url()?;
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        let host = url.host_str().unwrap_or("localhost");
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        let websocket_url = format!("{scheme}://{host}{port}{}{session_id}?ticket={text}", self.ws_path);
        Ok((text, websocket_url))
    }
}
