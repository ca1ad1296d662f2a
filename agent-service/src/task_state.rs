//! The task lifecycle as a pure state machine: which moves are allowed, and what the snapshot of a
//! task looks like after each recorded event. The live task and the recovery of a task from its
//! log after a restart both go through [`apply`], so a snapshot always equals its log's replay.

use autopilot_contract::v1::{event::Payload, Delivery, Event, Task, TaskState, WorkspaceOrigin};

/// Whether a task may move from `from` to `to`.
/// PENDING -> CLONING -> (SETTING_UP, with an environment) -> RUNNING -> final; any non-final
/// state may end early.
pub fn can_move(from: TaskState, to: TaskState) -> bool {
    use TaskState::*;
    match (from, to) {
        (Unspecified, Pending)
        | (Pending, Cloning)
        | (Cloning, Running)
        | (Cloning, SettingUp)
        | (SettingUp, Running) => true,
        (from, to) => !from.is_final() && from != Unspecified && to.is_final(),
    }
}

/// Updates `task` for one recorded `event`.
pub fn apply(task: &mut Task, event: &Event) {
    task.last_seq = event.seq;
    let Some(payload) = &event.payload else {
        return;
    };
    match payload {
        Payload::StateChanged(change) => {
            let to = change.to();
            task.state = to as i32;
            if to == TaskState::Cloning && task.start_time.is_none() {
                task.start_time = event.time;
            }
            if to.is_final() {
                task.end_time = event.time;
            }
        }
        Payload::RepositoryReady(ready) => {
            task.commit = ready.commit.clone();
            // With an environment, `setup_started` says where the workspace came from.
            if task.environment_name.is_empty() {
                task.workspace_origin = WorkspaceOrigin::Fresh as i32;
            }
        }
        Payload::SetupStarted(started) => task.workspace_origin = started.workspace_origin,
        Payload::AgentStarted(started) => task.session_id = started.session_id.clone(),
        Payload::UsageUpdate(update) => task.usage = update.usage,
        Payload::TaskFinished(finished) => {
            task.state = finished.state;
            task.result = finished.result.clone();
            task.error = finished.error.clone();
            task.usage = finished.usage;
            task.num_turns = finished.num_turns;
            if task.end_time.is_none() {
                task.end_time = event.time;
            }
        }
        Payload::Diff(diff) => {
            task.delivery =
                Some(Delivery { base_commit: diff.base_commit.clone(), stats: diff.stats, ..Default::default() });
        }
        Payload::Committed(committed) => {
            let delivery = task.delivery.get_or_insert_with(Delivery::default);
            delivery.branch = committed.branch.clone();
            delivery.commit = committed.commit.clone();
        }
        Payload::BranchPushed(_) => task.delivery.get_or_insert_with(Delivery::default).pushed = true,
        Payload::GitProgress(_)
        | Payload::AgentText(_)
        | Payload::ToolStarted(_)
        | Payload::ToolFinished(_)
        | Payload::SetupOutput(_)
        | Payload::SetupFinished(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autopilot_contract::v1::{StateChanged, TaskFinished, Usage, UsageUpdate};
    use TaskState::*;

    #[test]
    fn the_happy_path_and_early_endings_are_allowed() {
        assert!(can_move(Unspecified, Pending));
        assert!(can_move(Pending, Cloning));
        assert!(can_move(Cloning, Running));
        for end in [Succeeded, Failed, Cancelled, TimedOut] {
            assert!(can_move(Running, end));
            assert!(can_move(Pending, end));
            assert!(!can_move(end, Running), "a final state is final");
            assert!(!can_move(end, Failed));
        }
        assert!(can_move(Cloning, SettingUp) && can_move(SettingUp, Running));
        for end in [Succeeded, Failed, Cancelled, TimedOut] {
            assert!(can_move(SettingUp, end), "a setup may fail, be cancelled or time out");
        }
        assert!(!can_move(Pending, SettingUp) && !can_move(Running, SettingUp) && !can_move(SettingUp, Cloning));
        assert!(!can_move(Running, Cloning));
        assert!(!can_move(Pending, Running));
        assert!(!can_move(Unspecified, Failed));
    }

    #[test]
    fn applying_events_builds_the_snapshot() {
        let time = |s| Some(pbjson_types::Timestamp { seconds: s, nanos: 0 });
        let event = |seq, payload| Event { task_id: "t".into(), seq, time: time(seq as i64), payload: Some(payload) };
        let change = |from: TaskState, to: TaskState| {
            Payload::StateChanged(StateChanged { from: from as i32, to: to as i32, reason: String::new() })
        };
        let mut task = Task::default();
        apply(&mut task, &event(1, change(Unspecified, Pending)));
        apply(&mut task, &event(2, change(Pending, Cloning)));
        let usage = Usage { input_tokens: 5, ..Default::default() };
        apply(&mut task, &event(3, Payload::UsageUpdate(UsageUpdate { usage: Some(usage) })));
        apply(&mut task, &event(4, change(Cloning, Failed)));
        apply(
            &mut task,
            &event(
                5,
                Payload::TaskFinished(TaskFinished {
                    state: Failed as i32,
                    error: "boom".into(),
                    usage: Some(usage),
                    ..Default::default()
                }),
            ),
        );
        assert_eq!(task.state(), Failed);
        assert_eq!((task.start_time, task.end_time), (time(2), time(4)));
        assert_eq!((task.last_seq, task.error.as_str()), (5, "boom"));
        assert_eq!(task.usage.unwrap().input_tokens, 5);
    }

    #[test]
    fn the_workspace_origin_comes_with_the_repository_or_with_the_setup() {
        use autopilot_contract::v1::{RepositoryReady, SetupStarted};
        let event = |seq, payload| Event { task_id: "t".into(), seq, time: None, payload: Some(payload) };
        let ready = || Payload::RepositoryReady(RepositoryReady { commit: "c".into() });
        let mut bare = Task::default();
        apply(&mut bare, &event(1, ready()));
        assert_eq!(bare.workspace_origin(), WorkspaceOrigin::Fresh, "no environment: the clone as it is");

        let mut prepared = Task { environment_name: "web".into(), ..Default::default() };
        apply(&mut prepared, &event(1, ready()));
        assert_eq!(prepared.workspace_origin(), WorkspaceOrigin::Unspecified, "not known before the setup says");
        let started = SetupStarted {
            environment_name: "web".into(),
            maintenance: true,
            workspace_origin: WorkspaceOrigin::Prepared as i32,
        };
        apply(&mut prepared, &event(2, Payload::SetupStarted(started)));
        assert_eq!(prepared.workspace_origin(), WorkspaceOrigin::Prepared);
    }

    #[test]
    fn delivery_events_fill_in_the_delivery() {
        use autopilot_contract::v1::{BranchPushed, Committed, Diff, DiffStats};
        let event = |seq, payload| Event { task_id: "t".into(), seq, time: None, payload: Some(payload) };
        let stats = DiffStats { files_changed: 2, insertions: 6, deletions: 1 };
        let mut task = Task::default();
        let diff = Diff { base_commit: "b".into(), stats: Some(stats), ..Default::default() };
        apply(&mut task, &event(1, Payload::Diff(diff)));
        assert_eq!(task.delivery, Some(Delivery { base_commit: "b".into(), stats: Some(stats), ..Default::default() }));
        apply(&mut task, &event(2, Payload::Committed(Committed { branch: "x".into(), commit: "c".into() })));
        apply(&mut task, &event(3, Payload::BranchPushed(BranchPushed { branch: "x".into(), ..Default::default() })));
        let delivery = task.delivery.unwrap();
        assert_eq!((delivery.branch.as_str(), delivery.commit.as_str(), delivery.pushed), ("x", "c", true));
        assert_eq!(delivery.stats, Some(stats));
    }
}
