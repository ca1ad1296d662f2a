//! What the archive holds of one task, as plain Rust: its summary, its final Task once it ended,
//! how far its events go; and the ends the edge itself makes or reads for a task (the FAILED end
//! of a task whose service is gone, the Task its final event tells when the service cannot be
//! asked), so that Status and Cancel answer an ended task from the archive alone.

use autopilot_contract::v1::{
    event::Payload, CancelResponse, Event, StatusResponse, Task, TaskFinished, TaskState, TaskSummary,
};

/// What the archive holds of one task.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub summary: TaskSummary,
    /// The final Task, once the task ended.
    pub task: Option<Task>,
    pub last_seq: u64,
    /// How many of its events are stored (at most the cap).
    pub kept_events: u64,
    pub ended: bool,
    pub truncated: bool,
}

impl Entry {
    /// Status of the task as the archive holds it: an ended task as the service answered it
    /// last; one that has not ended, as far as its archived events go.
    pub fn status_response(self) -> StatusResponse {
        let summary = self.summary;
        let so_far = || Task {
            task_id: summary.task_id.clone(),
            state: summary.state,
            repository_url: summary.repository_url.clone(),
            git_ref: summary.git_ref.clone(),
            create_time: summary.create_time,
            last_seq: self.last_seq,
            usage: summary.usage,
            parent_task_id: summary.parent_task_id.clone(),
            ..Default::default()
        };
        StatusResponse { task: Some(self.task.unwrap_or_else(so_far)) }
    }

    /// The task as its final event tells it, for when the service's own final Task cannot be
    /// asked for (the machine went right after it): state, result, error, usage and end time.
    pub fn task_ended_by(&self, end: &Event) -> Option<Task> {
        let Some(Payload::TaskFinished(finished)) = &end.payload else { return None };
        Some(Task {
            task_id: end.task_id.clone(),
            state: finished.state,
            repository_url: self.summary.repository_url.clone(),
            git_ref: self.summary.git_ref.clone(),
            create_time: self.summary.create_time,
            end_time: end.time,
            last_seq: end.seq,
            usage: finished.usage,
            result: finished.result.clone(),
            error: finished.error.clone(),
            num_turns: finished.num_turns,
            ..Default::default()
        })
    }

    /// Cancel's answer for the ended task `task_id`: nothing changes, its final state.
    pub fn cancel_response(&self, task_id: &str) -> CancelResponse {
        CancelResponse { task_id: task_id.to_string(), state: self.summary.state }
    }
}

/// The task's final event that the edge makes when the service that would have sent it is
/// gone (a lost container, a machine that forgot the task): FAILED with `reason`, numbered right
/// after the last event the follower received.
pub fn final_failed_event(task_id: String, last_seq: u64, reason: &str, now_ms: u64) -> Event {
    let time = autopilot_contract::time::timestamp(std::time::UNIX_EPOCH + std::time::Duration::from_millis(now_ms));
    let finished = TaskFinished { state: TaskState::Failed as i32, error: reason.to_string(), ..Default::default() };
    Event { task_id, seq: last_seq + 1, time: Some(time), payload: Some(Payload::TaskFinished(finished)) }
}

#[cfg(test)]
mod tests {
    use autopilot_contract::v1::{AgentText, Usage};

    use super::*;

    fn entry() -> Entry {
        let summary = TaskSummary {
            task_id: "t".into(),
            state: TaskState::Running as i32,
            repository_url: "https://x/r.git".into(),
            git_ref: "main".into(),
            ..Default::default()
        };
        Entry { summary, task: None, last_seq: 41, kept_events: 41, ended: false, truncated: false }
    }

    #[test]
    fn a_final_event_tells_the_tasks_end_with_what_the_list_knew() {
        let usage = Usage { input_tokens: 10, ..Default::default() };
        let finished = TaskFinished {
            state: TaskState::Cancelled as i32,
            error: "the service is shutting down".into(),
            usage: Some(usage),
            num_turns: 3,
            ..Default::default()
        };
        let end = Event { task_id: "t".into(), seq: 42, time: None, payload: Some(Payload::TaskFinished(finished)) };
        let task = entry().task_ended_by(&end).unwrap();
        assert_eq!((task.state, task.last_seq, task.num_turns), (TaskState::Cancelled as i32, 42, 3));
        assert_eq!((task.error.as_str(), task.usage), ("the service is shutting down", Some(usage)));
        assert_eq!((task.repository_url.as_str(), task.git_ref.as_str()), ("https://x/r.git", "main"));
        let text = Event { payload: Some(Payload::AgentText(AgentText { text: "x".into() })), ..end };
        assert_eq!(entry().task_ended_by(&text), None, "only a task_finished event ends a task");
    }

    #[test]
    fn an_ended_task_answers_status_and_cancel_from_what_it_holds() {
        let task = Task { task_id: "t".into(), state: TaskState::Succeeded as i32, ..Default::default() };
        let mut ended = Entry { task: Some(task.clone()), ended: true, ..entry() };
        ended.summary.state = TaskState::Succeeded as i32;
        let cancelled = ended.cancel_response("t");
        assert_eq!(
            cancelled,
            CancelResponse { task_id: "t".into(), state: TaskState::Succeeded as i32 },
            "nothing changes"
        );
        assert_eq!(ended.status_response().task, Some(task));
    }

    #[test]
    fn a_task_that_has_not_ended_answers_status_as_far_as_its_events_go() {
        let task = entry().status_response().task.expect("the task as the archive holds it");
        assert_eq!((task.task_id.as_str(), task.state, task.last_seq), ("t", TaskState::Running as i32, 41));
        assert_eq!((task.repository_url.as_str(), task.git_ref.as_str()), ("https://x/r.git", "main"));
    }

    #[test]
    fn the_edge_made_end_follows_the_last_event_and_says_why() {
        let made = final_failed_event("t".into(), 41, "the container exited", 1_000);
        assert_eq!((made.task_id.as_str(), made.seq), ("t", 42));
        let Some(Payload::TaskFinished(finished)) = made.payload else { panic!("a task_finished event") };
        assert_eq!((finished.state, finished.error.as_str()), (TaskState::Failed as i32, "the container exited"));
        assert_eq!(made.time.map(|t| t.seconds), Some(1), "stamped with the time it was made");
    }
}
