//! Bridge messages on the Durable Objects' WebSockets: what arrives, read as a [`WsMessage`], and
//! what goes out, in the frame type the message is. Both objects (container and tunnel) use it.

use worker::{WebSocket, WebSocketIncomingMessage};

use crate::bridge::WsMessage;

/// A message a socket received.
pub fn incoming(message: WebSocketIncomingMessage) -> WsMessage {
    match message {
        WebSocketIncomingMessage::Binary(bytes) => WsMessage::Binary(bytes),
        WebSocketIncomingMessage::String(text) => WsMessage::Text(text),
    }
}

/// Sends `message`; an error means the socket is gone.
pub fn try_send(ws: &WebSocket, message: WsMessage) -> worker::Result<()> {
    match message {
        WsMessage::Binary(bytes) => ws.send_with_bytes(bytes),
        WsMessage::Text(text) => ws.send_with_str(text),
    }
}

/// Sends `message`, ignoring a socket that has just closed (its close handler cleans up).
pub fn send(ws: &WebSocket, message: WsMessage) {
    let _ = try_send(ws, message);
}
