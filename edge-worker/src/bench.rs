//! What `make bench` measures the product against, reachable only with `BENCH_ROUTES=true` (never
//! set in wrangler.toml): a plain WebSocket echo through the same workerd (the bridge's
//! baseline), and the fan-out's floor, a Durable Object of its own (`BenchFanout`) that sends
//! every message one of its sockets sends to all the others, with nothing of the bridge in
//! between. The bench sets what following one task with 200 sockets costs against what workerd
//! itself costs to send each message to 200 sockets from one object, side by side. None of it is
//! on the product's paths: the container object never looks at a bench socket.
//!
//! A fan-out message's first byte says how many times to send the rest to each socket (a burst
//! of events a follow receives together is sent as one batch too).

use std::cell::RefCell;

use futures::StreamExt;
use worker::{
    durable_object, wasm_bindgen_futures::spawn_local, Env, Request, Response, State, WebSocket,
    WebSocketIncomingMessage, WebSocketPair, WebsocketEvent,
};

use crate::{
    bridge::WsMessage,
    entropy::random_id,
    socket::{answer_close, try_send},
};

/// The binding of the fan-out floor's object.
pub const FANOUT_BINDING: &str = "BENCH_FANOUT";

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

/// The fan-out's floor: one object, its sockets, nothing else.
#[durable_object]
pub struct BenchFanout {
    state: State,
    /// The sockets that joined, by id (in memory: a bench run is shorter than an eviction).
    sockets: RefCell<Vec<(String, WebSocket)>>,
}

impl worker::DurableObject for BenchFanout {
    fn new(state: State, _env: Env) -> Self {
        BenchFanout { state, sockets: RefCell::default() }
    }

    /// A socket joins the fan-out.
    async fn fetch(&self, _req: Request) -> worker::Result<Response> {
        let pair = WebSocketPair::new()?;
        self.state.accept_web_socket(&pair.server);
        let id = random_id()?;
        pair.server.serialize_attachment(&id)?;
        self.sockets.borrow_mut().push((id, pair.server));
        Response::from_websocket(pair.client)
    }

    /// Sends what one socket sent to every other.
    async fn websocket_message(&self, from: WebSocket, message: WebSocketIncomingMessage) -> worker::Result<()> {
        let WebSocketIncomingMessage::Binary(message) = message else { return Ok(()) };
        let Some((&copies, payload)) = message.split_first() else { return Ok(()) };
        let sender = socket_id(&from);
        self.sockets.borrow_mut().retain(|(id, ws)| {
            *id == sender || (0..copies).all(|_| try_send(ws, WsMessage::Binary(payload.to_vec())).is_ok())
        });
        Ok(())
    }

    async fn websocket_close(&self, ws: WebSocket, code: usize, _reason: String, _clean: bool) -> worker::Result<()> {
        answer_close(&ws, code);
        let closed = socket_id(&ws);
        self.sockets.borrow_mut().retain(|(id, _)| *id != closed);
        Ok(())
    }
}

fn socket_id(ws: &WebSocket) -> String {
    ws.deserialize_attachment::<String>().ok().flatten().unwrap_or_default()
}
