//! The browser page, end to end: the real local pair (`wrangler dev` serving the page and the
//! Worker, the agent-service with the real Claude Code CLI, the fake model API) driven in
//! Debian's Chromium by playwright-core (`web/tests/browser.e2e.mjs`). This test starts the
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

use std::{process::Command, sync::Arc};

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
    let service = Service::start(&model_api, ServiceOptions::default()).await;
    let repo = GitFixture::new();
    let edge = Edge::start(&format!("http://{}", service.addr)).await;
    let service = Arc::new(tokio::sync::Mutex::new(service));
    let token = edge.user("pat", 100_000).await;
    edge.user("broke", 0).await;
    let broke_token = edge.create_token("broke", None).await["token"].as_str().unwrap().to_string();
    // Tunnel mode: tess has no credits, and her own machine connected.
    let tunnel_token = edge.user("tess", 0).await;
    let machine = Machine::connect(&model_api, &edge.base_url, &tunnel_token);
    machine.wait_for_connections(1, std::time::Duration::from_secs(30)).await;
    let machine = Arc::new(tokio::sync::Mutex::new(machine));
    let control_url = control_server(Arc::clone(&service), Arc::clone(&model_api), Arc::clone(&machine)).await;
    let artifacts = repo_root().join("tests/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();

    let script = repo_root().join("web/tests/browser.e2e.mjs");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("--test")
            .arg(script)
            .current_dir(repo_root().join("web"))
            .env("EDGE_URL", &edge.base_url)
            .env("TOKEN", &token)
            .env("BROKE_TOKEN", &broke_token)
            .env("TUNNEL_TOKEN", &tunnel_token)
            .env("REPO_URL", repo.url())
            .env("CHROMIUM", chromium)
            .env("ARTIFACTS", &artifacts)
            .env("CONTROL_URL", &control_url)
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
}

/// What the script may ask of the test while it runs, on a loopback port: `POST /restart-service`
/// crashes the agent-service and starts it again (see [`Service::restart_after_crash`]),
/// answering once it listens; `POST /stop-machine` stops the tunnel user's machine (SIGTERM),
/// answering once it exited. Answers the base URL.
async fn control_server(
    service: Arc<tokio::sync::Mutex<Service>>,
    model_api: Arc<FakeModelApi>,
    machine: Arc<tokio::sync::Mutex<Machine>>,
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
        .route("/stop-machine", axum::routing::post(stop_machine));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}
