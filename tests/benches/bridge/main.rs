//! Prints the bridge's figures, side by side in one run (not a pass/fail test): events/s and
//! latency through the WebSocket bridge (WS client -> workerd Durable Object -> agent-service
//! over gRPC-web) against a plain WebSocket echo through the same workerd.
//!
//! - Throughput: a recorded task of `EVENTS` small events (default 50 000) is streamed through the
//!   bridge; the echo moves as many messages of the same size (pipelined). Target: bridge >= 0.5x.
//!   Round #0 is the task's first pass (the object follows it into the archive while streaming);
//!   round #1 replays it from the archive. The archive's cost: 30 other recorded tasks, each
//!   streamed for the first time through the archive's baseline (`/bench/stream`: an object that
//!   streams from the service with no archive) and through the user's object, in pairs; the median of the pairs' ratios (target: at most 10%),
//!   and of the CPU each edge's workerd spent per event (`archive_cost`).
//! - Followers: the latency of live events with 1 and with 200 sockets following one task
//!   (target: p50 with 200 within 2x of p50 with 1), beside the floor workerd sets: one Durable
//!   Object sending each message to 1 and to 200 sockets, with no bridge (`followers`).
//! - Latency: round trips of a Status request through the bridge against echo round trips of the
//!   same size, p50/p99 over 300 each; the difference is what the bridge adds (target: p50 < 2 ms).
//!   Plus the delivery latency of live events (event time at the service -> client receipt).
//!
//! Run with `make bench`. `PARTS=archive,followers` (of `archive`, `followers`, `rest`) runs only
//! those; `PAIRS=10` compares the archive over 10 pairs (30 by default); `PROFILE=1` also prints
//! where each edge's isolate spends a first pass (see `isolate_profile`).

use std::time::{Duration, Instant};

use agent_service::{redact::Redactor, task::Task};
use autopilot_contract::v1::{
    client_frame::Request as ClientRequest, event::Payload, server_frame::Frame, AgentText, ClientFrame, ServerFrame,
    StartRequest, StatusRequest, StreamEventsRequest, Task as TaskSnapshot, TaskState,
};
use autopilot_tests::{
    bridge_client::Socket,
    edge::Edge,
    fake_model_api::FakeModelApi,
    figures::{ms, percentile},
    git_fixture::GitFixture,
    service::{Service, ServiceOptions},
    tunnel_machine::Machine,
};
use futures::{SinkExt, StreamExt};
use prost::Message as _;
use tokio_tungstenite::tungstenite::Message;

mod archive_cost;
mod followers;

use archive_cost::Side;

const RECORDED_TASK: &str = "00000000-0000-4000-8000-00000000beef";
/// A second recorded task that warms each edge's streaming path up (workerd compiles hot wasm
/// code again once it is hot) before the archive's cost is measured.
const WARM_UP_TASK: &str = "00000000-0000-4000-8000-00000000cafe";
const WARM_UP_EVENTS: u64 = 20_000;

/// Records a finished task of `events` small events under `work_dir`; answers the size of one
/// of its event frames.
fn record_task(work_dir: &std::path::Path, task_id: &str, events: u64) -> usize {
    let snapshot = TaskSnapshot { task_id: task_id.into(), ..Default::default() };
    let task = Task::create(work_dir.join("tasks").join(task_id), snapshot, Redactor::default()).unwrap();
    task.move_to(TaskState::Pending, "");
    for i in 0..events - 3 {
        task.record(Payload::AgentText(AgentText { text: format!("event {i}") }));
    }
    task.finish(TaskState::Succeeded, "done".into(), String::new(), 1, Duration::from_secs(1));
    let sample = autopilot_contract::v1::Event {
        task_id: task_id.into(),
        seq: events / 2,
        time: Some(autopilot_contract::time::timestamp(std::time::SystemTime::now())),
        payload: Some(Payload::AgentText(AgentText { text: "event 25000".into() })),
    };
    ServerFrame { request_id: "b".into(), frame: Some(Frame::Event(sample)) }.encoded_len()
}

/// Streams the recorded task `task_id` through a bridge socket at `url`; answers events/s.
async fn stream_recorded_task(url: &str, task_id: &str, events: u64) -> f64 {
    let (mut bridge, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let subscribe = ClientFrame {
        request_id: "b".into(),
        request: Some(ClientRequest::StreamEvents(StreamEventsRequest { task_id: task_id.into(), from_seq: 1 })),
    };
    let started = Instant::now();
    bridge.send(Message::Binary(subscribe.encode_to_vec().into())).await.unwrap();
    let mut received = 0u64;
    while let Some(Ok(message)) = bridge.next().await {
        let Message::Binary(bytes) = message else { continue };
        match ServerFrame::decode(bytes.as_ref()).unwrap().frame {
            Some(Frame::Event(_)) => received += 1,
            Some(Frame::EndOfStream(_)) => break,
            other => panic!("unexpected frame {other:?}"),
        }
    }
    assert_eq!(received, events);
    received as f64 / started.elapsed().as_secs_f64()
}

/// Status round trips through a bridge socket at `url`, after 30 warm-up ones.
async fn status_round_trips(url: &str, count: usize) -> Vec<Duration> {
    let (mut bridge, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let status = ClientFrame {
        request_id: "s".into(),
        request: Some(ClientRequest::Status(StatusRequest { task_id: RECORDED_TASK.into() })),
    }
    .encode_to_vec();
    let mut samples = Vec::new();
    for i in 0..count + 30 {
        let started = Instant::now();
        bridge.send(Message::Binary(status.clone().into())).await.unwrap();
        while !matches!(bridge.next().await, Some(Ok(Message::Binary(_)))) {}
        if i >= 30 {
            samples.push(started.elapsed());
        }
    }
    samples
}

/// An edge in front of `service` (archive cap `archive_max_events`) with the bench user and a
/// session to open the bridge with. The recorded tasks are made the user's one
/// by one, each right before its first pass ([`adopt`]).
async fn bench_edge(service: &Service, repo: &GitFixture, archive_max_events: &str) -> (Edge, String, String) {
    let edge = Edge::start_with_vars(
        &format!("http://{}", service.addr),
        &[("BENCH_ROUTES", "true"), ("ARCHIVE_MAX_EVENTS", archive_max_events)],
    )
    .await;
    let token = edge.user("bench", 1_000_000).await;
    // A session to open the bridge with: start (and finish) a short real task.
    let started = edge
        .post_json(
            "/api/container/start",
            &token,
            serde_json::json!({"repositoryUrl": repo.url(), "prompt": "SCENARIO:answer"}),
        )
        .await;
    let session_id = started["sessionId"].as_str().expect("a session").to_string();
    (edge, token, session_id)
}

/// Records the recorded task `task_id` (it went straight into the service's work directory) as
/// the bench user's on `edge`, which serves a user only the tasks their object started. Call it
/// right before the task's first pass on `edge`, not for every task up front: to the object, an
/// adopted task is one of the user's that runs and that it does not follow yet, and its
/// heartbeat (about a minute after the first ticket, then every minute) asks the service about
/// each such task and, the task having ended, archives its end. A task adopted minutes before its
/// first pass (the comparison's 30 pairs take minutes) was then no first pass: the edge replayed
/// it from the archive, which held its end and none of its events (the bench got 0 events).
async fn adopt(edge: &Edge, task_id: &str) {
    let adopted = reqwest::Client::new()
        .post(format!("{}/api/admin/tasks", edge.base_url))
        .bearer_auth(autopilot_tests::edge::ADMIN_SECRET)
        .json(&serde_json::json!({"userId": "bench", "taskId": task_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(adopted.status(), 200, "recording the bench's task {task_id} as the user's");
}

#[tokio::main]
async fn main() {
    let events: u64 = std::env::var("EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(50_000);
    // The same recorded task in two work directories: the container mode's service and the
    // tunnel mode's machine each own one.
    let (work, machine_work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let frame_len = record_task(work.path(), RECORDED_TASK, events);
    record_task(work.path(), WARM_UP_TASK, WARM_UP_EVENTS);
    for task_id in archive_cost::recorded_tasks() {
        record_task(work.path(), &task_id, events);
    }
    record_task(machine_work.path(), RECORDED_TASK, events);

    let model_api = FakeModelApi::start().await.unwrap();
    let service =
        Service::start(&model_api, ServiceOptions { work_dir: Some(work.path().to_path_buf()), ..Default::default() })
            .await;
    // The archive keeps the whole recorded task (its default cap is 20 000 events); the baseline
    // it is measured against runs on a second edge, so that each side's workerd CPU is its own.
    let repo = GitFixture::new();
    let cap = (events + 10).to_string();
    let (edge, token, session_id) = bench_edge(&service, &repo, &cap).await;
    let echo_url = format!("{}/bench/echo", edge.ws_base());
    println!("bridge benchmark: {events} events of ~{frame_len} bytes per frame; workerd via wrangler dev");
    if part("archive") {
        let edge_off = Edge::start_with_vars(&format!("http://{}", service.addr), &[("BENCH_ROUTES", "true")]).await;
        let on = Side::Archived(&edge, token.as_str(), session_id.as_str());
        archive_cost::compare(on, Side::Baseline(&edge_off), events).await;
    }
    if !part("rest") {
        return followers::followers(&edge, &token, &session_id, &repo, frame_len).await;
    }

    adopt(&edge, RECORDED_TASK).await;
    for round in 0..2 {
        // Bridge throughput: the whole recorded task through the Durable Object.
        let bridge_rate =
            stream_recorded_task(&edge.ws_ticket_url(&token, &session_id).await, RECORDED_TASK, events).await;

        // Echo throughput: as many frames of the same size, pipelined through workerd.
        let (echo, _) = tokio_tungstenite::connect_async(&echo_url).await.unwrap();
        let (mut sink, mut source) = echo.split();
        let payload = vec![7u8; frame_len];
        let started = Instant::now();
        let writer = tokio::spawn(async move {
            for _ in 0..events {
                sink.feed(Message::Binary(payload.clone().into())).await.unwrap();
            }
            sink.flush().await.unwrap();
            sink
        });
        let mut echoed = 0u64;
        while echoed < events {
            match source.next().await {
                Some(Ok(Message::Binary(_))) => echoed += 1,
                Some(Ok(_)) => {}
                other => panic!("echo ended early: {other:?}"),
            }
        }
        let echo_rate = echoed as f64 / started.elapsed().as_secs_f64();
        drop(writer.await.unwrap());
        println!(
            "throughput #{round}: bridge {bridge_rate:.0} events/s, echo {echo_rate:.0} messages/s, ratio bridge/echo {:.2}",
            bridge_rate / echo_rate
        );
    }

    // Round-trip latency: Status through the bridge against echo round trips.
    let (mut bridge, _) =
        tokio_tungstenite::connect_async(edge.ws_ticket_url(&token, &session_id).await).await.unwrap();
    let (mut echo, _) = tokio_tungstenite::connect_async(&echo_url).await.unwrap();
    let status = ClientFrame {
        request_id: "s".into(),
        request: Some(ClientRequest::Status(StatusRequest { task_id: RECORDED_TASK.into() })),
    }
    .encode_to_vec();
    let (mut bridge_rtt, mut echo_rtt) = (Vec::new(), Vec::new());
    for i in 0..330 {
        let started = Instant::now();
        bridge.send(Message::Binary(status.clone().into())).await.unwrap();
        while !matches!(bridge.next().await, Some(Ok(Message::Binary(_)))) {}
        let bridged = started.elapsed();
        let started = Instant::now();
        echo.send(Message::Binary(status.clone().into())).await.unwrap();
        while !matches!(echo.next().await, Some(Ok(Message::Binary(_)))) {}
        if i >= 30 {
            bridge_rtt.push(bridged);
            echo_rtt.push(started.elapsed());
        }
    }
    let (b50, e50) = (percentile(&mut bridge_rtt, 0.5), percentile(&mut echo_rtt, 0.5));
    let (b99, e99) = (percentile(&mut bridge_rtt, 0.99), percentile(&mut echo_rtt, 0.99));
    println!(
        "round trip: bridge Status p50 {:.2} ms p99 {:.2} ms; echo p50 {:.2} ms p99 {:.2} ms; added p50 {:.2} ms",
        ms(b50),
        ms(b99),
        ms(e50),
        ms(e99),
        ms(b50.saturating_sub(e50))
    );

    // Tunnel mode: the same recorded task and Status, through the TunnelRelay to a machine
    // connected out to the edge (frames over its WebSocket instead of gRPC-web over HTTP).
    let tunnel_token = edge.user("bench-tunnel", 0).await;
    let options = ServiceOptions { work_dir: Some(machine_work.path().to_path_buf()), ..Default::default() };
    let machine = Machine::connect_with(&model_api, &edge.base_url, &tunnel_token, options);
    machine.wait_for_connections(1, Duration::from_secs(30)).await;
    let started = edge
        .post_json(
            "/api/tunnel/start",
            &tunnel_token,
            serde_json::json!({"repositoryUrl": repo.url(), "prompt": "SCENARIO:answer"}),
        )
        .await;
    let tunnel_session = started["sessionId"].as_str().expect("a tunnel session").to_string();
    let tunnel_url = || edge.ws_ticket_url_for("/api/tunnel/ws-ticket", &tunnel_token, &tunnel_session);
    let tunnel_rate = stream_recorded_task(&tunnel_url().await, RECORDED_TASK, events).await;
    let container_rate =
        stream_recorded_task(&edge.ws_ticket_url(&token, &session_id).await, RECORDED_TASK, events).await;
    let mut tunnel_rtt = status_round_trips(&tunnel_url().await, 300).await;
    let mut container_rtt = status_round_trips(&edge.ws_ticket_url(&token, &session_id).await, 300).await;
    println!(
        "tunnel vs container bridge: {tunnel_rate:.0} vs {container_rate:.0} events/s (ratio {:.2}); \
         Status p50 {:.2} vs {:.2} ms, p99 {:.2} vs {:.2} ms",
        tunnel_rate / container_rate,
        ms(percentile(&mut tunnel_rtt, 0.5)),
        ms(percentile(&mut container_rtt, 0.5)),
        ms(percentile(&mut tunnel_rtt, 0.99)),
        ms(percentile(&mut container_rtt, 0.99)),
    );

    // Where the time goes: the same Status over gRPC-web straight to the service, and through
    // the edge's passthrough route (Worker -> Durable Object -> service).
    for (name, addr) in [
        ("direct to the service", service.addr),
        ("through the edge", format!("127.0.0.1:{}", edge.port).parse().unwrap()),
    ] {
        let mut client = autopilot_tests::grpc_web::grpc_web_client(addr);
        let mut samples = Vec::new();
        for i in 0..330 {
            let started = Instant::now();
            let mut request = tonic::Request::new(StatusRequest { task_id: RECORDED_TASK.into() });
            request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
            client.status(request).await.unwrap();
            if i >= 30 {
                samples.push(started.elapsed());
            }
        }
        println!(
            "gRPC-web Status {name}: p50 {:.2} ms, p99 {:.2} ms",
            ms(percentile(&mut samples, 0.5)),
            ms(percentile(&mut samples, 0.99))
        );
    }

    socket_flood(&edge, &token, &session_id, &repo).await;
    followers::followers(&edge, &token, &session_id, &repo, frame_len).await;

    // Live delivery: event time at the service to receipt by a WebSocket client, for a real task.
    let task_id = start_over(&mut bridge, &repo, "SCENARIO:many-tools:20").await;
    let live = ClientFrame {
        request_id: "live".into(),
        request: Some(ClientRequest::StreamEvents(StreamEventsRequest { task_id, from_seq: 1 })),
    };
    bridge.send(Message::Binary(live.encode_to_vec().into())).await.unwrap();
    let mut delays = Vec::new();
    while let Some(Ok(message)) = bridge.next().await {
        let Message::Binary(bytes) = message else { continue };
        match ServerFrame::decode(bytes.as_ref()).unwrap().frame {
            Some(Frame::Event(event)) => {
                let time = event.time.unwrap();
                let at = std::time::UNIX_EPOCH + Duration::new(time.seconds as u64, time.nanos as u32);
                // The first events were recorded before the subscription began: not live.
                if event.seq > 5 {
                    delays.push(std::time::SystemTime::now().duration_since(at).unwrap_or_default());
                }
            }
            Some(Frame::EndOfStream(_)) => break,
            _ => {}
        }
    }
    let count = delays.len();
    println!(
        "live events: {count} delivered, service-to-client latency p50 {:.2} ms, p99 {:.2} ms",
        ms(percentile(&mut delays, 0.5)),
        ms(percentile(&mut delays, 0.99))
    );
}

/// Whether the bench runs `name` (`PARTS`, a comma-separated list of `archive`, `followers` and
/// `rest`; all by default).
fn part(name: &str) -> bool {
    std::env::var("PARTS").map_or(true, |parts| parts.split(',').any(|part| part.trim() == name))
}

/// Starts a task on `repo` with `prompt` through a bridge socket; its id.
async fn start_over(socket: &mut Socket, repo: &GitFixture, prompt: &str) -> String {
    let start = ClientFrame {
        request_id: "start".into(),
        request: Some(ClientRequest::Start(StartRequest {
            repository_url: repo.url(),
            prompt: prompt.into(),
            ..Default::default()
        })),
    };
    socket.send(Message::Binary(start.encode_to_vec().into())).await.unwrap();
    loop {
        if let Some(Ok(Message::Binary(bytes))) = socket.next().await {
            if let Some(Frame::Start(started)) = ServerFrame::decode(bytes.as_ref()).unwrap().frame {
                return started.task_id;
            }
        }
    }
}

/// One socket floods the bridge: 1,000 subscriptions to a running task, then a burst of 2,000
/// Status frames, as fast as it can send. Each socket holds at most 8 subscriptions and 16
/// requests in flight (the rest are refused with RESOURCE_EXHAUSTED); prints workerd's resident
/// memory before the flood, right after it, and once the socket closed.
async fn socket_flood(edge: &Edge, token: &str, session_id: &str, repo: &GitFixture) {
    let (mut socket, _) = tokio_tungstenite::connect_async(edge.ws_ticket_url(token, session_id).await).await.unwrap();
    let task_id = start_over(&mut socket, repo, "SCENARIO:hang").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = edge.workerd_rss_kib();
    let (subscriptions, statuses) = (1_000, 2_000);
    let frames = (0..subscriptions)
        .map(|i| {
            ClientRequest::StreamEvents(StreamEventsRequest { task_id: task_id.clone(), from_seq: 1 })
                .with_id(format!("sub-{i}"))
        })
        .chain(
            (0..statuses)
                .map(|i| ClientRequest::Status(StatusRequest { task_id: task_id.clone() }).with_id(format!("st-{i}"))),
        );
    for frame in frames {
        socket.feed(Message::Binary(frame.encode_to_vec().into())).await.unwrap();
    }
    socket.flush().await.unwrap();
    // Every Status and every refused subscription gets one reply; accepted subscriptions stream.
    let (mut answered, mut refused, mut replies) = (0, 0, 0);
    let deadline = Instant::now() + Duration::from_secs(120);
    while replies < statuses + subscriptions - 8 && Instant::now() < deadline {
        let Ok(Some(Ok(Message::Binary(bytes)))) = tokio::time::timeout(Duration::from_secs(10), socket.next()).await
        else {
            break;
        };
        let frame = ServerFrame::decode(bytes.as_ref()).unwrap();
        match frame.frame {
            Some(Frame::Status(_)) => (answered, replies) = (answered + 1, replies + 1),
            Some(Frame::Error(e)) if e.code == 8 => (refused, replies) = (refused + 1, replies + 1),
            _ => {}
        }
    }
    let during = edge.workerd_rss_kib();
    let cancel = ClientRequest::Cancel(autopilot_contract::v1::CancelRequest { task_id, reason: String::new() });
    socket.send(Message::Binary(cancel.with_id("flood-cancel".into()).encode_to_vec().into())).await.unwrap();
    // The next section starts a task: this one must have ended first.
    while let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_secs(30), socket.next()).await {
        if let Message::Binary(bytes) = message {
            if ServerFrame::decode(bytes.as_ref()).unwrap().request_id == "flood-cancel" {
                break;
            }
        }
    }
    drop(socket);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = edge.workerd_rss_kib();
    println!(
        "socket flood ({subscriptions} subscriptions + {statuses} Status frames on one socket): {answered} answered, \
         {refused} refused (RESOURCE_EXHAUSTED); workerd RSS {:.0} MB before, {:.0} MB after the flood, {:.0} MB once \
         the socket closed",
        before as f64 / 1024.0,
        during as f64 / 1024.0,
        after as f64 / 1024.0
    );
}

/// A client frame of `request` under `request_id`.
trait WithId {
    fn with_id(self, request_id: String) -> ClientFrame;
}

impl WithId for ClientRequest {
    fn with_id(self, request_id: String) -> ClientFrame {
        ClientFrame { request_id, request: Some(self) }
    }
}
