//! What `make bench` measures the product against, reachable only with `BENCH_ROUTES=true` (never
//! set in wrangler.toml), none of it on the product's paths (the container object never looks at
//! a bench socket):
//! - a plain WebSocket echo through the same workerd, the bridge's baseline (here);
//! - [`fanout`]: the fan-out's floor, a Durable Object that sends every message one of its
//!   sockets sends to all the others, with nothing of the bridge in between;
//! - [`stream`]: the archive's baseline, a Durable Object that streams a task's events from the
//!   agent-service to a socket as the bridge does, with no archive and no follow.

pub mod fanout;
pub mod stream;

use futures::StreamExt;
use worker::{wasm_bindgen_futures::spawn_local, Env, Response, WebSocketPair, WebsocketEvent};

use crate::socket::answer_close;

/// The binding of the fan-out floor's object.
pub const FANOUT_BINDING: &str = "BENCH_FANOUT";
/// The binding of the archive baseline's object.
pub const STREAM_BINDING: &str = "BENCH_STREAM";

/// Whether the bench routes exist: only when `BENCH_ROUTES=true`.
pub fn routes_enabled(env: &Env) -> bool {
    env.var("BENCH_ROUTES").map(|v| v.to_string() == "true").unwrap_or(false)
}

/// `GET /bench/echo`: a plain WebSocket echo through the same workerd, the baseline the bridge
/// is measured against.
pub fn echo_websocket() -> worker::Result<Response> {
    let pair = WebSocketPair::new()?;
    let server = pair.server;
    server.accept()?;
    spawn_local(async move {
        let Ok(mut events) = server.events() else { return };
        while let Some(Ok(event)) = events.next().await {
            match event {
                WebsocketEvent::Message(message) => {
                    let sent = match message.bytes() {
                        Some(bytes) => server.send_with_bytes(bytes),
                        None => server.send_with_str(message.text().unwrap_or_default()),
                    };
                    if sent.is_err() {
                        break;
                    }
                }
                WebsocketEvent::Close(close) => {
                    answer_close(&server, close.code().into());
                    break;
                }
            }
        }
    });
    Response::from_websocket(pair.client)
}
