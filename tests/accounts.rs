//! End-to-end tests of accounts at the edge, against the real `wrangler dev` and agent-service:
//! authentication on every route, isolation between users, single-use WebSocket tickets, browser
//! sessions, credits checked before start, container time metered exactly once, and secrets kept
//! out of everything a user or operator can see.
//!
//! The edge runs with 1 credit per container second, a minimum of 2 credits to start, metering
//! every second and a 2-second idle stop, so the metering is observable in seconds. The
//! agent-service runs one task at a time, so the steps run in order in one test, over one
//! [`World`]; what its API calls answer is noted in [`Seen`] for the secrets check at the end.

use std::time::{Duration, Instant};

use autopilot_contract::v1::{autopilot_client::AutopilotClient, StatusRequest};
use autopilot_tests::{
    edge::{Edge, ADMIN_SECRET, TICKET_SECRET},
    fake_model_api::FakeModelApi,
    git_fixture::GitFixture,
    local_pair::LocalPair,
    service::{Service, CANARY_API_KEY},
};
use futures::{SinkExt, StreamExt};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, Message};

#[tokio::test]
async fn accounts_authenticate_isolate_and_meter_every_route() {
    let world = World::start().await;
    let mut seen = Seen::default();
    every_route_but_health_refuses_a_caller_without_credentials(&world, &mut seen).await;
    let (alice, bob) = alice_with_credits_and_bob_without_are_known_by_their_tokens(&world, &mut seen).await;
    a_start_without_credits_is_refused_402_before_anything_runs(&world, &bob, &mut seen).await;

    // Alice works; her session, ticket and task are hers alone.
    let alices = alice_starts_a_task(&world, &alice, &mut seen).await;
    bob_cannot_reach_alices_session(&world, &bob, &alices, &mut seen).await;
    a_ticket_opens_its_own_session_once(&world, &alices).await;
    alices_task_succeeds_with_its_cost_and_bob_cannot_see_it(&world, &alice, &bob, &alices, &mut seen).await;

    let (short_token, revocable_token) = expired_and_revoked_tokens_are_refused(&world, &mut seen).await;
    browser_sign_in_buys_a_strict_session_cookie(&world, &alice, &alices).await;
    let debited = the_container_run_is_charged_once_in_contiguous_intervals(&world, &alice, &mut seen).await;
    a_task_is_charged_the_seconds_it_ran_and_never_twice(&world, &alice, &alices, debited, &mut seen).await;
    let carol = credits_running_out_mid_task_cancel_it_and_stop_the_container(&world, &mut seen).await;
    let (users, tokens) = ([&alice, &bob, &carol], [&short_token, &revocable_token]);
    secrets_never_appear_in_anything_a_user_or_operator_sees(&world, seen, users, tokens);
}

/// The fake model API, a repository, the agent-service, the edge in front of it (see the crate
/// doc for its settings), and an HTTP client: the API the steps call.
struct World {
    // Fields drop in this order: the edge stops before the service it fronts.
    edge: Edge,
    http: Client,
    repo: GitFixture,
    service: Service,
    _model_api: FakeModelApi,
}

/// Every text a user or operator could see, for the secrets check at the end.
#[derive(Default)]
struct Seen(Vec<String>);

impl Seen {
    fn note(&mut self, text: impl Into<String>) {
        self.0.push(text.into());
    }
}

/// Alice's first task: its id, its session, and the ticket its Start answered with.
struct Started {
    task_id: String,
    session: String,
    ticket: String,
}

impl World {
    async fn start() -> World {
        let vars = [("MIN_CREDITS_TO_START", "2"), ("METER_INTERVAL_SECONDS", "1"), ("IDLE_TIMEOUT_SECONDS", "2")];
        let LocalPair { edge, service, repo, model_api } = LocalPair::start(&vars).await;
        World { edge, http: Client::new(), repo, service, _model_api: model_api }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        seen: &mut Seen,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.edge.base_url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply = request.send().await.unwrap();
        let status = reply.status();
        let text = reply.text().await.unwrap();
        seen.note(text.clone());
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn start_task(&self, token: &str, prompt: &str, seen: &mut Seen) -> (StatusCode, Value) {
        let body = json!({"repositoryUrl": self.repo.url(), "prompt": prompt});
        self.call(Method::POST, "/api/container/start", Some(token), Some(body), seen).await
    }

    async fn balance(&self, token: &str, seen: &mut Seen) -> Value {
        let (status, body) = self.call(Method::GET, "/api/billing/balance", Some(token), None, seen).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn ledger(&self, token: &str, seen: &mut Seen) -> Vec<Value> {
        let (status, body) = self.call(Method::GET, "/api/billing/ledger", Some(token), None, seen).await;
        assert_eq!(status, 200, "{body}");
        body["entries"].as_array().unwrap().clone()
    }

    /// Waits until the user's container run is closed (stopped for idleness or credits).
    async fn wait_until_stopped(&self, token: &str, seen: &mut Seen) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let balance = self.balance(token, seen).await;
            if balance["containerRunningSinceMs"].is_null() {
                return balance;
            }
            assert!(Instant::now() < deadline, "the container was not stopped: {balance}\n{}", self.edge.log());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until the task reaches a final state, through the edge's status route.
    async fn wait_for_end(&self, token: &str, task_id: &str, seen: &mut Seen) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, body) = self
                .call(Method::GET, &format!("/api/container/status?taskId={task_id}"), Some(token), None, seen)
                .await;
            assert_eq!(status, 200, "{body}");
            let state = body["task"]["state"].as_str().unwrap_or_default().to_string();
            if ["TASK_STATE_SUCCEEDED", "TASK_STATE_FAILED", "TASK_STATE_CANCELLED", "TASK_STATE_TIMED_OUT"]
                .contains(&state.as_str())
            {
                return body["task"].clone();
            }
            assert!(Instant::now() < deadline, "the task did not end: {body}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The WebSocket URL of `session`, with no ticket.
    fn session_url(&self, session: &str) -> String {
        format!("{}/api/container/ws/{session}", self.edge.ws_base())
    }
}

/// Opens a WebSocket, optionally with a cookie; the HTTP status of a refused upgrade, or 101.
async fn ws_status(url: &str, cookie: Option<&str>) -> u16 {
    ws_status_from(url, cookie, None).await
}

/// [`ws_status`] for a page at `origin` (browsers send their page's origin with every upgrade).
async fn ws_status_from(url: &str, cookie: Option<&str>, origin: Option<&str>) -> u16 {
    let mut request = url.into_client_request().unwrap();
    if let Some(cookie) = cookie {
        request.headers_mut().insert("cookie", cookie.parse().unwrap());
    }
    if let Some(origin) = origin {
        request.headers_mut().insert("origin", origin.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => 101,
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("WebSocket {url}: {e}"),
    }
}

/// Checks the debits: within each container run, intervals never overlap and the run's debits
/// so far always equal ceil(seconds x 1 credit/s) of the run so far. Answers the total debited.
fn check_debits(ledger: &[Value]) -> i64 {
    let debits: Vec<&Value> = ledger.iter().filter(|e| e["kind"] == "debit").collect();
    let mut runs: std::collections::BTreeMap<u64, (i64, u64)> = Default::default();
    for debit in &debits {
        let (from, to) = (debit["fromMs"].as_u64().unwrap(), debit["toMs"].as_u64().unwrap());
        let run = debit["runStartedMs"].as_u64().unwrap();
        let (charged, settled_until) = runs.entry(run).or_insert((0, run));
        assert!(from < to && from >= *settled_until, "intervals never overlap: {debits:?}");
        *charged += -debit["credits"].as_i64().unwrap();
        *settled_until = to;
        assert_eq!(*charged, (to - run).div_ceil(1000) as i64, "a run of {} ms: {debits:?}", to - run);
    }
    runs.values().map(|(charged, _)| charged).sum()
}

/// Without credentials (or with a forged token), every route but /health answers 401, before
/// doing anything.
async fn every_route_but_health_refuses_a_caller_without_credentials(world: &World, seen: &mut Seen) {
    let protected = [
        (Method::POST, "/api/container/start"),
        (Method::GET, "/api/container/status"),
        (Method::POST, "/api/container/ws-ticket"),
        (Method::GET, "/api/container/ws/some-session"),
        (Method::GET, "/api/billing/balance"),
        (Method::GET, "/api/billing/ledger"),
        (Method::GET, "/api/auth/me"),
        (Method::POST, "/api/admin/tokens"),
        (Method::POST, "/api/admin/credits"),
        (Method::DELETE, "/api/admin/tokens/00"),
        (Method::POST, "/autopilot.v1.Autopilot/Start"),
        (Method::POST, "/autopilot.v1.Autopilot/Status"),
    ];
    for (method, path) in &protected {
        let (status, body) = world.call(method.clone(), path, None, Some(json!({})), seen).await;
        assert_eq!(status, 401, "{method} {path}: {body}");
        let (status, _) = world.call(method.clone(), path, Some("ap_forged0000"), Some(json!({})), seen).await;
        assert_eq!(status, 401, "{method} {path} with a forged token");
    }
    assert_eq!(
        world
            .call(Method::POST, "/api/admin/tokens", Some("not-the-admin-secret"), Some(json!({"userId": "x"})), seen)
            .await
            .0,
        401
    );
    assert_eq!(world.call(Method::GET, "/health", None, None, seen).await.0, 200);
}

/// Alice (100 credits) and bob (none) get tokens; a token names its user. Answers their tokens.
async fn alice_with_credits_and_bob_without_are_known_by_their_tokens(
    world: &World,
    seen: &mut Seen,
) -> (String, String) {
    let alice = world.edge.user("alice", 100).await;
    let bob = world.edge.user("bob", 0).await;
    let (_, me) = world.call(Method::GET, "/api/auth/me", Some(&alice), None, seen).await;
    assert_eq!(me["userId"], "alice");
    (alice, bob)
}

/// Bob has no credits: Start is refused with 402 before any container starts.
async fn a_start_without_credits_is_refused_402_before_anything_runs(world: &World, bob: &str, seen: &mut Seen) {
    let (status, body) = world.start_task(bob, "SCENARIO:answer", seen).await;
    assert_eq!(status, 402, "{body}");
    assert_eq!(body["error"]["code"], "RESOURCE_EXHAUSTED");
    assert!(body["error"]["message"].as_str().unwrap().contains("insufficient credits"), "{body}");
    assert!(world.balance(bob, seen).await["containerRunningSinceMs"].is_null(), "no container run began");
    let mut direct = AutopilotClient::connect(format!("http://{}", world.service.addr)).await.unwrap();
    assert_eq!(
        direct.status(StatusRequest::default()).await.unwrap_err().code(),
        tonic::Code::NotFound,
        "no task reached the service"
    );
}

async fn alice_starts_a_task(world: &World, alice: &str, seen: &mut Seen) -> Started {
    let (status, started) = world.start_task(alice, "SCENARIO:answer", seen).await;
    assert_eq!(status, 200, "{started}");
    Started {
        task_id: started["taskId"].as_str().unwrap().to_string(),
        session: started["sessionId"].as_str().unwrap().to_string(),
        ticket: started["ticket"].as_str().unwrap().to_string(),
    }
}

/// Bob gets neither a ticket for alice's session nor its socket: not found, not forbidden.
async fn bob_cannot_reach_alices_session(world: &World, bob: &str, alices: &Started, seen: &mut Seen) {
    let session = &alices.session;
    let (status, _) = world
        .call(Method::POST, "/api/container/ws-ticket", Some(bob), Some(json!({"sessionId": session})), seen)
        .await;
    assert_eq!(status, 404, "another user's session is not found, not forbidden");
    let (status, _) = world.call(Method::GET, &format!("/api/container/ws/{session}"), Some(bob), None, seen).await;
    assert_eq!(status, 404);
}

/// A ticket opens the session it names, once; a forged ticket, or none, opens nothing.
async fn a_ticket_opens_its_own_session_once(world: &World, alices: &Started) {
    let (ws_base, ticket) = (world.edge.ws_base(), &alices.ticket);
    let other_session = world.session_url(&alices.session);
    assert_eq!(
        ws_status(&format!("{ws_base}/api/container/ws/not-alices-session?ticket={ticket}"), None).await,
        404,
        "a ticket names its session"
    );
    assert_eq!(
        ws_status(&format!("{other_session}?ticket={ticket}"), None).await,
        101,
        "the ticket opens its session once"
    );
    assert_eq!(ws_status(&format!("{other_session}?ticket={ticket}"), None).await, 401, "a used ticket is refused");
    let (payload, _) = ticket.split_once('.').unwrap();
    assert_eq!(
        ws_status(&format!("{other_session}?ticket={payload}.AAAA"), None).await,
        401,
        "a forged ticket is refused"
    );
    assert_eq!(ws_status(&other_session, None).await, 401, "no ticket, no cookie");
}

async fn alices_task_succeeds_with_its_cost_and_bob_cannot_see_it(
    world: &World,
    alice: &str,
    bob: &str,
    alices: &Started,
    seen: &mut Seen,
) {
    let task = world.wait_for_end(alice, &alices.task_id, seen).await;
    assert_eq!(task["state"], "TASK_STATE_SUCCEEDED");
    assert!(task["usage"]["costUsd"].as_f64().unwrap() > 0.0, "the agent's own cost is recorded per task: {task}");
    let (status, _) = world
        .call(Method::GET, &format!("/api/container/status?taskId={}", alices.task_id), Some(bob), None, seen)
        .await;
    assert_eq!(status, 404, "bob cannot see alice's task: not found, not forbidden");
}

/// A token that expired or was revoked is refused. Answers both tokens (for the secrets check).
async fn expired_and_revoked_tokens_are_refused(world: &World, seen: &mut Seen) -> (String, String) {
    let short = world.edge.create_token("alice", Some(1)).await;
    let short_token = short["token"].as_str().unwrap();
    assert_eq!(world.call(Method::GET, "/api/auth/me", Some(short_token), None, seen).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(world.call(Method::GET, "/api/auth/me", Some(short_token), None, seen).await.0, 401, "an expired token");
    let revocable = world.edge.create_token("alice", None).await;
    let revocable_token = revocable["token"].as_str().unwrap();
    assert_eq!(world.call(Method::GET, "/api/auth/me", Some(revocable_token), None, seen).await.0, 200);
    let revoke = format!("/api/admin/tokens/{}", revocable["tokenId"].as_str().unwrap());
    assert_eq!(world.call(Method::DELETE, &revoke, Some(ADMIN_SECRET), None, seen).await.0, 200);
    assert_eq!(
        world.call(Method::GET, "/api/auth/me", Some(revocable_token), None, seen).await.0,
        401,
        "a revoked token"
    );
    (short_token.to_string(), revocable_token.to_string())
}

/// Browser sign-in: a token buys an HttpOnly, Secure, SameSite=Lax session cookie, which opens
/// alice's socket from the site's own origin only, until she signs out.
async fn browser_sign_in_buys_a_strict_session_cookie(world: &World, alice: &str, alices: &Started) {
    let World { edge, http, .. } = world;
    let other_session = world.session_url(&alices.session);
    let signin =
        http.post(format!("{}/api/auth/signin", edge.base_url)).json(&json!({"token": alice})).send().await.unwrap();
    assert_eq!(signin.status(), 200);
    let set_cookie = signin.headers()["set-cookie"].to_str().unwrap().to_string();
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let me: Value = http
        .get(format!("{}/api/auth/me", edge.base_url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["userId"], "alice");
    assert_eq!(
        ws_status_from(&other_session, Some(&cookie), Some(&edge.base_url)).await,
        101,
        "a same-origin cookie opens the socket too"
    );
    assert_eq!(ws_status(&other_session, Some(&cookie)).await, 403, "a cookie without the site's Origin does not");
    let signout =
        http.post(format!("{}/api/auth/signout", edge.base_url)).header("cookie", &cookie).send().await.unwrap();
    assert!(signout.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    let after = http.get(format!("{}/api/auth/me", edge.base_url)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(after.status(), 401, "a signed-out session is gone");
}

/// Metering: the container run is charged ceil(seconds x rate), once, in contiguous intervals.
/// Answers the total debited so far.
async fn the_container_run_is_charged_once_in_contiguous_intervals(world: &World, alice: &str, seen: &mut Seen) -> i64 {
    let stopped = world.wait_until_stopped(alice, seen).await;
    let ledger = world.ledger(alice, seen).await;
    let debited = check_debits(&ledger);
    assert!(debited >= 1, "the run was charged: {ledger:?}");
    assert_eq!(stopped["balance"].as_i64().unwrap(), 100 - debited, "balance = grants - debits: {ledger:?}");
    debited
}

/// A task that runs for a known time: about 3 s of hang, then cancel (over the WebSocket
/// bridge); meanwhile the alarm is fired twice by hand while nothing changes, and nothing is
/// charged twice.
async fn a_task_is_charged_the_seconds_it_ran_and_never_twice(
    world: &World,
    alice: &str,
    alices: &Started,
    debited: i64,
    seen: &mut Seen,
) {
    let before = world.balance(alice, seen).await["balance"].as_i64().unwrap();
    let (_, started) = world.start_task(alice, "SCENARIO:hang", seen).await;
    let task_id = started["taskId"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_secs(3)).await;
    for _ in 0..2 {
        let (status, _) = world
            .call(Method::POST, "/api/admin/meter", Some(ADMIN_SECRET), Some(json!({"userId": "alice"})), seen)
            .await;
        assert_eq!(status, 200);
    }
    // Cancel over the WebSocket bridge, with a fresh ticket (the first one was used).
    let (_, fresh) = world
        .call(Method::POST, "/api/container/ws-ticket", Some(alice), Some(json!({"sessionId": alices.session})), seen)
        .await;
    let (mut ws, _) = tokio_tungstenite::connect_async(fresh["websocketUrl"].as_str().unwrap()).await.unwrap();
    let cancel = json!({"requestId": "c", "cancel": {"taskId": task_id}}).to_string();
    ws.send(Message::Text(cancel.into())).await.unwrap();
    let reply = loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Text(text) => break serde_json::from_str::<Value>(text.as_str()).unwrap(),
            _ => continue,
        }
    };
    assert_eq!(reply["cancel"]["state"], "TASK_STATE_CANCELLED", "{reply}");
    drop(ws);
    let stopped = world.wait_until_stopped(alice, seen).await;
    let ledger = world.ledger(alice, seen).await;
    let total = check_debits(&ledger);
    let run_debit = total - debited;
    assert!(run_debit >= 3, "at least the 3 s the task ran were charged: {run_debit}");
    assert_eq!(stopped["balance"].as_i64().unwrap(), before - run_debit);
}

/// Carol (3 credits): credits running out mid-task cancel the task with a clear reason and stop
/// the container; then no new start. Answers her token.
async fn credits_running_out_mid_task_cancel_it_and_stop_the_container(world: &World, seen: &mut Seen) -> String {
    let carol = world.edge.user("carol", 3).await;
    let (status, started) = world.start_task(&carol, "SCENARIO:hang", seen).await;
    assert_eq!(status, 200, "{started}");
    let task = world.wait_for_end(&carol, started["taskId"].as_str().unwrap(), seen).await;
    assert_eq!(task["state"], "TASK_STATE_CANCELLED", "{task}");
    assert!(task["error"].as_str().unwrap().contains("credits ran out"), "{task}");
    let stopped = world.wait_until_stopped(&carol, seen).await;
    assert!(stopped["balance"].as_i64().unwrap() <= 0, "{stopped}");
    check_debits(&world.ledger(&carol, seen).await);
    let (status, _) = world.start_task(&carol, "SCENARIO:answer", seen).await;
    assert_eq!(status, 402, "no credits, no new start");
    carol
}

/// Secrets (the model API key, the users' tokens, the edge's own secrets) never appear in
/// anything a user or operator sees: every reply, the edge's log, the service's.
fn secrets_never_appear_in_anything_a_user_or_operator_sees(
    world: &World,
    mut seen: Seen,
    [alice, bob, carol]: [&String; 3],
    [short_token, revocable_token]: [&String; 2],
) {
    seen.note(world.edge.log());
    seen.0.extend(world.service.logs());
    for secret in [
        CANARY_API_KEY,
        alice.as_str(),
        bob.as_str(),
        carol.as_str(),
        ADMIN_SECRET,
        TICKET_SECRET,
        short_token.as_str(),
        revocable_token.as_str(),
    ] {
        let leaks: Vec<&String> = seen.0.iter().filter(|text| text.contains(secret)).collect();
        assert!(leaks.is_empty(), "a secret leaked: {leaks:?}");
    }
}
