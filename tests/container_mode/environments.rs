//! Environments in container mode: the setup runs in the user's container before the agent, the
//! workspace it prepared is kept in the edge's store (R2, through the edge's own origin, which the
//! container reaches), and after the container is gone a task in the new one restores it instead
//! of running the setup again. The secret reaches the setup script and no process the agent runs.

use std::time::Duration;

use autopilot_tests::container::podman_ok;
use reqwest::Method;
use serde_json::{json, Value};

use crate::{podman_now, World, ONE_AT_A_TIME};

const SECRET: &str = "registry_canary_77a1e0c4";

#[tokio::test]
async fn a_new_container_restores_the_workspace_an_earlier_one_prepared() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let vars = [
        ("ENVIRONMENT_SECRETS_KEY", "the container test's environment key 3d9"),
        ("PREPARED_STORE_URL", "{edge}/cache/prepared"),
    ];
    let world = World::start(&vars).await;
    let token = world.edge.user("erin", 1_000_000).await;
    let environment = json!({
        "repositories": [world.repo_url],
        "setupScript": "echo \"installing with a ${#REGISTRY_TOKEN}-character token\"\nmkdir -p vendor\nfor i in $(seq 1 200); do head -c 4096 /dev/urandom > vendor/blob-$i; done\necho done > vendor/READY",
        "maintenanceScript": "test -f vendor/READY && echo 'vendor is ready'",
        "variables": {"BUILD_MODE": "container"},
        "secrets": {"REGISTRY_TOKEN": SECRET},
    });
    let (status, saved) = world.edge.call(Method::PUT, "/api/environments/app", &token, Some(environment)).await;
    assert_eq!(status, 200, "{saved}");

    let first = run(&world, &token, "SCENARIO:print-env show me").await;
    assert_eq!(first["task"]["workspaceOrigin"], "WORKSPACE_ORIGIN_FRESH", "{first}");
    let result = first["task"]["result"].as_str().unwrap_or_default();
    assert!(result.contains("BUILD_MODE=container") && !result.contains("REGISTRY_TOKEN"), "{result}");

    // The container goes behind the object's back (as a crash or a redeploy would); the next
    // task's container has never seen the workspace.
    let since = podman_now();
    podman_ok(&["kill", &world.running_container()]);
    world.wait_until_no_container_runs(Duration::from_secs(30)).await;
    let second = run(&world, &token, "SCENARIO:list-files what is here?").await;
    assert_eq!(second["task"]["workspaceOrigin"], "WORKSPACE_ORIGIN_RESTORED", "{second}\n{}", world.all_logs());
    assert_eq!(world.app_containers_created_since(&since).len(), 1, "a new container");
    let result = second["task"]["result"].as_str().unwrap_or_default();
    assert!(result.contains("vendor"), "the restored workspace has what the setup made: {result}");

    let logs = world.all_logs();
    for shown in [first.to_string(), second.to_string(), logs] {
        assert!(!shown.contains(SECRET), "the secret was shown");
        assert!(!shown.contains("apcc_"), "a store credential was shown");
    }
}

/// Starts a task on the world's repository and waits for its end, which must be a success.
async fn run(world: &World, token: &str, prompt: &str) -> Value {
    let started = world.start_task(token, prompt).await;
    let ended = world.wait_for_end(token, started["taskId"].as_str().unwrap()).await;
    assert_eq!(ended["task"]["state"], "TASK_STATE_SUCCEEDED", "{ended}\n{}", world.all_logs());
    ended
}
