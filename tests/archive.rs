//! A task outlives its container, end to end in local mode (real `wrangler dev`, real
//! agent-service, real Claude Code CLI, real git): the user's object archives each task it
//! starts; once the service is replaced by one with an empty work directory (what a new
//! container is), Status, the whole timeline and the diff still answer from the edge, on the
//! JSON routes, the WebSocket bridge and gRPC-web; the task list pages newest first; another user
//! sees none of it; old tasks are pruned whole past `HISTORY_TASKS`; a task's archived events
//! are capped (`ARCHIVE_MAX_EVENTS`) with its end kept.

use std::time::{Duration, Instant};

use autopilot_contract::v1::{
    autopilot_client::AutopilotClient, client_frame::Request as ClientRequest, server_frame::Frame, ClientFrame, Event,
    GetDiffRequest, ListTasksRequest, StatusRequest, StreamEventsRequest,
};
use autopilot_tests::{
    bridge_client::{connect, read_subscription, receive, send, subscribe, Encoding},
    edge::Edge,
    events::seqs,
    git_fixture::GitFixture,
    grpc_web::{grpc_web_client, with_token},
    service::{ServiceFixture, ServiceOptions},
};
use prost::Message;
use serde_json::{json, Value};

/// Starts a task; answers its id and session.
async fn start(edge: &Edge, token: &str, repo: &GitFixture, prompt: &str) -> (String, String) {
    let reply =
        edge.post_json("/api/container/start", token, json!({"repositoryUrl": repo.url(), "prompt": prompt})).await;
    let task_id = reply["taskId"].as_str().unwrap_or_else(|| panic!("Start failed: {reply}")).to_string();
    (task_id, reply["sessionId"].as_str().unwrap().to_string())
}

/// Waits until the task list shows `task_id` ended (its end is archived); answers its summary.
async fn until_archived(edge: &Edge, token: &str, task_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let page = edge.get_json("/api/tasks?pageSize=100", token).await;
        let summary = page["tasks"].as_array().and_then(|tasks| tasks.iter().find(|t| t["taskId"] == task_id)).cloned();
        if let Some(summary) = summary.filter(|s| s.get("endTime").is_some()) {
            return summary;
        }
        assert!(Instant::now() < deadline, "task {task_id} was not archived as ended: {page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every event of `task_id` over a fresh bridge socket of `session_id`, and whether it ended.
async fn replay(edge: &Edge, token: &str, session_id: &str, task_id: &str) -> (Vec<Event>, bool) {
    let mut ws = connect(&edge.ws_ticket_url(token, session_id).await).await;
    send(&mut ws, &subscribe("replay", task_id, 1), Encoding::Binary).await;
    read_subscription(&mut ws, "replay", Encoding::Binary, None).await
}

#[tokio::test]
async fn an_ended_task_is_served_from_the_edge_after_its_service_is_gone() {
    let ServiceFixture { model_api, repo, mut service } = ServiceFixture::start().await;
    // What the service was started with, to start it again the same way.
    let options = ServiceOptions::default();
    let edge = Edge::start_with_vars(
        &format!("http://{}", service.addr),
        &[("HISTORY_TASKS", "3"), ("ARCHIVE_MAX_EVENTS", "30")],
    )
    .await;
    let alice = edge.user("alice", 100_000).await;
    let bob = edge.user("bob", 100_000).await;

    // A task that changes files, followed live to its end by a browser-like client.
    let (task_a, session_a) = start(&edge, &alice, &repo, "Edit and create\nSCENARIO:edit-and-create").await;
    let (live_events, ended) = replay(&edge, &alice, &session_a, &task_a).await;
    assert!(ended && live_events.len() > 5, "the live follow ended: {} events", live_events.len());
    let summary = until_archived(&edge, &alice, &task_a).await;
    assert_eq!(summary["state"], "TASK_STATE_SUCCEEDED", "{summary}");
    assert_eq!(summary["title"], "Edit and create");
    assert_eq!(summary["repositoryUrl"], repo.url());
    assert!(summary["commit"].as_str().is_some_and(|c| c.len() == 40), "the delivered commit: {summary}");
    let mut web = grpc_web_client(format!("127.0.0.1:{}", edge.port).parse().unwrap());
    let diff_before = web.get_diff(with_token(&alice, GetDiffRequest { task_id: task_a.clone() })).await.unwrap();

    // The service is replaced by one that has never seen the task.
    service.replace_with_empty_work_dir(&model_api, &options).await;
    let mut direct = AutopilotClient::connect(format!("http://{}", service.addr)).await.unwrap();
    let unknown = direct.status(StatusRequest { task_id: task_a.clone() }).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound, "the new service does not know the task");

    // Status, the whole timeline and the diff answer from the edge, on every path.
    let status = edge.get_json(&format!("/api/container/status?taskId={task_a}"), &alice).await;
    assert_eq!(status["task"]["state"], "TASK_STATE_SUCCEEDED", "{status}");
    assert_eq!(status["task"]["delivery"]["commit"], summary["commit"]);
    let (archived, ended) = replay(&edge, &alice, &session_a, &task_a).await;
    assert!(ended, "the archived replay ends");
    let encoded = |events: &[Event]| events.iter().map(Message::encode_to_vec).collect::<Vec<_>>();
    assert_eq!(seqs(&archived), seqs(&live_events), "the same seqs, in order, once");
    assert!(encoded(&archived) == encoded(&live_events), "the same events, byte for byte");
    let diff_after = web.get_diff(with_token(&alice, GetDiffRequest { task_id: task_a.clone() })).await.unwrap();
    assert_eq!(diff_after.into_inner(), diff_before.into_inner(), "the whole diff, from the archive");
    let web_status = web.status(with_token(&alice, StatusRequest { task_id: task_a.clone() })).await.unwrap();
    assert_eq!(web_status.into_inner().task.unwrap().task_id, task_a);
    let mut stream = web
        .stream_events(with_token(&alice, StreamEventsRequest { task_id: task_a.clone(), from_seq: 3 }))
        .await
        .unwrap()
        .into_inner();
    let mut resumed = Vec::new();
    while let Some(reply) = stream.message().await.unwrap() {
        resumed.push(reply.event.unwrap());
    }
    assert_eq!(seqs(&resumed), seqs(&live_events[2..]), "a resume from seq 3 over gRPC-web");
    assert!(encoded(&resumed) == encoded(&live_events[2..]), "the same events, byte for byte");

    // Another device, with no session of the task: a ticket by task id opens its timeline.
    let by_task = edge.post_json("/api/container/ws-ticket", &alice, json!({"taskId": task_a})).await;
    let mut ws = connect(by_task["websocketUrl"].as_str().unwrap_or_else(|| panic!("{by_task}"))).await;
    send(&mut ws, &subscribe("device-2", &task_a, 1), Encoding::Binary).await;
    let (elsewhere, _) = read_subscription(&mut ws, "device-2", Encoding::Binary, None).await;
    assert_eq!(seqs(&elsewhere), seqs(&live_events), "the timeline from another device");
    let refused = edge.post_json("/api/container/ws-ticket", &bob, json!({"taskId": task_a})).await;
    assert_eq!(refused["error"]["code"], "NOT_FOUND", "bob gets no session on alice's task: {refused}");

    // The task list: JSON route, gRPC-web and a bridge frame; another user sees nothing.
    let listed = web.list_tasks(with_token(&alice, ListTasksRequest::default())).await.unwrap().into_inner();
    assert_eq!(listed.tasks.iter().map(|t| t.task_id.as_str()).collect::<Vec<_>>(), vec![task_a.as_str()]);
    let mut ws = connect(&edge.ws_ticket_url(&alice, &session_a).await).await;
    let list_frame = ClientFrame {
        request_id: "list".into(),
        request: Some(ClientRequest::ListTasks(ListTasksRequest { page_size: 10, page_token: String::new() })),
    };
    send(&mut ws, &list_frame, Encoding::Json).await;
    match receive(&mut ws, Encoding::Json).await.frame {
        Some(Frame::ListTasks(page)) => assert_eq!(page.tasks[0].task_id, task_a),
        other => panic!("expected a task list, got {other:?}"),
    }
    let bobs = edge.get_json("/api/tasks", &bob).await;
    assert_eq!(bobs["tasks"].as_array().map(Vec::len).unwrap_or(0), 0, "bob's list is his own: {bobs}");
    let theirs = edge.get_json(&format!("/api/container/status?taskId={task_a}"), &bob).await;
    assert_eq!(theirs["error"]["code"], "NOT_FOUND", "{theirs}");

    // Paging, newest first; hostile page sizes and tokens are the client's mistake.
    let (task_b, _) = start(&edge, &alice, &repo, "Second").await;
    until_archived(&edge, &alice, &task_b).await;
    let (task_c, _) = start(&edge, &alice, &repo, "Third").await;
    until_archived(&edge, &alice, &task_c).await;
    let first = edge.get_json("/api/tasks?pageSize=2", &alice).await;
    let ids = |page: &Value| {
        page["tasks"].as_array().unwrap().iter().map(|t| t["taskId"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(ids(&first), vec![task_c.clone(), task_b.clone()]);
    let token = first["nextPageToken"].as_str().unwrap();
    let second = edge.get_json(&format!("/api/tasks?pageSize=2&pageToken={token}"), &alice).await;
    assert_eq!(ids(&second), vec![task_a.clone()]);
    assert!(second["nextPageToken"].as_str().unwrap_or_default().is_empty(), "the last page: {second}");
    let http = reqwest::Client::new();
    for query in
        ["pageSize=-1", "pageSize=101", "pageSize=abc", "pageToken=xyz", &format!("pageToken={}", "a".repeat(10_000))]
    {
        let reply = http.get(format!("{}/api/tasks?{query}", edge.base_url)).bearer_auth(&alice).send().await.unwrap();
        assert_eq!(reply.status(), 400, "{query}");
    }

    // Past HISTORY_TASKS (3) the oldest task goes whole; a long task keeps its end past the cap.
    let (task_d, session_d) = start(&edge, &alice, &repo, "Many steps SCENARIO:many-tools:12").await;
    let (live_d, _) = replay(&edge, &alice, &session_d, &task_d).await;
    until_archived(&edge, &alice, &task_d).await;
    let listed = ids(&edge.get_json("/api/tasks", &alice).await);
    assert_eq!(listed, vec![task_d.clone(), task_c, task_b], "A was pruned");
    let pruned = edge.get_json(&format!("/api/container/status?taskId={task_a}"), &alice).await;
    assert_eq!(pruned["error"]["code"], "NOT_FOUND", "a pruned task is gone whole: {pruned}");
    service.replace_with_empty_work_dir(&model_api, &options).await;
    let (capped, ended) = replay(&edge, &alice, &session_d, &task_d).await;
    assert!(live_d.len() > 30, "the long task has more events than the cap: {}", live_d.len());
    assert!(ended && capped.len() == 30, "30 events kept of {}: {}", live_d.len(), capped.len());
    assert_eq!(capped.last().map(Message::encode_to_vec), live_d.last().map(Message::encode_to_vec), "the end is kept");
    // A running task shows in the list as it goes (its state), before its end is archived.
    let (task_e, _) = start(&edge, &alice, &repo, "Slow SCENARIO:slow-tools:8").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = edge.get_json("/api/tasks", &alice).await;
        let entry = page["tasks"].as_array().unwrap().iter().find(|t| t["taskId"] == task_e.as_str()).cloned();
        let entry = entry.unwrap_or_else(|| panic!("the running task is listed: {page}"));
        if entry["state"] == "TASK_STATE_RUNNING" && entry.get("endTime").is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "the list never showed the task running: {entry}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    until_archived(&edge, &alice, &task_e).await;
    println!(
        "archive: task A {} events replayed identically after its service was replaced; task D {} events capped to {}",
        live_events.len(),
        live_d.len(),
        capped.len()
    );
}
