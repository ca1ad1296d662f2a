//! Conversations and several tasks at once through the edge (issue 19), end to end in local mode:
//! the real edge (`wrangler dev`, R2 served locally) in front of the real agent-service, real git
//! and the real Claude Code CLI. Three tasks of one user run at once and each stream carries only
//! its own events; a follow-up continues its parent on the parent's branch; another user cannot
//! follow up on it; and after the service loses its disk (what a new container is), a follow-up
//! is restored from the workspace the edge kept in R2.

use std::time::{Duration, Instant};

use autopilot_contract::v1::{
    client_frame::Request as ClientRequest, server_frame::Frame, ClientFrame, StartRequest, StatusRequest,
    StreamEventsRequest, Task, TaskState,
};
use autopilot_tests::{
    bridge_client::{connect, receive, send, Encoding},
    edge::Edge,
    git_fixture::git,
    grpc_web::{grpc_web_client, with_token},
    service::{ServiceFixture, ServiceOptions},
};
use serde_json::{json, Value};

/// Starts a task through the JSON route: its id, or the refusal.
async fn start(edge: &Edge, token: &str, body: Value) -> Result<String, Value> {
    let reply = edge.post_json("/api/container/start", token, body).await;
    reply["taskId"].as_str().map(str::to_string).ok_or(reply)
}

/// Waits for the task's end through the edge; its final Task.
async fn ended(edge: &Edge, token: &str, task_id: &str) -> Task {
    let mut client = grpc_web_client(([127, 0, 0, 1], edge.port).into());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = client.status(with_token(token, StatusRequest { task_id: task_id.into() })).await.unwrap();
        let task = status.into_inner().task.unwrap();
        if matches!(task.state(), TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled | TaskState::TimedOut)
        {
            return task;
        }
        assert!(Instant::now() < deadline, "task {task_id} never ended:\n{}", edge.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn conversations_and_several_tasks_at_once_through_the_edge() {
    let mut setup = ServiceFixture::start().await;
    let edge = Edge::start(&format!("http://{}", setup.service.addr)).await;
    let alice = edge.user("alice", 100_000).await;
    let bob = edge.user("bob", 100_000).await;
    let repo_url = setup.repo.url();

    // Three tasks at once; a fourth is refused while they run; each stream is its own.
    let mut running = Vec::new();
    for n in 0..3 {
        let body = json!({"repositoryUrl": repo_url, "prompt": format!("SCENARIO:slow-tools:4 task {n}")});
        running.push(start(&edge, &alice, body).await.expect("three run at once"));
    }
    let fourth = start(&edge, &alice, json!({"repositoryUrl": repo_url, "prompt": "one more"})).await.unwrap_err();
    assert_eq!(fourth["error"]["code"], "RESOURCE_EXHAUSTED", "{fourth}");
    assert!(fourth["error"]["message"].as_str().unwrap().contains("3 tasks are running"), "{fourth}");
    let mut client = grpc_web_client(([127, 0, 0, 1], edge.port).into());
    for task_id in &running {
        let request = StreamEventsRequest { task_id: task_id.clone(), from_seq: 1 };
        let mut events = client.stream_events(with_token(&alice, request)).await.unwrap().into_inner();
        let mut count = 0;
        while let Some(response) = events.message().await.unwrap() {
            assert_eq!(&response.event.unwrap().task_id, task_id, "a stream carries its own task's events");
            count += 1;
        }
        assert!(count > 8, "{count} events");
        assert_eq!(ended(&edge, &alice, task_id).await.state(), TaskState::Succeeded);
    }
    let listed = edge.get_json("/api/tasks", &alice).await;
    assert_eq!(listed["tasks"].as_array().unwrap().len(), 3, "{listed}");

    // A conversation: the first turn writes notes and pushes; the follow-up, naming only its
    // parent and a prompt, reads them, extends them and commits on top on the same branch.
    let body = json!({"repositoryUrl": repo_url, "prompt": "SCENARIO:write-file notes", "delivery": {"push": true}});
    let parent = start(&edge, &alice, body).await.unwrap();
    let parent_task = ended(&edge, &alice, &parent).await;
    assert_eq!(parent_task.state(), TaskState::Succeeded, "{}", parent_task.error);
    let parent_commit = parent_task.delivery.unwrap().commit;
    let follow_up_body = |parent: &str| json!({"parentTaskId": parent, "prompt": "SCENARIO:read-and-extend", "delivery": {"push": true}});
    let refused = start(&edge, &bob, follow_up_body(&parent)).await.unwrap_err();
    assert_eq!(refused["error"]["code"], "NOT_FOUND", "bob cannot continue alice's task: {refused}");
    assert_eq!(refused["error"]["message"], format!("no task with id {parent}"));
    let second = start(&edge, &alice, follow_up_body(&parent)).await.unwrap();
    let second_task = ended(&edge, &alice, &second).await;
    assert_eq!(second_task.state(), TaskState::Succeeded, "{}", second_task.error);
    assert_eq!(second_task.parent_task_id, parent);
    assert!(second_task.result.contains("hello from the agent"), "it read the parent's file: {}", second_task.result);
    let branch = parent_task.delivery_options.unwrap().branch;
    let bare = setup.repo.bare_dir();
    let pushed = git(&bare, &["rev-parse", &branch]);
    assert_eq!(
        git(&bare, &["rev-parse", &format!("{}^", pushed.trim())]).trim(),
        parent_commit,
        "on top of the parent"
    );
    let listed = edge.get_json("/api/tasks?pageSize=1", &alice).await;
    assert_eq!(listed["tasks"][0]["parentTaskId"], parent.as_str(), "the list links the turns: {listed}");

    // The service loses its disk (a new container's) once the edge has archived the second turn
    // (its end is archived after its workspace is kept): the next turn is restored from the
    // workspace the edge kept in R2, and continues the conversation where it stood.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = edge.get_json("/api/tasks", &alice).await;
        let entry = listed["tasks"].as_array().unwrap().iter().find(|t| t["taskId"] == second.as_str()).cloned();
        if entry.is_some_and(|entry| entry["endTime"].is_string()) {
            break;
        }
        assert!(Instant::now() < deadline, "the second turn's end was never archived: {listed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    setup.service.replace_with_empty_work_dir(&setup.model_api, &ServiceOptions::default()).await;
    let third = start(&edge, &alice, follow_up_body(&second)).await.unwrap();
    let third_task = ended(&edge, &alice, &third).await;
    assert_eq!(third_task.state(), TaskState::Succeeded, "{}\n{}", third_task.error, edge.log());
    assert!(third_task.result.contains("more from the follow-up"), "it read the restored file: {}", third_task.result);
    let pushed_again = git(&bare, &["rev-parse", &branch]);
    assert_eq!(git(&bare, &["rev-parse", &format!("{}^", pushed_again.trim())]), pushed, "on top of the second turn");

    // The refusals over the bridge's frames too: a parent still running, and an unknown one.
    let body = json!({"repositoryUrl": repo_url, "prompt": "SCENARIO:slow-tools:6 still going"});
    let started = edge.post_json("/api/container/start", &alice, body).await;
    let running = started["taskId"].as_str().unwrap_or_else(|| panic!("{started}")).to_string();
    let mut ws = connect(started["websocketUrl"].as_str().unwrap()).await;
    let follow_up_frame = |request_id: &str, parent: &str| ClientFrame {
        request_id: request_id.into(),
        request: Some(ClientRequest::Start(StartRequest {
            parent_task_id: parent.into(),
            prompt: "and more".into(),
            ..Default::default()
        })),
    };
    let unknown = "00000000-0000-4000-8000-000000000000";
    for (request_id, parent, code, words) in [
        ("f1", running.as_str(), tonic::Code::FailedPrecondition, "still running".to_string()),
        ("f2", unknown, tonic::Code::NotFound, format!("no task with id {unknown}")),
    ] {
        send(&mut ws, &follow_up_frame(request_id, parent), Encoding::Binary).await;
        let reply = receive(&mut ws, Encoding::Binary).await;
        let Some(Frame::Error(error)) = reply.frame else { panic!("expected a refusal, got {reply:?}") };
        assert_eq!((reply.request_id.as_str(), error.code), (request_id, code as i32), "{}", error.message);
        assert!(error.message.contains(&words), "{}", error.message);
    }
    assert_eq!(ended(&edge, &alice, &running).await.state(), TaskState::Succeeded);
}
