//! Prints the bridge's figures, side by side in one run (not a pass/fail test): events/s and
//! latency through the WebSocket bridge (WS client -> workerd Durable Object -> agent-service
//! over gRPC-web) against a plain WebSocket echo through the same workerd.
//!
//! - Throughput: a recorded task of `EVENTS` small events (default 50 000) is streamed through the
//!   bridge; the echo moves as many messages of the same size (pipelined). Target: bridge >= 0.5x.
//!   Round #0 is the task's first pass (the object follows it into the archive while streaming);
//!   round #1 replays it from the archive. The archive's cost: 30 other recorded tasks, each
//!   streamed for the first time through an edge with the archive off (`ARCHIVE_MAX_EVENTS=0`)
//!   and through one with it on, in pairs; the median of the pairs' ratios (target: at most 10%),
//!   and of the CPU each edge's workerd spent per event.
//! - Followers: the latency of live events with 1 and with 200 sockets following one task
//!   (target: p50 with 200 within 2x of p50 with 1), beside the floor workerd sets: one Durable
//!   Object sending each message to 1 and to 200 sockets, with no bridge (`/bench/fanout`).
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
    git_fixture::GitFixture,
    isolate_profile::{self, Hot},
    service::{Service, ServiceOptions},
    tunnel_machine::Machine,
};
use futures::{SinkExt, StreamExt};
use prost::Message as _;
use tokio_tungstenite::tungstenite::Message;

const RECORDED_TASK: &str = "00000000-0000-4000-8000-00000000beef";
/// A second recorded task that warms each edge's streaming path up (workerd compiles hot wasm
/// code again once it is hot) before the archive's cost is measured.
const WARM_UP_TASK: &str = "00000000-0000-4000-8000-00000000cafe";
const WARM_UP_EVENTS: u64 = 20_000;
/// With `PROFILE=1`, a recorded task whose first passes (archive off, then on) are profiled.
const PROFILED_TASK: &str = "00000000-0000-4000-8000-0000000000fe";

fn profiling() -> bool {
    std::env::var("PROFILE").is_ok_and(|v| v == "1")
}

/// Recorded tasks that each edge streams for the first time, archive off and on in pairs (`PAIRS`,
/// default 30): the archive's cost is the median of the pairs' ratios (one pair is too noisy here).
fn compared_tasks() -> Vec<String> {
    let pairs: usize = std::env::var("PAIRS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    (0..pairs).map(|i| format!("00000000-0000-4000-8000-0000000c{i:04x}")).collect()
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

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

/// Streams the recorded task `task_id` through the bridge socket at `url` of `edge`: events/s,
/// and the CPU time the edge's workerd used for it (its work after the last frame included).
async fn first_pass(edge: &Edge, url: String, task_id: &str, events: u64) -> (f64, Duration) {
    let cpu = edge.workerd_cpu();
    let rate = stream_recorded_task(&url, task_id, events).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    (rate, edge.workerd_cpu() - cpu)
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

/// An edge in front of `service` (archive cap `archive_max_events`; "0" turns it off) with the
/// bench user, the recorded task recorded as theirs, and a session to open the bridge with.
async fn bench_edge(service: &Service, repo: &GitFixture, archive_max_events: &str) -> (Edge, String, String) {
    let edge = Edge::start_with_vars(
        &format!("http://{}", service.addr),
        &[("BENCH_ROUTES", "true"), ("ARCHIVE_MAX_EVENTS", archive_max_events)],
    )
    .await;
    let token = edge.user("bench", 1_000_000).await;
    // The recorded task went straight into the service's work directory: record it as the user's
    // (the edge serves a user only the tasks their object started).
    let profiled = profiling().then(|| PROFILED_TASK.to_string());
    let tasks = [RECORDED_TASK.to_string(), WARM_UP_TASK.to_string()].into_iter().chain(profiled);
    for task_id in tasks.chain(compared_tasks()) {
        let adopted = reqwest::Client::new()
            .post(format!("{}/api/admin/tasks", edge.base_url))
            .bearer_auth(autopilot_tests::edge::ADMIN_SECRET)
            .json(&serde_json::json!({"userId": "bench", "taskId": task_id}))
            .send()
            .await
            .unwrap();
        assert_eq!(adopted.status(), 200, "recording the bench's task as the user's");
    }
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

#[tokio::main]
async fn main() {
    let events: u64 = std::env::var("EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(50_000);
    // The same recorded task in two work directories: the container mode's service and the
    // tunnel mode's machine each own one.
    let (work, machine_work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let frame_len = record_task(work.path(), RECORDED_TASK, events);
    record_task(work.path(), WARM_UP_TASK, WARM_UP_EVENTS);
    for task_id in compared_tasks().into_iter().chain(profiling().then(|| PROFILED_TASK.to_string())) {
        record_task(work.path(), &task_id, events);
    }
    record_task(machine_work.path(), RECORDED_TASK, events);

    let model_api = FakeModelApi::start().await.unwrap();
    let service =
        Service::start(&model_api, ServiceOptions { work_dir: Some(work.path().to_path_buf()), ..Default::default() })
            .await;
    // The archive keeps the whole recorded task (its default cap is 20 000 events); a second
    // edge with the archive off is the baseline it is measured against.
    let repo = GitFixture::new();
    let cap = (events + 10).to_string();
    let (edge, token, session_id) = bench_edge(&service, &repo, &cap).await;
    let (edge_off, token_off, session_off) = bench_edge(&service, &repo, "0").await;
    let echo_url = format!("{}/bench/echo", edge.ws_base());
    println!("bridge benchmark: {events} events of ~{frame_len} bytes per frame; workerd via wrangler dev");
    // The archive's cost on a first pass: recorded tasks streamed through an edge without an
    // archive and through one whose object follows each into its archive while streaming it,
    // in pairs, each pair's order the other way round from the last; both edges warmed up first.
    // The cost is the median of the pairs' ratios: rates drift by 2x within a run here, and a
    // pair's two passes drift together.
    if part("archive") {
        for (edge, token, session) in [(&edge, &token, &session_id), (&edge_off, &token_off, &session_off)] {
            stream_recorded_task(&edge.ws_ticket_url(token, session).await, WARM_UP_TASK, WARM_UP_EVENTS).await;
        }
        if profiling() {
            profile_first_passes([(&edge_off, &token_off, &session_off), (&edge, &token, &session_id)], events).await;
        }
        let mut pairs = Vec::new();
        for (i, task_id) in compared_tasks().iter().enumerate() {
            let off_url = edge_off.ws_ticket_url(&token_off, &session_off).await;
            let on_url = edge.ws_ticket_url(&token, &session_id).await;
            let (off, on) = if i % 2 == 0 {
                let off = first_pass(&edge_off, off_url, task_id, events).await;
                (off, first_pass(&edge, on_url, task_id, events).await)
            } else {
                let on = first_pass(&edge, on_url, task_id, events).await;
                (first_pass(&edge_off, off_url, task_id, events).await, on)
            };
            pairs.push((off, on));
        }
        let median = |mut values: Vec<f64>| {
            values.sort_by(f64::total_cmp);
            (values[values.len() / 2] + values[(values.len() - 1) / 2]) / 2.0
        };
        let rate_ratio = median(pairs.iter().map(|(off, on)| on.0 / off.0).collect());
        let cpu_per_event = |pass: &(f64, Duration)| pass.1.as_secs_f64() * 1e6 / events as f64;
        let (cpu_off, cpu_on) = (
            median(pairs.iter().map(|(off, _)| cpu_per_event(off)).collect()),
            median(pairs.iter().map(|(_, on)| cpu_per_event(on)).collect()),
        );
        let shown: Vec<String> = pairs.iter().map(|(off, on)| format!("{:.0}/{:.0}", off.0, on.0)).collect();
        let cpu_shown: Vec<String> =
            pairs.iter().map(|(off, on)| format!("{:.2}/{:.2}", cpu_per_event(off), cpu_per_event(on))).collect();
        println!(
            "archive off vs on (first pass of {} tasks of {events} events, in pairs): off/on events/s {}; median \
             on/off {rate_ratio:.3}: the archive costs {:.1}% of throughput",
            compared_tasks().len(),
            shown.join(", "),
            100.0 * (1.0 - rate_ratio)
        );
        println!(
            "archive off vs on, workerd CPU per event (the task's end included): off/on us {}; medians {cpu_off:.2} \
             vs {cpu_on:.2} us: the archive costs {:.1}% more of the edge's CPU",
            cpu_shown.join(", "),
            100.0 * (cpu_on / cpu_off - 1.0)
        );
    }
    if !part("rest") {
        return followers(&edge, &token, &session_id, &repo, frame_len).await;
    }

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
    followers(&edge, &token, &session_id, &repo, frame_len).await;

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

/// `PROFILE=1`: where each edge's isolate spends a first pass of a recorded task (archive off,
/// then on), by the functions' own samples.
async fn profile_first_passes(edges: [(&Edge, &String, &String); 2], events: u64) {
    for ((edge, token, session), archive) in edges.into_iter().zip(["off", "on"]) {
        let url = edge.ws_ticket_url(token, session).await;
        let pass = async {
            stream_recorded_task(&url, PROFILED_TASK, events).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let ((), hot, total) = isolate_profile::profile(edge, 15, pass).await;
        println!("profile, archive {archive}: {total} samples of 200 us; by own samples:");
        for Hot { function, samples } in hot {
            println!("  {:5.1}% {function:.120}", 100.0 * samples as f64 / total as f64);
        }
    }
}

/// Whether the bench runs `name` (`PARTS`, a comma-separated list of `archive`, `followers` and
/// `rest`; all by default).
fn part(name: &str) -> bool {
    std::env::var("PARTS").map_or(true, |parts| parts.split(',').any(|part| part.trim() == name))
}

/// The followers' figures, beside the floor workerd itself sets: the latency of live events with
/// 1 and 200 sockets following one task, and of one object sending each message to 1 and 200
/// sockets with no bridge in between.
async fn followers(edge: &Edge, token: &str, session_id: &str, repo: &GitFixture, frame_len: usize) {
    if !part("followers") {
        return;
    }
    let floor = (fanout_floor(edge, 1, frame_len).await, fanout_floor(edge, 200, frame_len).await);
    let one = followers_latency(edge, token, session_id, repo, 1).await;
    let many = followers_latency(edge, token, session_id, repo, 200).await;
    println!(
        "followers of one live task (one upstream stream per task): 1 follower p50 {:.2} ms p99 {:.2} ms; \
         200 followers p50 {:.2} ms p99 {:.2} ms ({} deliveries); p50 ratio 200/1 {:.2}",
        one.0,
        one.1,
        many.0,
        many.1,
        many.2,
        many.0 / one.0
    );
    println!(
        "floor, one object sending each message to its sockets (no bridge): 1 socket p50 {:.2} ms p99 {:.2} ms; \
         200 sockets p50 {:.2} ms p99 {:.2} ms; p50 ratio 200/1 {:.2}; 200 followers p50 over the floor's {:.2}x",
        floor.0 .0,
        floor.0 .1,
        floor.1 .0,
        floor.1 .1,
        floor.1 .0 / floor.0 .0,
        many.0 / floor.1 .0
    );
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

/// `count` sockets follow one live task (a real one, whose slow steps leave time to subscribe
/// them all); the service-to-client delay of every event recorded after the last subscription,
/// over all followers: p50 and p99 (ms) and how many deliveries were measured.
async fn followers_latency(
    edge: &Edge,
    token: &str,
    session_id: &str,
    repo: &GitFixture,
    count: usize,
) -> (f64, f64, usize) {
    let started = edge
        .post_json(
            "/api/container/start",
            token,
            serde_json::json!({"repositoryUrl": repo.url(), "prompt": "SCENARIO:slow-tools:8"}),
        )
        .await;
    let task_id = started["taskId"].as_str().expect("a task").to_string();
    let mut sockets = Vec::new();
    for _ in 0..count {
        let (socket, _) = tokio_tungstenite::connect_async(edge.ws_ticket_url(token, session_id).await).await.unwrap();
        sockets.push(socket);
    }
    for socket in &mut sockets {
        let follow = ClientRequest::StreamEvents(StreamEventsRequest { task_id: task_id.clone(), from_seq: 1 });
        socket.send(Message::Binary(follow.with_id("follow".into()).encode_to_vec().into())).await.unwrap();
    }
    // Measured from when every follower has its first frame (the subscriptions are in place):
    // the steady state, not the burst of 200 subscriptions arriving at once.
    let (first_frames, mut firsts) = tokio::sync::mpsc::unbounded_channel::<()>();
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|mut socket| {
            let first_frames = first_frames.clone();
            tokio::spawn(async move {
                let (mut received, mut told) = (Vec::new(), false);
                while let Some(Ok(message)) = socket.next().await {
                    let Message::Binary(bytes) = message else { continue };
                    if !std::mem::replace(&mut told, true) {
                        let _ = first_frames.send(());
                    }
                    match ServerFrame::decode(bytes.as_ref()).unwrap().frame {
                        Some(Frame::Event(event)) => {
                            let time = event.time.unwrap();
                            let at = std::time::UNIX_EPOCH + Duration::new(time.seconds as u64, time.nanos as u32);
                            received.push((at, std::time::SystemTime::now().duration_since(at).unwrap_or_default()));
                        }
                        Some(Frame::EndOfStream(_)) | Some(Frame::Error(_)) => break,
                        _ => {}
                    }
                }
                received
            })
        })
        .collect();
    drop(first_frames);
    for _ in 0..count {
        if firsts.recv().await.is_none() {
            break;
        }
    }
    let ready_at = std::time::SystemTime::now();
    let mut delays = Vec::new();
    for reader in readers {
        delays.extend(reader.await.unwrap().into_iter().filter(|(at, _)| *at > ready_at).map(|(_, delay)| delay));
    }
    let measured = delays.len();
    assert!(measured > 0, "no live event reached the {count} followers");
    (ms(percentile(&mut delays, 0.5)), ms(percentile(&mut delays, 0.99)), measured)
}

/// The floor under `followers_latency`: `count` sockets on the bench's fan-out route, where one
/// Durable Object sends each message a sender socket sends to all the others, with no bridge in
/// between. The sender sends what a slow task's follow receives: rounds of one event, then two
/// together; p50 and p99 (ms) of send-to-receipt over all receivers, and the deliveries measured.
async fn fanout_floor(edge: &Edge, count: usize, frame_len: usize) -> (f64, f64, usize) {
    let url = &format!("{}/bench/fanout", edge.ws_base());
    let (mut sender, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut receivers = Vec::new();
    for _ in 0..count {
        receivers.push(tokio_tungstenite::connect_async(url).await.unwrap().0);
    }
    // A message: how many copies each socket gets, then the send time (ns since the epoch),
    // padded to an event frame's size.
    let message = |copies: u8| {
        let sent = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let mut bytes = vec![copies];
        bytes.extend_from_slice(&sent.to_le_bytes());
        bytes.resize(frame_len.max(17) + 1, 0);
        Message::Binary(bytes.into())
    };
    // Every receiver has its first message before the rounds are measured.
    sender.send(message(1)).await.unwrap();
    for receiver in &mut receivers {
        while !matches!(receiver.next().await, Some(Ok(Message::Binary(_)))) {}
    }
    let (rounds, per_round) = (15, 3);
    let readers: Vec<_> = receivers
        .into_iter()
        .map(|mut receiver| {
            tokio::spawn(async move {
                let mut delays = Vec::new();
                while delays.len() < rounds * per_round {
                    let Some(Ok(Message::Binary(bytes))) = receiver.next().await else { break };
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
                    let sent = u128::from_le_bytes(bytes[..16].try_into().unwrap());
                    delays.push(Duration::from_nanos(now.saturating_sub(sent) as u64));
                }
                delays
            })
        })
        .collect();
    for _ in 0..rounds {
        sender.send(message(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        sender.send(message(2)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut delays = Vec::new();
    for reader in readers {
        delays.extend(reader.await.unwrap());
    }
    let measured = delays.len();
    assert_eq!(measured, count * rounds * per_round, "every receiver gets every message");
    (ms(percentile(&mut delays, 0.5)), ms(percentile(&mut delays, 0.99)), measured)
}
