//! A task from Start to its end: its events in order (clone progress, the agent's tool calls,
//! usage, the end), Status afterwards, the refs it checks out, and its events replayed from any
//! point during and after the task and followed by two subscribers at once.

use autopilot_contract::v1::{event::Payload, StartRequest, StatusRequest, TaskState};
use autopilot_tests::{
    events::{finished, first_tool_result, kind, milestones, seqs, stream_all, LIST_FILES_MILESTONES},
    service::ServiceFixture,
};

use crate::{start_request, wait_for_kind};

#[tokio::test]
async fn a_task_runs_from_start_to_succeeded_with_ordered_events() {
    let setup = ServiceFixture::start().await;
    let mut client = setup.service.client().await;
    let started = client
        .start(start_request(&setup.repo, "SCENARIO:list-files What is in this repository?"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(started.state(), TaskState::Pending);

    let events = stream_all(&mut client, &started.task_id, 1).await;
    assert_eq!(seqs(&events), (1..=events.len() as u64).collect::<Vec<_>>(), "seqs are dense from 1");
    assert!(events.iter().all(|e| e.task_id == started.task_id && e.time.is_some()));
    assert_eq!(milestones(&events), LIST_FILES_MILESTONES);
    assert!(events.iter().any(|e| kind(e) == "git_progress"), "clone progress is reported");
    let usage_positions: Vec<usize> =
        events.iter().enumerate().filter(|(_, e)| kind(e) == "usage").map(|(i, _)| i).collect();
    let text_position = events.iter().position(|e| kind(e) == "agent_text").unwrap();
    assert!(usage_positions.first().unwrap() < &text_position, "usage arrives while the agent works");

    // The tool really ran in the clone: its output lists the repository's files.
    let tool = first_tool_result(&events);
    assert!(!tool.is_error);
    assert_eq!(tool.output.lines().collect::<Vec<_>>(), ["README.md", "main.rs"]);
    let Some(Payload::ToolStarted(call)) =
        events.iter().find(|e| kind(e).starts_with("tool_started")).and_then(|e| e.payload.clone())
    else {
        unreachable!()
    };
    assert_eq!(serde_json::from_str::<serde_json::Value>(&call.input_json).unwrap()["command"], "ls -1");
    assert_eq!(call.tool_id, tool.tool_id);

    let end = finished(&events);
    assert!(end.result.contains("README.md"), "{}", end.result);
    assert!(end.error.is_empty());
    assert_eq!(end.num_turns, 2);
    let usage = end.usage.unwrap();
    assert!(usage.input_tokens > 0 && usage.output_tokens > 0 && usage.cost_usd > 0.0, "{usage:?}");

    let task =
        client.status(StatusRequest { task_id: started.task_id.clone() }).await.unwrap().into_inner().task.unwrap();
    assert_eq!(task.state(), TaskState::Succeeded);
    assert_eq!(task.last_seq, events.len() as u64);
    assert_eq!(task.commit, setup.repo.rev_parse("main"));
    assert_eq!(task.result, end.result);
    assert!(!task.session_id.is_empty());
    assert!(task.create_time.is_some() && task.start_time.is_some() && task.end_time.is_some());
    assert!((task.usage.unwrap().cost_usd - usage.cost_usd).abs() < 1e-12);
    // With no id, Status describes the most recent task.
    let latest = client.status(StatusRequest::default()).await.unwrap().into_inner().task.unwrap();
    assert_eq!(latest.task_id, started.task_id);
}

#[tokio::test]
async fn refs_check_out_the_named_branch_tag_or_commit() {
    let setup = ServiceFixture::start().await;
    let mut client = setup.service.client().await;
    for (git_ref, expected) in
        [("feature", "feature"), ("v1", "v1"), (setup.repo.rev_parse("feature").as_str(), "feature")]
    {
        let request =
            StartRequest { git_ref: git_ref.to_string(), ..start_request(&setup.repo, "SCENARIO:list-files") };
        let started = client.start(request).await.unwrap().into_inner();
        let events = stream_all(&mut client, &started.task_id, 1).await;
        assert_eq!(finished(&events).state(), TaskState::Succeeded, "{git_ref}: {:?}", finished(&events).error);
        let task = client.status(StatusRequest { task_id: started.task_id }).await.unwrap().into_inner().task.unwrap();
        assert_eq!(task.commit, setup.repo.rev_parse(expected), "ref {git_ref}");
        assert_eq!(task.git_ref, git_ref);
    }
}

#[tokio::test]
async fn replay_from_the_start_and_the_middle_during_and_after_the_task() {
    let setup = ServiceFixture::start().await;
    let mut client = setup.service.client().await;
    let started =
        client.start(start_request(&setup.repo, "SCENARIO:many-tools:12 step through")).await.unwrap().into_inner();
    let id = started.task_id.clone();

    // During the task: one subscriber from the start, one from the middle of what exists so far.
    let from_start = {
        let mut client = setup.service.client().await;
        let id = id.clone();
        tokio::spawn(async move { stream_all(&mut client, &id, 1).await })
    };
    let so_far = wait_for_kind(&setup, &id, "tool_finished").await;
    let middle = so_far.len() as u64 / 2 + 1;
    let from_middle = {
        let mut client = setup.service.client().await;
        let id = id.clone();
        tokio::spawn(async move { stream_all(&mut client, &id, middle).await })
    };
    let all = from_start.await.unwrap();
    let total = all.len() as u64;
    assert!(total > 40, "a long task: {total} events");
    assert_eq!(finished(&all).state(), TaskState::Succeeded);
    assert_eq!(seqs(&all), (1..=total).collect::<Vec<_>>());
    assert_eq!(seqs(&from_middle.await.unwrap()), (middle..=total).collect::<Vec<_>>());

    // After the task: the same events again, from any point, identical to the live ones.
    assert_eq!(stream_all(&mut client, &id, 0).await, all);
    let late_middle = total - 7;
    assert_eq!(stream_all(&mut client, &id, late_middle).await, all[(late_middle - 1) as usize..].to_vec());
    assert_eq!(stream_all(&mut client, &id, total).await.len(), 1);
    assert!(
        stream_all(&mut client, &id, total + 1).await.is_empty(),
        "past the end of an ended task: nothing, and the stream ends"
    );
}

#[tokio::test]
async fn two_concurrent_subscribers_get_the_same_events() {
    let setup = ServiceFixture::start().await;
    let mut client = setup.service.client().await;
    let started = client.start(start_request(&setup.repo, "SCENARIO:many-tools:5")).await.unwrap().into_inner();
    let subscribe = || {
        let id = started.task_id.clone();
        let addr = setup.service.addr;
        tokio::spawn(async move {
            let mut client =
                autopilot_contract::v1::autopilot_client::AutopilotClient::connect(format!("http://{addr}"))
                    .await
                    .unwrap();
            stream_all(&mut client, &id, 1).await
        })
    };
    let (first, second) = (subscribe(), subscribe());
    let (first, second) = (first.await.unwrap(), second.await.unwrap());
    assert_eq!(first, second);
    assert_eq!(seqs(&first), (1..=first.len() as u64).collect::<Vec<_>>());
    assert_eq!(finished(&first).state(), TaskState::Succeeded);
}
