//! Bridge messages on the Durable Objects' WebSockets: what arrives, read as a [`WsMessage`], and
//! what goes out, in the frame type the message is; and whether a request asks for a WebSocket at
//! all. The Worker and both objects (container and tunnel) use it.

use worker::{Request, Response, WebSocket, WebSocketIncomingMessage};

use crate::{
    api_error::error_response,
    bridge::WsMessage,
    grpc_web::{Code, GrpcStatus},
};

/// Whether `req` asks for a WebSocket (`Upgrade: websocket`).
pub fn is_websocket_upgrade(req: &Request) -> worker::Result<bool> {
    Ok(req.headers().get("upgrade")?.is_some_and(|u| u.eq_ignore_ascii_case("websocket")))
}

/// The 426 a WebSocket route answers a plain request with; `message` says how to ask.
pub fn upgrade_required(message: &str) -> worker::Result<Response> {
    Ok(error_response(&GrpcStatus::new(Code::FailedPrecondition, message))?.with_status(426))
}

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
