//! The fan-out's floor: one Durable Object that sends every message one of its sockets sends to
//! all the others. The bench sets what following one task with 200 sockets costs against what
//! workerd itself costs to send each message to 200 sockets from one object, side by side.
//!
//! A message's first byte says how many times to send the rest to each socket (a burst of events
//! a follow receives together is sent as one batch too).

use std::cell::RefCell;

use worker::{durable_object, Env, Request, Response, State, WebSocket, WebSocketIncomingMessage, WebSocketPair};

use crate::{
    bridge::WsMessage,
    entropy::random_id,
    socket::{answer_close, try_send},
};

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
