//! What the user's container object remembers across evictions and restarts, as plain Rust: who
//! the user is, the container's lifecycle, and the current task (its state, why it ended, the
//! last event seq seen). The rules of updating it live here and are tested on the host; writing
//! it to storage is the object's (see `persist` in `mod.rs`).

use autopilot_contract::v1::{event::Payload, Event, TaskState};
use serde::{Deserialize, Serialize};

use crate::{
    container::lifecycle::Lifecycle,
    grpc_web::{Code, GrpcStatus},
};

/// Storage key of the record.
pub const RECORD_KEY: &str = "state";

/// How often `last_seen_seq` is written while a subscription streams (events, not time): a
/// storage write per event would cost more than the stream itself.
pub const PERSIST_EVERY_EVENTS: u64 = 256;

/// The object's record. Stored under [`RECORD_KEY`]; older records (fewer fields) still load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub user_id: Option<String>,
    pub lifecycle: Lifecycle,
    pub current_task_id: Option<String>,
    pub current_task_state: i32,
    /// Why the current task ended, when this object ended it (credits) or learned it.
    #[serde(default)]
    pub current_task_error: String,
    pub last_seen_seq: u64,
}

impl Record {
    /// Whether the current task is still running, as far as the record knows.
    pub fn task_running(&self) -> bool {
        self.current_task_id.is_some()
            && !TaskState::try_from(self.current_task_state).map(TaskState::is_final).unwrap_or(true)
    }

    /// The current task's id while it runs.
    pub fn running_task(&self) -> Option<&str> {
        self.task_running().then_some(self.current_task_id.as_deref()).flatten()
    }

    /// Notes an event a subscription forwarded. Answers whether the record should be written
    /// now: every [`PERSIST_EVERY_EVENTS`] events, and at the task's end.
    pub fn note_event(&mut self, event: &Event) -> bool {
        if self.current_task_id.as_deref() == Some(event.task_id.as_str()) {
            self.last_seen_seq = self.last_seen_seq.max(event.seq);
        }
        let finished = matches!(event.payload, Some(Payload::TaskFinished(_)));
        if let Some(Payload::TaskFinished(finished)) = &event.payload {
            self.current_task_state = finished.state;
        }
        event.seq % PERSIST_EVERY_EVENTS == 0 || finished
    }

    /// Records `task_id` in `state` as the current task (a new one starts from no seq and no
    /// error). Answers whether anything changed.
    pub fn remember_task(&mut self, task_id: &str, state: i32) -> bool {
        if self.current_task_id.as_deref() == Some(task_id) && self.current_task_state == state {
            return false;
        }
        if self.current_task_id.as_deref() != Some(task_id) {
            self.current_task_id = Some(task_id.to_string());
            self.last_seen_seq = 0;
            self.current_task_error.clear();
        }
        self.current_task_state = state;
        true
    }

    /// The container died under the current task: it is recorded FAILED with `reason` (a task
    /// that had already ended keeps its end).
    pub fn fail_running_task(&mut self, reason: &str) {
        if self.task_running() {
            self.current_task_state = TaskState::Failed as i32;
            self.current_task_error = reason.to_string();
        }
    }
}

impl Record {
    /// The Status answer when no container runs: a stopped container is not started just to
    /// answer (its tasks left with it), so the record answers for its current task, and any
    /// other task is NOT_FOUND.
    ///
    /// # Errors
    /// NOT_FOUND for a task the record does not hold.
    pub fn status_without_container(&self, task_id: &str) -> Result<serde_json::Value, GrpcStatus> {
        match self.current_task_id.as_deref().filter(|current| task_id.is_empty() || *current == task_id) {
            Some(current) => Ok(serde_json::json!({
                "task": {
                    "taskId": current,
                    "state": TaskState::try_from(self.current_task_state).unwrap_or_default().as_str_name(),
                    "error": self.current_task_error,
                    "lastSeq": self.last_seen_seq.to_string(),
                },
            })),
            None => Err(GrpcStatus::new(
                Code::NotFound,
                format!("no task with id {task_id} (the container is not running)"),
            )),
        }
    }
}

pub use crate::archive::final_failed_event;

#[cfg(test)]
mod tests {
    use super::*;
    use autopilot_contract::v1::{AgentText, TaskFinished};

    fn event(task_id: &str, seq: u64, payload: Payload) -> Event {
        Event { task_id: task_id.into(), seq, time: None, payload: Some(payload) }
    }

    fn text() -> Payload {
        Payload::AgentText(AgentText { text: "x".into() })
    }

    #[test]
    fn the_record_is_written_every_256_events_and_at_the_tasks_end_not_per_event() {
        let mut record = Record::default();
        record.remember_task("t", TaskState::Running as i32);
        assert!(!record.note_event(&event("t", 1, text())));
        assert!(!record.note_event(&event("t", 255, text())));
        assert!(record.note_event(&event("t", 256, text())));
        let end = Payload::TaskFinished(TaskFinished { state: TaskState::Succeeded as i32, ..Default::default() });
        assert!(record.note_event(&event("t", 300, end)), "the end is written at once");
        assert_eq!((record.last_seen_seq, record.task_running()), (300, false));
    }

    #[test]
    fn another_tasks_events_do_not_move_the_current_tasks_seq() {
        let mut record = Record::default();
        record.remember_task("current", TaskState::Running as i32);
        record.note_event(&event("older", 900, text()));
        assert_eq!(record.last_seen_seq, 0);
    }

    #[test]
    fn a_new_task_starts_with_no_seq_and_no_error() {
        let mut record = Record::default();
        record.remember_task("a", TaskState::Running as i32);
        record.last_seen_seq = 40;
        record.fail_running_task("the container stopped");
        assert!(!record.remember_task("a", TaskState::Failed as i32), "nothing new");
        assert!(record.remember_task("b", TaskState::Pending as i32));
        assert_eq!((record.last_seen_seq, record.current_task_error.as_str()), (0, ""));
        assert_eq!(record.running_task(), Some("b"));
    }

    #[test]
    fn a_loss_fails_a_running_task_but_not_one_that_ended() {
        let mut record = Record::default();
        record.remember_task("a", TaskState::Succeeded as i32);
        record.fail_running_task("lost");
        assert_eq!(record.current_task_state, TaskState::Succeeded as i32);
        record.remember_task("b", TaskState::Running as i32);
        record.fail_running_task("lost");
        assert_eq!((record.current_task_state, record.current_task_error.as_str()), (TaskState::Failed as i32, "lost"));
    }

    #[test]
    fn the_final_event_made_at_the_edge_follows_the_last_one_received() {
        let made = final_failed_event("t".into(), 41, "the container exited", 1_000);
        assert_eq!(made.seq, 42);
        let Some(Payload::TaskFinished(finished)) = made.payload else { panic!("a task_finished event") };
        assert_eq!((finished.state, finished.error.as_str()), (TaskState::Failed as i32, "the container exited"));
    }

    #[test]
    fn with_no_container_status_answers_the_current_task_from_the_record() {
        let mut record = Record::default();
        assert_eq!(record.status_without_container("").unwrap_err().code, Code::NotFound as i32);
        record.remember_task("t", TaskState::Running as i32);
        record.last_seen_seq = 12;
        record.fail_running_task("the container stopped unexpectedly");
        let answer = record.status_without_container("t").unwrap();
        assert_eq!(answer["task"]["state"], "TASK_STATE_FAILED");
        assert_eq!(answer["task"]["error"], "the container stopped unexpectedly");
        assert_eq!(answer["task"]["lastSeq"], "12", "int64 as proto3 JSON writes it");
        assert_eq!(record.status_without_container("").unwrap(), answer, "no id: the current task");
        let other = record.status_without_container("older").unwrap_err();
        assert!(other.message.contains("the container is not running"), "{}", other.message);
    }

    #[test]
    fn a_record_stored_before_task_errors_existed_still_loads() {
        let mut stored = serde_json::to_value(Record::default()).unwrap();
        stored.as_object_mut().unwrap().remove("current_task_error");
        assert_eq!(serde_json::from_value::<Record>(stored).unwrap(), Record::default());
    }
}
