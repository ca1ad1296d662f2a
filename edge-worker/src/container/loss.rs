//! What a lost container means for the sockets following its task. When the container dies
//! under a task, the service that would send the task's final event is gone, so the object makes
//! it: each follower gets a FAILED `task_finished` numbered after the last event it received,
//! then the end of its stream (not a bare UNAVAILABLE, which would make a page reconnect and
//! start a new container). Pure, so who gets what is tested on the host.

use autopilot_contract::v1::{Event, ServerFrame};

use super::record::final_failed_event;
use crate::bridge::{end_frame, event_frame};

/// One subscription as a loss sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Follower {
    pub request_id: String,
    /// The task it follows; empty means "the running task".
    pub task_id: String,
    /// The seq of the last event it was sent.
    pub last_seq: u64,
}

/// The frames each follower gets, in order: the task's final FAILED event, then the end.
pub fn final_frames(follower: &Follower, current_task: &str, reason: &str, now_ms: u64) -> [ServerFrame; 2] {
    let task_id = if follower.task_id.is_empty() { current_task } else { &follower.task_id };
    let event: Event = final_failed_event(task_id.to_string(), follower.last_seq, reason, now_ms);
    [event_frame(follower.request_id.clone(), event), end_frame(follower.request_id.clone())]
}

#[cfg(test)]
mod tests {
    use super::*;
    use autopilot_contract::v1::{event::Payload, server_frame::Frame, TaskState};

    fn follower(task_id: &str, last_seq: u64) -> Follower {
        Follower { request_id: format!("r-{last_seq}"), task_id: task_id.into(), last_seq }
    }

    #[test]
    fn each_follower_gets_a_failed_end_right_after_the_last_event_it_received() {
        for (who, last) in [(follower("t", 0), 0), (follower("t", 57), 57)] {
            let [event, end] = final_frames(&who, "t", "the container exited", 5_000);
            assert_eq!(event.request_id, who.request_id);
            let Some(Frame::Event(event)) = event.frame else { panic!("an event first") };
            assert_eq!(event.seq, last + 1);
            let Some(Payload::TaskFinished(finished)) = event.payload else { panic!("the task's end") };
            assert_eq!((finished.state, finished.error.as_str()), (TaskState::Failed as i32, "the container exited"));
            assert!(matches!(end.frame, Some(Frame::EndOfStream(_))), "then the stream ends");
        }
    }

    #[test]
    fn a_follower_of_the_running_task_hears_of_the_current_task_by_name() {
        let [event, _] = final_frames(&follower("", 3), "current-task", "lost", 1);
        let Some(Frame::Event(event)) = event.frame else { panic!() };
        assert_eq!(event.task_id, "current-task");
        let [event, _] = final_frames(&follower("older-task", 3), "current-task", "lost", 1);
        let Some(Frame::Event(event)) = event.frame else { panic!() };
        assert_eq!(event.task_id, "older-task", "a follower of a named task keeps its name");
    }
}
