//! A lost container, as one sequence: the container of a generation is gone without the object
//! stopping it (it exited, was killed, or its service forgot its tasks). The record fails it, its
//! tasks' model credentials are revoked, each task it ran is archived as lost (what was received,
//! then a FAILED end made here: the service that would send it is gone), and every socket
//! following one of them gets the rest of its timeline and that end, then the end of its stream
//! (not a bare UNAVAILABLE, which would make a page reconnect and start a new container).
//! [`final_frames`] is the pure rule of what a follower gets, tested on the host.

use autopilot_contract::v1::{Event, ServerFrame};

use super::{live::Live, now_ms, subscriptions::Stopped};
use crate::{
    archive::{
        final_failed_event,
        replay::{replay_to_socket, Replayed},
    },
    bridge::{encode_server_frame, end_frame, event_frame},
    socket::send,
};

/// Why a task the service no longer knows failed.
pub const FORGOTTEN: &str =
    "the container lost this task: its agent-service no longer knows it (it restarted on an empty disk, or was replaced)";

/// The container of `generation` is gone without the object stopping it: the record fails it
/// (unless a newer generation replaced it), and the loss follows (see [`record_loss`]).
pub fn lose(live: &Live, generation: u32, reason: &str, gone_at_ms: u64) {
    if live.stored.update(|record| record.lifecycle.mark_failed(generation, reason, now_ms())) {
        record_loss(live, reason, gone_at_ms);
    }
}

/// What follows a loss the record already shows: every credential is revoked, the run is to be
/// charged up to `gone_at_ms` (by the next entry), and every task that may still run is lost.
pub fn record_loss(live: &Live, reason: &str, gone_at_ms: u64) {
    worker::console_warn!("{reason}");
    live.gateway.revoke(None);
    live.watch.exited_at_ms.set(Some(gone_at_ms));
    lose_tasks(live, &live.unended_tasks(), reason);
}

/// The service no longer knows `task_id` (NOT_FOUND): if the archive holds it as running, the
/// service that ran it is gone (a restart on an empty disk, a new container), and the task is
/// lost now rather than at the next heartbeat. Answers whether it was.
pub fn forgotten_by_service(live: &Live, task_id: &str) -> bool {
    let running = live.archived(task_id).is_some_and(|entry| !entry.ended);
    if running {
        lose_tasks(live, &[task_id.to_string()], FORGOTTEN);
    }
    running
}

/// `lost` tasks died with the service that ran them: each is archived as lost, and each
/// subscription to one of them is stopped and sent the rest of the archived timeline, or, if the
/// archive could not take the end, the end made here (see [`final_frames`]).
pub fn lose_tasks(live: &Live, lost: &[String], reason: &str) {
    archive_losses(live, lost, reason);
    for stopped in live.subscriptions.stop_following(lost) {
        if live.archive.ended(&stopped.task_id).is_some() {
            let Stopped { ws, encoding, request_id, task_id, last_seq } = stopped;
            let end = end_frame(request_id.clone());
            replay_to_socket(
                live.archive.clone(),
                ws,
                Replayed { request_id, task_id, from_seq: last_seq + 1, encoding, end },
            );
            continue;
        }
        for frame in final_frames(&stopped.request_id, &stopped.task_id, stopped.last_seq, reason, now_ms()) {
            send(&stopped.ws, encode_server_frame(&frame, stopped.encoding));
        }
    }
}

/// `tasks` ended with their container: the archive gets what their follows had not written yet,
/// then the FAILED end this object makes with `reason` (the service that would send it is gone).
pub fn archive_losses(live: &Live, tasks: &[String], reason: &str) {
    for task_id in tasks {
        let pending = live.following.borrow().get(task_id).map(|follow| follow.take_pending()).unwrap_or_default();
        if let Err(e) = live.archive.record_loss(task_id, &pending, reason, now_ms()) {
            worker::console_warn!("archiving the loss of task {task_id} failed: {e}");
        }
    }
}

/// The frames a follower of `task_id` that was sent up to `last_seq` gets, in order: the task's
/// final FAILED event, then the end of its stream.
pub fn final_frames(request_id: &str, task_id: &str, last_seq: u64, reason: &str, now_ms: u64) -> [ServerFrame; 2] {
    let event: Event = final_failed_event(task_id.to_string(), last_seq, reason, now_ms);
    [event_frame(request_id.to_string(), event), end_frame(request_id.to_string())]
}

#[cfg(test)]
mod tests {
    use super::*;
    use autopilot_contract::v1::{event::Payload, server_frame::Frame, TaskState};

    #[test]
    fn each_follower_gets_a_failed_end_right_after_the_last_event_it_received() {
        for last in [0, 57] {
            let request_id = format!("r-{last}");
            let [event, end] = final_frames(&request_id, "t", last, "the container exited", 5_000);
            assert_eq!(event.request_id, request_id);
            let Some(Frame::Event(event)) = event.frame else { panic!("an event first") };
            assert_eq!((event.seq, event.task_id.as_str()), (last + 1, "t"));
            let Some(Payload::TaskFinished(finished)) = event.payload else { panic!("the task's end") };
            assert_eq!((finished.state, finished.error.as_str()), (TaskState::Failed as i32, "the container exited"));
            assert!(matches!(end.frame, Some(Frame::EndOfStream(_))), "then the stream ends");
        }
    }
}
