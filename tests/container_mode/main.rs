//! Container mode for real, locally: `wrangler dev` with containers enabled, talking to podman's
//! Docker API through `local-containers/` (the Docker API shim and the egress sidecar), each
//! user's agent-service in a container of the project's image (built by `make image`), the real
//! Claude Code CLI inside it talking to the fake model API, and a repository cloned over HTTPS
//! from the host. What the tests do to the containers (kill, stop) is done with podman, behind
//! the Durable Object's back, as the platform or a crash would.
//!
//! Needs `make local-containers` (make test runs it first). Each test has its own edge, user and
//! container, and they run one at a time: each drives wrangler, podman and the agent CLI, and on
//! a two-core machine side by side they would mostly measure each other.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use autopilot_tests::{
    bridge_client::{connect, read_subscription, subscribe, Encoding},
    container::{podman_logs, podman_ok},
    edge::{model_vars, ContainerOptions, Edge},
    events::{kind, seqs},
    fake_model_api::FakeModelApi,
    git_fixture::GitFixture,
    https_git_server::{HttpsGitServer, LocalCa},
};
use serde_json::{json, Value};

mod environments;
mod github;

/// The edge's model API key: a canary that must reach the model API, through the gateway, and no
/// container, event or log.
const CANARY_KEY: &str = "sk-ant-canary-4f1c9e27b8d35a60";

/// One test's world: the fake model API, a repository over HTTPS, and the edge in container mode.
struct World {
    model_api: FakeModelApi,
    _git: HttpsGitServer,
    _repo: GitFixture,
    repo_url: String,
    edge: Edge,
}

/// Held by the test that runs (see the crate doc).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl World {
    async fn start(vars: &[(&str, &str)]) -> World {
        let model_api = FakeModelApi::start().await.unwrap();
        let ca = LocalCa::new();
        let repo = GitFixture::new();
        let root = repo.bare_dir().parent().unwrap().to_path_buf();
        let git = HttpsGitServer::start(&ca, &root).await;
        let name = repo.bare_dir().file_stem().unwrap().to_string_lossy().into_owned();
        let repo_url = git.url(&name);
        let mut options = ContainerOptions {
            loopback_ports: vec![model_api.port(), git.port()],
            ca_cert_pem: Some(ca.cert_pem()),
            // The key is the Worker's; the containers reach its gateway on the edge's port.
            vars: model_vars(CANARY_KEY, &model_api.base_url),
        };
        options.vars.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let edge = Edge::start_with_containers(options).await;
        World { model_api, _git: git, _repo: repo, repo_url, edge }
    }

    /// Restarts the edge on its state (see [`Edge::restart`]).
    async fn restart_edge(self) -> World {
        let World { model_api, _git, _repo, repo_url, edge } = self;
        World { model_api, _git, _repo, repo_url, edge: edge.restart().await }
    }

    async fn start_task(&self, token: &str, prompt: &str) -> Value {
        let body = json!({"repositoryUrl": self.repo_url, "prompt": prompt});
        let started = self.edge.post_json("/api/container/start", token, body).await;
        assert!(started["taskId"].is_string(), "Start failed: {started}\n{}", self.edge.log());
        started
    }

    /// The names of this edge's app containers (not their sidecars) podman created since `since`.
    fn app_containers_created_since(&self, since: &str) -> Vec<String> {
        let format = "{{.Name}}";
        let filters = ["--filter", "type=container", "--filter", "event=create", "--format", format];
        let creates = podman_ok(&[&["events", "--stream=false", "--since", since][..], &filters[..]].concat());
        let prefix = format!("workerd-{}-", self.edge.worker_name.as_deref().unwrap());
        creates.lines().filter(|n| n.starts_with(&prefix) && !n.ends_with("-proxy")).map(str::to_string).collect()
    }

    async fn status(&self, token: &str, task_id: &str) -> Value {
        self.edge.get_json(&format!("/api/container/status?taskId={task_id}"), token).await
    }

    async fn wait_for_end(&self, token: &str, task_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let status = self.status(token, task_id).await;
            let state = status["task"]["state"].as_str().unwrap_or_default();
            if ["TASK_STATE_SUCCEEDED", "TASK_STATE_FAILED", "TASK_STATE_CANCELLED", "TASK_STATE_TIMED_OUT"]
                .contains(&state)
            {
                return status;
            }
            assert!(Instant::now() < deadline, "the task did not end: {status}\n{}", self.edge.log());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// This edge's containers (the agent-service's, not the sidecars): name and state.
    fn app_containers(&self) -> Vec<(String, String)> {
        let prefix = format!("workerd-{}-", self.edge.worker_name.as_deref().unwrap());
        let listed: Vec<Value> = serde_json::from_str(&podman_ok(&["ps", "-a", "--format", "json"])).unwrap();
        listed
            .iter()
            .map(|c| {
                (
                    c["Names"][0].as_str().unwrap_or_default().to_string(),
                    c["State"].as_str().unwrap_or_default().to_string(),
                )
            })
            .filter(|(name, _)| name.starts_with(&prefix) && !name.ends_with("-proxy"))
            .collect()
    }

    /// The one running app container's name.
    fn running_container(&self) -> String {
        let running: Vec<String> =
            self.app_containers().into_iter().filter(|(_, state)| state == "running").map(|(n, _)| n).collect();
        assert_eq!(running.len(), 1, "one running container: {:?}", self.app_containers());
        running[0].clone()
    }

    /// Waits until no app container of this edge runs any more.
    async fn wait_until_no_container_runs(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.app_containers().iter().any(|(_, state)| state == "running") {
            assert!(Instant::now() < deadline, "still running: {:?}\n{}", self.app_containers(), self.edge.log());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Everything the edge side logged: wrangler and the Worker, the shim, and the containers.
    fn all_logs(&self) -> String {
        let mut logs = self.edge.log();
        logs.push_str(&std::fs::read_to_string(self.edge.run_dir().join("docker-api-shim.log")).unwrap_or_default());
        let prefix = format!("workerd-{}-", self.edge.worker_name.as_deref().unwrap());
        for name in podman_ok(&["ps", "-a", "--format", "{{.Names}}"]).lines().filter(|n| n.starts_with(&prefix)) {
            logs.push_str(&podman_logs(name));
        }
        logs
    }
}

/// Subscribes to a task over a WebSocket (binary, as the page does) and reads to the end.
async fn follow(
    world: &World,
    token: &str,
    started: &Value,
    stop_after: Option<usize>,
) -> (Vec<autopilot_contract::v1::Event>, autopilot_tests::bridge_client::Socket) {
    let session = started["sessionId"].as_str().unwrap();
    let task_id = started["taskId"].as_str().unwrap();
    let mut ws = connect(&world.edge.ws_ticket_url(token, session).await).await;
    autopilot_tests::bridge_client::send(&mut ws, &subscribe("follow", task_id, 1), Encoding::Binary).await;
    let (events, _) = read_subscription(&mut ws, "follow", Encoding::Binary, stop_after).await;
    (events, ws)
}

#[tokio::test]
async fn a_task_runs_in_a_real_container_whose_model_key_stays_at_the_edge() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let world = World::start(&[]).await;
    let token = world.edge.user("carol", 1_000_000).await;
    assert!(world.app_containers().is_empty(), "no container before the first request");

    let started_at = Instant::now();
    let started = world.start_task(&token, "SCENARIO:list-files what is here?").await;
    let start_reply = started_at.elapsed();
    let task_id = started["taskId"].as_str().unwrap().to_string();
    let container = world.running_container();

    // A browser-style client follows the task over the WebSocket to its final event.
    let mut ws = connect(started["websocketUrl"].as_str().unwrap()).await;
    autopilot_tests::bridge_client::send(&mut ws, &subscribe("s1", &task_id, 1), Encoding::Binary).await;
    let (events, ended) = read_subscription(&mut ws, "s1", Encoding::Binary, None).await;
    assert!(ended);
    assert_eq!(seqs(&events), (1..=events.len() as u64).collect::<Vec<_>>());
    assert_eq!(kind(events.last().unwrap()), "task_finished:SUCCEEDED", "{events:#?}");
    assert!(events.iter().any(|e| kind(e) == "tool_finished"), "the agent ran a tool in the container");

    // The figures: cold start to the first /ping answered, and from there to the object ready.
    let status = world.status(&token, &task_id).await;
    let ready = &status["container"]["Ready"];
    let (since, answered) = (ready["since_ms"].as_u64().unwrap(), ready["answered_ms"].as_u64().unwrap());
    let ready_at = status["containerChangedMs"].as_u64().unwrap();
    assert!(since <= answered && answered <= ready_at, "{status}");
    println!(
        "container mode figures: cold start to first /ping answered {} ms; /ping answered to DO ready {} ms; \
         first Start answered after {} ms (request to reply, cold)",
        answered - since,
        ready_at - answered,
        start_reply.as_millis()
    );

    // The model API was called with the key, by the edge's gateway: the key is in no process of
    // the container, whose agent-service has no model key at all.
    assert_eq!(world.model_api.api_keys(), vec![CANARY_KEY.to_string()]);
    let environs = model_environment(&container);
    assert!(!environs.contains(CANARY_KEY), "the key is in the container: {environs}");
    assert!(
        environs.contains("agent-service:") && !environs.contains("agent-service: ANTHROPIC_API_KEY"),
        "{environs}"
    );
    // ... and is in no event, no log of the edge, the shim or the containers.
    let events_json = serde_json::to_string(&events).unwrap();
    assert!(!events_json.contains(CANARY_KEY), "the key leaked into the events");
    let logs = world.all_logs();
    assert!(logs.contains("listening"), "the container logs were read: {logs}");
    assert!(!logs.contains(CANARY_KEY), "the key leaked into a log");
}

/// The model variables (`ANTHROPIC_*`) of every process in `container`, a line each as
/// `<process name>: NAME=value`.
fn model_environment(container: &str) -> String {
    let script = "for p in /proc/[0-9]*; do n=$(cat $p/comm 2>/dev/null); \
                  tr '\\0' '\\n' < $p/environ 2>/dev/null | grep '^ANTHROPIC_' | sed \"s|^|$n: |\"; \
                  echo \"$n:\"; done";
    podman_ok(&["exec", "--privileged", "--user", "0", container, "sh", "-c", script])
}

#[tokio::test]
async fn a_container_killed_or_stopped_behind_the_objects_back_is_replaced() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let world = World::start(&[]).await;
    let token = world.edge.user("dave", 1_000_000).await;

    // Killed mid-task: both clients following the task get it FAILED, with the reason; so does
    // the task running beside it, which nobody follows.
    let started = world.start_task(&token, "SCENARIO:slow-tools:30 take your time").await;
    let task_id = started["taskId"].as_str().unwrap().to_string();
    let beside = world.start_task(&token, "SCENARIO:slow-tools:30 beside it").await;
    let beside_id = beside["taskId"].as_str().unwrap().to_string();
    let first = world.running_container();
    let (mut early, mut ws_a) = follow(&world, &token, &started, Some(4)).await;
    let (_, mut ws_b) = follow(&world, &token, &started, Some(4)).await;
    // The agent at work holds its task's credential for the gateway, and nothing else.
    let environs = model_environment(&first);
    let credential = environs
        .lines()
        .find_map(|line| line.split_once(": ANTHROPIC_API_KEY=").map(|(_, key)| key.to_string()))
        .unwrap_or_else(|| panic!("no agent with a credential in the container: {environs}"));
    assert!(credential.starts_with("apmc_") && !environs.contains(CANARY_KEY), "{environs}");
    podman_ok(&["kill", &first]);
    let (rest_a, ended_a) = read_subscription(&mut ws_a, "follow", Encoding::Binary, None).await;
    early.extend(rest_a);
    assert!(ended_a, "the subscription ends after the final event");
    let last = early.last().unwrap();
    assert_eq!(kind(last), "task_finished:FAILED", "{early:#?}");
    assert_eq!(seqs(&early), (1..=early.len() as u64).collect::<Vec<_>>(), "the final event follows the last one");
    let Some(autopilot_contract::v1::event::Payload::TaskFinished(finished)) = &last.payload else { unreachable!() };
    assert!(finished.error.contains("container"), "the reason names the container: {}", finished.error);
    let (rest_b, ended_b) = read_subscription(&mut ws_b, "follow", Encoding::Binary, None).await;
    assert!(ended_b && kind(rest_b.last().unwrap()) == "task_finished:FAILED", "{rest_b:#?}");
    let status = world.wait_for_end(&token, &task_id).await;
    assert_eq!(status["task"]["state"], "TASK_STATE_FAILED", "{status}");
    assert!(status["task"]["error"].as_str().unwrap().contains("container"), "{status}");
    let killed_at = status["containerChangedMs"].as_u64().unwrap();
    let status = world.wait_for_end(&token, &beside_id).await;
    assert_eq!(status["task"]["state"], "TASK_STATE_FAILED", "{status}");
    assert!(status["task"]["error"].as_str().unwrap().contains("container"), "{status}");
    assert_eq!(kind(replay_by_task(&world, &token, &beside_id).await.last().unwrap()), "task_finished:FAILED");
    // The container is lost: its task's credential is refused by the gateway.
    let refused = reqwest::Client::new()
        .post(format!("{}/model/v1/messages", world.edge.base_url))
        .header("x-api-key", &credential)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401, "a lost container's credential is revoked");
    // The archive holds every event the object received, then the FAILED end it made.
    let archived = replay_by_task(&world, &token, &task_id).await;
    assert_eq!(seqs(&archived), seqs(&early), "the archive has what the followers got");
    assert_eq!(kind(archived.last().unwrap()), "task_finished:FAILED");

    // The next Start brings up a fresh container, which runs the task to the end.
    let again = world.start_task(&token, "SCENARIO:list-files again").await;
    let (events, _) = follow(&world, &token, &again, None).await;
    assert_eq!(kind(events.last().unwrap()), "task_finished:SUCCEEDED", "{events:#?}");
    let status = world.status(&token, again["taskId"].as_str().unwrap()).await;
    let generation = status["container"]["Ready"]["generation"].as_u64().unwrap();
    assert!(generation >= 2, "a new generation: {status}");
    // The dead container's time was charged and closed; the fresh one is metered from its start.
    let balance = world.edge.get_json("/api/billing/balance", &token).await;
    assert!(balance["containerRunningSinceMs"].as_u64().unwrap() >= killed_at, "a new run: {balance}");
    let ledger = world.edge.get_json("/api/billing/ledger", &token).await;
    assert!(
        ledger["entries"].as_array().unwrap().iter().any(|e| e["kind"] == "debit"),
        "the first run was charged: {ledger}"
    );

    // Stopped behind its back while idle: the next request starts it again instead of failing.
    let second = world.running_container();
    podman_ok(&["stop", "--time", "5", &second]);
    let third = world.start_task(&token, "SCENARIO:list-files once more").await;
    let (events, _) = follow(&world, &token, &third, None).await;
    assert_eq!(kind(events.last().unwrap()), "task_finished:SUCCEEDED", "{events:#?}\n{}", world.edge.log());
    let status = world.status(&token, third["taskId"].as_str().unwrap()).await;
    let generation = status["container"]["Ready"]["generation"].as_u64().unwrap();
    assert!(generation > 2, "{status}");

    // The edge restarts (its containers go with the old one): the object wakes up to a stored
    // record that says "ready". It must not trust it: the first request finds the container gone
    // and starts a fresh one.
    let world = world.restart_edge().await;
    let fourth = world.start_task(&token, "SCENARIO:list-files after a restart").await;
    let (events, _) = follow(&world, &token, &fourth, None).await;
    assert_eq!(kind(events.last().unwrap()), "task_finished:SUCCEEDED", "{events:#?}\n{}", world.edge.log());
    let status = world.status(&token, fourth["taskId"].as_str().unwrap()).await;
    assert!(status["container"]["Ready"]["generation"].as_u64().unwrap() > generation, "{status}");
    let balance = world.edge.get_json("/api/billing/balance", &token).await;
    assert!(balance["containerRunningSinceMs"].is_u64(), "the new container is metered: {balance}");
    // The history survived the edge's restart: the killed task's whole timeline, from its archive.
    let listed = world.edge.get_json("/api/tasks", &token).await;
    let ids: Vec<&str> = listed["tasks"].as_array().unwrap().iter().filter_map(|t| t["taskId"].as_str()).collect();
    assert!(ids.contains(&task_id.as_str()) && ids.len() >= 4, "{listed}");
    assert_eq!(seqs(&replay_by_task(&world, &token, &task_id).await), seqs(&archived));
}

#[tokio::test]
async fn ten_concurrent_first_requests_start_one_container_and_idle_sleep_charges_the_time_it_ran() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let world = World::start(&[("IDLE_TIMEOUT_SECONDS", "4"), ("METER_INTERVAL_SECONDS", "600")]).await;
    let token = world.edge.user("erin", 1_000_000).await;
    let since = podman_now();

    // Ten Starts at once, before any container exists: one container serves them all (three
    // tasks run, its limit; the others are refused by the service itself, not by a second
    // container).
    let starts = (0..10).map(|i| {
        let body = json!({"repositoryUrl": world.repo_url, "prompt": format!("SCENARIO:list-files {i}")});
        world.edge.post_json("/api/container/start", &token, body)
    });
    let replies = futures::future::join_all(starts).await;
    let started: Vec<&Value> = replies.iter().filter(|r| r["taskId"].is_string()).collect();
    assert_eq!(started.len(), 3, "{replies:#?}");
    for refused in replies.iter().filter(|r| !r["taskId"].is_string()) {
        assert_eq!(refused["error"]["code"], "RESOURCE_EXHAUSTED", "{refused}");
        assert!(refused["error"]["message"].as_str().unwrap().contains("3 tasks are running"), "{refused}");
    }
    let created = world.app_containers_created_since(&since);
    assert_eq!(created.len(), 1, "exactly one container created: {created:?}");
    let container = world.running_container();

    // The tasks end; with nobody connected the container is stopped after the idle period.
    for task in &started {
        let task_id = task["taskId"].as_str().unwrap();
        assert_eq!(world.wait_for_end(&token, task_id).await["task"]["state"], "TASK_STATE_SUCCEEDED");
    }
    let task_id = started[0]["taskId"].as_str().unwrap();
    world.wait_until_no_container_runs(Duration::from_secs(30)).await;
    let balance = world.edge.get_json("/api/billing/balance", &token).await;
    assert!(balance["containerRunningSinceMs"].is_null(), "the run is closed: {balance}");

    // Metering charged the run (ceil(seconds x rate), from the start request to the stop), and
    // that run is the time podman saw the container run, give or take its start and stop.
    let times = podman_ok(&["inspect", "--format", "{{.State.StartedAt}}|{{.State.FinishedAt}}", &container]);
    let ran = seconds_between(times.trim());
    let ledger = world.edge.get_json("/api/billing/ledger", &token).await;
    let debits: Vec<&Value> = ledger["entries"].as_array().unwrap().iter().filter(|e| e["kind"] == "debit").collect();
    // Debits are recorded as negative credits.
    let charged = -debits.iter().map(|e| e["credits"].as_i64().unwrap()).sum::<i64>();
    let run_started = debits[0]["runStartedMs"].as_u64().unwrap();
    let run_ended = debits.last().unwrap()["toMs"].as_u64().unwrap();
    let metered = (run_ended - run_started) as f64 / 1000.0;
    println!(
        "container mode figures: metered run {metered:.2} s, charged {charged} credits at 1 credit/s; \
         podman saw the container run {ran:.2} s"
    );
    assert!((metered - ran).abs() < 1.0, "metered {metered:.2} s, ran {ran:.2} s: {ledger}");

    // The container is gone: the task's whole timeline, its Status and the task list answer from
    // the edge's archive, with no container created and no run opened.
    let before_replay = podman_now();
    let events = replay_by_task(&world, &token, task_id).await;
    assert_eq!(seqs(&events), (1..=events.len() as u64).collect::<Vec<_>>(), "every event, once");
    assert_eq!(kind(events.last().unwrap()), "task_finished:SUCCEEDED");
    assert_eq!(world.status(&token, task_id).await["task"]["state"], "TASK_STATE_SUCCEEDED");
    let listed = world.edge.get_json("/api/tasks", &token).await;
    assert!(listed["tasks"].as_array().unwrap().iter().any(|t| t["taskId"] == task_id), "{listed}");
    let created = world.app_containers_created_since(&before_replay);
    assert!(created.is_empty(), "no container for an archived task: {created:?}");
    let after = world.edge.get_json("/api/billing/ledger", &token).await;
    assert_eq!(after["entries"], ledger["entries"], "nothing charged for an archived task");
    let balance = world.edge.get_json("/api/billing/balance", &token).await;
    assert!(balance["containerRunningSinceMs"].is_null(), "no run opened: {balance}");

    // A follow-up of that task, its container gone: a new container, the parent's workspace and
    // conversation restored from what the edge kept in R2, and the turn carries on from them.
    let parent_title = listed["tasks"].as_array().unwrap().iter().find(|t| t["taskId"] == task_id).unwrap()["title"]
        .as_str()
        .unwrap()
        .to_string();
    let before_follow_up = podman_now();
    let body = json!({"parentTaskId": task_id, "prompt": "SCENARIO:list-files FOLLOW-UP-7c2e"});
    let follow_up = world.edge.post_json("/api/container/start", &token, body).await;
    let follow_up_id = follow_up["taskId"].as_str().unwrap_or_else(|| {
        panic!(
            "{follow_up}
{}",
            world.edge.log()
        )
    });
    let status = world.wait_for_end(&token, follow_up_id).await;
    assert_eq!(
        status["task"]["state"],
        "TASK_STATE_SUCCEEDED",
        "{status}
{}",
        world.all_logs()
    );
    assert_eq!(status["task"]["parentTaskId"], task_id, "{status}");
    assert!(status["task"]["result"].as_str().unwrap().contains("README.md"), "it works in the restored clone");
    let turns = world.model_api.requests_containing("FOLLOW-UP-7c2e");
    assert!(
        !turns.is_empty() && turns.iter().all(|r| r.to_string().contains(&parent_title)),
        "the conversation went on"
    );
    assert_eq!(world.app_containers_created_since(&before_follow_up).len(), 1, "one new container");
}

/// The whole timeline of `task_id` as another device sees it: a ticket by task id (no session of
/// its own), a subscription from seq 1, read to its end.
async fn replay_by_task(world: &World, token: &str, task_id: &str) -> Vec<autopilot_contract::v1::Event> {
    let ticket = world.edge.post_json("/api/container/ws-ticket", token, json!({"taskId": task_id})).await;
    let mut ws = connect(ticket["websocketUrl"].as_str().unwrap_or_else(|| panic!("{ticket}"))).await;
    autopilot_tests::bridge_client::send(&mut ws, &subscribe("replay", task_id, 1), Encoding::Binary).await;
    let (events, ended) = read_subscription(&mut ws, "replay", Encoding::Binary, None).await;
    assert!(ended, "the replay of {task_id} ends");
    events
}

/// Now, as podman's `--since` reads it.
fn podman_now() -> String {
    let output = Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%S.%NZ"]).output().unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// The seconds between podman's StartedAt and FinishedAt ("<a>|<b>").
fn seconds_between(times: &str) -> f64 {
    let (started, finished) = times.split_once('|').unwrap();
    // podman prints e.g. "2026-11-27 10:27:03.139458004 +0000 UTC"; date reads it without the zone name.
    let epoch = |t: &str| {
        let t = t.trim_end_matches(" UTC");
        let output = Command::new("date").args(["-u", "-d", t, "+%s.%N"]).output().unwrap();
        String::from_utf8_lossy(&output.stdout).trim().parse::<f64>().unwrap_or_else(|e| panic!("{t}: {e}"))
    };
    epoch(finished) - epoch(started)
}
