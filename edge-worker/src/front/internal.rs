//! What the Worker tells a user's Durable Object beside the client's request, and the settings
//! both sides read: the internal headers (the authenticated user, a verified ticket), which the
//! Worker strips from every incoming request so only it can set them; the ticket secret; the
//! site's configured origin. Kept apart from the router so the objects need not import it.

use worker::Env;

/// The header carrying the authenticated user's id from the Worker to the user's object.
pub const USER_HEADER: &str = "x-autopilot-user";
/// Headers carrying a verified ticket's nonce and session to the user's object.
pub const TICKET_NONCE_HEADER: &str = "x-autopilot-ticket-nonce";
pub const TICKET_SESSION_HEADER: &str = "x-autopilot-ticket-session";
/// Headers only the Worker may set; removed from every incoming request.
pub const INTERNAL_HEADERS: [&str; 3] = [USER_HEADER, TICKET_NONCE_HEADER, TICKET_SESSION_HEADER];

/// The secret that signs WebSocket tickets.
///
/// # Errors
/// `TICKET_SECRET` is missing or shorter than 16 characters (the edge is misconfigured).
pub fn ticket_secret(env: &Env) -> worker::Result<String> {
    env.secret("TICKET_SECRET")
        .map(|s| s.to_string())
        .ok()
        .filter(|s| s.len() >= 16)
        .ok_or_else(|| worker::Error::RustError("TICKET_SECRET is not set (at least 16 characters)".into()))
}

/// The configured `PUBLIC_ORIGIN`, if any (see [`crate::front::site`]).
pub fn public_origin(env: &Env) -> Option<String> {
    env.var("PUBLIC_ORIGIN").ok().map(|v| v.to_string()).filter(|v| !v.is_empty())
}
