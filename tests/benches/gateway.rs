//! Prints the model gateway's figures, side by side in one run (not a pass/fail test): what the
//! edge's gateway (`POST {edge}/model/v1/messages`: Worker -> the user's Durable Object, which
//! checks the task credential, relays the call to `MODEL_API_URL` with the Worker's key and
//! streams the reply back) adds to a model call, against the same call made directly to the same
//! upstream (the tests' fake model API).
//!
//! - Calls alternate direct / gateway (the order flipping each pair), after a warm-up, so both
//!   paths see the same noise; `CALLS` (default 200) per path and per kind of call.
//! - Per call: the time to the first byte of the body (for a streamed call, the first SSE event)
//!   and to its last byte; p50 and p99 for each path, the added time (gateway p - direct p) and
//!   the ratio (gateway / direct).
//! - Kinds of call: a streamed "hello" (a small request), the running agent's own first request
//!   replayed streamed (the size a real turn has: its system prompt and tools), and a
//!   non-streamed "hello" (one JSON body).
//! - For reference: `GET /health` on the same edge (a Worker answer with no Durable Object and
//!   no upstream), the floor any call through `wrangler dev` pays.
//!
//! The credential is a real task's: a task whose agent waits forever on its model call
//! (`SCENARIO:hang`) keeps it valid for the whole run, and is cancelled at the end.
//!
//! Run with `make bench`.

use std::time::{Duration, Instant};

use autopilot_contract::v1::{CancelRequest, StatusRequest, TaskState};
use autopilot_tests::{
    edge::Edge,
    fake_model_api::FakeModelApi,
    figures::{ms, percentile},
    git_fixture::GitFixture,
    grpc_web::{grpc_web_client, with_token},
    processes::running_agents_env_var,
    service::{Service, ServiceOptions},
};
use serde_json::{json, Value};

/// The edge's key (what the fake upstream is called with, directly or through the gateway).
const EDGE_KEY: &str = "sk-ant-bench-edge-key";
/// Calls per path made before measuring.
const WARM_UP: usize = 20;

/// One model call's timings: to the first byte of the body, and to its last.
struct Timing {
    first_byte: Duration,
    last_byte: Duration,
}

/// Where a call goes: a URL and the key it presents.
struct Endpoint<'a> {
    client: reqwest::Client,
    url: String,
    key: &'a str,
}

impl Endpoint<'_> {
    /// Makes one call with `body`; its timings, once the whole reply has arrived (checked whole:
    /// a streamed reply reaches message_stop, a plain one is a message).
    async fn call(&self, body: &bytes::Bytes, streamed: bool) -> Timing {
        let started = Instant::now();
        let mut reply = self
            .client
            .post(&self.url)
            .header("x-api-key", self.key)
            .header("anthropic-version", "2023-06-01")
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200, "{}: {:?}", self.url, reply.text().await);
        let mut first_byte = None;
        let mut received = Vec::new();
        while let Some(chunk) = reply.chunk().await.unwrap() {
            first_byte.get_or_insert_with(|| started.elapsed());
            received.extend_from_slice(&chunk);
        }
        let last_byte = started.elapsed();
        let received = String::from_utf8_lossy(&received);
        let whole = if streamed { received.contains("event: message_stop") } else { received.contains("\"usage\"") };
        assert!(whole, "{}: an incomplete reply: {received}", self.url);
        Timing { first_byte: first_byte.expect("a reply with a body"), last_byte }
    }
}

/// Samples of one measure (first or last byte) on both paths.
#[derive(Default)]
struct Pair {
    direct: Vec<Duration>,
    gateway: Vec<Duration>,
}

impl Pair {
    /// One line: p50 and p99 on each path, the added time and the ratio.
    fn line(&mut self, kind: &str, measure: &str) -> String {
        let (d50, g50) = (percentile(&mut self.direct, 0.5), percentile(&mut self.gateway, 0.5));
        let (d99, g99) = (percentile(&mut self.direct, 0.99), percentile(&mut self.gateway, 0.99));
        let added = |g: Duration, d: Duration| ms(g) - ms(d);
        format!(
            "{kind:<31} {measure:<10} | {:>7.2} {:>7.2} | {:>7.2} {:>7.2} | {:>+7.2} {:>+7.2} | {:>5.1}x {:>5.1}x",
            ms(d50),
            ms(d99),
            ms(g50),
            ms(g99),
            added(g50, d50),
            added(g99, d99),
            ms(g50) / ms(d50),
            ms(g99) / ms(d99),
        )
    }
}

/// `calls` calls of `body` on each path, alternating (the order flips each pair), after a
/// warm-up; the first-byte and last-byte samples.
async fn measure(direct: &Endpoint<'_>, gateway: &Endpoint<'_>, body: &Value, calls: usize) -> (Pair, Pair) {
    let streamed = body["stream"].as_bool().unwrap_or(false);
    let body = bytes::Bytes::from(serde_json::to_vec(body).unwrap());
    for _ in 0..WARM_UP {
        direct.call(&body, streamed).await;
        gateway.call(&body, streamed).await;
    }
    let (mut first, mut last) = (Pair::default(), Pair::default());
    for i in 0..calls {
        let (d, g) = if i % 2 == 0 {
            let d = direct.call(&body, streamed).await;
            (d, gateway.call(&body, streamed).await)
        } else {
            let g = gateway.call(&body, streamed).await;
            (direct.call(&body, streamed).await, g)
        };
        first.direct.push(d.first_byte);
        first.gateway.push(g.first_byte);
        last.direct.push(d.last_byte);
        last.gateway.push(g.last_byte);
    }
    (first, last)
}

/// The running agent's first model request (the one that hangs), as the fake recorded it.
async fn agents_request(model_api: &FakeModelApi) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(request) = model_api.requests_containing("SCENARIO:hang").into_iter().next() {
            return request;
        }
        assert!(Instant::now() < deadline, "the agent never called the model");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

#[tokio::main]
async fn main() {
    let calls: usize = std::env::var("CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let model_api = FakeModelApi::start().await.unwrap();
    let repo = GitFixture::new();
    let service = Service::start(&model_api, ServiceOptions { api_key: None, ..ServiceOptions::default() }).await;
    let edge = Edge::start_with_vars(
        &format!("http://{}", service.addr),
        &[("ANTHROPIC_API_KEY", EDGE_KEY), ("MODEL_API_URL", &model_api.base_url), ("PUBLIC_ORIGIN", "{edge}")],
    )
    .await;
    let token = edge.user("bench", 1_000_000).await;

    // A task whose agent stays in its first model call: its credential lives as long as we need.
    let started = edge
        .post_json("/api/container/start", &token, json!({"repositoryUrl": repo.url(), "prompt": "SCENARIO:hang"}))
        .await;
    let task_id = started["taskId"].as_str().unwrap_or_else(|| panic!("Start failed: {started}")).to_string();
    let credential = running_agents_env_var(&service.work_dir, "ANTHROPIC_API_KEY").await;
    assert!(credential.starts_with("apmc_"), "the agent holds a task credential");
    // Its own request, answered normally once its marker is gone: a real turn's size.
    let agents_request = agents_request(&model_api).await;
    let agents_request: Value =
        serde_json::from_str(&agents_request.to_string().replace("SCENARIO:hang", "SCENARIO:answer")).unwrap();
    let agents_bytes = serde_json::to_vec(&agents_request).unwrap().len();

    let direct = Endpoint { client: client(), url: format!("{}/v1/messages", model_api.base_url), key: EDGE_KEY };
    let gateway = Endpoint { client: client(), url: format!("{}/model/v1/messages", edge.base_url), key: &credential };
    let hello = |stream: bool| {
        json!({
            "model": "claude-sonnet-4-5", "max_tokens": 64, "stream": stream,
            "messages": [{"role": "user", "content": "hello"}],
        })
    };
    let kinds = [
        ("streamed, \"hello\"".to_string(), hello(true)),
        (format!("streamed, agent's {:.0} KiB turn", agents_bytes as f64 / 1024.0), agents_request),
        ("not streamed, \"hello\"".to_string(), hello(false)),
    ];

    let run = Instant::now();
    println!(
        "model gateway benchmark: {calls} calls per path and kind, alternating direct/gateway after {WARM_UP} \
         warm-up each; upstream: the fake model API; edge: workerd via wrangler dev"
    );
    println!(
        "{:<31} {:<10} | {:^15} | {:^15} | {:^15} | {:^12}",
        "call", "measure", "direct p50 p99", "gateway p50 p99", "added p50 p99", "ratio p50 p99"
    );
    for (kind, body) in &kinds {
        let (mut first, mut last) = measure(&direct, &gateway, body, calls).await;
        println!("{}", first.line(kind, "first byte"));
        println!("{}", last.line("", "last byte"));
    }
    println!("(times in ms; added = gateway - direct at that percentile; ratio = gateway / direct)");

    // The floor: a Worker answering by itself, through the same wrangler dev.
    let health_client = client();
    let mut health = Vec::new();
    for i in 0..calls + WARM_UP {
        let started = Instant::now();
        let reply = health_client.get(format!("{}/health", edge.base_url)).send().await.unwrap();
        assert_eq!(reply.bytes().await.unwrap().as_ref(), b"ok");
        if i >= WARM_UP {
            health.push(started.elapsed());
        }
    }
    println!(
        "reference: GET /health on the edge (Worker only, no Durable Object, no upstream) p50 {:.2} ms, p99 {:.2} ms",
        ms(percentile(&mut health, 0.5)),
        ms(percentile(&mut health, 0.99))
    );
    assert_eq!(model_api.api_keys(), [EDGE_KEY], "only the edge's key reached upstream");
    println!("measured in {:.1} s", run.elapsed().as_secs_f64());

    let mut grpc = grpc_web_client(([127, 0, 0, 1], edge.port).into());
    let cancel = CancelRequest { task_id: task_id.clone(), reason: "bench done".into() };
    grpc.cancel(with_token(&token, cancel)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let status = grpc.status(with_token(&token, StatusRequest { task_id: task_id.clone() })).await.unwrap();
        if status.into_inner().task.unwrap().state() == TaskState::Cancelled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
