//! What the edge refuses, end to end against the real pair (`wrangler dev` in local mode in front
//! of the real agent-service, the real Claude Code CLI, real git): in local mode every user's
//! object reaches the one service, so one user must not reach another's tasks on any path; a
//! browser's cookie does not let a foreign page act; bad requests get the right answer (413, 426,
//! short ids, bounded sockets) and the service keeps serving; unused tickets and old sessions do
//! not pile up; a restarting service is waited for rather than reported down. One edge and one
//! service serve every phase, in order (the service runs one task at a time).

use std::time::{Duration, Instant};

use autopilot_contract::v1::{
    client_frame::Request as ClientRequest, server_frame::Frame, CancelRequest, ClientFrame, GetDiffRequest,
    StatusRequest, StreamEventsRequest,
};
use autopilot_tests::{
    bridge_client::{close_politely, connect, read_subscription, receive, send, subscribe, Encoding, Socket},
    edge::{chunked_body, Edge},
    git_fixture::GitFixture,
    grpc_web::{grpc_web_client, with_token},
    service::{ServiceFixture, ServiceOptions},
};
use futures::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

/// Codes of the contract's errors as the bridge carries them.
const NOT_FOUND: i32 = 5;
const RESOURCE_EXHAUSTED: i32 = 8;

/// Starts a task through the JSON route; the reply (`taskId`, `sessionId`, ...).
async fn start(edge: &Edge, token: &str, repo: &GitFixture, prompt: &str) -> Value {
    let reply =
        edge.post_json("/api/container/start", token, json!({"repositoryUrl": repo.url(), "prompt": prompt})).await;
    assert!(reply["taskId"].is_string(), "Start failed: {reply}");
    reply
}

/// Sends `frame` and answers the error frame that comes back: (code, message). Frames of the
/// socket's other subscriptions are passed over.
async fn refused(ws: &mut Socket, frame: ClientFrame) -> (i32, String) {
    send(ws, &frame, Encoding::Binary).await;
    let reply = loop {
        let reply = receive(ws, Encoding::Binary).await;
        if reply.request_id == frame.request_id {
            break reply;
        }
    };
    match reply.frame {
        Some(Frame::Error(error)) => (error.code, error.message),
        other => panic!("expected an error frame for {frame:?}, got {other:?}"),
    }
}

fn frame(request_id: &str, request: ClientRequest) -> ClientFrame {
    ClientFrame { request_id: request_id.into(), request: Some(request) }
}

#[tokio::test]
async fn the_edge_refuses_what_it_must_and_keeps_serving() {
    // One task at a time, so that one user's running task refuses another's Start.
    let options = ServiceOptions { extra_args: vec!["--max-tasks".into(), "1".into()], ..ServiceOptions::default() };
    let ServiceFixture { model_api, repo, mut service } = ServiceFixture::start_with(options.clone()).await;
    let edge = Edge::start_with_vars(
        &format!("http://{}", service.addr),
        &[("PUBLIC_ORIGIN", "{edge}"), ("TICKET_TTL_SECONDS", "3"), ("SESSION_RETENTION_SECONDS", "40")],
    )
    .await;
    let http = reqwest::Client::new();
    let alice = edge.user("alice", 100_000).await;
    let bob = edge.user("bob", 100_000).await;
    let carol = edge.user("carol", 100_000).await;

    // Bob's own task, so that he has a session and a latest task of his own.
    let bobs = start(&edge, &bob, &repo, "Say hello").await;
    let bobs_task = bobs["taskId"].as_str().unwrap().to_string();
    assert_eq!(edge.until_ended(&bob, &bobs_task).await["task"]["state"], "TASK_STATE_SUCCEEDED");
    // Alice's task runs while bob tries to reach it.
    let alices = start(&edge, &alice, &repo, "Work slowly SCENARIO:slow-tools:12").await;
    let alices_task = alices["taskId"].as_str().unwrap().to_string();
    let never = "7d3c0c1e-0000-4000-8000-000000000000";

    // --- One user never reaches another's tasks (JSON routes, bridge frames, gRPC-web). ---
    for id in [alices_task.as_str(), never] {
        let (code, body) = edge.get(&format!("/api/container/status?taskId={id}"), &bob).await;
        assert_eq!((code, body["error"]["message"].as_str().unwrap()), (404, format!("no task with id {id}").as_str()));
    }
    let (code, latest) = edge.get("/api/container/status", &bob).await;
    assert_eq!(
        (code, latest["task"]["taskId"].as_str()),
        (200, Some(bobs_task.as_str())),
        "an empty id is bob's own latest"
    );
    let (code, none) = edge.get("/api/container/status", &carol).await;
    assert_eq!(code, 404, "carol has no task: {none}");

    let mut ws = connect(&edge.ws_ticket_url(&bob, bobs["sessionId"].as_str().unwrap()).await).await;
    for (i, request) in [
        ClientRequest::StreamEvents(StreamEventsRequest { task_id: alices_task.clone(), from_seq: 1 }),
        ClientRequest::Status(StatusRequest { task_id: alices_task.clone() }),
        ClientRequest::Cancel(CancelRequest { task_id: alices_task.clone(), reason: "bob".into() }),
    ]
    .into_iter()
    .enumerate()
    {
        let (code, message) = refused(&mut ws, frame(&format!("probe-{i}"), request)).await;
        assert_eq!((code, message), (NOT_FOUND, format!("no task with id {alices_task}")));
    }
    send(&mut ws, &subscribe("own", "", 1), Encoding::Binary).await;
    let (events, ended) = read_subscription(&mut ws, "own", Encoding::Binary, None).await;
    assert!(ended && events.iter().all(|e| e.task_id == bobs_task), "an empty id follows bob's own task");
    // A client that closes politely gets the edge's Close at once, with its own code (1000).
    let polite = connect(&edge.ws_ticket_url(&bob, bobs["sessionId"].as_str().unwrap()).await).await;
    let took = close_politely(polite).await;
    assert!(took < Duration::from_secs(2), "the bridge answered a Close after {took:?}");

    let mut web = grpc_web_client(format!("127.0.0.1:{}", edge.port).parse().unwrap());
    let theirs = || alices_task.clone();
    let status = web.status(with_token(&bob, StatusRequest { task_id: theirs() })).await.unwrap_err();
    let diff = web.get_diff(with_token(&bob, GetDiffRequest { task_id: theirs() })).await.unwrap_err();
    let cancel =
        web.cancel(with_token(&bob, CancelRequest { task_id: theirs(), reason: String::new() })).await.unwrap_err();
    let stream = match web.stream_events(with_token(&bob, StreamEventsRequest { task_id: theirs(), from_seq: 1 })).await
    {
        Err(status) => status,
        Ok(mut stream) => stream.get_mut().message().await.unwrap_err(),
    };
    for refusal in [status, diff, cancel, stream] {
        assert_eq!(
            (refusal.code(), refusal.message()),
            (tonic::Code::NotFound, format!("no task with id {alices_task}").as_str())
        );
    }

    // A Start refused because alice's task fills the service names no task, says the service is
    // busy with other users' tasks (carol has none to wait for or cancel), costs nothing and
    // leaves carol no open run.
    let reply = http
        .post(format!("{}/api/container/start", edge.base_url))
        .bearer_auth(&carol)
        .json(&json!({"repositoryUrl": repo.url(), "prompt": "mine"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 429);
    let body: Value = reply.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(!message.contains(&alices_task) && message.contains("busy with other users' tasks"), "{message}");
    let (_, balance) = edge.get("/api/billing/balance", &carol).await;
    assert!(balance["containerRunningSinceMs"].is_null(), "a refused Start left a run open: {balance}");
    let (_, ledger) = edge.get("/api/billing/ledger", &carol).await;
    let debits: Vec<&Value> =
        ledger["entries"].as_array().unwrap().iter().filter(|e| e["credits"].as_i64() < Some(0)).collect();
    assert!(debits.is_empty(), "a refused Start was charged: {ledger}");

    // --- A cookie does not let a foreign page act. ---
    let signin = http.post(format!("{}/api/auth/signin", edge.base_url)).bearer_auth(&alice).send().await.unwrap();
    let cookie = signin.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let cookie_post = |origin: &str, content_type: &str| {
        http.post(format!("{}/api/container/start", edge.base_url))
            .header("cookie", &cookie)
            .header("origin", origin)
            .header("content-type", content_type)
            .body(json!({"repositoryUrl": repo.url(), "prompt": "csrf"}).to_string())
            .send()
    };
    let foreign = cookie_post("https://evil.example", "application/json").await.unwrap();
    assert_eq!(foreign.status(), 403);
    let foreign: Value = foreign.json().await.unwrap();
    assert!(foreign["error"]["message"].as_str().unwrap().contains("must come from"), "{foreign}");
    assert_eq!(cookie_post(&edge.base_url, "text/plain").await.unwrap().status(), 403, "a simple content type");
    let own = cookie_post(&edge.base_url, "application/json").await.unwrap().status();
    assert!(own == 429 || own == 200, "the site's own page may start (alice's task still runs: 429), got {own}");
    let upgrade = |origin: &str| {
        let mut request = format!("{}/api/container/ws/{}", edge.ws_base(), alices["sessionId"].as_str().unwrap())
            .into_client_request()
            .unwrap();
        request.headers_mut().insert("cookie", cookie.parse().unwrap());
        request.headers_mut().insert("origin", origin.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };
    match upgrade("https://evil.example").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("a cookie upgrade from a foreign origin was not refused: {:?}", other.map(|_| ())),
    }
    upgrade(&edge.base_url).await.expect("the site's own page opens its socket by cookie");

    // --- Bad requests get the right answer; nothing is reported as the service being down. ---
    let huge = json!({"repositoryUrl": repo.url(), "prompt": "x".repeat(2 << 20)}).to_string();
    let reply = http
        .post(format!("{}/api/container/start", edge.base_url))
        .bearer_auth(&bob)
        .body(huge.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 413);
    let body: Value = reply.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("1048576"), "{body}");
    let reply = http
        .post(format!("{}/autopilot.v1.Autopilot/Start", edge.base_url))
        .bearer_auth(&bob)
        .header("content-type", "application/grpc-web+proto")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 413, "a gRPC-web body over the cap");
    // Chunked (no Content-Length): counted as it streams, refused once past the cap.
    let reply = http
        .post(format!("{}/api/container/start", edge.base_url))
        .bearer_auth(&bob)
        .body(chunked_body(256 << 10, 8))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 413, "a chunked body over the cap");
    let body: Value = reply.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("1048576"), "{body}");
    // A plain GET with a valid ticket: the caller is known, the request is no upgrade.
    let ticket_url = edge.ws_ticket_url(&bob, bobs["sessionId"].as_str().unwrap()).await;
    let plain_get = http.get(ticket_url.replacen("ws://", "http://", 1)).send().await.unwrap();
    assert_eq!(plain_get.status(), 426, "a WebSocket route without Upgrade");
    let long_id = format!(r#"{{"requestId":"{}","start":{{"prompt":42}}}}"#, "i".repeat(400_000));
    ws.send(Message::Text(long_id.into())).await.unwrap();
    let error = receive(&mut ws, Encoding::Json).await;
    assert!(
        error.request_id.len() <= 128 && matches!(error.frame, Some(Frame::Error(_))),
        "{}",
        error.request_id.len()
    );
    let spoofed: Value = http
        .post(format!("{}/api/container/ws-ticket", edge.base_url))
        .bearer_auth(&bob)
        .header("host", "evil.example")
        .json(&json!({"sessionId": bobs["sessionId"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = spoofed["websocketUrl"].as_str().unwrap_or_else(|| panic!("{spoofed}"));
    assert!(url.starts_with(&format!("{}/", edge.ws_base())), "the URL comes from PUBLIC_ORIGIN, not Host: {url}");

    // One socket's subscriptions and requests in flight are bounded.
    let mut ws = connect(&edge.ws_ticket_url(&alice, alices["sessionId"].as_str().unwrap()).await).await;
    for i in 0..8 {
        send(&mut ws, &subscribe(&format!("follow-{i}"), &alices_task, 1), Encoding::Binary).await;
    }
    let (code, message) = refused(&mut ws, subscribe("follow-8", &alices_task, 1)).await;
    assert_eq!(code, RESOURCE_EXHAUSTED, "{message}");
    let mut ws2 = connect(&edge.ws_ticket_url(&alice, alices["sessionId"].as_str().unwrap()).await).await;
    let burst = 64;
    for i in 0..burst {
        send(
            &mut ws2,
            &frame(&format!("s{i}"), ClientRequest::Status(StatusRequest { task_id: alices_task.clone() })),
            Encoding::Binary,
        )
        .await;
    }
    let (mut answered, mut bounded) = (0, 0);
    for _ in 0..burst {
        match receive(&mut ws2, Encoding::Binary).await.frame {
            Some(Frame::Status(_)) => answered += 1,
            Some(Frame::Error(e)) if e.code == RESOURCE_EXHAUSTED => bounded += 1,
            other => panic!("unexpected reply in the burst: {other:?}"),
        }
    }
    println!(
        "a burst of {burst} Status frames on one socket: {answered} answered, {bounded} refused (limit 16 in flight)"
    );
    assert_eq!(answered + bounded, burst, "every frame got exactly one reply");
    assert_eq!(
        edge.until_ended(&alice, &alices_task).await["task"]["state"],
        "TASK_STATE_SUCCEEDED",
        "bob's probes changed nothing"
    );
    drop((ws, ws2));

    // --- A restarting service is waited for, not reported down. ---
    // The service is down for a second: a Status asked meanwhile waits for it.
    let status_path = format!("/api/container/status?taskId={alices_task}");
    let _ = service.process.0.kill();
    let (restarted, (code, body)) = tokio::join!(
        async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            service.restart_after_crash(&model_api, &options).await
        },
        edge.get(&status_path, &alice)
    );
    let () = restarted;
    assert_eq!(code, 200, "Status while the service restarted: {body}");

    // --- Unused tickets and old sessions are pruned by the alarm. ---
    let storage = |user: &'static str| {
        let http = http.clone();
        let url = format!("{}/api/admin/storage?userId={user}", edge.base_url);
        async move {
            let reply = http.get(url).bearer_auth(autopilot_tests::edge::ADMIN_SECRET).send().await.unwrap();
            reply.json::<Value>().await.unwrap()
        }
    };
    for _ in 0..30 {
        edge.ws_ticket_url(&bob, bobs["sessionId"].as_str().unwrap()).await;
    }
    let piled = storage("bob").await;
    assert!(piled["tickets"].as_u64().unwrap() >= 30, "{piled}");
    let deadline = Instant::now() + Duration::from_secs(90);
    let pruned = loop {
        let now = storage("bob").await;
        if now["tickets"] == 0 && now["sessions"] == 0 {
            break now;
        }
        assert!(Instant::now() < deadline, "tickets and sessions were not pruned: {now} (after {piled})");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!("bob's storage: {piled} with 30 unused tickets, {pruned} after the alarm pruned them");
    assert_eq!(pruned["tasks"], piled["tasks"], "his tasks stay his");
}
