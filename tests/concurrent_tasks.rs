//! End-to-end tests of several tasks at once (issue 19): up to `--max-tasks` (3 by default) run
//! side by side, each in its own workspace with its own agent, each stream carrying only its own
//! task's events; one more is refused; a cancelled one leaves the others running. Real
//! agent-service binary, real git, the real Claude Code CLI; only the model API is fake.

use std::time::{Duration, Instant};

use autopilot_contract::v1::{
    autopilot_client::AutopilotClient, CancelRequest, Event, StartRequest, StatusRequest, TaskState,
};
use autopilot_tests::{
    events::{finished, kind, seqs, stream_all},
    service::ServiceFixture,
};
use tonic::{transport::Channel, Code};

/// Three Bash calls of half a second each: long enough that running side by side shows.
const SLOW: &str = "SCENARIO:slow-tools:3";

fn start_request(setup: &ServiceFixture, prompt: &str) -> StartRequest {
    StartRequest { repository_url: setup.repo.url(), prompt: prompt.into(), ..Default::default() }
}

/// Runs a started task's stream to its end.
async fn follow(mut client: AutopilotClient<Channel>, task_id: String) -> (String, Vec<Event>) {
    let events = stream_all(&mut client, &task_id, 1).await;
    (task_id, events)
}

/// The task's stream holds only its own events, densely numbered, ending SUCCEEDED.
fn assert_own_success(task_id: &str, events: &[Event]) {
    assert!(events.iter().all(|e| e.task_id == task_id), "another task's event in {task_id}'s stream");
    assert_eq!(seqs(events), (1..=events.len() as u64).collect::<Vec<_>>());
    assert_eq!(events.iter().filter(|e| kind(e) == "tool_started:Bash").count(), 3);
    assert_eq!(finished(events).state(), TaskState::Succeeded, "{}", finished(events).error);
}

#[tokio::test]
async fn three_tasks_run_at_once_faster_than_in_a_row_and_a_fourth_is_refused() {
    let setup = ServiceFixture::start().await;
    let mut client = setup.service.client().await;

    // Three at once; a fourth while they run is refused with the limit.
    let at_once = Instant::now();
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(client.start(start_request(&setup, &format!("Task {i}\n{SLOW}"))).await.unwrap().into_inner().task_id);
    }
    let refused = client.start(start_request(&setup, "A fourth\nSCENARIO:answer")).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(refused.message(), "3 tasks are running, the limit; wait for one to end or cancel one");
    let follows = ids.iter().map(|id| follow(client.clone(), id.clone()));
    for (id, events) in futures::future::join_all(follows).await {
        assert_own_success(&id, &events);
    }
    let together = at_once.elapsed();

    // The same three, one after another.
    let mut in_a_row = Duration::ZERO;
    for i in 0..3 {
        let one = Instant::now();
        let id = client.start(start_request(&setup, &format!("Task {i}\n{SLOW}"))).await.unwrap().into_inner().task_id;
        let (id, events) = follow(client.clone(), id).await;
        assert_own_success(&id, &events);
        in_a_row += one.elapsed();
    }
    let ratio = together.as_secs_f64() / in_a_row.as_secs_f64();
    println!(
        "three tasks at once: {:.2}s; one after another: {:.2}s; ratio {ratio:.2}",
        together.as_secs_f64(),
        in_a_row.as_secs_f64()
    );
    assert!(ratio < 0.8, "three at once took {together:?}, three in a row {in_a_row:?}");

    // Each task had a workspace of its own.
    for id in &ids {
        assert!(setup.service.work_dir.join("tasks").join(id).join("repo/.git").is_dir());
    }
}

#[tokio::test]
async fn cancelling_one_of_three_leaves_the_others_running_to_success() {
    let setup = ServiceFixture::start().await;
    let mut client = setup.service.client().await;
    let first = client.start(start_request(&setup, &format!("First\n{SLOW}"))).await.unwrap().into_inner().task_id;
    let hung = client.start(start_request(&setup, "Hang\nSCENARIO:hang")).await.unwrap().into_inner().task_id;
    let third = client.start(start_request(&setup, &format!("Third\n{SLOW}"))).await.unwrap().into_inner().task_id;
    let follows = [first.clone(), third.clone()].map(|id| tokio::spawn(follow(client.clone(), id)));

    let cancelled = client.cancel(CancelRequest { task_id: hung.clone(), ..Default::default() }).await.unwrap();
    assert_eq!(cancelled.into_inner().state(), TaskState::Cancelled);
    for running in [&first, &third] {
        let task = client.status(StatusRequest { task_id: running.clone() }).await.unwrap().into_inner().task.unwrap();
        assert!(!task.state().is_final(), "{running} was stopped with the cancelled task");
    }
    for follow in follows {
        let (id, events) = follow.await.unwrap();
        assert_own_success(&id, &events);
    }
    let (_, events) = follow(client.clone(), hung.clone()).await;
    assert_eq!(finished(&events).state(), TaskState::Cancelled);
}
