//! What a task's user and followers see when the parts under it stop, end to end in local mode
//! (real `wrangler dev`, the real agent-service with no model key of its own, the real Claude
//! Code CLI calling the model through the edge's gateway, real git):
//! - the edge restarts (a redeploy) mid-task: the agent retries its model calls as it does in the
//!   image, and the task succeeds;
//! - the service is killed and replaced by one on an empty disk (a new container) mid-task: the
//!   edge fails the task at once, from what it already holds; its follower gets the FAILED end
//!   and Status says FAILED, never "no task";
//! - the service stops (SIGTERM) right after the task's end: the end is answered from the task's
//!   final event while the service is down, and completed from the service once it is back;
//! - what a client may not choose: the snapshot a follow-up restores from, an unbounded id in an
//!   error, a page token the edge did not sign.
//!
//! One edge and one service serve every phase, in order.

use std::time::{Duration, Instant};

use autopilot_contract::v1::{server_frame::Frame, Event, StatusRequest, TaskState};
use autopilot_tests::{
    bridge_client::{connect, read_subscription, receive, send, subscribe, Encoding, Socket},
    edge::Edge,
    events::{finished, kind, seqs},
    fake_model_api::FakeModelApi,
    git_fixture::GitFixture,
    service::{Service, ServiceOptions},
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use serde_json::json;

/// The edge's model key (the service has none).
const EDGE_KEY: &str = "sk-ant-edge-lost-tasks-5e0b7c";

/// Starts a task through the JSON route; answers its id and session.
async fn start(edge: &Edge, token: &str, repo: &GitFixture, prompt: &str) -> (String, String) {
    let reply =
        edge.post_json("/api/container/start", token, json!({"repositoryUrl": repo.url(), "prompt": prompt})).await;
    let task_id = reply["taskId"].as_str().unwrap_or_else(|| panic!("Start failed: {reply}")).to_string();
    (task_id, reply["sessionId"].as_str().unwrap().to_string())
}

/// A socket on the task's session following it from seq 1, once its first `count` events came.
async fn following(edge: &Edge, token: &str, session: &str, task_id: &str, count: usize) -> (Socket, Vec<Event>) {
    let mut ws = connect(&edge.ws_ticket_url(token, session).await).await;
    send(&mut ws, &subscribe("follow", task_id, 1), Encoding::Binary).await;
    let (events, _) = read_subscription(&mut ws, "follow", Encoding::Binary, Some(count)).await;
    (ws, events)
}

/// Reads a follow to its end as the page does: a stream broken by the service going away
/// (UNAVAILABLE) is subscribed again from the next seq; any other error fails the test.
async fn follow_to_end(ws: &mut Socket, task_id: &str, mut events: Vec<Event>) -> Vec<Event> {
    let mut request_id = "follow".to_string();
    loop {
        let frame = receive(ws, Encoding::Binary).await;
        if frame.request_id != request_id {
            continue;
        }
        match frame.frame {
            Some(Frame::Event(event)) => events.push(event),
            Some(Frame::EndOfStream(_)) => return events,
            Some(Frame::Error(e)) if e.code == tonic::Code::Unavailable as i32 => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                request_id = format!("follow-{}", events.len());
                let next = events.last().map_or(1, |e| e.seq + 1);
                send(ws, &subscribe(&request_id, task_id, next), Encoding::Binary).await;
            }
            other => panic!("the follower got {other:?} instead of the task's end"),
        }
    }
}

#[tokio::test]
async fn a_task_survives_an_edge_restart_and_a_lost_task_ends_at_once() {
    let model_api = FakeModelApi::start().await.unwrap();
    let repo = GitFixture::new();
    let options = ServiceOptions { api_key: None, model_retries: true, ..ServiceOptions::default() };
    let mut service = Service::start(&model_api, options.clone()).await;
    let edge = Edge::start_with_vars(
        &format!("http://{}", service.addr),
        &[("ANTHROPIC_API_KEY", EDGE_KEY), ("MODEL_API_URL", &model_api.base_url), ("PUBLIC_ORIGIN", "{edge}")],
    )
    .await;
    let alice = edge.user("alice", 100_000).await;

    // --- The edge restarts while the agent works: every model call crosses its gateway. ---
    let (survivor, session) = start(&edge, &alice, &repo, "Keep going SCENARIO:slow-tools:14").await;
    let (ws, _) = following(&edge, &alice, &session, &survivor, 6).await;
    drop(ws);
    let restart_began = Instant::now();
    let edge = edge.restart().await;
    let restart_took = restart_began.elapsed();
    // Nobody asks the edge while the task finishes: its follow went with the old edge, so the
    // archive holds only the events before the restart when the heartbeat finds the task ended.
    // The end must come after the rest of its events, not over the gap.
    let mut direct = service.client().await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !direct
        .status(StatusRequest { task_id: survivor.clone() })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap()
        .state()
        .is_final()
    {
        assert!(Instant::now() < deadline, "the task did not end:\n{}", service.logs().join("\n"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    edge.heartbeat("alice").await;
    let status = edge.until_ended(&alice, &survivor).await;
    assert_eq!(status["task"]["state"], "TASK_STATE_SUCCEEDED", "{status}\n{}", service.logs().join("\n"));
    let (ws, events) = following(&edge, &alice, &session, &survivor, usize::MAX).await;
    drop(ws);
    assert_eq!(events.iter().filter(|e| kind(e) == "tool_finished").count(), 14, "every step ran");

    // --- The service dies mid-task, replaced by one with an empty disk (a new container). ---
    let (lost, session) = start(&edge, &alice, &repo, "Slow SCENARIO:slow-tools:40").await;
    let (mut ws, seen) = following(&edge, &alice, &session, &lost, 4).await;
    service.replace_with_empty_work_dir(&model_api, &options).await;
    let replaced_at = Instant::now();
    let events = follow_to_end(&mut ws, &lost, seen).await;
    let told_in = replaced_at.elapsed();
    assert_eq!(seqs(&events), (1..=events.len() as u64).collect::<Vec<_>>(), "one gapless timeline");
    let end = finished(&events);
    assert_eq!(end.state, TaskState::Failed as i32, "{end:?}");
    assert!(end.error.contains("lost this task"), "{}", end.error);
    assert!(told_in < Duration::from_secs(15), "the follower heard of the loss after {told_in:?}");
    let (code, status) = edge.get(&format!("/api/container/status?taskId={lost}"), &alice).await;
    assert_eq!((code, &status["task"]["state"]), (200, &json!("TASK_STATE_FAILED")), "{status}");

    // --- The service stops (SIGTERM) as the task ends: the end needs no service to answer. ---
    let (stopped, session) = start(&edge, &alice, &repo, "Slow SCENARIO:slow-tools:40").await;
    let (mut ws, seen) = following(&edge, &alice, &session, &stopped, 4).await;
    service.process.terminate();
    let events = follow_to_end(&mut ws, &stopped, seen).await;
    let final_state = finished(&events).state;
    assert!(service.process.wait(Duration::from_secs(20)).await.is_some(), "the service exits on SIGTERM");
    let deadline = Instant::now() + Duration::from_secs(5);
    let down = loop {
        let (code, status) = edge.get(&format!("/api/container/status?taskId={stopped}"), &alice).await;
        if code == 200 {
            break status;
        }
        assert!(Instant::now() < deadline, "Status of an ended task with the service down: {code} {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(down["task"]["state"], json!(TaskState::try_from(final_state).unwrap().as_str_name()), "{down}");
    service.restart_after_crash(&model_api, &options).await;
    edge.heartbeat("alice").await;
    // Completed from the service once it answers: only its own Task has a start time and the
    // delivery options (the final event tells neither).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, completed) = edge.get(&format!("/api/container/status?taskId={stopped}"), &alice).await;
        if completed["task"]["startTime"].is_string() && completed["task"]["deliveryOptions"]["branch"].is_string() {
            break;
        }
        assert!(Instant::now() < deadline, "the end was not completed from the service: {completed}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // --- What a client may not choose. ---
    // A follow-up whose workspace went with its container and was never kept: a snapshot the
    // client sends is not used in its place.
    let base_commit = repo.rev_parse("HEAD");
    let forged_restore = json!({
        "parentTaskId": lost, "prompt": "Go on",
        "restore": {"taskId": lost, "repositoryUrl": repo.url(), "baseCommit": base_commit, "branch": "mine"},
    });
    let refused = edge.post_json("/api/container/start", &alice, forged_restore).await;
    assert_eq!(refused["error"]["code"], "FAILED_PRECONDITION", "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("none was kept"), "{refused}");
    // An unknown parent is echoed as at most a task id's length.
    let long_id = "a".repeat(10_000);
    let refused =
        edge.post_json("/api/container/start", &alice, json!({"parentTaskId": long_id, "prompt": "Go on"})).await;
    assert_eq!(refused["error"]["code"], "NOT_FOUND", "{refused}");
    assert!(refused.to_string().len() < 200, "{} bytes", refused.to_string().len());
    // Page tokens are the edge's own: a well-formed one it did not sign is refused.
    let (code, first) = edge.get("/api/tasks?pageSize=1", &alice).await;
    let token = first["nextPageToken"].as_str().unwrap_or_default();
    assert!(code == 200 && !token.is_empty(), "{first}");
    let (code, _) = edge.get(&format!("/api/tasks?pageSize=1&pageToken={token}"), &alice).await;
    assert_eq!(code, 200, "its own token pages on");
    let created_ms = 4_102_444_800_000u64;
    let forged = URL_SAFE_NO_PAD.encode(format!("{created_ms}.{lost}"));
    let (code, reply) = edge.get(&format!("/api/tasks?pageSize=1&pageToken={forged}"), &alice).await;
    assert_eq!(code, 400, "{reply}");

    println!(
        "lost tasks: the edge restarted in {restart_took:?} under a running task, which SUCCEEDED; a task lost with \
         its service reached its follower as FAILED {told_in:?} after the new service listened"
    );
}
