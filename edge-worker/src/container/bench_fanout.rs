//! The benchmark's floor for the fan-out (only with `BENCH_ROUTES=true`, never in wrangler.toml):
//! one Durable Object that sends every message one of its sockets on `/bench/fanout` sends it to
//! all the others, with nothing of the bridge in between. `make bench` sets what following one
//! task with 200 sockets costs against what workerd itself costs to send each message to 200
//! sockets from one object, measured side by side.
//!
//! A message's first byte says how many times to send the rest to each socket (a burst of events
//! a follow receives together is sent as one batch too).

use worker::{Response, WebSocket, WebSocketPair};

use super::{
    live::{socket_id, SocketInfo},
    AutopilotContainer,
};
use crate::{bridge::WsMessage, entropy::random_id, socket::try_send};

/// What the floor's sockets carry as their id, so their messages are told from bridge frames.
const FANOUT_SOCKET: &str = "bench-fanout-";

impl AutopilotContainer {
    /// A socket joins the fan-out.
    pub(super) fn bench_fanout_socket(&self) -> worker::Result<Response> {
        let pair = WebSocketPair::new()?;
        self.state.accept_web_socket(&pair.server);
        let socket_id = format!("{FANOUT_SOCKET}{}", random_id()?);
        pair.server.serialize_attachment(SocketInfo { socket_id: socket_id.clone(), session_id: String::new() })?;
        self.live.bench_fanout.borrow_mut().push((socket_id, pair.server));
        Response::from_websocket(pair.client)
    }

    /// Sends what `from` sent to every other fan-out socket; false when `from` is not one.
    pub(super) fn bench_fanout_message(&self, from: &WebSocket, message: &[u8]) -> bool {
        if self.live.bench_fanout.borrow().is_empty() {
            return false;
        }
        let sender = socket_id(from);
        if !sender.starts_with(FANOUT_SOCKET) {
            return false;
        }
        let Some((&copies, payload)) = message.split_first() else { return true };
        self.live.bench_fanout.borrow_mut().retain(|(id, ws)| {
            *id == sender || (0..copies).all(|_| try_send(ws, WsMessage::Binary(payload.to_vec())).is_ok())
        });
        true
    }

    /// A fan-out socket closed: it is dropped.
    pub(super) fn bench_fanout_closed(&self, ws: &WebSocket) {
        if !self.live.bench_fanout.borrow().is_empty() {
            let closed = socket_id(ws);
            self.live.bench_fanout.borrow_mut().retain(|(id, _)| *id != closed);
        }
    }
}
