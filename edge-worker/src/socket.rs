//! Bridge messages on the Durable Objects' WebSockets: what arrives, read as a [`WsMessage`], and
//! what goes out, in the frame type the message is; whether a request asks for a WebSocket at
//! all; and the Close a peer's Close is answered with. The Worker and both objects (container and
//! tunnel) use it.

use worker::{Request, Response, WebSocket, WebSocketIncomingMessage};

use crate::{
    api_error::error_response,
    bridge::{encode_server_frame, error_frame, Encoding, WsMessage},
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

/// Answers the frame `request_id` with the error `status`, in the socket's `encoding`.
pub fn send_error(ws: &WebSocket, request_id: String, status: GrpcStatus, encoding: Encoding) {
    send(ws, encode_server_frame(&error_frame(request_id, status), encoding));
}

/// The code a Close is echoed with (RFC 6455 5.5.1): the peer's own, or 1000 when the peer's
/// may not be sent (1005 "no code", 1006 and 1015 are never on the wire; anything outside the
/// sendable ranges is a protocol slip this side does not repeat).
pub fn close_reply_code(peer_code: usize) -> u16 {
    match peer_code {
        1000..=1003 | 1007..=1014 | 3000..=4999 => peer_code as u16,
        _ => 1000,
    }
}

/// Answers a peer's Close with ours at once. The compatibility date predates workerd's automatic
/// reply, and a peer that closes politely waits for this answer until its own timeout (Python
/// `websockets` 10 s, Node `ws` 30 s) and then reports 1006. A socket already closed refuses the
/// call, which is fine: it needs no answer.
pub fn answer_close(ws: &WebSocket, peer_code: usize) {
    let _ = ws.close(Some(close_reply_code(peer_code)), Some("closed"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_close_is_echoed_with_the_peers_code_when_it_may_be_sent() {
        for code in [1000, 1001, 1003, 1008, 1011, 3000, 4001, 4999] {
            assert_eq!(close_reply_code(code), code as u16);
        }
        for reserved in [0, 999, 1004, 1005, 1006, 1015, 2000, 2999, 5000, 65535] {
            assert_eq!(close_reply_code(reserved), 1000, "{reserved}");
        }
    }
}
