//! Environments through the edge: the real `wrangler dev` edge and the real agent-service (the
//! real Claude Code CLI against the fake model API, a real git repository). A user saves an
//! environment (a setup script, variables, a secret), reads it back without the secret's value,
//! is refused in words for what the service could not run, and another user sees none of it; a
//! task on the environment's repository runs its setup before the agent, whose environment has
//! the variables and not the secret, and nothing the task shows holds the secret.

use autopilot_contract::v1::{event::Payload, Event};
use autopilot_tests::{
    browser_script::run_browser_script,
    edge::Edge,
    events::{kind, prepared_notes, setup_lines, stream_all},
    fake_model_api::FakeModelApi,
    git_fixture::GitFixture,
    service::Service,
};
use reqwest::Method;
use serde_json::{json, Value};

/// The secret the environment holds: it must reach the setup script and nothing else.
const SECRET: &str = "npm_canary_5d1f0c2e9a";

struct World {
    edge: Edge,
    service: Service,
    repo: GitFixture,
    model_api: FakeModelApi,
}

impl World {
    async fn start() -> World {
        let model_api = FakeModelApi::start().await.unwrap();
        let service = Service::start(&model_api, Default::default()).await;
        let vars = [
            ("ENVIRONMENT_SECRETS_KEY", "a test deployment's environment key 91ce"),
            ("PREPARED_STORE_URL", "{edge}/cache/prepared"),
        ];
        let edge = Edge::start_with_vars(&format!("http://{}", service.addr), &vars).await;
        World { edge, service, repo: GitFixture::new(), model_api }
    }

    async fn put(&self, token: &str, name: &str, body: Value) -> (u16, Value) {
        self.edge.call(Method::PUT, &format!("/api/environments/{name}"), token, Some(body)).await
    }
}

#[tokio::test]
async fn environments_are_saved_checked_private_and_run_before_the_agent() {
    let mut world = World::start().await;
    let alice = world.edge.user("alice", 100_000).await;
    let bob = world.edge.user("bob", 100_000).await;

    let web = json!({
        "repositories": [format!("{}/", world.repo.url())],
        "setupScript": "echo setting up\necho \"$GREETING\" > SETUP_DONE.txt\necho \"the secret has ${#NPM_TOKEN} characters\"",
        "maintenanceScript": "echo maintaining",
        "variables": {"GREETING": "hello from setup"},
        "secrets": {"NPM_TOKEN": SECRET},
    });
    let (status, saved) = world.put(&alice, "web", web.clone()).await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!((saved["secrets"].clone(), saved["revision"].as_u64()), (json!(["NPM_TOKEN"]), Some(1)), "{saved}");
    assert_eq!(saved["setupTimeoutSeconds"], 600, "ten minutes unless set");
    let (_, listed) = world.edge.call(Method::GET, "/api/environments", &alice, None).await;
    assert_eq!(listed["environments"][0]["name"], "web", "{listed}");
    let (_, read) = world.edge.call(Method::GET, "/api/environments/web", &alice, None).await;
    for answer in [&saved, &listed, &read] {
        assert!(!answer.to_string().contains(SECRET), "a secret's value was shown: {answer}");
    }

    // What the service could not run is refused when it is saved, naming the field.
    let refusals = [
        ("web", json!({"variables": {"PATH": "/evil"}}), "variables[\"PATH\"] shadows"),
        ("web", json!({"secrets": {"ANTHROPIC_API_KEY": "x"}}), "secrets[\"ANTHROPIC_API_KEY\"]"),
        ("web", json!({"setupScript": "x".repeat(64 * 1024 + 1)}), "setupScript is 65537 bytes long"),
        ("web", json!({"variables": {"X": "a\u{0}b"}}), "NUL"),
        ("web", json!({"setupTimeoutSeconds": 7200}), "setupTimeoutSeconds"),
        ("web", json!({"secrets": {"NEW": null}}), "null keeps a stored value"),
        ("web", json!({"setup": "typo"}), "unknown field"),
        ("bad%20name", json!({}), "name contains '%'"),
        ("web", json!({"secrets": {"SHORT": "abc"}}), "too short to be masked"),
        ("web", json!({"variables": {"BOTH": "x"}, "secrets": {"BOTH": "long enough"}}), "is also a variable"),
    ];
    for (name, body, words) in refusals {
        let (status, refused) = world.put(&alice, name, body).await;
        assert_eq!(status, 400, "{refused}");
        assert!(refused["error"]["message"].as_str().unwrap_or_default().contains(words), "{words}: {refused}");
    }
    let many: serde_json::Map<String, Value> = (0..101).map(|i| (format!("V{i}"), json!("x"))).collect();
    let (status, _) = world.put(&alice, "web", json!({"variables": many})).await;
    assert_eq!(status, 400, "more than 100 variables");
    let (_, read) = world.edge.call(Method::GET, "/api/environments/web", &alice, None).await;
    assert_eq!(read["revision"], 1, "nothing refused was saved: {read}");

    // Another user's environments do not exist for you.
    let (status, _) = world.edge.call(Method::GET, "/api/environments/web", &bob, None).await;
    assert_eq!(status, 404);
    let (_, theirs) = world.edge.call(Method::GET, "/api/environments", &bob, None).await;
    assert_eq!(theirs["environments"], json!([]), "{theirs}");
    let start = json!({"repositoryUrl": world.repo.url(), "prompt": "SCENARIO:answer", "environment": "web"});
    let refused = world.edge.post_json("/api/container/start", &bob, start).await;
    assert!(
        refused["error"]["message"].as_str().unwrap_or_default().contains("no environment named \"web\""),
        "{refused}"
    );

    a_task_runs_the_setup_before_the_agent_without_the_secret(&world, &alice).await;
    a_new_container_starts_from_the_workspace_kept_at_the_edge(&mut world, &alice).await;

    // A reset and an edit count revisions; a delete is final.
    let (status, reset) = world.edge.call(Method::DELETE, "/api/environments/web/cache", &alice, None).await;
    assert_eq!((status, reset["revision"].as_u64()), (200, Some(2)), "{reset}");
    let (ended, _) = run(&world, &alice, "SCENARIO:answer after the reset").await;
    assert_eq!(ended["task"]["workspaceOrigin"], "WORKSPACE_ORIGIN_FRESH", "a reset leaves nothing prepared: {ended}");
    let kept = json!({"repositories": web["repositories"], "setupScript": "true", "secrets": {"NPM_TOKEN": null}});
    let (status, edited) = world.put(&alice, "web", kept).await;
    assert_eq!((status, edited["revision"].as_u64(), edited["secrets"].clone()), (200, Some(3), json!(["NPM_TOKEN"])));
    let (status, _) = world.edge.call(Method::DELETE, "/api/environments/web", &alice, None).await;
    assert_eq!(status, 200);
    let (status, gone) = world.edge.call(Method::DELETE, "/api/environments/web", &alice, None).await;
    assert_eq!(status, 404, "{gone}");

    a_person_edits_an_environment_and_watches_its_setup_in_chromium(&world, &alice).await;

    let logs = format!("{}\n{}", world.edge.log(), world.service.logs().join("\n"));
    assert!(!logs.contains(SECRET), "a secret reached a log");
}

/// The page, in Chromium (`web/tests/environments.e2e.mjs`): the panel saves an environment for
/// the repository, and a task on it shows its setup's output and exit in the timeline.
async fn a_person_edits_an_environment_and_watches_its_setup_in_chromium(world: &World, token: &str) {
    let vars = [("TOKEN", token), ("REPO_URL", &world.repo.url())];
    let report = run_browser_script("tests/environments.e2e.mjs", &world.edge, &vars).await;
    assert!(!report.contains("a-page-secret-value"), "the page showed a secret");
}

/// A task on the environment's repository (named by none: the first that applies) runs its setup
/// first; the agent has the variables, not the secret. The next task on it starts from the
/// prepared workspace and runs the maintenance script instead.
async fn a_task_runs_the_setup_before_the_agent_without_the_secret(world: &World, token: &str) {
    let (first, events) = run(world, token, "SCENARIO:print-env show me").await;
    let ended = &first;
    assert_eq!(ended["task"]["environmentName"], "web", "{ended}");
    assert_eq!(ended["task"]["workspaceOrigin"], "WORKSPACE_ORIGIN_FRESH", "{ended}");
    let kinds: Vec<String> = events.iter().map(kind).collect();
    let setup = kinds.iter().position(|k| k == "setup_started").expect("the setup ran");
    let agent = kinds.iter().position(|k| k == "agent_started").expect("then the agent");
    assert!(kinds[setup - 1] == "state:SETTING_UP" && setup < agent, "{kinds:?}");
    let lines = setup_lines(&events);
    let length_line = format!("the secret has {} characters", SECRET.len());
    assert_eq!(lines, ["setting up", length_line.as_str()], "the script saw the secret");
    let finished = events.iter().find_map(|e| match &e.payload {
        Some(Payload::SetupFinished(finished)) => Some(finished.exit_code),
        _ => None,
    });
    assert_eq!(finished, Some(0));
    let result = ended["task"]["result"].as_str().unwrap_or_default();
    assert!(result.contains("GREETING=hello from setup"), "the agent has the variables: {result}");
    assert!(!result.contains("NPM_TOKEN"), "the agent has no secret: {result}");
    for shown in [ended.to_string(), format!("{events:?}")] {
        assert!(!shown.contains(SECRET), "the secret was shown");
    }
    let notes = prepared_notes(&events);
    assert!(
        notes.iter().any(|n| n.starts_with("kept the workspace environment web prepared in the edge's store")),
        "{notes:?}"
    );

    let (ended, events) = run(world, token, "SCENARIO:list-files what did setup leave?").await;
    assert_eq!(ended["task"]["workspaceOrigin"], "WORKSPACE_ORIGIN_PREPARED", "{ended}");
    assert!(events.iter().map(kind).any(|k| k == "setup_started:maintenance"), "the maintenance script ran");
    assert_eq!(setup_lines(&events), ["maintaining"]);
    let result = ended["task"]["result"].as_str().unwrap_or_default();
    assert!(result.contains("SETUP_DONE.txt"), "the prepared workspace has what setup made: {result}");

    // A follow-up naming no environment runs in its parent's.
    let follow_up = json!({"parentTaskId": first["task"]["taskId"], "prompt": "SCENARIO:answer and more"});
    let (ended, _) = run_start(world, token, follow_up).await;
    assert_eq!(ended["task"]["environmentName"], "web", "{ended}");
}

/// The first task kept its prepared workspace in the edge's store (R2) too: a service that never
/// saw it (a new container: an empty work directory) restores it instead of running the setup,
/// and runs the maintenance script on it.
async fn a_new_container_starts_from_the_workspace_kept_at_the_edge(world: &mut World, token: &str) {
    let service_options = Default::default();
    world.service.replace_with_empty_work_dir(&world.model_api, &service_options).await;
    let (ended, events) = run(world, token, "SCENARIO:list-files what came back?").await;
    assert_eq!(ended["task"]["workspaceOrigin"], "WORKSPACE_ORIGIN_RESTORED", "{ended}");
    let notes = prepared_notes(&events);
    assert!(notes.iter().any(|n| n.starts_with("restored it from the edge's store: ")), "{notes:?}");
    assert!(events.iter().map(kind).any(|k| k == "setup_started:maintenance"), "the maintenance script ran");
    assert_eq!(setup_lines(&events), ["maintaining"]);
    let result = ended["task"]["result"].as_str().unwrap_or_default();
    assert!(result.contains("SETUP_DONE.txt"), "the restored workspace has what setup made: {result}");
    for shown in [ended.to_string(), format!("{events:?}")] {
        assert!(!shown.contains("apcc_"), "the store's credential was shown");
    }
}

/// Starts a task on the repository and waits for its end: its Status and its events.
async fn run(world: &World, token: &str, prompt: &str) -> (Value, Vec<Event>) {
    run_start(world, token, json!({"repositoryUrl": world.repo.url(), "prompt": prompt})).await
}

/// Starts the task `start` asks for and waits for its end: its Status and its events.
async fn run_start(world: &World, token: &str, start: Value) -> (Value, Vec<Event>) {
    let started = world.edge.post_json("/api/container/start", token, start).await;
    let task_id = started["taskId"].as_str().unwrap_or_else(|| panic!("{started}")).to_string();
    let ended = world.edge.until_ended(token, &task_id).await;
    assert_eq!(ended["task"]["state"], "TASK_STATE_SUCCEEDED", "{ended}\n{}", world.edge.log());
    let events = stream_all(&mut world.service.client().await, &task_id, 1).await;
    (ended, events)
}
