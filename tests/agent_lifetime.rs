//! End-to-end tests that the agent dies with its service. The real agent-service, git and
//! Claude Code CLI; the model API is a fake that asks for one long shell command
//! (`timeout 60 tail -f /dev/null`: Claude Code refuses a bare `sleep`) and counts the calls,
//! so a test can see both the processes and the paid calls of an agent that outlived its service.
//!
//! Claude Code runs each shell command in a session of its own, outside its process group, so
//! these tests check every process working in the task's workspace, not only the group.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use autopilot_contract::v1::{StartRequest, StatusRequest, TaskState};
use autopilot_tests::{
    git_fixture::GitFixture,
    processes::processes_under,
    service::{Service, ServiceOptions},
};
use axum::{body::Body, http::StatusCode, response::Response, routing::any, routing::post, Router};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use serde_json::{json, Value};

/// The command the agent is asked to run: it would run a minute unless killed.
const LONG_COMMAND: &str = "timeout 60 tail -f /dev/null";

/// A fake model API with one script: run [`LONG_COMMAND`] with the Bash tool, then answer.
struct LongCommandModelApi {
    base_url: String,
    calls: Arc<AtomicUsize>,
}

impl LongCommandModelApi {
    async fn start() -> LongCommandModelApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let app = Router::new()
            .route(
                "/v1/messages",
                post(move |body: String| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    async move { reply(&body) }
                }),
            )
            .fallback(any(|| async { StatusCode::OK }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        LongCommandModelApi { base_url, calls }
    }

    /// How many Messages calls it has had.
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// A streamed reply: the tool call first; text once the tool has answered, or for side requests.
fn reply(body: &str) -> Response {
    let request: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let has_tools = request["tools"].as_array().is_some_and(|t| !t.is_empty());
    let (block, delta, stop) = if has_tools && !body.contains("\"tool_result\"") {
        (
            json!({"type": "tool_use", "id": "toolu_long", "name": "Bash", "input": {}}),
            json!({"type": "input_json_delta", "partial_json": json!({"command": LONG_COMMAND}).to_string()}),
            "tool_use",
        )
    } else {
        (json!({"type": "text", "text": ""}), json!({"type": "text_delta", "text": "Done."}), "end_turn")
    };
    let events = [
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
            "role": "assistant", "model": "claude-fake", "content": [], "stop_reason": null,
            "stop_sequence": null, "usage": {"input_tokens": 10, "output_tokens": 1}}}),
        ),
        ("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": block})),
        ("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": delta})),
        ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
            "usage": {"output_tokens": 5}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ];
    let sse: String = events.iter().map(|(name, data)| format!("event: {name}\ndata: {data}\n\n")).collect();
    Response::builder().header("content-type", "text/event-stream").body(Body::from(sse)).unwrap()
}

/// Waits (at most `limit`) until `done` holds; whether it did.
async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    done()
}

/// A service against the fake, running a task whose agent is now inside the long command.
struct Running {
    model_api: LongCommandModelApi,
    _repo: GitFixture,
    service: Service,
    task_id: String,
    workspace: PathBuf,
}

async fn a_task_inside_the_long_command() -> Running {
    let model_api = LongCommandModelApi::start().await;
    let repo = GitFixture::new();
    let service = Service::start_against(&model_api.base_url, ServiceOptions::default()).await;
    let mut client = service.client().await;
    let request = StartRequest { repository_url: repo.url(), prompt: "Wait for a while".into(), ..Default::default() };
    let task_id = client.start(request).await.unwrap().into_inner().task_id;
    let workspace = service.work_dir.join("tasks").join(&task_id).join("repo");
    let runs =
        wait_until(Duration::from_secs(60), || processes_under(&workspace).iter().any(|(_, c)| c.starts_with("tail")))
            .await;
    assert!(runs, "the long command never ran: {:?}", processes_under(&workspace));
    Running { model_api, _repo: repo, service, task_id, workspace }
}

/// Asserts that, within 3 s, nothing works in the workspace any more, and that the model API
/// then gets no further call.
async fn assert_the_agent_is_gone(running: &Running, since: Instant) {
    let gone = wait_until(Duration::from_secs(3), || processes_under(&running.workspace).is_empty()).await;
    assert!(gone, "still running in the workspace: {:?}", processes_under(&running.workspace));
    assert!(since.elapsed() <= Duration::from_millis(3500), "took {:?}", since.elapsed());
    let calls = running.model_api.calls();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(running.model_api.calls(), calls, "the model API was called after the agent's service died");
}

#[tokio::test]
async fn the_agent_and_its_commands_die_with_a_killed_service() {
    let mut running = a_task_inside_the_long_command().await;
    let calls = running.model_api.calls();
    assert!(calls >= 1);
    let killed = Instant::now();
    running.service.process.0.kill().unwrap(); // SIGKILL: the service can stop nothing itself
    running.service.process.wait(Duration::from_secs(5)).await.expect("the service died");
    assert_the_agent_is_gone(&running, killed).await;
}

/// Should the guard die with the service (both killed at once), the restarted service kills
/// what is left before it marks the task FAILED.
#[tokio::test]
async fn a_restarted_service_kills_what_a_previous_runs_agent_left() {
    let mut running = a_task_inside_the_long_command().await;
    let task_dir = running.workspace.parent().unwrap().to_path_buf();
    let guard: i32 = std::fs::read_to_string(task_dir.join("agent.pgid")).unwrap().trim().parse().unwrap();
    // Stopped first, the service cannot notice the guard's end; then both are killed.
    let service = Pid::from_raw(running.service.process.0.id() as i32);
    kill(service, Signal::SIGSTOP).unwrap();
    kill(Pid::from_raw(guard), Signal::SIGKILL).unwrap();
    running.service.process.0.kill().unwrap();
    running.service.process.wait(Duration::from_secs(5)).await.expect("the service died");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let left = processes_under(&running.workspace);
    assert!(left.iter().any(|(_, c)| c.starts_with("tail")), "the orphans run on: {left:?}");

    let restarted = Instant::now();
    let options = ServiceOptions { work_dir: Some(running.service.work_dir.clone()), ..Default::default() };
    let service = Service::start_against(&running.model_api.base_url, options).await;
    assert_the_agent_is_gone(&running, restarted).await;
    let mut client = service.client().await;
    let task =
        client.status(StatusRequest { task_id: running.task_id.clone() }).await.unwrap().into_inner().task.unwrap();
    assert_eq!(task.state(), TaskState::Failed);
    assert_eq!(task.error, "the service stopped while the task was running");
    assert!(!task_dir.join("agent.pgid").exists(), "the record is gone with the agent");
}
