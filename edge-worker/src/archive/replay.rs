//! Replaying an archived timeline to a browser's socket, the same for the container object and
//! the tunnel relay: the events in chunks, the socket's other frames let through between them,
//! and then the frame that ends the subscription (its end, or why the rest cannot follow).

use std::time::Duration;

use autopilot_contract::v1::ServerFrame;
use worker::{wasm_bindgen_futures::spawn_local, Delay, WebSocket};

use crate::{
    archive::Archive,
    bridge::{encode_server_frame, event_frame, Encoding},
    socket::try_send,
};

/// One subscription answered from the archive.
pub struct Replayed {
    pub request_id: String,
    pub task_id: String,
    /// The first seq the subscriber wants.
    pub from_seq: u64,
    pub encoding: Encoding,
    /// Sent after the last archived event.
    pub end: ServerFrame,
}

/// Sends the archived events of the subscription to `ws` in the background, then its end. A
/// socket that has gone stops it.
pub fn replay_to_socket(archive: Archive, ws: WebSocket, replayed: Replayed) {
    let Replayed { request_id, task_id, from_seq, encoding, end } = replayed;
    spawn_local(async move {
        for chunk in archive.replay(&task_id, from_seq) {
            let Ok(events) = chunk else { break };
            for event in events {
                if try_send(&ws, encode_server_frame(&event_frame(request_id.clone(), event), encoding)).is_err() {
                    return;
                }
            }
            Delay::from(Duration::ZERO).await;
        }
        let _ = try_send(&ws, encode_server_frame(&end, encoding));
    });
}
