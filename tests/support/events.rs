//! Reading event streams in tests: collect a whole stream with a deadline, and name events by
//! their payload kind so sequences can be compared at a glance.

use std::time::Duration;

use autopilot_contract::v1::{event::Payload, Event, StreamEventsRequest, StreamEventsResponse, TaskState};
use futures::{Stream, StreamExt};

/// How long any test waits for a stream to end.
pub const STREAM_DEADLINE: Duration = Duration::from_secs(60);

/// Collects a StreamEvents response stream to its end.
pub async fn collect<S>(stream: S) -> Vec<Event>
where
    S: Stream<Item = Result<StreamEventsResponse, tonic::Status>>,
{
    let all = async {
        let mut events = Vec::new();
        futures::pin_mut!(stream);
        while let Some(item) = stream.next().await {
            events.push(item.expect("stream item").event.expect("event set"));
        }
        events
    };
    tokio::time::timeout(STREAM_DEADLINE, all).await.expect("the stream did not end in time")
}

/// Streams every event of `task_id` from `from_seq` over `client` and collects them.
pub async fn stream_all(
    client: &mut autopilot_contract::v1::autopilot_client::AutopilotClient<tonic::transport::Channel>,
    task_id: &str,
    from_seq: u64,
) -> Vec<Event> {
    let stream = client
        .stream_events(StreamEventsRequest { task_id: task_id.into(), from_seq })
        .await
        .expect("StreamEvents")
        .into_inner();
    collect(stream).await
}

/// A short name for an event's payload, with the state for state changes.
pub fn kind(event: &Event) -> String {
    match event.payload.as_ref().expect("payload set") {
        Payload::StateChanged(change) => format!("state:{}", state_name(change.to())),
        Payload::GitProgress(_) => "git_progress".into(),
        Payload::RepositoryReady(_) => "repository_ready".into(),
        Payload::AgentStarted(_) => "agent_started".into(),
        Payload::AgentText(_) => "agent_text".into(),
        Payload::ToolStarted(tool) => format!("tool_started:{}", tool.name),
        Payload::ToolFinished(_) => "tool_finished".into(),
        Payload::UsageUpdate(_) => "usage".into(),
        Payload::Diff(_) => "diff".into(),
        Payload::Committed(_) => "committed".into(),
        Payload::BranchPushed(_) => "branch_pushed".into(),
        Payload::SetupStarted(started) if started.maintenance => "setup_started:maintenance".into(),
        Payload::SetupStarted(_) => "setup_started".into(),
        Payload::SetupOutput(_) => "setup_output".into(),
        Payload::SetupFinished(_) => "setup_finished".into(),
        Payload::TaskFinished(finished) => {
            format!("task_finished:{}", state_name(finished.state()))
        }
    }
}

/// `TASK_STATE_SUCCEEDED` -> `SUCCEEDED`.
pub fn state_name(state: TaskState) -> String {
    state.as_str_name().trim_start_matches("TASK_STATE_").to_string()
}

/// The seqs of `events`, in order.
pub fn seqs(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

/// The final event's payload, which must be `task_finished`.
pub fn finished(events: &[Event]) -> autopilot_contract::v1::TaskFinished {
    match events.last().and_then(|e| e.payload.clone()) {
        Some(Payload::TaskFinished(finished)) => finished,
        other => panic!("the last event is not task_finished: {other:?}"),
    }
}

/// The first tool call's result (the task must have run one).
pub fn first_tool_result(events: &[Event]) -> autopilot_contract::v1::ToolFinished {
    match events.iter().find_map(|e| match &e.payload {
        Some(Payload::ToolFinished(tool)) => Some(tool.clone()),
        _ => None,
    }) {
        Some(tool) => tool,
        None => panic!("no tool_finished event in {events:?}"),
    }
}

/// The steps of a successful `list-files` task, in order (as [`milestones`] lists them).
pub const LIST_FILES_MILESTONES: [&str; 11] = [
    "state:PENDING",
    "state:CLONING",
    "repository_ready",
    "state:RUNNING",
    "agent_started",
    "tool_started:Bash",
    "tool_finished",
    "agent_text",
    "diff",
    "state:SUCCEEDED",
    "task_finished:SUCCEEDED",
];

/// The kinds of `events`, without the ones whose number varies (git progress, usage updates).
pub fn milestones(events: &[Event]) -> Vec<String> {
    events.iter().map(kind).filter(|k| k != "git_progress" && k != "usage").collect()
}

/// What an environment's script printed, line by line (`setup_output` events).
pub fn setup_lines(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(autopilot_contract::v1::event::Payload::SetupOutput(output)) => Some(output.line.clone()),
            _ => None,
        })
        .collect()
}

/// The notes about prepared workspaces (`git_progress` of the phase "Prepared workspace").
pub fn prepared_notes(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(autopilot_contract::v1::event::Payload::GitProgress(note)) if note.phase == "Prepared workspace" => {
                Some(note.message.clone())
            }
            _ => None,
        })
        .collect()
}
