//! The model key never reaches the agent (issue 18), end to end in local mode: the real
//! agent-service runs with no model key at all, behind the real edge (`wrangler dev`) holding
//! the only key; each task's agent gets the edge's gateway URL and a credential of that task's
//! own, which the gateway honours only while the task runs. The fake model API stands upstream of
//! the gateway and records the key of every call.

use std::time::{Duration, Instant};

use autopilot_contract::v1::{CancelRequest, GetDiffRequest, StatusRequest, StreamEventsRequest, TaskState};
use autopilot_tests::{
    edge::{chunked_body, Edge},
    fake_model_api::FakeModelApi,
    git_fixture::GitFixture,
    grpc_web::{grpc_web_client, with_token},
    processes::running_agents_env_var,
    service::{Service, ServiceOptions},
};
use serde_json::{json, Value};

/// The edge's key: the one secret, which only the fake model API may ever see.
const EDGE_KEY: &str = "sk-ant-edge-canary-4f1c2e9a7b";

/// Starts a task through the JSON route; its id.
async fn start(edge: &Edge, token: &str, body: Value) -> String {
    let reply = edge.post_json("/api/container/start", token, body).await;
    reply["taskId"].as_str().unwrap_or_else(|| panic!("Start failed: {reply}")).to_string()
}

/// Waits for the task's end (through the edge): its final state, and why when it failed.
async fn wait_for_end(edge: &Edge, token: &str, task_id: &str) -> (TaskState, String) {
    let mut client = grpc_web_client(([127, 0, 0, 1], edge.port).into());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = client.status(with_token(token, StatusRequest { task_id: task_id.into() })).await.unwrap();
        let task = status.into_inner().task.unwrap();
        let state = task.state();
        if matches!(state, TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled | TaskState::TimedOut) {
            return (state, task.error);
        }
        assert!(Instant::now() < deadline, "task {task_id} never ended:\n{}", edge.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A model call to the gateway with `credential` (none when empty).
async fn call(edge: &Edge, credential: &str, prompt: &str) -> reqwest::Response {
    let body = json!({
        "model": "claude-sonnet-4-5", "max_tokens": 64, "stream": true,
        "messages": [{"role": "user", "content": prompt}],
    });
    let mut request = reqwest::Client::new().post(format!("{}/model/v1/messages", edge.base_url));
    // An empty credential is sent as none at all.
    if !credential.is_empty() {
        request = request.header("x-api-key", credential);
    }
    request.header("anthropic-version", "2023-06-01").json(&body).send().await.unwrap()
}

/// A model call whose chunked body (no Content-Length) is `mib` MiB, with `credential`.
async fn flood(edge: &Edge, credential: &str, mib: usize) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("{}/model/v1/messages", edge.base_url))
        .header("content-type", "application/json")
        .body(chunked_body(1 << 20, mib));
    if !credential.is_empty() {
        request = request.header("x-api-key", credential);
    }
    request.send().await.unwrap()
}

/// Calls with `credential` until the gateway refuses it (401), within a few seconds.
async fn refused_soon(edge: &Edge, credential: &str) -> reqwest::Response {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = call(edge, credential, "hello").await;
        if reply.status() == 401 {
            return reply;
        }
        assert!(
            Instant::now() < deadline,
            "the credential was still honoured ({}) after its task ended",
            reply.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_agent_calls_the_model_only_through_the_gateway_with_its_tasks_credential() {
    let model_api = FakeModelApi::start().await.unwrap();
    let repo = GitFixture::new();
    let service = Service::start(&model_api, ServiceOptions { api_key: None, ..ServiceOptions::default() }).await;
    let edge = Edge::start_with_vars(
        &format!("http://{}", service.addr),
        &[
            ("ANTHROPIC_API_KEY", EDGE_KEY),
            ("MODEL_API_URL", &model_api.base_url),
            ("PUBLIC_ORIGIN", "{edge}"),
            ("CREDITS_PER_MILLION_TOKENS", "1000"),
        ],
    )
    .await;
    let alice = edge.user("alice", 10_000).await;

    // A task whose agent writes its model environment into ENV.txt: it holds the gateway's URL
    // and a credential (which the service masks, and will not commit, like any secret).
    let body = json!({"repositoryUrl": repo.url(), "prompt": "SCENARIO:write-env"});
    let env_task = start(&edge, &alice, body).await;
    let (state, error) = wait_for_end(&edge, &alice, &env_task).await;
    assert_eq!(state, TaskState::Failed, "{error}");
    assert!(error.contains("contain a secret"), "{error}");
    let mut client = grpc_web_client(([127, 0, 0, 1], edge.port).into());
    let diff = client.get_diff(with_token(&alice, GetDiffRequest { task_id: env_task.clone() })).await.unwrap();
    let env_txt = diff.into_inner().diff.unwrap().files.into_iter().find(|f| f.path == "ENV.txt").unwrap().patch;
    assert!(env_txt.contains("+ANTHROPIC_API_KEY=***"), "{env_txt}");
    assert!(env_txt.contains(&format!("+ANTHROPIC_BASE_URL={}/model", edge.base_url)), "{env_txt}");

    // A task runs; its agent's credential is its own (read from the agent process itself).
    let body = json!({"repositoryUrl": repo.url(), "prompt": "SCENARIO:slow-tools:6 count"});
    let task_id = start(&edge, &alice, body).await;
    let credential = running_agents_env_var(&service.work_dir, "ANTHROPIC_API_KEY").await;
    assert!(credential.starts_with("apmc_"), "the agent holds a task credential, not a key");
    let (state, error) = wait_for_end(&edge, &alice, &task_id).await;
    assert_eq!(state, TaskState::Succeeded, "{error}");
    assert_eq!(model_api.api_keys(), [EDGE_KEY], "every call upstream carried the edge's key, and only it");

    // The task has ended: its credential is refused (once the edge has seen the end, which it
    // follows as the task runs), as is anything that is not a credential.
    let ended = refused_soon(&edge, &credential).await;
    let reason: Value = ended.json().await.unwrap();
    assert_eq!(reason["error"]["type"], "authentication_error", "{reason}");
    assert!(reason["error"]["message"].as_str().unwrap().contains("revoked"), "{reason}");
    for presented in ["", EDGE_KEY, "apmc_0000_1111"] {
        let refused = call(&edge, presented, "hello").await;
        assert_eq!(refused.status(), 401, "{presented:?}\n{}", edge.log());
    }

    // A running task's credential works, for that task's time only: a call streaming through the
    // gateway ends when the task is cancelled, though upstream would go on forever.
    let body = json!({"repositoryUrl": repo.url(), "prompt": "SCENARIO:slow-tools:60 count"});
    let running = start(&edge, &alice, body).await;
    let live_credential = running_agents_env_var(&service.work_dir, "ANTHROPIC_API_KEY").await;
    assert_ne!(live_credential, credential, "each task has its own credential");
    let mut forged = live_credential.clone();
    forged.replace_range(forged.len() - 4.., "0000");
    assert_eq!(call(&edge, &forged, "hello").await.status(), 401, "a credential is only good whole");
    // Only what the agent calls is relayed: no batch (work that would outlive the task).
    let batch = reqwest::Client::new()
        .post(format!("{}/model/v1/messages/batches", edge.base_url))
        .header("x-api-key", &live_credential)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(batch.status(), 404, "{}\n{}", batch.text().await.unwrap(), edge.log());
    // Nor a path that only becomes another once a hop upstream decodes it.
    for path in ["/v1/models/..%2Fmessages%2Fbatches", "/v1/models/%2E%2E", "/v1/%6Dessages%2Fbatches"] {
        let sneaked = reqwest::Client::new()
            .get(format!("{}/model{path}", edge.base_url))
            .header("x-api-key", &live_credential)
            .send()
            .await
            .unwrap();
        assert_eq!(sneaked.status(), 404, "{path}");
        let reason: Value = sneaked.json().await.unwrap();
        assert!(reason["error"]["message"].as_str().unwrap().contains("the model gateway relays"), "{reason}");
    }
    // A body is refused from the headers when the credential is not good (none, or a made-up
    // one under alice's object id), and never buffered; with a good one it is read no further
    // than the gateway's cap.
    let made_up = format!("{}_{}", &live_credential[..live_credential.len() - 65], "0".repeat(64));
    let before = edge.workerd_rss_kib();
    for credential in ["", made_up.as_str()] {
        let reply = flood(&edge, credential, 100).await;
        assert_eq!(reply.status(), 401, "a 100 MiB body with {credential:?}");
    }
    let grown_mib = edge.workerd_rss_kib().saturating_sub(before) / 1024;
    println!("model gateway: two refused 100 MiB bodies grew workerd by {grown_mib} MiB");
    assert!(grown_mib < 80, "refused bodies were buffered: workerd grew by {grown_mib} MiB");
    let too_large = flood(&edge, &live_credential, 40).await;
    assert_eq!(too_large.status(), 413);
    let reason: Value = too_large.json().await.unwrap();
    assert!(reason["error"]["message"].as_str().unwrap().contains("larger than the limit"), "{reason}");
    let mut hanging = call(&edge, &live_credential, "SCENARIO:hang").await;
    assert_eq!(hanging.status(), 200);
    assert!(hanging.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let first =
        tokio::time::timeout(Duration::from_secs(10), hanging.chunk()).await.expect("the first bytes pass at once");
    assert!(String::from_utf8_lossy(&first.unwrap().unwrap()).contains("message_start"));
    let cancel = CancelRequest { task_id: running.clone(), reason: "enough".into() };
    client.cancel(with_token(&alice, cancel)).await.unwrap();
    let cut =
        tokio::time::timeout(Duration::from_secs(15), async { while let Ok(Some(_)) = hanging.chunk().await {} }).await;
    assert!(cut.is_ok(), "the revoked credential's stream did not end:\n{}", edge.log());
    assert_eq!(wait_for_end(&edge, &alice, &running).await.0, TaskState::Cancelled);
    refused_soon(&edge, &live_credential).await;

    // The ledger shows the first task's model tokens beside the container time.
    let ledger = edge.get_json("/api/billing/ledger", &alice).await;
    let usage = ledger["modelUsage"].as_array().unwrap_or_else(|| panic!("no modelUsage in {ledger}"));
    let first_task = usage.iter().find(|u| u["taskId"] == task_id.as_str()).unwrap_or_else(|| panic!("{ledger}"));
    assert!(first_task["calls"].as_u64().unwrap() >= 2, "{ledger}");
    assert!(
        first_task["inputTokens"].as_u64().unwrap() > 0 && first_task["outputTokens"].as_u64().unwrap() > 0,
        "{ledger}"
    );
    // At a token rate (1000 credits per million here), the heartbeat charges an ended task's
    // tokens once: ceil(tokens / 1000) credits, in a debit naming the task.
    edge.heartbeat("alice").await;
    let tokens: u64 = ["inputTokens", "outputTokens", "cacheReadTokens", "cacheCreationTokens"]
        .iter()
        .map(|field| first_task[field].as_u64().unwrap_or(0))
        .sum();
    let ledger = edge.get_json("/api/billing/ledger", &alice).await;
    let charged: Vec<&Value> =
        ledger["entries"].as_array().unwrap().iter().filter(|e| e["taskId"] == task_id.as_str()).collect();
    assert_eq!(charged.len(), 1, "{ledger}");
    assert_eq!(charged[0]["credits"].as_i64().unwrap(), -(tokens.div_ceil(1000) as i64), "{ledger}");

    // Neither secret shows in the edge's log, the service's, or the task's events and status.
    let status = client.status(with_token(&alice, StatusRequest { task_id: task_id.clone() })).await.unwrap();
    let shown = format!("{:?}\n{}\n{}", status.into_inner(), edge.log(), service.logs().join("\n"));
    assert!(!shown.contains(EDGE_KEY), "the edge's key leaked");
    assert!(!shown.contains(&credential) && !shown.contains(&live_credential), "a task credential leaked");
    let events = client.stream_events(with_token(&alice, StreamEventsRequest { task_id: env_task, from_seq: 1 }));
    let mut events = events.await.unwrap().into_inner();
    while let Some(event) = events.message().await.unwrap() {
        assert!(!format!("{event:?}").contains("apmc_"), "a credential in an event: {event:?}");
    }
}
