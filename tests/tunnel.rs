//! End-to-end test of tunnel mode: the real `agent-service connect` (the same task machinery,
//! the real Claude Code CLI, real git) connects out to the real edge (`wrangler dev`), and a
//! WebSocket client acting as the browser drives it through the edge. The machine's link runs
//! through a proxy the test can cut, to play a network that drops mid-task. Container mode runs
//! in the same edge, in the same test: one [`World`] serves every step, in order.

use std::time::{Duration, Instant};

use autopilot_contract::v1::{
    client_frame::Request as ClientRequest, server_frame::Frame, ClientFrame, Event, ServerFrame, ServerFrameBatch,
    StatusRequest, TaskState,
};
use autopilot_tests::{
    bridge_client::{close_politely, connect, read_subscription, receive, send, subscribe, Encoding, Socket},
    edge::Edge,
    events::{finished, kind, seqs, setup_lines},
    fake_model_api::FakeModelApi,
    git_fixture::GitFixture,
    local_pair::LocalPair,
    service::Service,
    tcp_proxy::TcpProxy,
    tunnel_machine::Machine,
};
use futures::{SinkExt, StreamExt};
use prost::Message as _;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, Message};

#[tokio::test]
async fn tunnel_mode_runs_tasks_on_the_users_machine_through_the_edge() {
    let world = World::start().await;
    without_a_machine_a_tunnel_start_is_refused_with_what_to_do(&world).await;
    without_a_token_the_tunnel_cannot_be_opened(&world).await;
    let (link, mut machine) = alices_machine_connects_out_through_a_link_the_test_can_cut(&world).await;
    bob_neither_sees_nor_drives_alices_machine(&world).await;
    let task = alice_starts_a_tunnel_task_with_no_credits(&world).await;
    bob_gets_no_ticket_for_alices_session_in_either_mode(&world, &task).await;
    let (mut browser, events) = a_malformed_browser_frame_gets_an_error_and_the_relay_goes_on(&task).await;
    let events =
        a_dropped_link_tells_the_browser_and_the_task_runs_on(&world, &link, &mut browser, &task, events).await;
    let events =
        a_restored_link_resumes_the_stream_gaplessly(&world, &link, &machine, &mut browser, &task, events).await;
    a_json_client_on_the_same_relay_gets_the_same_answers(&world, &task).await;
    tunnel_mode_never_touches_credits(&world).await;
    the_link_stayed_up_through_the_task_with_one_reconnect_only(&machine);
    a_garbage_sending_machine_replaces_the_first_and_the_relay_goes_on(&world, &mut machine).await;
    the_archive_answers_for_the_ended_task_with_no_machine(&world, &task, &events).await;
    let (last_machine, cancelled, _its_browser) = a_machine_sigtermed_mid_task_still_delivers_the_end(&world).await;
    the_archived_task_list_pages_newest_first(&world, &cancelled).await;
    let _losts_browser = a_machine_back_without_its_disk_has_its_task_archived_as_lost(&world).await;
    let _containers_browser = container_mode_still_works_in_the_same_edge(&world).await;
    alices_environment_at_the_edge_runs_on_her_machine(&world).await;
    the_token_never_shows_in_the_machines_logs(&world, [&machine, &last_machine]);
}

/// The fake model API, a repository, the container mode's agent-service (local mode: the edge
/// reaches it at AGENT_SERVICE_URL), the edge in front of it, and two users with no credits.
struct World {
    // Fields drop in this order: the edge stops before the service it fronts.
    edge: Edge,
    alice: String,
    bob: String,
    _service: Service,
    repo: GitFixture,
    model_api: FakeModelApi,
}

impl World {
    async fn start() -> World {
        let LocalPair { edge, service, repo, model_api } = LocalPair::start(&[]).await;
        let alice = edge.user("alice", 0).await;
        let bob = edge.user("bob", 0).await;
        World { edge, alice, bob, _service: service, repo, model_api }
    }

    /// The body of a Start on the repository with `prompt`.
    fn start_body(&self, prompt: &str) -> Value {
        json!({"repositoryUrl": self.repo.url(), "prompt": prompt})
    }
}

/// The tunnel task alice started: its id and session, and the WebSocket URL it came with.
struct Task {
    id: String,
    session: String,
    url: String,
}

async fn get_json(edge: &Edge, path: &str, token: &str) -> Value {
    let reply = reqwest::Client::new().get(format!("{}{path}", edge.base_url)).bearer_auth(token).send().await.unwrap();
    reply.json().await.unwrap()
}

async fn connected(edge: &Edge, token: &str) -> bool {
    let status = get_json(edge, "/api/tunnel/status", token).await;
    status["connected"].as_bool().unwrap_or_else(|| panic!("no `connected` in {status}"))
}

async fn wait_until_connected(edge: &Edge, token: &str, want: bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while connected(edge, token).await != want {
        assert!(Instant::now() < deadline, "tunnel status never said connected={want}:\n{}", edge.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads a subscription until the relay ends it with an error; answers the events and the error.
async fn read_until_error(ws: &mut Socket, request_id: &str) -> (Vec<Event>, i32, String) {
    let mut events = Vec::new();
    loop {
        let frame = receive(ws, Encoding::Binary).await;
        assert_eq!(frame.request_id, request_id);
        match frame.frame {
            Some(Frame::Event(event)) => events.push(event),
            Some(Frame::Error(e)) => return (events, e.code, e.message),
            other => panic!("expected events then an error, got {other:?}"),
        }
    }
}

/// A raw WebSocket to the tunnel endpoint with `token`, as a machine would open it.
async fn raw_machine(edge: &Edge, token: &str) -> Result<Socket, tungstenite::Error> {
    let mut request = format!("{}/api/tunnel/connect", edge.ws_base()).into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(request).await.map(|(socket, _)| socket)
}

/// A Status frame for `task_id`.
fn status_frame(request_id: &str, task_id: &str) -> ClientFrame {
    ClientFrame {
        request_id: request_id.into(),
        request: Some(ClientRequest::Status(StatusRequest { task_id: task_id.into() })),
    }
}

/// No machine yet: status says so, and a tunnel Start is refused with what to do.
async fn without_a_machine_a_tunnel_start_is_refused_with_what_to_do(world: &World) {
    let World { edge, alice, .. } = world;
    assert!(!connected(edge, alice).await);
    let refused = edge.post_json("/api/tunnel/start", alice, world.start_body("SCENARIO:answer")).await;
    assert_eq!(refused["error"]["code"], "UNAVAILABLE", "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("agent-service connect"), "{refused}");
}

async fn without_a_token_the_tunnel_cannot_be_opened(world: &World) {
    assert!(
        matches!(raw_machine(&world.edge, "ap_not_a_token").await, Err(tungstenite::Error::Http(r)) if r.status() == 401)
    );
}

/// Alice's machine connects out, through a link the test can cut. Answers the link and the machine.
async fn alices_machine_connects_out_through_a_link_the_test_can_cut(world: &World) -> (TcpProxy, Machine) {
    let World { edge, alice, model_api, .. } = world;
    let edge_addr = format!("127.0.0.1:{}", edge.port).parse().unwrap();
    let link = TcpProxy::start(edge_addr).await;
    let machine = Machine::connect(model_api, &format!("http://{}", link.addr), alice);
    machine.wait_for_connections(1, Duration::from_secs(30)).await;
    wait_until_connected(edge, alice, true).await;
    (link, machine)
}

async fn bob_neither_sees_nor_drives_alices_machine(world: &World) {
    let World { edge, bob, .. } = world;
    assert!(!connected(edge, bob).await, "bob does not see alice's machine");
    let refused = edge.post_json("/api/tunnel/start", bob, world.start_body("SCENARIO:answer")).await;
    assert_eq!(refused["error"]["code"], "UNAVAILABLE", "bob cannot drive alice's machine: {refused}");
}

/// Alice starts a task in tunnel mode (ten slow tool calls) with no credits at all.
async fn alice_starts_a_tunnel_task_with_no_credits(world: &World) -> Task {
    let World { edge, alice, .. } = world;
    let started = edge.post_json("/api/tunnel/start", alice, world.start_body("SCENARIO:slow-tools:10 count")).await;
    let task_id = started["taskId"].as_str().unwrap_or_else(|| panic!("no taskId in {started}")).to_string();
    let session = started["sessionId"].as_str().unwrap().to_string();
    let url = started["websocketUrl"].as_str().unwrap();
    assert!(url.contains("/api/tunnel/ws/"), "{url}");
    Task { id: task_id, session, url: url.to_string() }
}

async fn bob_gets_no_ticket_for_alices_session_in_either_mode(world: &World, task: &Task) {
    for path in ["/api/tunnel/ws-ticket", "/api/container/ws-ticket"] {
        let reply = world.edge.post_json(path, &world.bob, json!({"sessionId": task.session})).await;
        assert_eq!(reply["error"]["code"], "NOT_FOUND", "{path}: {reply}");
    }
}

/// The browser follows the task over the URL Start gave; a malformed frame from it gets an error
/// and the relay goes on. Answers the browser's socket and the events so far.
async fn a_malformed_browser_frame_gets_an_error_and_the_relay_goes_on(task: &Task) -> (Socket, Vec<Event>) {
    let mut ws = connect(&task.url).await;
    send(&mut ws, &subscribe("events-1", &task.id, 1), Encoding::Binary).await;
    let (mut events, ended) = read_subscription(&mut ws, "events-1", Encoding::Binary, Some(4)).await;
    assert!(!ended);
    ws.send(Message::Binary(vec![0xff, 0x00, 0x13].into())).await.unwrap();
    loop {
        let frame = receive(&mut ws, Encoding::Binary).await;
        match frame.frame {
            Some(Frame::Event(event)) => events.push(event),
            Some(Frame::Error(e)) => {
                assert_eq!((frame.request_id.as_str(), e.code), ("", tonic::Code::InvalidArgument as i32));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    (ws, events)
}

/// The link drops mid-task: the browser's subscription is told, the edge knows the machine is
/// gone (a Status is refused UNAVAILABLE), and the task keeps running on the machine. Answers
/// `events` with those that came before the drop.
async fn a_dropped_link_tells_the_browser_and_the_task_runs_on(
    world: &World,
    link: &TcpProxy,
    ws: &mut Socket,
    task: &Task,
    mut events: Vec<Event>,
) -> Vec<Event> {
    link.cut();
    let (more, code, message) = read_until_error(ws, "events-1").await;
    events.extend(more);
    assert_eq!(code, tonic::Code::Unavailable as i32, "{message}");
    assert!(message.contains("disconnected"), "{message}");
    wait_until_connected(&world.edge, &world.alice, false).await;
    send(ws, &status_frame("status-offline", &task.id), Encoding::Binary).await;
    let offline = receive(ws, Encoding::Binary).await;
    assert!(
        matches!(&offline.frame, Some(Frame::Error(e)) if e.code == tonic::Code::Unavailable as i32),
        "{offline:?}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    events
}

/// The link comes back; the machine reconnects by itself and the browser resubscribes from its
/// last seq: nothing is missing and nothing repeats. Answers the task's whole stream.
async fn a_restored_link_resumes_the_stream_gaplessly(
    world: &World,
    link: &TcpProxy,
    machine: &Machine,
    ws: &mut Socket,
    task: &Task,
    mut events: Vec<Event>,
) -> Vec<Event> {
    let last_seen = events.last().unwrap().seq;
    link.restore();
    machine.wait_for_connections(2, Duration::from_secs(60)).await;
    wait_until_connected(&world.edge, &world.alice, true).await;
    send(ws, &subscribe("events-2", &task.id, last_seen + 1), Encoding::Binary).await;
    let (rest, ended) = read_subscription(ws, "events-2", Encoding::Binary, None).await;
    assert!(ended);
    assert!(rest[0].seq == last_seen + 1, "resumed at {} after {last_seen}", rest[0].seq);
    events.extend(rest);
    let expected: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(seqs(&events), expected, "one gapless, duplicate-free stream across the drop");
    assert!(kind(events.last().unwrap()).starts_with("task_finished"));
    assert_eq!(finished(&events).state, TaskState::Succeeded as i32, "{:?}", finished(&events));
    assert_eq!(events.iter().filter(|e| kind(e) == "tool_finished").count(), 10);
    events
}

/// A JSON client on the same relay gets the same answers, in JSON, and its Close answered at once.
async fn a_json_client_on_the_same_relay_gets_the_same_answers(world: &World, task: &Task) {
    let ticket_url = world.edge.ws_ticket_url_for("/api/tunnel/ws-ticket", &world.alice, &task.session).await;
    let mut json_ws = connect(&ticket_url).await;
    send(&mut json_ws, &status_frame("s1", &task.id), Encoding::Json).await;
    let reply = receive(&mut json_ws, Encoding::Json).await;
    let Some(Frame::Status(status)) = reply.frame else { panic!("expected a status, got {reply:?}") };
    assert_eq!(status.task.unwrap().state, TaskState::Succeeded as i32);
    let took = close_politely(json_ws).await;
    assert!(took < Duration::from_secs(2), "the browser socket's Close was answered after {took:?}");
}

/// The environments are the user's, whichever mode: one saved at the edge applies to a tunnel
/// task on its repository, whose setup runs on the machine before the agent.
async fn alices_environment_at_the_edge_runs_on_her_machine(world: &World) {
    let World { edge, alice, model_api, .. } = world;
    let machine = Machine::connect(model_api, &edge.base_url, alice);
    machine.wait_for_connections(1, Duration::from_secs(30)).await;
    wait_until_connected(edge, alice, true).await;
    let environment = json!({"repositories": [world.repo.url()], "setupScript": "echo set up on $(hostname -s)"});
    let (status, saved) = edge.call(reqwest::Method::PUT, "/api/environments/laptop", alice, Some(environment)).await;
    assert_eq!(status, 200, "{saved}");
    let started = edge.post_json("/api/tunnel/start", alice, world.start_body("SCENARIO:answer")).await;
    let task_id = started["taskId"].as_str().unwrap_or_else(|| panic!("no taskId in {started}"));
    let mut ws = connect(started["websocketUrl"].as_str().unwrap()).await;
    send(&mut ws, &subscribe("env", task_id, 1), Encoding::Binary).await;
    let (events, ended) = read_subscription(&mut ws, "env", Encoding::Binary, None).await;
    assert!(ended, "the task ended");
    let kinds: Vec<String> = events.iter().map(kind).collect();
    assert!(
        kinds.iter().any(|k| k == "setup_started") && kinds.last().unwrap() == "task_finished:SUCCEEDED",
        "{kinds:?}"
    );
    let said = setup_lines(&events);
    assert!(said.len() == 1 && said[0].starts_with("set up on "), "{said:?}");
    let (status, _) = edge.call(reqwest::Method::DELETE, "/api/environments/laptop", alice, None).await;
    assert_eq!(status, 200);
}

async fn tunnel_mode_never_touches_credits(world: &World) {
    let balance = get_json(&world.edge, "/api/billing/balance", &world.alice).await;
    assert_eq!(balance["balance"], 0, "{balance}");
    let ledger = get_json(&world.edge, "/api/billing/ledger", &world.alice).await;
    assert_eq!(ledger["entries"].as_array().unwrap().len(), 0, "{ledger}");
}

/// The link stayed up through the task (pings every second were answered): one reconnect only.
fn the_link_stayed_up_through_the_task_with_one_reconnect_only(machine: &Machine) {
    assert_eq!(machine.connections(), 2, "{}", machine.logs().join("\n"));
}

/// A machine that sends garbage gets an error and the relay goes on; it then replaces the first
/// machine, which is told why and stops reconnecting. A machine that closes politely gets the
/// relay's Close at once (not after its timeout).
async fn a_garbage_sending_machine_replaces_the_first_and_the_relay_goes_on(world: &World, machine: &mut Machine) {
    let World { edge, alice, .. } = world;
    let mut intruder = raw_machine(edge, alice).await.expect("a second machine of alice's connects");
    let exit = machine.process.wait(Duration::from_secs(20)).await.expect("the replaced machine exits");
    assert!(!exit.success());
    assert!(machine.logs().iter().any(|l| l.contains("replaced")), "{}", machine.logs().join("\n"));
    intruder.send(Message::Binary(vec![0xff, 0x00, 0x13].into())).await.unwrap();
    let stray = ServerFrameBatch { frames: vec![ServerFrame { request_id: "not-routed".into(), frame: None }] };
    intruder.send(Message::Binary(stray.encode_to_vec().into())).await.unwrap();
    for expected in ["could not read", "not issued by this relay"] {
        let Some(Ok(Message::Binary(bytes))) = intruder.next().await else { panic!("expected a binary frame") };
        let frame = ClientFrame::decode(bytes.as_ref()).unwrap();
        let Some(ClientRequest::Error(e)) = frame.request else { panic!("expected an error, got {frame:?}") };
        assert!(e.message.contains(expected), "{}", e.message);
    }
    assert!(connected(edge, alice).await);
    let took = close_politely(intruder).await;
    assert!(took < Duration::from_secs(2), "the machine socket's Close was answered after {took:?}");
    wait_until_connected(edge, alice, false).await;
}

/// No machine now, yet the edge answers for the ended task from its archive: the task list,
/// its status, and its whole timeline, the same `events` that streamed live. Any device of
/// alice's opens it by its id (a new session), none of bob's.
async fn the_archive_answers_for_the_ended_task_with_no_machine(world: &World, task: &Task, events: &[Event]) {
    let World { edge, alice, bob, .. } = world;
    let task_id = &task.id;
    let listed = get_json(edge, "/api/tunnel/tasks", alice).await;
    let tasks = listed["tasks"].as_array().unwrap_or_else(|| panic!("no tasks in {listed}"));
    assert_eq!(tasks.len(), 1, "{listed}");
    assert_eq!(tasks[0]["taskId"], task_id.as_str());
    assert_eq!(tasks[0]["state"], "TASK_STATE_SUCCEEDED", "{listed}");
    assert_eq!(tasks[0]["title"], "SCENARIO:slow-tools:10 count");
    let others = get_json(edge, "/api/tunnel/tasks", bob).await;
    assert_eq!(others["tasks"].as_array().map_or(0, Vec::len), 0, "bob sees none of alice's: {others}");
    let hostile = get_json(edge, "/api/tunnel/tasks?pageToken=bm90LW91cnM", alice).await;
    assert_eq!(hostile["error"]["code"], "INVALID_ARGUMENT", "{hostile}");
    let by_id = edge.post_json("/api/tunnel/ws-ticket", alice, json!({"taskId": task_id})).await;
    let by_id_url = by_id["websocketUrl"].as_str().unwrap_or_else(|| panic!("{by_id}"));
    let refused = edge.post_json("/api/tunnel/ws-ticket", bob, json!({"taskId": task_id})).await;
    assert_eq!(refused["error"]["code"], "NOT_FOUND", "{refused}");
    let unbounded = edge.post_json("/api/tunnel/ws-ticket", alice, json!({"taskId": "a".repeat(10_000)})).await;
    assert_eq!(unbounded["error"]["code"], "NOT_FOUND", "{unbounded}");
    assert!(unbounded.to_string().len() < 200, "an unknown id is echoed short: {} bytes", unbounded.to_string().len());
    let mut offline = connect(by_id_url).await;
    send(&mut offline, &subscribe("replay", task_id, 1), Encoding::Binary).await;
    let (replayed, ended) = read_subscription(&mut offline, "replay", Encoding::Binary, None).await;
    assert!(ended, "an archived timeline ends");
    assert_eq!(replayed, events, "the archive replays exactly what streamed live");
    send(&mut offline, &status_frame("s2", task_id), Encoding::Binary).await;
    let reply = receive(&mut offline, Encoding::Binary).await;
    let Some(Frame::Status(status)) = reply.frame else { panic!("expected a status, got {reply:?}") };
    assert_eq!(status.task.unwrap().state, TaskState::Succeeded as i32);
    let took = close_politely(offline).await;
    assert!(took < Duration::from_secs(2), "a socket's Close is answered with no machine too, after {took:?}");
}

/// SIGTERM on a new machine mid-task: the task is stopped and its final event still reaches the
/// browser before the machine goes. Answers the machine, the cancelled task's id and the
/// browser's socket.
async fn a_machine_sigtermed_mid_task_still_delivers_the_end(world: &World) -> (Machine, String, Socket) {
    let World { edge, alice, model_api, .. } = world;
    let mut last_machine = Machine::connect(model_api, &edge.base_url, alice);
    last_machine.wait_for_connections(1, Duration::from_secs(30)).await;
    wait_until_connected(edge, alice, true).await;
    let started = edge.post_json("/api/tunnel/start", alice, world.start_body("SCENARIO:slow-tools:40 count")).await;
    let task_id = started["taskId"].as_str().unwrap_or_else(|| panic!("no taskId in {started}")).to_string();
    let mut ws = connect(started["websocketUrl"].as_str().unwrap()).await;
    send(&mut ws, &subscribe("last", &task_id, 1), Encoding::Binary).await;
    let (mut events, _) = read_subscription(&mut ws, "last", Encoding::Binary, Some(8)).await;
    last_machine.process.terminate();
    loop {
        let frame = receive(&mut ws, Encoding::Binary).await;
        match frame.frame {
            Some(Frame::Event(event)) => events.push(event),
            Some(Frame::EndOfStream(_)) | Some(Frame::Error(_)) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(finished(&events).state, TaskState::Cancelled as i32, "{:?}", finished(&events));
    let exit = last_machine.process.wait(Duration::from_secs(20)).await.expect("the machine exits on SIGTERM");
    assert!(exit.success(), "{exit:?}");
    (last_machine, task_id, ws)
}

/// The task the machine ended on its way out is archived as CANCELLED; the list pages, newest
/// first, to the task that succeeded.
async fn the_archived_task_list_pages_newest_first(world: &World, task_id: &str) {
    let World { edge, alice, .. } = world;
    let first = get_json(edge, "/api/tunnel/tasks?pageSize=1", alice).await;
    assert_eq!(first["tasks"][0]["taskId"], task_id, "newest first: {first}");
    assert_eq!(first["tasks"][0]["state"], "TASK_STATE_CANCELLED", "{first}");
    let token = first["nextPageToken"].as_str().unwrap_or_default();
    assert!(!token.is_empty(), "{first}");
    let second = get_json(edge, &format!("/api/tunnel/tasks?pageSize=1&pageToken={token}"), alice).await;
    assert_eq!(second["tasks"][0]["state"], "TASK_STATE_SUCCEEDED", "{second}");
    assert_eq!(second["nextPageToken"].as_str().unwrap_or_default(), "", "{second}");
}

/// A machine killed mid-task comes back without its work directory (a new disk): it no longer
/// knows the task, which the relay then archives as lost instead of running forever. Answers the
/// socket that read the lost task's timeline.
async fn a_machine_back_without_its_disk_has_its_task_archived_as_lost(world: &World) -> Socket {
    let World { edge, alice, model_api, .. } = world;
    let doomed = Machine::connect(model_api, &edge.base_url, alice);
    doomed.wait_for_connections(1, Duration::from_secs(30)).await;
    wait_until_connected(edge, alice, true).await;
    let started = edge.post_json("/api/tunnel/start", alice, world.start_body("SCENARIO:slow-tools:40 lost")).await;
    let lost = started["taskId"].as_str().unwrap_or_else(|| panic!("no taskId in {started}")).to_string();
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(doomed);
    wait_until_connected(edge, alice, false).await;
    let fresh = Machine::connect(model_api, &edge.base_url, alice);
    fresh.wait_for_connections(1, Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = get_json(edge, "/api/tunnel/tasks?pageSize=1", alice).await;
        assert_eq!(listed["tasks"][0]["taskId"], lost.as_str(), "{listed}");
        if listed["tasks"][0]["state"] == "TASK_STATE_FAILED" {
            break;
        }
        assert!(Instant::now() < deadline, "the lost task never ended: {listed}\n{}", edge.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut ws =
        connect(&edge.ws_ticket_url_for("/api/tunnel/ws-ticket", alice, started["sessionId"].as_str().unwrap()).await)
            .await;
    send(&mut ws, &subscribe("lost", &lost, 1), Encoding::Binary).await;
    let (events, ended) = read_subscription(&mut ws, "lost", Encoding::Binary, None).await;
    assert!(ended);
    assert_eq!(finished(&events).state, TaskState::Failed as i32);
    assert!(finished(&events).error.contains("no longer knows"), "{:?}", finished(&events));
    drop(fresh);
    ws
}

/// Container mode still works in the same edge once alice has credits. Answers its task's socket.
async fn container_mode_still_works_in_the_same_edge(world: &World) -> Socket {
    let World { edge, alice, .. } = world;
    edge.grant("alice", 1000).await;
    let started = edge.post_json("/api/container/start", alice, world.start_body("SCENARIO:list-files")).await;
    let task_id = started["taskId"].as_str().unwrap_or_else(|| panic!("no taskId in {started}"));
    let mut ws = connect(started["websocketUrl"].as_str().unwrap()).await;
    send(&mut ws, &subscribe("c1", task_id, 1), Encoding::Binary).await;
    let (events, ended) = read_subscription(&mut ws, "c1", Encoding::Binary, None).await;
    assert!(ended);
    assert_eq!(finished(&events).state, TaskState::Succeeded as i32);
    ws
}

fn the_token_never_shows_in_the_machines_logs(world: &World, machines: [&Machine; 2]) {
    for logs in machines.map(Machine::logs) {
        assert!(!logs.iter().any(|l| l.contains(&world.alice)), "the token leaked into a machine's logs");
    }
}
