//! The Worker's route table. Every route but `/health` belongs to a user and is forwarded to
//! that user's Durable Object, which does the work.
//!
//! Until accounts land, the user is taken from the development header `x-autopilot-user`, or is
//! `dev` when it is absent.

use worker::{Env, Method, Request, Response};

use crate::api_error::not_found;

/// The header carrying the user's id from the Worker to the user's Durable Object.
pub const USER_HEADER: &str = "x-autopilot-user";
/// The development user, when a request names none.
const DEV_USER: &str = "dev";

/// Routes one request.
pub async fn handle(req: Request, env: Env) -> worker::Result<Response> {
    let path = req.path();
    match (req.method(), path.as_str()) {
        (Method::Get, "/health") => Response::ok("ok"),
        (Method::Post, "/api/container/start")
        | (Method::Get, "/api/container/status")
        | (Method::Post, "/autopilot.v1.Autopilot/Start")
        | (Method::Post, "/autopilot.v1.Autopilot/Status")
        | (Method::Post, "/autopilot.v1.Autopilot/StreamEvents")
        | (Method::Post, "/autopilot.v1.Autopilot/Cancel") => forward_to_user_object(req, &env).await,
        (Method::Get, p) if p.starts_with("/api/container/ws/") => forward_to_user_object(req, &env).await,
        (Method::Get, "/bench/echo") if bench_routes_enabled(&env) => echo_websocket(),
        _ => not_found(&path),
    }
}

/// Sends the request to the Durable Object of its user, naming the user in [`USER_HEADER`].
async fn forward_to_user_object(req: Request, env: &Env) -> worker::Result<Response> {
    let user = req.headers().get(USER_HEADER)?.filter(|u| !u.is_empty()).unwrap_or_else(|| DEV_USER.to_string());
    let mut forwarded = req.clone_mut()?;
    forwarded.headers_mut()?.set(USER_HEADER, &user)?;
    let stub = env.durable_object("AUTOPILOT_CONTAINER")?.id_from_name(&user)?.get_stub()?;
    stub.fetch_with_request(forwarded).await
}

/// The benchmark's baseline route exists only when `BENCH_ROUTES=true` (never in wrangler.toml).
fn bench_routes_enabled(env: &Env) -> bool {
    env.var("BENCH_ROUTES").map(|v| v.to_string() == "true").unwrap_or(false)
}

/// A plain WebSocket echo through the same workerd: the baseline the bridge is measured against.
fn echo_websocket() -> worker::Result<Response> {
    use futures::StreamExt;
    let pair = worker::WebSocketPair::new()?;
    let server = pair.server;
    server.accept()?;
    worker::wasm_bindgen_futures::spawn_local(async move {
        let Ok(mut events) = server.events() else { return };
        while let Some(Ok(event)) = events.next().await {
            match event {
                worker::WebsocketEvent::Message(message) => {
                    let sent = match message.bytes() {
                        Some(bytes) => server.send_with_bytes(bytes),
                        None => server.send_with_str(message.text().unwrap_or_default()),
                    };
                    if sent.is_err() {
                        break;
                    }
                }
                worker::WebsocketEvent::Close(_) => break,
            }
        }
    });
    Response::from_websocket(pair.client)
}
