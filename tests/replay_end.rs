//! A subscription's end follows its last event at once, in every order of calls: the real
//! `wrangler dev` (the Worker and its Durable Object) in front of the real agent-service, in local
//! mode as tests/edge_worker.rs runs them, and in container mode (the service in a real container
//! on podman, as tests/container_mode/ runs it). Each subscription over the WebSocket bridge is
//! timed from its last event to its `endOfStream`: a client that waits for the end (a program,
//! the page deciding a task is over) must not wait for anything else.
//!
//! The orders are the ones reported to stall the end for 10 s: a live follow, a resume from the
//! middle right after it, a full replay; then, once a second task B has run and ended unwatched
//! (A is no longer the current task), new sockets on A's session (fresh tickets) replaying A from
//! seq 1 and from the middle, and B's own replay.
//!
//! Container mode needs `make local-containers` (make test runs it first). The two tests run one
//! at a time: on a two-core machine side by side they would measure each other.

use std::time::{Duration, Instant};

use autopilot_contract::v1::{server_frame::Frame, Event, StreamEventsRequest};
use autopilot_tests::{
    bridge_client::{connect, receive, send, subscribe, Encoding, Socket},
    edge::{model_vars, ContainerOptions, Edge},
    events::{kind, seqs},
    fake_model_api::FakeModelApi,
    git_fixture::GitFixture,
    grpc_web::grpc_web_client,
    https_git_server::{HttpsGitServer, LocalCa},
    service::{Service, ServiceOptions},
};
use futures::StreamExt;
use serde_json::json;

/// Longest wait allowed between a subscription's last event and its end.
const MAX_END_GAP: Duration = Duration::from_millis(50);

/// Held by the test that runs (see the crate doc).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One subscription, read to its end: its events, and how long the end came after the last one.
struct Timed {
    events: Vec<Event>,
    end_gap: Duration,
    total: Duration,
}

/// Subscribes to `task_id` from `from_seq` on `ws` and reads to the end, timing it.
async fn timed(ws: &mut Socket, request_id: &str, task_id: &str, from_seq: u64, encoding: Encoding) -> Timed {
    let sent = Instant::now();
    send(ws, &subscribe(request_id, task_id, from_seq), encoding).await;
    let mut events = Vec::new();
    let mut last_event_at = sent;
    loop {
        let frame = receive(ws, encoding).await;
        assert_eq!(frame.request_id, request_id);
        match frame.frame {
            Some(Frame::Event(event)) => {
                events.push(event);
                last_event_at = Instant::now();
            }
            Some(Frame::EndOfStream(_)) => {
                let end = Instant::now();
                return Timed { events, end_gap: end - last_event_at, total: end - sent };
            }
            other => panic!("unexpected frame in subscription {request_id}: {other:?}"),
        }
    }
}

/// The subscriptions timed so far, checked as they come and asserted on at the end.
#[derive(Default)]
struct Gaps(Vec<(String, Duration)>);

impl Gaps {
    /// Checks one subscription (every expected seq once, in order, ending with `task_finished`)
    /// and records its gap.
    fn check(&mut self, what: &str, timed: &Timed, expected: std::ops::RangeInclusive<u64>) {
        assert_eq!(seqs(&timed.events), expected.collect::<Vec<_>>(), "{what}: every event once, in order");
        assert!(kind(timed.events.last().unwrap()).starts_with("task_finished"), "{what}: ends with task_finished");
        println!(
            "{what:<48} {:>3} events in {:>9.1?}, endOfStream {:>9.1?} after the last",
            timed.events.len(),
            timed.total,
            timed.end_gap
        );
        self.0.push((what.to_string(), timed.end_gap));
    }

    fn assert_prompt(&self, log: impl FnOnce() -> String) {
        let slow: Vec<_> = self.0.iter().filter(|(_, gap)| *gap > MAX_END_GAP).collect();
        assert!(
            slow.is_empty(),
            "endOfStream came more than {MAX_END_GAP:?} after the last event: {slow:?}\n{}",
            log()
        );
    }
}

/// Starts a task through the JSON route; answers its task id, session id and WebSocket URL.
async fn start(edge: &Edge, token: &str, repo_url: &str, prompt: &str) -> (String, String, String) {
    let body = json!({"repositoryUrl": repo_url, "prompt": prompt});
    let started = edge.post_json("/api/container/start", token, body).await;
    let field = |name: &str| {
        started[name].as_str().unwrap_or_else(|| panic!("no {name} in {started}\n{}", edge.log())).to_string()
    };
    (field("taskId"), field("sessionId"), field("websocketUrl"))
}

/// Waits until the task's Status (through the edge) says it ended.
async fn until_ended(edge: &Edge, token: &str, task_id: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = edge.get_json(&format!("/api/container/status?taskId={task_id}"), token).await;
        let state = status["task"]["state"].as_str().unwrap_or_default();
        if ["TASK_STATE_SUCCEEDED", "TASK_STATE_FAILED", "TASK_STATE_CANCELLED", "TASK_STATE_TIMED_OUT"]
            .contains(&state)
        {
            return;
        }
        assert!(Instant::now() < deadline, "task {task_id} did not end: {status}\n{}", edge.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs every order against `edge` for a user with `token`, tasks on `repo_url`; answers task A's
/// id and last seq, and the gaps measured.
async fn every_order(edge: &Edge, token: &str, repo_url: &str) -> (String, u64, Gaps) {
    let mut gaps = Gaps::default();

    // Task A, started through the JSON route and followed live over the bridge to its end; the
    // socket stays open.
    let (a, a_session, a_url) = start(edge, token, repo_url, "SCENARIO:many-tools:4 walk the tree").await;
    let mut live = connect(&a_url).await;
    let followed = timed(&mut live, "live-a", &a, 1, Encoding::Binary).await;
    let last = followed.events.last().unwrap().seq;
    let middle = last / 2;
    gaps.check("A followed live from seq 1", &followed, 1..=last);

    // Right after: a resume from the middle on a new socket (fresh ticket), a full replay, and
    // both again on the live socket and in JSON with the empty task id (the latest).
    let mut ws = connect(&edge.ws_ticket_url(token, &a_session).await).await;
    gaps.check(
        "A resumed mid-way right after",
        &timed(&mut ws, "mid", &a, middle, Encoding::Binary).await,
        middle..=last,
    );
    gaps.check("A replayed from seq 1", &timed(&mut ws, "all", &a, 1, Encoding::Binary).await, 1..=last);
    gaps.check(
        "A resumed mid-way on the live socket",
        &timed(&mut live, "mid2", &a, middle, Encoding::Binary).await,
        middle..=last,
    );
    let mut json_ws = connect(&edge.ws_ticket_url(token, &a_session).await).await;
    gaps.check(
        "A replayed, JSON, empty task id",
        &timed(&mut json_ws, "latest", "", 1, Encoding::Json).await,
        1..=last,
    );
    drop((ws, json_ws));

    // Task B, started through the JSON route and left to end with nobody following it.
    let (b, b_session, _) = start(edge, token, repo_url, "SCENARIO:many-tools:2 again").await;
    until_ended(edge, token, &b).await;

    // A is no longer the current task: new sockets on A's session replay it, each from a fresh
    // ticket, several times; then B, and A again on B's session.
    for round in 1..=3 {
        let mut ws = connect(&edge.ws_ticket_url(token, &a_session).await).await;
        let what = format!("A replayed from seq 1 after B (round {round})");
        gaps.check(&what, &timed(&mut ws, "old-a", &a, 1, Encoding::Binary).await, 1..=last);
        let what = format!("A resumed mid-way after B (round {round})");
        gaps.check(&what, &timed(&mut ws, "old-mid", &a, middle, Encoding::Binary).await, middle..=last);
    }
    gaps.check(
        "A replayed after B on the live socket",
        &timed(&mut live, "live-old", &a, 1, Encoding::Binary).await,
        1..=last,
    );
    let mut ws = connect(&edge.ws_ticket_url(token, &b_session).await).await;
    let b_all = timed(&mut ws, "all-b", &b, 1, Encoding::Json).await;
    let b_last = b_all.events.last().unwrap().seq;
    gaps.check("B replayed from seq 1", &b_all, 1..=b_last);
    gaps.check("A replayed on B's session", &timed(&mut ws, "a-on-b", &a, 1, Encoding::Json).await, 1..=last);
    (a, last, gaps)
}

#[tokio::test]
async fn a_subscriptions_end_follows_its_last_event_in_every_order() {
    let _one = ONE_AT_A_TIME.lock().await;
    let model_api = FakeModelApi::start().await.unwrap();
    let service = Service::start(&model_api, ServiceOptions::default()).await;
    let repo = GitFixture::new();
    let edge = Edge::start(&format!("http://{}", service.addr)).await;
    let token = edge.user("rita", 1_000_000).await;
    let (a, last, gaps) = every_order(&edge, &token, &repo.url()).await;

    // For comparison, the same replay straight from the service over gRPC-web (no edge).
    let began = Instant::now();
    let request = StreamEventsRequest { task_id: a, from_seq: 1 };
    let direct: Vec<_> =
        grpc_web_client(service.addr).stream_events(request).await.unwrap().into_inner().collect().await;
    assert!(direct.iter().all(Result::is_ok) && direct.len() as u64 == last);
    println!(
        "{:<48} {:>3} events in {:>9.1?} to the body's end (gRPC-web, no edge)",
        "A replayed directly",
        direct.len(),
        began.elapsed()
    );
    gaps.assert_prompt(|| format!("--- wrangler ---\n{}", edge.log()));
}

#[tokio::test]
async fn in_container_mode_too() {
    let _one = ONE_AT_A_TIME.lock().await;
    let model_api = FakeModelApi::start().await.unwrap();
    let ca = LocalCa::new();
    let repo = GitFixture::new();
    let git = HttpsGitServer::start(&ca, repo.bare_dir().parent().unwrap()).await;
    let repo_url = git.url(&repo.bare_dir().file_stem().unwrap().to_string_lossy());
    let options = ContainerOptions {
        loopback_ports: vec![model_api.port(), git.port()],
        ca_cert_pem: Some(ca.cert_pem()),
        vars: model_vars("sk-ant-replay-end-test", &model_api.base_url),
    };
    let edge = Edge::start_with_containers(options).await;
    let token = edge.user("rita", 1_000_000).await;
    let (_, _, gaps) = every_order(&edge, &token, &repo_url).await;
    gaps.assert_prompt(|| format!("--- wrangler ---\n{}", edge.log()));
}
