//! End-to-end test of the edge: the real `wrangler dev` (workerd running the Rust Worker and its
//! Durable Object in local mode) in front of the real agent-service, the real Claude Code CLI and
//! real git; only the model API is fake. The test talks to the edge as a browser and a program
//! would: JSON routes, the WebSocket bridge in both encodings, and gRPC-web through the edge.
//!
//! The agent-service runs one task at a time, so the steps run in order in one test, over one
//! [`World`].

use autopilot_contract::v1::{
    client_frame::Request as ClientRequest, event::Payload, server_frame::Frame, CancelRequest, ClientFrame, Event,
    GetDiffRequest, StartRequest, StatusRequest, StreamEventsRequest, TaskState,
};
use autopilot_tests::{
    bridge_client::{connect, read_subscription, receive, send, subscribe, Encoding, Socket},
    edge::Edge,
    events::{kind, seqs},
    fake_model_api::FakeModelApi,
    git_fixture::GitFixture,
    grpc_web::{grpc_web_client, with_token},
    local_pair::LocalPair,
    service::Service,
};
use futures::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn the_edge_bridges_browsers_and_programs_to_the_agent_service() {
    let world = World::start().await;
    let first = a_json_start_answers_the_task_its_session_and_socket_url(&world).await;
    let (mut ws, all) = a_subscription_dropped_mid_stream_resumes_on_a_json_socket(&world, &first).await;
    a_malformed_frame_gets_an_error_frame_and_the_socket_stays_usable(&mut ws, &first).await;
    a_service_error_arrives_as_an_error_frame_with_its_grpc_code(&mut ws).await;
    let (second, _follower) = a_task_started_over_the_socket_is_cancelled_while_followed(&world, &first, &mut ws).await;
    the_json_status_route_answers_the_latest_task(&world, &second).await;
    grpc_web_passes_through_the_edge_with_the_token(&world, &first, &all).await;
    json_route_errors_follow_one_scheme(&world).await;
}

/// The fake model API, a repository, the agent-service, the edge in front of it, and one user
/// with credits.
struct World {
    // Fields drop in this order: the edge stops before the service it fronts.
    edge: Edge,
    http: reqwest::Client,
    token: String,
    repo: GitFixture,
    _service: Service,
    _model_api: FakeModelApi,
}

impl World {
    async fn start() -> World {
        let LocalPair { edge, service, repo, model_api } = LocalPair::start(&[]).await;
        let http = reqwest::Client::new();
        let token = edge.user("alice", 1_000_000).await;
        World { edge, http, token, repo, _service: service, _model_api: model_api }
    }
}

/// The first task, started through the JSON route: its id, session and WebSocket URL.
struct Started {
    task_id: String,
    session_id: String,
    websocket_url: String,
}

/// Start through the JSON route: the task id, a session and the WebSocket URL come back.
async fn a_json_start_answers_the_task_its_session_and_socket_url(world: &World) -> Started {
    let World { edge, token, repo, .. } = world;
    let started = edge
        .post_json(
            "/api/container/start",
            token,
            json!({"repositoryUrl": repo.url(), "prompt": "SCENARIO:many-tools:8 walk the tree"}),
        )
        .await;
    let task_id =
        started["taskId"].as_str().unwrap_or_else(|| panic!("no taskId in {started}\n{}", edge.log())).to_string();
    let websocket_url = started["websocketUrl"].as_str().unwrap().to_string();
    assert!(websocket_url.starts_with(&edge.ws_base()), "{websocket_url}");
    let session_id = started["sessionId"].as_str().unwrap().to_string();
    assert!(websocket_url.contains(&format!("/api/container/ws/{session_id}?ticket=")), "{websocket_url}");
    Started { task_id, session_id, websocket_url }
}

/// Subscribe over a binary socket, drop it mid-stream, then resume over a JSON socket from the
/// last seq received: together they hold every event exactly once. Answers the JSON socket and
/// all the task's events.
async fn a_subscription_dropped_mid_stream_resumes_on_a_json_socket(
    world: &World,
    first: &Started,
) -> (Socket, Vec<Event>) {
    let Started { task_id, session_id, websocket_url } = first;
    let mut ws = connect(websocket_url).await;
    send(&mut ws, &subscribe("first", task_id, 1), Encoding::Binary).await;
    let (before_drop, ended) = read_subscription(&mut ws, "first", Encoding::Binary, Some(12)).await;
    assert!(!ended);
    drop(ws);
    let last_seq = before_drop.last().unwrap().seq;
    // Tickets are single-use: a reconnect asks for a new one.
    let mut ws = connect(&world.edge.ws_ticket_url(&world.token, session_id).await).await;
    send(&mut ws, &subscribe("resume", task_id, last_seq + 1), Encoding::Json).await;
    let (after_drop, ended) = read_subscription(&mut ws, "resume", Encoding::Json, None).await;
    assert!(ended, "the subscription ends with end_of_stream");
    let all: Vec<Event> = before_drop.into_iter().chain(after_drop).collect();
    assert_eq!(seqs(&all), (1..=all.len() as u64).collect::<Vec<_>>(), "no gap, no duplicate across the reconnect");
    assert_eq!(kind(all.last().unwrap()), "task_finished:SUCCEEDED");
    assert_eq!(all.iter().filter(|e| kind(e) == "tool_finished").count(), 8);
    (ws, all)
}

/// A malformed frame (binary or JSON) gets an error frame, and the socket stays usable: a Status
/// still answers.
async fn a_malformed_frame_gets_an_error_frame_and_the_socket_stays_usable(ws: &mut Socket, first: &Started) {
    ws.send(Message::Binary(vec![0xff, 0xfe, 0x00].into())).await.unwrap();
    let error = receive(ws, Encoding::Binary).await;
    match error.frame {
        Some(Frame::Error(e)) => {
            assert_eq!(e.code, tonic::Code::InvalidArgument as i32);
            assert!(e.message.contains("malformed ClientFrame"), "{}", e.message);
        }
        other => panic!("expected an error frame, got {other:?}"),
    }
    ws.send(Message::Text(r#"{"requestId":"bad","start":{"prompt":7}}"#.into())).await.unwrap();
    let error = receive(ws, Encoding::Json).await;
    assert_eq!(error.request_id, "bad");
    assert!(matches!(error.frame, Some(Frame::Error(_))));
    let status_frame = ClientFrame {
        request_id: "st".into(),
        request: Some(ClientRequest::Status(StatusRequest { task_id: first.task_id.clone() })),
    };
    send(ws, &status_frame, Encoding::Json).await;
    match receive(ws, Encoding::Json).await.frame {
        Some(Frame::Status(status)) => assert_eq!(status.task.unwrap().state(), TaskState::Succeeded),
        other => panic!("expected a status reply, got {other:?}"),
    }
}

async fn a_service_error_arrives_as_an_error_frame_with_its_grpc_code(ws: &mut Socket) {
    let unknown = ClientFrame {
        request_id: "nf".into(),
        request: Some(ClientRequest::Status(StatusRequest { task_id: "7d3c0c1e-0000-4000-8000-000000000000".into() })),
    };
    send(ws, &unknown, Encoding::Binary).await;
    match receive(ws, Encoding::Binary).await.frame {
        Some(Frame::Error(e)) => assert_eq!(e.code, tonic::Code::NotFound as i32),
        other => panic!("expected NOT_FOUND, got {other:?}"),
    }
}

/// A second task, started and cancelled over the socket while a subscription on another socket
/// follows it to its task_finished. Answers its id and the follower's socket.
async fn a_task_started_over_the_socket_is_cancelled_while_followed(
    world: &World,
    first: &Started,
    ws: &mut Socket,
) -> (String, Socket) {
    let start_frame = ClientFrame {
        request_id: "s2".into(),
        request: Some(ClientRequest::Start(StartRequest {
            repository_url: world.repo.url(),
            prompt: "SCENARIO:hang".into(),
            ..Default::default()
        })),
    };
    send(ws, &start_frame, Encoding::Binary).await;
    let second = match receive(ws, Encoding::Binary).await.frame {
        Some(Frame::Start(started)) => started.task_id,
        other => panic!("expected a start reply, got {other:?}"),
    };
    let mut follower = connect(&world.edge.ws_ticket_url(&world.token, &first.session_id).await).await;
    send(&mut follower, &subscribe("follow", &second, 1), Encoding::Binary).await;
    loop {
        let frame = receive(&mut follower, Encoding::Binary).await;
        if let Some(Frame::Event(event)) = frame.frame {
            if kind(&event) == "agent_started" {
                break;
            }
        }
    }
    let cancel = ClientFrame {
        request_id: "c".into(),
        request: Some(ClientRequest::Cancel(CancelRequest { task_id: second.clone(), ..Default::default() })),
    };
    send(ws, &cancel, Encoding::Binary).await;
    match receive(ws, Encoding::Binary).await.frame {
        Some(Frame::Cancel(reply)) => assert_eq!(reply.state(), TaskState::Cancelled),
        other => panic!("expected a cancel reply, got {other:?}"),
    }
    let (rest, ended) = read_subscription(&mut follower, "follow", Encoding::Binary, None).await;
    assert!(ended);
    match rest.last().and_then(|e| e.payload.clone()) {
        Some(Payload::TaskFinished(finished)) => assert_eq!(finished.state(), TaskState::Cancelled),
        other => panic!("the follower's last event is not task_finished: {other:?}"),
    }
    (second, follower)
}

/// Status through the JSON route with no id: the latest task (the cancelled second one), and
/// its container.
async fn the_json_status_route_answers_the_latest_task(world: &World, second: &str) {
    let status = world.edge.get_json("/api/container/status", &world.token).await;
    assert_eq!(status["task"]["taskId"], second);
    assert_eq!(status["task"]["state"], "TASK_STATE_CANCELLED");
    assert!(status["container"]["Ready"].is_object(), "{status}");
}

/// Status, StreamEvents (which needs the token) and GetDiff, an RPC the edge names nowhere, pass
/// through the edge with a generated gRPC-web client; the stream replays the same events.
async fn grpc_web_passes_through_the_edge_with_the_token(world: &World, started: &Started, all: &[Event]) {
    let World { edge, token, .. } = world;
    let task_id = &started.task_id;
    let mut web = grpc_web_client(format!("127.0.0.1:{}", edge.port).parse().unwrap());
    let first = web
        .status(with_token(token, StatusRequest { task_id: task_id.clone() }))
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!((first.state(), first.last_seq), (TaskState::Succeeded, all.len() as u64));
    let stream = web
        .stream_events(tonic::Request::new(StreamEventsRequest { task_id: task_id.clone(), from_seq: 5 }))
        .await
        .unwrap_err();
    assert_eq!(stream.code(), tonic::Code::Unauthenticated, "no token, no stream");
    let mut request = tonic::Request::new(StreamEventsRequest { task_id: task_id.clone(), from_seq: 5 });
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let stream = web.stream_events(request).await.unwrap().into_inner();
    let replayed = autopilot_tests::events::collect(stream).await;
    assert_eq!(replayed, all[4..].to_vec(), "gRPC-web through the edge replays the same events");
    // An RPC the edge names nowhere (GetDiff, added after the edge) passes through as well.
    let diff = web.get_diff(with_token(token, GetDiffRequest { task_id: task_id.clone() })).await.unwrap().into_inner();
    assert_eq!(diff.diff.unwrap().files.len(), 0, "echo commands change no file");
    let missing = web
        .status(with_token(token, StatusRequest { task_id: "7d3c0c1e-0000-4000-8000-000000000000".into() }))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
}

/// Errors of the JSON routes follow one scheme.
async fn json_route_errors_follow_one_scheme(world: &World) {
    let World { edge, http, token, .. } = world;
    let bad = http
        .post(format!("{}/api/container/start", edge.base_url))
        .bearer_auth(token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["error"]["code"], "INVALID_ARGUMENT");
    let invalid = http
        .post(format!("{}/api/container/start", edge.base_url))
        .bearer_auth(token)
        .json(&json!({"repositoryUrl": "ext::sh -c evil", "prompt": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), 400);
    let body: Value = invalid.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().starts_with("repository_url"), "{body}");
    assert_eq!(http.get(format!("{}/nowhere", edge.base_url)).send().await.unwrap().status(), 404);
    let no_session = http
        .get(format!("{}/api/container/ws/no-such-session", edge.base_url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(no_session.status(), 404);
    assert_eq!(http.get(format!("{}/health", edge.base_url)).send().await.unwrap().text().await.unwrap(), "ok");
}
