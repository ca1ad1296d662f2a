//! What one instance of the container object holds in memory, shared with its background tasks
//! (the start under way, the exit watch, the subscriptions it forwards): the loaded record and
//! account, and the counts that tell the idle policy whether the container is in use. An evicted
//! instance loses all of it but the record and account, which it reloads on waking.

use std::{
    cell::{Cell, RefCell},
    collections::{HashMap, HashSet},
    rc::Rc,
};

use autopilot_contract::v1::Event;
use futures::future::{AbortHandle, LocalBoxFuture, Shared};
use serde::{Deserialize, Serialize};
use worker::WebSocket;

use super::{
    fan_out::Follow,
    loss::{final_frames, Follower},
    model_gateway::ModelCall,
    now_ms,
    record::Record,
};
use crate::{
    archive::replay::{replay_to_socket, Replayed},
    archive::{Archive, Entry},
    bridge::{encode_server_frame, end_frame, Encoding, MAX_IN_FLIGHT_PER_SOCKET},
    container::billing::Account,
    container::model_gateway::grants::ModelGrants,
    grpc_web::GrpcStatus,
    socket::send,
};

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

/// A start of the container that every request needing it meanwhile awaits.
pub type StartFuture = Shared<LocalBoxFuture<'static, Result<(), GrpcStatus>>>;

/// A socket's subscription to a task's events, forwarded in the background.
pub struct Subscription {
    pub socket_id: String,
    pub ws: WebSocket,
    pub encoding: Encoding,
    pub abort: AbortHandle,
    /// The subscribing frame's request id.
    pub request_id: String,
    /// The task it follows; empty means "the running task".
    pub task_id: String,
    /// The seq of the last event forwarded (the forwarder updates it), so that a final event
    /// made here follows it.
    pub last_seq: Rc<Cell<u64>>,
}

/// The instance's memory. Fields are documented by their role in the object's lifecycle.
#[derive(Default)]
pub struct Live {
    /// The record; written to storage when `dirty` (see `persist`).
    pub record: RefCell<Record>,
    /// The user's credits; written only together with its ledger entry.
    pub account: RefCell<Account>,
    /// When the exit watch saw the container exit; charged and closed by the next entry.
    pub exited_at_ms: Cell<Option<u64>>,
    /// Whether `record` and `account` were loaded from storage by this instance.
    pub loaded: Cell<bool>,
    /// Set when `record` changed and should be written.
    pub dirty: Cell<bool>,
    /// The start under way, shared by every request that needs the container meanwhile.
    pub starting: RefCell<Option<StartFuture>>,
    /// The generation whose exit this instance watches (an evicted instance's watch is gone).
    pub watched_generation: Cell<Option<u32>>,
    /// Live subscriptions by id: aborted when their socket closes, and told why when the
    /// container dies under them.
    pub subscriptions: RefCell<HashMap<u64, Subscription>>,
    pub next_subscription: Cell<u64>,
    /// Subscriptions streaming now; while any is, the container is not idle.
    pub active_streams: Cell<u32>,
    /// When a request or frame last arrived; the idle deadline counts from it.
    pub last_activity_ms: Cell<u64>,
    /// Requests and frames for the container being handled now; while any is, it is not idle.
    pub requests_in_use: Cell<u32>,
    /// When this instance last saw the platform say the container runs (an exit nobody watched
    /// is charged up to here).
    pub last_seen_running_ms: Cell<u64>,
    /// When the alarm this instance scheduled will run (so activity need not write one each
    /// time); `None` once it ran, or in a fresh instance.
    pub alarm_at_ms: Cell<Option<u64>>,
    /// Task ids known to be this user's (a cache of the `task:` entries in storage).
    pub own_tasks: RefCell<HashSet<String>>,
    /// Frames being handled per socket id, bounded by [`MAX_IN_FLIGHT_PER_SOCKET`].
    pub frames_in_flight: RefCell<HashMap<String, u32>>,
    /// The user's task archive (see [`crate::archive`]); `None` only if storage refused it.
    pub archive: Option<Archive>,
    /// Tasks this instance follows into the archive, each with the events it has received but
    /// not written yet (a loss writes them before the task's end).
    pub following: RefCell<HashMap<String, Rc<Follow>>>,
    /// The model credentials this object minted (see [`crate::container::model_gateway::grants`]).
    pub grants: Option<ModelGrants>,
    /// Model calls being relayed now, ended when their credential is revoked.
    pub model_calls: RefCell<Vec<Rc<ModelCall>>>,
    /// Where ended tasks' workspaces are kept for follow-ups (R2 `WORKSPACES`; see
    /// [`super::workspaces`]); `None` when the binding is absent.
    pub workspaces: Option<worker::Bucket>,
    /// This object's id (hex), which scopes what it keeps outside its own storage (R2).
    pub object_id: String,
}

impl Live {
    pub fn update(&self, change: impl FnOnce(&mut Record)) {
        change(&mut self.record.borrow_mut());
        self.dirty.set(true);
    }

    /// Notes an event a subscription forwarded (written on the record's cadence).
    pub fn note_event(&self, event: &Event) {
        if self.record.borrow_mut().note_event(event) {
            self.dirty.set(true);
        }
    }

    /// Records the current task's state as the service reported it.
    pub fn remember_task(&self, task_id: &str, state: i32) {
        if self.record.borrow_mut().remember_task(task_id, state) {
            self.dirty.set(true);
        }
    }

    /// Whether any of the user's tasks is still running: the record's current one, or any
    /// whose end the archive does not hold yet (several run at once). (A method, so the record's
    /// borrow ends here: held across an `if let` it would outlive the check.)
    pub fn task_running(&self) -> bool {
        self.record.borrow().task_running() || !self.unended_tasks().is_empty()
    }

    /// Every task that may still run: those whose end the archive lacks, and the record's
    /// current one while it runs.
    pub fn running_tasks(&self) -> Vec<String> {
        let mut running = self.unended_tasks();
        let current = self.record.borrow().running_task().map(str::to_string);
        running.extend(current.filter(|id| !running.contains(id)));
        running
    }

    /// The tasks this object started whose end the archive does not hold yet, oldest first.
    pub fn unended_tasks(&self) -> Vec<String> {
        let Some(archive) = &self.archive else { return Vec::new() };
        archive.unended().map(|tasks| tasks.into_iter().map(|(id, _)| id).collect()).unwrap_or_default()
    }

    /// Whether a metering run is open (the container is being charged for).
    pub fn run_open(&self) -> bool {
        self.account.borrow().run_started_ms.is_some()
    }

    /// The container of `generation` is gone without the object stopping it: the record fails
    /// it (unless a newer generation replaced it), its run is charged up to `gone_at_ms`, and its
    /// task fails with `reason`.
    pub fn lose(&self, generation: u32, reason: &str, gone_at_ms: u64) {
        if self.record.borrow_mut().lifecycle.mark_failed(generation, reason, now_ms()) {
            self.record_loss(reason, gone_at_ms);
        }
    }

    /// What follows a loss the record already shows: it is logged and persisted, the run is to
    /// be charged up to `gone_at_ms`, and the task fails with `reason`.
    pub fn record_loss(&self, reason: &str, gone_at_ms: u64) {
        worker::console_warn!("{reason}");
        self.revoke_model_access(None);
        self.dirty.set(true);
        self.exited_at_ms.set(Some(gone_at_ms));
        self.fail_running_task(reason);
    }

    /// The container died under its tasks: every task it ran is lost (see [`Live::lose_tasks`]).
    fn fail_running_task(&self, reason: &str) {
        // Followers of tasks that had ended already (still being sent what the archive holds)
        // are not told otherwise.
        self.lose_tasks(&self.running_tasks(), reason);
    }

    /// What the archive holds of `task_id` (see [`Archive::find`]).
    pub fn archived(&self, task_id: &str) -> Option<Entry> {
        self.archive.as_ref()?.find(task_id)
    }

    /// The service no longer knows `task_id` (NOT_FOUND): if the archive holds it as running,
    /// the service that ran it is gone (a restart on an empty disk, a new container), and the
    /// task is lost now rather than at the next heartbeat. Answers whether it was.
    pub fn forgotten_by_service(&self, task_id: &str) -> bool {
        let running = self.archived(task_id).is_some_and(|entry| !entry.ended);
        if running {
            self.lose_tasks(&[task_id.to_string()], FORGOTTEN);
        }
        running
    }

    /// `lost` tasks died with the service that ran them: each is archived as lost (what was
    /// received, then the FAILED end this object makes with `reason`), the record's current task
    /// among them fails, and every subscription to one of them gets the rest of its timeline and
    /// that end: from the archive, or, without one, the end made here (see [`final_frames`]).
    pub fn lose_tasks(&self, lost: &[String], reason: &str) {
        for task_id in lost {
            self.archive_loss(task_id, reason);
        }
        let current_task = self.record.borrow().current_task_id.clone().unwrap_or_default();
        if lost.contains(&current_task) {
            self.update(|record| record.fail_running_task(reason));
        }
        for subscription in self.subscriptions.borrow().values() {
            let task_id = if subscription.task_id.is_empty() { &current_task } else { &subscription.task_id };
            if !lost.contains(task_id) {
                continue;
            }
            subscription.abort.abort();
            let archived = self.archive.clone().filter(|_| self.archived(task_id).is_some_and(|entry| entry.ended));
            if let Some(archive) = archived {
                let replayed = Replayed {
                    request_id: subscription.request_id.clone(),
                    task_id: task_id.clone(),
                    from_seq: subscription.last_seq.get() + 1,
                    encoding: subscription.encoding,
                    end: end_frame(subscription.request_id.clone()),
                };
                replay_to_socket(archive, subscription.ws.clone(), replayed);
                continue;
            }
            let follower = Follower {
                request_id: subscription.request_id.clone(),
                task_id: subscription.task_id.clone(),
                last_seq: subscription.last_seq.get(),
            };
            for frame in final_frames(&follower, &current_task, reason, now_ms()) {
                send(&subscription.ws, encode_server_frame(&frame, subscription.encoding));
            }
        }
    }
}

/// Why a task the service no longer knows failed.
pub const FORGOTTEN: &str =
    "the container lost this task: its agent-service no longer knows it (it restarted on an empty disk, or was replaced)";

/// Counts a request or frame that uses the container while it is handled (see
/// [`Live::requests_in_use`]); the idle stop waits for it.
pub struct ContainerUse(Rc<Live>);

impl ContainerUse {
    pub fn begin(live: &Rc<Live>) -> ContainerUse {
        live.requests_in_use.set(live.requests_in_use.get() + 1);
        live.last_activity_ms.set(now_ms());
        ContainerUse(Rc::clone(live))
    }
}

impl Drop for ContainerUse {
    fn drop(&mut self) {
        self.0.requests_in_use.set(self.0.requests_in_use.get().saturating_sub(1));
    }
}

/// Counts a frame in flight on one socket (see [`Live::frames_in_flight`]) while it is handled.
pub struct SocketFrame {
    live: Rc<Live>,
    socket: String,
}

impl SocketFrame {
    /// `None` when the socket already has [`MAX_IN_FLIGHT_PER_SOCKET`] frames in flight.
    pub fn begin(live: &Rc<Live>, socket: String) -> Option<SocketFrame> {
        let mut in_flight = live.frames_in_flight.borrow_mut();
        let count = in_flight.entry(socket.clone()).or_default();
        if *count >= MAX_IN_FLIGHT_PER_SOCKET {
            return None;
        }
        *count += 1;
        Some(SocketFrame { live: Rc::clone(live), socket })
    }
}

impl Drop for SocketFrame {
    fn drop(&mut self) {
        let mut in_flight = self.live.frames_in_flight.borrow_mut();
        if let Some(count) = in_flight.get_mut(&self.socket) {
            *count -= 1;
            if *count == 0 {
                in_flight.remove(&self.socket);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_holds_at_most_its_frames_in_flight_and_gets_them_back() {
        let live = Rc::new(Live::default());
        let held: Vec<SocketFrame> =
            (0..MAX_IN_FLIGHT_PER_SOCKET).map(|_| SocketFrame::begin(&live, "s".into()).unwrap()).collect();
        assert!(SocketFrame::begin(&live, "s".into()).is_none(), "one more is refused");
        assert!(SocketFrame::begin(&live, "other".into()).is_some(), "another socket has its own bound");
        drop(held);
        let again = SocketFrame::begin(&live, "s".into());
        assert!(again.is_some(), "replies free the slots");
        assert_eq!(live.frames_in_flight.borrow().get("s"), Some(&1));
        drop(again);
        assert!(live.frames_in_flight.borrow().is_empty(), "an idle socket leaves no entry behind");
    }
}
