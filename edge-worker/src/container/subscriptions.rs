//! The sockets' subscriptions to tasks' events that this instance forwards in the background:
//! registered when a socket subscribes, aborted when it unsubscribes or closes, and handed to
//! the loss sequence ([`super::loss`]) when the container dies under their task. Only the
//! bookkeeping is here; what is sent to them is the bridge's and the loss's.

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    rc::Rc,
};

use futures::future::AbortHandle;
use serde::{Deserialize, Serialize};
use worker::WebSocket;

use crate::bridge::Encoding;

/// What a hibernatable socket carries with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SocketInfo {
    pub socket_id: String,
    pub session_id: String,
}

/// The id of a socket this object accepted (empty for one it cannot read).
pub fn socket_id(ws: &WebSocket) -> String {
    ws.deserialize_attachment::<SocketInfo>().ok().flatten().map(|info| info.socket_id).unwrap_or_default()
}

/// A socket's subscription to a task's events.
pub struct Subscription {
    pub socket_id: String,
    pub ws: WebSocket,
    pub encoding: Encoding,
    pub abort: AbortHandle,
    /// The subscribing frame's request id.
    pub request_id: String,
    /// The task it follows (the request's scope resolved).
    pub task_id: String,
    /// The seq of the last event forwarded (the forwarder updates it), so that a final event
    /// made here follows it.
    pub last_seq: Rc<Cell<u64>>,
}

/// A subscription stopped because its task is lost: where the rest of its timeline goes.
pub struct Stopped {
    pub ws: WebSocket,
    pub encoding: Encoding,
    pub request_id: String,
    pub task_id: String,
    pub last_seq: u64,
}

#[derive(Default)]
pub struct Subscriptions {
    by_id: RefCell<HashMap<u64, Subscription>>,
    next_id: Cell<u64>,
}

impl Subscriptions {
    /// How many subscriptions `socket` has open.
    pub fn open_on(&self, socket: &str) -> usize {
        self.by_id.borrow().values().filter(|s| s.socket_id == socket).count()
    }

    /// Registers `subscription`; answers its id (see [`Subscriptions::remove`]).
    pub fn add(&self, subscription: Subscription) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        self.by_id.borrow_mut().insert(id, subscription);
        id
    }

    /// Forgets a subscription whose forwarding ended.
    pub fn remove(&self, id: u64) {
        self.by_id.borrow_mut().remove(&id);
    }

    /// Aborts `socket`'s subscriptions: all of them, or only the one of `request_id`.
    pub fn abort(&self, socket: &str, request_id: Option<&str>) {
        let by_id = self.by_id.borrow();
        let matching = by_id.values().filter(|s| s.socket_id == socket && request_id.is_none_or(|r| s.request_id == r));
        matching.for_each(|s| s.abort.abort());
    }

    /// Aborts every subscription to one of `tasks`, answering where each one's rest goes.
    pub fn stop_following(&self, tasks: &[String]) -> Vec<Stopped> {
        let by_id = self.by_id.borrow();
        let stopped = by_id.values().filter(|s| tasks.contains(&s.task_id));
        stopped
            .map(|s| {
                s.abort.abort();
                Stopped {
                    ws: s.ws.clone(),
                    encoding: s.encoding,
                    request_id: s.request_id.clone(),
                    task_id: s.task_id.clone(),
                    last_seq: s.last_seq.get(),
                }
            })
            .collect()
    }
}
