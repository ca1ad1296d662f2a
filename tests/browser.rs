//! The browser page, end to end: the real local pair (`wrangler dev` serving the page and the
//! Worker, the agent-service with the real Claude Code CLI, the fake model API) driven in
//! Debian's Chromium by playwright-core (`web/tests/browser.e2e.mjs`, then the workspace's own
//! checks in `web/tests/workspace.e2e.mjs`: addresses, controls, the diff viewer, the keyboard,
//! the phone's drawer, axe-core on each state, and the budgets). This test starts the
//! servers and a signed-up user; the script signs in through the page and checks what a person
//! would see, last in a second browser signed in as the same user (the task list is the edge's,
//! so it lists the same tasks and opens any of their timelines). Screenshots land in
//! `tests/artifacts/`.
//!
//! The script can ask this test to crash and restart the agent-service mid-task (`POST
//! $CONTROL_URL/restart-service`): the same work directory and port, as the platform restarts a
//! container's service, so the page must resubscribe and finish the task's timeline. It can also
//! take the tunnel user's machine offline (`POST $CONTROL_URL/stop-machine`), to check that the
//! relay still lists and replays the tasks that ran on it.
//!
//! A long task is recorded straight into the service's work directory before it starts
//! ([`record_long_task`]: 5,000 events, as a busy agent leaves them) and made a reader's own
//! through the edge's admin route (`POST /api/admin/tasks`, which needs `BENCH_ROUTES`): the script
//! opens it by its address and prints how long its timeline took to be drawn and scrollable.

use std::{process::Command, sync::Arc, time::Duration};

use agent_service::{redact::Redactor, task::Task};
use autopilot_contract::v1::{event::Payload, AgentText, Task as TaskSnapshot, TaskState, ToolFinished, ToolStarted};
use autopilot_tests::{
    edge::Edge,
    fake_model_api::FakeModelApi,
    git_fixture::GitFixture,
    service::{repo_root, Service, ServiceOptions},
    tunnel_machine::Machine,
};

#[tokio::test]
async fn a_person_starts_watches_cancels_and_replays_tasks_in_chromium() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: `apt-get install chromium` (.ci/run does)"
    );
    let model_api = Arc::new(FakeModelApi::start().await.unwrap());
    let work = tempfile::tempdir().unwrap();
    record_long_task(work.path(), LONG_TASK, LONG_TASK_EVENTS);
    let service =
        Service::start(&model_api, ServiceOptions { work_dir: Some(work.path().to_path_buf()), ..Default::default() })
            .await;
    let repo = GitFixture::new();
    // BENCH_ROUTES: the admin route that makes the recorded task the reader's.
    let edge = Edge::start_with_vars(&format!("http://{}", service.addr), &[("BENCH_ROUTES", "true")]).await;
    // Credits: following a task its object holds as running reaches the service (a container, on the platform).
    let reader_token = edge.user("reader", 100_000).await;
    let service = Arc::new(tokio::sync::Mutex::new(service));
    let token = edge.user("pat", 100_000).await;
    edge.user("broke", 0).await;
    let broke_token = edge.create_token("broke", None).await["token"].as_str().unwrap().to_string();
    // Tunnel mode: tess has no credits, and her own machine connected.
    let tunnel_token = edge.user("tess", 0).await;
    let machine = Machine::connect(&model_api, &edge.base_url, &tunnel_token);
    machine.wait_for_connections(1, std::time::Duration::from_secs(30)).await;
    let machine = Arc::new(tokio::sync::Mutex::new(machine));
    let control_url =
        control_server(Arc::clone(&service), Arc::clone(&model_api), Arc::clone(&machine), edge.base_url.clone()).await;
    let artifacts = repo_root().join("tests/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();

    // The workspace's checks run as another user, after the first script (one at a time: both
    // start tasks on the one agent-service, whose limit is 3 running tasks).
    let kim_token = edge.user("kim", 100_000).await;
    let scripts = ["web/tests/browser.e2e.mjs", "web/tests/workspace.e2e.mjs"].map(|script| repo_root().join(script));
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("--test")
            .arg("--test-concurrency=1")
            .args(scripts)
            .current_dir(repo_root().join("web"))
            .env("EDGE_URL", &edge.base_url)
            .env("TOKEN", &token)
            .env("BROKE_TOKEN", &broke_token)
            .env("TUNNEL_TOKEN", &tunnel_token)
            .env("REPO_URL", repo.url())
            .env("CHROMIUM", chromium)
            .env("ARTIFACTS", &artifacts)
            .env("CONTROL_URL", &control_url)
            .env("READER_TOKEN", &reader_token)
            .env("KIM_TOKEN", &kim_token)
            .env("LONG_TASK", LONG_TASK)
            .env("LONG_TASK_EVENTS", LONG_TASK_EVENTS.to_string())
            .output()
            .map(|out| (out, edge))
    })
    .await
    .unwrap()
    .expect("running node");
    let (output, edge) = output;
    let report = format!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let machine_logs = machine.lock().await.logs().join("\n");
    assert!(
        output.status.success(),
        "the browser test failed:\n{report}\n--- wrangler ---\n{}\n--- machine ---\n{machine_logs}",
        edge.log(),
    );
    println!("{report}");
    drop(work);
}

/// The recorded long task, and how many events it holds.
const LONG_TASK: &str = "00000000-0000-4000-8000-0000000005a1";
const LONG_TASK_EVENTS: u64 = 5_000;

/// Records a finished task of `events` events under `work_dir`, as a busy agent leaves them: tool
/// calls with their output, and a message now and then.
fn record_long_task(work_dir: &std::path::Path, task_id: &str, events: u64) {
    let snapshot =
        TaskSnapshot { task_id: task_id.into(), repository_url: "file:///recorded.git".into(), ..Default::default() };
    let dir = work_dir.join("tasks").join(task_id);
    let title = "Replay a long recorded task".to_string();
    let task = Task::create_with_title(dir, snapshot, title, Redactor::default()).unwrap();
    for state in [TaskState::Pending, TaskState::Cloning, TaskState::Running] {
        task.move_to(state, "");
    }
    // Three events so far, two to come (the final state and `task_finished`): the rest is tool
    // calls and messages.
    let (mut recorded, last) = (3, events - 2);
    let mut step = 0;
    while recorded < last {
        step += 1;
        if step % 10 == 0 || recorded + 2 > last {
            task.record(Payload::AgentText(AgentText {
                text: format!("Step {step}: **checked** the `module_{step}` files."),
            }));
            recorded += 1;
            continue;
        }
        let tool_id = format!("tool-{step}");
        let input_json = format!(r#"{{"command":"grep -n fn src/module_{step}.rs"}}"#);
        task.record(Payload::ToolStarted(ToolStarted { tool_id: tool_id.clone(), name: "Bash".into(), input_json }));
        task.record(Payload::ToolFinished(ToolFinished {
            tool_id,
            output: format!("{step}: fn step_{step}() {{}}"),
            is_error: false,
        }));
        recorded += 2;
    }
    task.finish(TaskState::Succeeded, "Replayed.".into(), String::new(), 1, Duration::from_secs(1));
}

/// Makes the recorded task `task_id` one of `user`'s on the edge at `edge_url` (which serves a
/// user only the tasks their object started): the bench's admin route, there with `BENCH_ROUTES`.
/// Right before the task's first pass: the object's heartbeat archives the end of an adopted task
/// it does not follow yet, without its events (tests/benches/bridge/main.rs, `adopt`).
async fn adopt(edge_url: &str, user: &str, task_id: &str) {
    let adopted = reqwest::Client::new()
        .post(format!("{edge_url}/api/admin/tasks"))
        .bearer_auth(autopilot_tests::edge::ADMIN_SECRET)
        .json(&serde_json::json!({"userId": user, "taskId": task_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(adopted.status(), 200, "recording the long task {task_id} as {user}'s");
}

/// What the script may ask of the test while it runs, on a loopback port: `POST /restart-service`
/// crashes the agent-service and starts it again (see [`Service::restart_after_crash`]),
/// answering once it listens; `POST /stop-machine` stops the tunnel user's machine (SIGTERM),
/// answering once it exited; `POST /adopt-long-task` makes the recorded long task the reader's,
/// right before the script opens it (see [`adopt`]). Answers the base URL.
async fn control_server(
    service: Arc<tokio::sync::Mutex<Service>>,
    model_api: Arc<FakeModelApi>,
    machine: Arc<tokio::sync::Mutex<Machine>>,
    edge_url: String,
) -> String {
    let restart = move || {
        let (service, model_api) = (Arc::clone(&service), Arc::clone(&model_api));
        async move {
            let began = std::time::Instant::now();
            service.lock().await.restart_after_crash(&model_api, &ServiceOptions::default()).await;
            format!("restarted in {:?}\n", began.elapsed())
        }
    };
    let stop_machine = move || {
        let machine = Arc::clone(&machine);
        async move {
            let mut machine = machine.lock().await;
            machine.process.terminate();
            // Its socket closes as the process exits; the relay then has no machine to ask.
            match machine.process.wait(std::time::Duration::from_secs(15)).await {
                Some(status) => format!("stopped: {status}\n"),
                None => "still running after 15 s\n".to_string(),
            }
        }
    };
    let router = axum::Router::new()
        .route("/restart-service", axum::routing::post(restart))
        .route("/stop-machine", axum::routing::post(stop_machine))
        .route(
            "/adopt-long-task",
            axum::routing::post(move || {
                let edge_url = edge_url.clone();
                async move {
                    adopt(&edge_url, "reader", LONG_TASK).await;
                    "adopted\n"
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}
