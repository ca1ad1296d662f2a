//! What the edge refuses, end to end against the real pair (`wrangler dev` in local mode in front
//! of the real agent-service, the real Claude Code CLI, real git): in local mode every user's
//! object reaches the one service, so one user must not reach another's tasks on any path; a
//! browser's cookie does not let a foreign page act; bad requests get the right answer (413, 426,
//! short ids, bounded sockets) and the service keeps serving; unused tickets and old sessions do
//! not pile up; a restarting service is waited for rather than reported down. One edge and one
//! service (the [`World`]) serve every step, in order (the service runs one task at a time).

use std::time::{Duration, Instant};

use autopilot_contract::v1::{
    client_frame::Request as ClientRequest, server_frame::Frame, CancelRequest, ClientFrame, GetDiffRequest,
    StatusRequest, StreamEventsRequest,
};
use autopilot_tests::{
    bridge_client::{close_politely, connect, read_subscription, receive, send, subscribe, Encoding, Socket},
    edge::{chunked_body, Edge},
    fake_model_api::FakeModelApi,
    git_fixture::GitFixture,
    grpc_web::{grpc_web_client, with_token},
    service::{Service, ServiceFixture, ServiceOptions},
};
use futures::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

/// Codes of the contract's errors as the bridge carries them.
const NOT_FOUND: i32 = 5;
const RESOURCE_EXHAUSTED: i32 = 8;

#[tokio::test]
async fn the_edge_refuses_what_it_must_and_keeps_serving() {
    let mut world = World::start().await;
    let bobs = bobs_own_task_succeeds(&world).await;
    let alices = alice_starts_a_slow_task(&world).await;

    // --- One user never reaches another's tasks (JSON routes, bridge frames, gRPC-web). ---
    bob_reaches_none_of_alices_tasks_by_the_json_routes(&world, &bobs, &alices).await;
    let mut bobs_socket = bob_reaches_none_of_alices_tasks_over_the_bridge(&world, &bobs, &alices).await;
    a_politely_closed_socket_gets_the_edges_close_at_once(&world, &bobs).await;
    bob_reaches_none_of_alices_tasks_over_grpc_web(&world, &alices).await;
    a_start_refused_for_another_users_task_names_none_and_costs_nothing(&world, &alices).await;

    // --- A cookie does not let a foreign page act. ---
    a_cookie_does_not_let_a_foreign_page_act(&world, &alices).await;

    // --- Bad requests get the right answer; nothing is reported as the service being down. ---
    bodies_over_the_cap_are_refused_413(&world).await;
    a_websocket_route_without_upgrade_answers_426(&world, &bobs).await;
    a_long_request_id_is_echoed_short(&mut bobs_socket).await;
    the_websocket_url_comes_from_public_origin_not_host(&world, &bobs).await;
    let subscribed = one_socket_holds_at_most_eight_subscriptions(&world, &alices).await;
    let bursting = a_burst_of_requests_on_one_socket_gets_one_reply_each(&world, &alices).await;
    alices_task_succeeds_untouched_by_bobs_probes(&world, &alices).await;
    drop((subscribed, bursting));

    // --- A restarting service is waited for, not reported down. ---
    a_status_asked_while_the_service_restarts_waits_for_it(&mut world, &alices).await;

    // --- Unused tickets and old sessions are pruned by the alarm. ---
    unused_tickets_and_old_sessions_are_pruned_by_the_alarm(&world, &bobs).await;
}

/// The edge (tickets live 3 s, sessions 40 s) in front of a service that runs one task at a time,
/// so that one user's running task refuses another's Start; three users with credits.
struct World {
    // Fields drop in this order: the edge stops before the service it fronts.
    edge: Edge,
    http: reqwest::Client,
    alice: String,
    bob: String,
    carol: String,
    service: Service,
    options: ServiceOptions,
    repo: GitFixture,
    model_api: FakeModelApi,
}

impl World {
    async fn start() -> World {
        let options =
            ServiceOptions { extra_args: vec!["--max-tasks".into(), "1".into()], ..ServiceOptions::default() };
        let ServiceFixture { model_api, repo, service } = ServiceFixture::start_with(options.clone()).await;
        let edge = Edge::start_with_vars(
            &format!("http://{}", service.addr),
            &[("PUBLIC_ORIGIN", "{edge}"), ("TICKET_TTL_SECONDS", "3"), ("SESSION_RETENTION_SECONDS", "40")],
        )
        .await;
        let http = reqwest::Client::new();
        let alice = edge.user("alice", 100_000).await;
        let bob = edge.user("bob", 100_000).await;
        let carol = edge.user("carol", 100_000).await;
        World { edge, http, alice, bob, carol, service, options, repo, model_api }
    }
}

/// A task a step started: its id and its session.
struct Task {
    id: String,
    session: String,
}

/// Starts a task through the JSON route.
async fn start(edge: &Edge, token: &str, repo: &GitFixture, prompt: &str) -> Task {
    let reply =
        edge.post_json("/api/container/start", token, json!({"repositoryUrl": repo.url(), "prompt": prompt})).await;
    assert!(reply["taskId"].is_string(), "Start failed: {reply}");
    Task {
        id: reply["taskId"].as_str().unwrap().to_string(),
        session: reply["sessionId"].as_str().unwrap().to_string(),
    }
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

/// Bob's own task, so that he has a session and a latest task of his own.
async fn bobs_own_task_succeeds(world: &World) -> Task {
    let World { edge, bob, repo, .. } = world;
    let bobs = start(edge, bob, repo, "Say hello").await;
    assert_eq!(edge.until_ended(bob, &bobs.id).await["task"]["state"], "TASK_STATE_SUCCEEDED");
    bobs
}

/// Alice's task runs (12 slow tool calls) while bob tries to reach it.
async fn alice_starts_a_slow_task(world: &World) -> Task {
    start(&world.edge, &world.alice, &world.repo, "Work slowly SCENARIO:slow-tools:12").await
}

/// Alice's task and a task that never was are alike to bob (404); an empty id is his own latest,
/// and carol, who has none, gets 404.
async fn bob_reaches_none_of_alices_tasks_by_the_json_routes(world: &World, bobs: &Task, alices: &Task) {
    let World { edge, bob, carol, .. } = world;
    let never = "7d3c0c1e-0000-4000-8000-000000000000";
    for id in [alices.id.as_str(), never] {
        let (code, body) = edge.get(&format!("/api/container/status?taskId={id}"), bob).await;
        assert_eq!((code, body["error"]["message"].as_str().unwrap()), (404, format!("no task with id {id}").as_str()));
    }
    let (code, latest) = edge.get("/api/container/status", bob).await;
    assert_eq!(
        (code, latest["task"]["taskId"].as_str()),
        (200, Some(bobs.id.as_str())),
        "an empty id is bob's own latest"
    );
    let (code, none) = edge.get("/api/container/status", carol).await;
    assert_eq!(code, 404, "carol has no task: {none}");
}

/// On bob's own socket, his frames naming alice's task are refused as not found, and an empty id
/// follows his own task. Answers his socket, which stays open for a later step.
async fn bob_reaches_none_of_alices_tasks_over_the_bridge(world: &World, bobs: &Task, alices: &Task) -> Socket {
    let World { edge, bob, .. } = world;
    let alices_task = &alices.id;
    let mut ws = connect(&edge.ws_ticket_url(bob, &bobs.session).await).await;
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
    assert!(ended && events.iter().all(|e| e.task_id == bobs.id), "an empty id follows bob's own task");
    ws
}

/// A client that closes politely gets the edge's Close at once, with its own code (1000).
async fn a_politely_closed_socket_gets_the_edges_close_at_once(world: &World, bobs: &Task) {
    let polite = connect(&world.edge.ws_ticket_url(&world.bob, &bobs.session).await).await;
    let took = close_politely(polite).await;
    assert!(took < Duration::from_secs(2), "the bridge answered a Close after {took:?}");
}

/// Status, GetDiff, Cancel and StreamEvents of alice's task, by bob over gRPC-web: not found.
async fn bob_reaches_none_of_alices_tasks_over_grpc_web(world: &World, alices: &Task) {
    let World { edge, bob, .. } = world;
    let alices_task = &alices.id;
    let mut web = grpc_web_client(format!("127.0.0.1:{}", edge.port).parse().unwrap());
    let theirs = || alices_task.clone();
    let status = web.status(with_token(bob, StatusRequest { task_id: theirs() })).await.unwrap_err();
    let diff = web.get_diff(with_token(bob, GetDiffRequest { task_id: theirs() })).await.unwrap_err();
    let cancel =
        web.cancel(with_token(bob, CancelRequest { task_id: theirs(), reason: String::new() })).await.unwrap_err();
    let stream = match web.stream_events(with_token(bob, StreamEventsRequest { task_id: theirs(), from_seq: 1 })).await
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
}

/// A Start refused because alice's task fills the service names no task, says the service is
/// busy with other users' tasks (carol has none to wait for or cancel), costs nothing and
/// leaves carol no open run.
async fn a_start_refused_for_another_users_task_names_none_and_costs_nothing(world: &World, alices: &Task) {
    let World { edge, http, carol, repo, .. } = world;
    let reply = http
        .post(format!("{}/api/container/start", edge.base_url))
        .bearer_auth(carol)
        .json(&json!({"repositoryUrl": repo.url(), "prompt": "mine"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 429);
    let body: Value = reply.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(!message.contains(&alices.id) && message.contains("busy with other users' tasks"), "{message}");
    let (_, balance) = edge.get("/api/billing/balance", carol).await;
    assert!(balance["containerRunningSinceMs"].is_null(), "a refused Start left a run open: {balance}");
    let (_, ledger) = edge.get("/api/billing/ledger", carol).await;
    let debits: Vec<&Value> =
        ledger["entries"].as_array().unwrap().iter().filter(|e| e["credits"].as_i64() < Some(0)).collect();
    assert!(debits.is_empty(), "a refused Start was charged: {ledger}");
}

/// With alice's session cookie, a foreign origin's Start (or a simple content type) and socket
/// upgrade are refused 403; the site's own page may act.
async fn a_cookie_does_not_let_a_foreign_page_act(world: &World, alices: &Task) {
    let World { edge, http, alice, repo, .. } = world;
    let signin = http.post(format!("{}/api/auth/signin", edge.base_url)).bearer_auth(alice).send().await.unwrap();
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
        let mut request =
            format!("{}/api/container/ws/{}", edge.ws_base(), alices.session).into_client_request().unwrap();
        request.headers_mut().insert("cookie", cookie.parse().unwrap());
        request.headers_mut().insert("origin", origin.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };
    match upgrade("https://evil.example").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("a cookie upgrade from a foreign origin was not refused: {:?}", other.map(|_| ())),
    }
    upgrade(&edge.base_url).await.expect("the site's own page opens its socket by cookie");
}

/// JSON and gRPC-web bodies over the 1 MiB cap, with a Content-Length or chunked, get 413.
async fn bodies_over_the_cap_are_refused_413(world: &World) {
    let World { edge, http, bob, repo, .. } = world;
    let huge = json!({"repositoryUrl": repo.url(), "prompt": "x".repeat(2 << 20)}).to_string();
    let reply = http
        .post(format!("{}/api/container/start", edge.base_url))
        .bearer_auth(bob)
        .body(huge.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 413);
    let body: Value = reply.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("1048576"), "{body}");
    let reply = http
        .post(format!("{}/autopilot.v1.Autopilot/Start", edge.base_url))
        .bearer_auth(bob)
        .header("content-type", "application/grpc-web+proto")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 413, "a gRPC-web body over the cap");
    // Chunked (no Content-Length): counted as it streams, refused once past the cap.
    let reply = http
        .post(format!("{}/api/container/start", edge.base_url))
        .bearer_auth(bob)
        .body(chunked_body(256 << 10, 8))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 413, "a chunked body over the cap");
    let body: Value = reply.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("1048576"), "{body}");
}

/// A plain GET with a valid ticket: the caller is known, the request is no upgrade.
async fn a_websocket_route_without_upgrade_answers_426(world: &World, bobs: &Task) {
    let ticket_url = world.edge.ws_ticket_url(&world.bob, &bobs.session).await;
    let plain_get = world.http.get(ticket_url.replacen("ws://", "http://", 1)).send().await.unwrap();
    assert_eq!(plain_get.status(), 426, "a WebSocket route without Upgrade");
}

/// A bad frame with a 400,000-character request id is answered by an error frame whose id is
/// cut to at most 128 characters.
async fn a_long_request_id_is_echoed_short(ws: &mut Socket) {
    let long_id = format!(r#"{{"requestId":"{}","start":{{"prompt":42}}}}"#, "i".repeat(400_000));
    ws.send(Message::Text(long_id.into())).await.unwrap();
    let error = receive(ws, Encoding::Json).await;
    assert!(
        error.request_id.len() <= 128 && matches!(error.frame, Some(Frame::Error(_))),
        "{}",
        error.request_id.len()
    );
}

/// A ticket asked for with a spoofed Host gets a WebSocket URL on the edge's own origin.
async fn the_websocket_url_comes_from_public_origin_not_host(world: &World, bobs: &Task) {
    let World { edge, http, bob, .. } = world;
    let spoofed: Value = http
        .post(format!("{}/api/container/ws-ticket", edge.base_url))
        .bearer_auth(bob)
        .header("host", "evil.example")
        .json(&json!({"sessionId": bobs.session}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = spoofed["websocketUrl"].as_str().unwrap_or_else(|| panic!("{spoofed}"));
    assert!(url.starts_with(&format!("{}/", edge.ws_base())), "the URL comes from PUBLIC_ORIGIN, not Host: {url}");
}

/// One socket's subscriptions are bounded: a ninth is refused RESOURCE_EXHAUSTED. Answers the
/// socket, its eight subscriptions still open.
async fn one_socket_holds_at_most_eight_subscriptions(world: &World, alices: &Task) -> Socket {
    let alices_task = &alices.id;
    let mut ws = connect(&world.edge.ws_ticket_url(&world.alice, &alices.session).await).await;
    for i in 0..8 {
        send(&mut ws, &subscribe(&format!("follow-{i}"), alices_task, 1), Encoding::Binary).await;
    }
    let (code, message) = refused(&mut ws, subscribe("follow-8", alices_task, 1)).await;
    assert_eq!(code, RESOURCE_EXHAUSTED, "{message}");
    ws
}

/// One socket's requests in flight are bounded: a burst of 64 Status frames is answered or
/// refused RESOURCE_EXHAUSTED, one reply each. Answers the socket.
async fn a_burst_of_requests_on_one_socket_gets_one_reply_each(world: &World, alices: &Task) -> Socket {
    let mut ws2 = connect(&world.edge.ws_ticket_url(&world.alice, &alices.session).await).await;
    let burst = 64;
    for i in 0..burst {
        send(
            &mut ws2,
            &frame(&format!("s{i}"), ClientRequest::Status(StatusRequest { task_id: alices.id.clone() })),
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
    ws2
}

async fn alices_task_succeeds_untouched_by_bobs_probes(world: &World, alices: &Task) {
    assert_eq!(
        world.edge.until_ended(&world.alice, &alices.id).await["task"]["state"],
        "TASK_STATE_SUCCEEDED",
        "bob's probes changed nothing"
    );
}

/// The service is down for a second: a Status asked meanwhile waits for it.
async fn a_status_asked_while_the_service_restarts_waits_for_it(world: &mut World, alices: &Task) {
    let World { edge, alice, service, options, model_api, .. } = world;
    let status_path = format!("/api/container/status?taskId={}", alices.id);
    let _ = service.process.0.kill();
    let (restarted, (code, body)) = tokio::join!(
        async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            service.restart_after_crash(model_api, options).await
        },
        edge.get(&status_path, alice)
    );
    let () = restarted;
    assert_eq!(code, 200, "Status while the service restarted: {body}");
}

/// Thirty unused tickets of bob's pile up in his object's storage; the alarm prunes them and his
/// old session, and keeps his tasks.
async fn unused_tickets_and_old_sessions_are_pruned_by_the_alarm(world: &World, bobs: &Task) {
    let World { edge, http, bob, .. } = world;
    let storage = |user: &'static str| {
        let http = http.clone();
        let url = format!("{}/api/admin/storage?userId={user}", edge.base_url);
        async move {
            let reply = http.get(url).bearer_auth(autopilot_tests::edge::ADMIN_SECRET).send().await.unwrap();
            reply.json::<Value>().await.unwrap()
        }
    };
    for _ in 0..30 {
        edge.ws_ticket_url(bob, &bobs.session).await;
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
