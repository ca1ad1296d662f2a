//! Replaying an archived timeline: read from the archive's rows in chunks (a replay need not
//! hold a whole timeline in memory), and sent to a browser's socket the same way for the
//! container object and the tunnel relay: the events in chunks, the socket's other frames let
//! through between them, and then the frame that ends the subscription (its end, or why the rest
//! cannot follow).

use std::time::Duration;

use autopilot_contract::v1::{Event, ServerFrame};
use worker::{wasm_bindgen_futures::spawn_local, Delay, WebSocket};

use crate::{
    archive::{
        event_rows,
        sql_values::{as_blob, as_u64, int, text},
        Archive,
    },
    bridge::{encode_server_frame, event_frame, Encoding},
    socket::try_send,
};

/// Events read per query when a timeline is replayed.
pub const REPLAY_CHUNK: usize = 500;

impl Archive {
    /// The archived events of `task_id` with seq >= `from_seq`, at most `limit`, in order.
    pub fn events(&self, task_id: &str, from_seq: u64, limit: usize) -> worker::Result<Vec<Event>> {
        let mut events = Vec::new();
        let mut after = from_seq;
        while events.len() < limit {
            let rows = self.rows(
                "SELECT events, last_seq FROM archived_event_chunks WHERE task_id = ? AND last_seq >= ? \
                 ORDER BY first_seq LIMIT 16",
                vec![text(task_id), int(after)],
            )?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let blob = as_blob(&row[0]).unwrap_or_default();
                let wanted = limit - events.len();
                events.extend(event_rows::events(blob).filter(|event| event.seq >= from_seq).take(wanted));
                after = as_u64(&row[1]) + 1;
            }
        }
        Ok(events)
    }

    /// The archived events of `task_id` from `from_seq` on, in order, [`REPLAY_CHUNK`] at a time
    /// (a replay need not hold a whole timeline in memory).
    pub fn replay(&self, task_id: &str, from_seq: u64) -> Replay<'_> {
        Replay { archive: self, task_id: task_id.to_string(), next_seq: from_seq.max(1), done: false }
    }
}

/// The chunks of a replay (see [`Archive::replay`]).
pub struct Replay<'a> {
    archive: &'a Archive,
    task_id: String,
    next_seq: u64,
    done: bool,
}

impl Iterator for Replay<'_> {
    type Item = worker::Result<Vec<Event>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let events = match self.archive.events(&self.task_id, self.next_seq, REPLAY_CHUNK) {
            Ok(events) => events,
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        self.done = events.len() < REPLAY_CHUNK;
        self.next_seq = events.last()?.seq + 1;
        Some(Ok(events))
    }
}

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
