//! Environments in container mode: the setup runs in the user's container before the agent, as
//! root, and installs a system package the image lacks (a `.deb` the repository carries: the
//! stand-in image is Debian's, and nothing outside is reachable); the agent runs as the image's
//! user and uses it. The workspace the setup prepared is kept in the edge's store (R2, through the
//! edge's own origin, which the container reaches); after the container is gone, a task in the new
//! one restores it, and since its system package is not in the new container, runs the setup
//! again (saying so) rather than the maintenance script. The secret reaches the setup script and
//! no process the agent runs; a cancel stops a setup running as root.

use std::{path::Path, time::Duration};

use autopilot_contract::v1::{client_frame::Request as ClientRequest, CancelRequest, ClientFrame, Event};
use autopilot_tests::{
    bridge_client::{connect, send, Encoding},
    container::podman_ok,
    events::{kind, prepared_notes, setup_lines},
    git_fixture::git,
};
use reqwest::Method;
use serde_json::{json, Value};

use crate::{podman_now, replay_by_task, World, ONE_AT_A_TIME};

const SECRET: &str = "registry_canary_77a1e0c4";

const SETUP_SCRIPT: &str = r#"echo "setting up as uid $(id -u) with a ${#REGISTRY_TOKEN}-character token"
dpkg -i tools/autopilot-hello.deb > /dev/null
mkdir -p vendor
for i in $(seq 1 200); do head -c 4096 /dev/urandom > vendor/blob-$i; done
echo done > vendor/READY"#;

#[tokio::test]
async fn setup_installs_a_system_package_as_root_and_a_new_container_restores_what_it_prepared() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let vars = [
        ("ENVIRONMENT_SECRETS_KEY", "the container test's environment key 3d9"),
        ("PREPARED_STORE_URL", "{edge}/cache/prepared"),
    ];
    let world = World::start(&vars).await;
    add_package_to_repository(&world._repo.bare_dir());
    let token = world.edge.user("erin", 1_000_000).await;
    let environment = json!({
        "repositories": [world.repo_url],
        "setupScript": SETUP_SCRIPT,
        "maintenanceScript": "test -f vendor/READY && echo 'vendor is ready'",
        "variables": {"BUILD_MODE": "container"},
        "secrets": {"REGISTRY_TOKEN": SECRET},
    });
    let (status, saved) = world.edge.call(Method::PUT, "/api/environments/app", &token, Some(environment)).await;
    assert_eq!(status, 200, "{saved}");

    // The setup runs as root and installs the package; the agent runs as the image's user and
    // has it; what the setup made in the workspace is the agent's.
    let (first, events) = run(&world, &token, "SCENARIO:who-and-hello").await;
    assert_eq!(first["task"]["workspaceOrigin"], "WORKSPACE_ORIGIN_FRESH", "{first}");
    let length = SECRET.len();
    assert_eq!(setup_lines(&events), [format!("setting up as uid 0 with a {length}-character token")]);
    let result = first["task"]["result"].as_str().unwrap_or_default();
    assert!(result.contains("uid 10001") && result.contains("hello from a system package"), "{result}");
    let task_id = first["task"]["taskId"].as_str().unwrap();
    let owner = podman_ok(&[
        "exec",
        &world.running_container(),
        "stat",
        "-c",
        "%u",
        &format!("/workspace/tasks/{task_id}/repo/vendor/READY"),
    ]);
    assert_eq!(owner.trim(), "10001", "the workspace is given back to the agent's user");

    // The same container: the prepared copy and the maintenance script; no secret for the agent.
    let (second, events) = run(&world, &token, "SCENARIO:print-env show me").await;
    assert_eq!(second["task"]["workspaceOrigin"], "WORKSPACE_ORIGIN_PREPARED", "{second}");
    assert_eq!(setup_lines(&events), ["vendor is ready"]);
    let result = second["task"]["result"].as_str().unwrap_or_default();
    assert!(result.contains("BUILD_MODE=container") && !result.contains("REGISTRY_TOKEN"), "{result}");

    // The container goes behind the object's back (as a crash or a redeploy would); the next
    // task's container has never seen the workspace, nor the package.
    let since = podman_now();
    podman_ok(&["kill", &world.running_container()]);
    world.wait_until_no_container_runs(Duration::from_secs(30)).await;
    let (third, events) = run(&world, &token, "SCENARIO:who-and-hello again").await;
    assert_eq!(third["task"]["workspaceOrigin"], "WORKSPACE_ORIGIN_RESTORED", "{third}\n{}", world.all_logs());
    assert_eq!(world.app_containers_created_since(&since).len(), 1, "a new container");
    let notes = prepared_notes(&events);
    assert!(notes.iter().any(|n| n.starts_with("restored it from the edge's store: ")), "{notes:?}");
    assert!(notes.iter().any(|n| n.contains("are not on this machine: running the setup script again")), "{notes:?}");
    assert!(events.iter().map(kind).any(|k| k == "setup_started"), "the setup script, not the maintenance one");
    let result = third["task"]["result"].as_str().unwrap_or_default();
    assert!(result.contains("uid 10001") && result.contains("hello from a system package"), "{result}");

    a_cancel_stops_a_setup_running_as_root(&world, &token).await;

    let logs = world.all_logs();
    for shown in [first.to_string(), second.to_string(), third.to_string(), logs] {
        assert!(!shown.contains(SECRET), "the secret was shown");
        assert!(!shown.contains("apcc_"), "a store credential was shown");
    }
}

/// A cancel reaches a setup script running as root (the service signals it as root), and
/// nothing of it is left in the container.
async fn a_cancel_stops_a_setup_running_as_root(world: &World, token: &str) {
    let slow = json!({"repositories": [], "setupScript": "echo waiting\nsleep 300"});
    let (status, saved) = world.edge.call(Method::PUT, "/api/environments/slow", token, Some(slow)).await;
    assert_eq!(status, 200, "{saved}");
    let body = json!({"repositoryUrl": world.repo_url, "prompt": "SCENARIO:answer", "environment": "slow"});
    let started = world.edge.post_json("/api/container/start", token, body).await;
    let task_id = started["taskId"].as_str().unwrap_or_else(|| panic!("{started}")).to_string();
    let mut socket = connect(&world.edge.ws_ticket_url(token, started["sessionId"].as_str().unwrap()).await).await;
    let mut setting_up = false;
    for _ in 0..100 {
        setting_up = world.status(token, &task_id).await["task"]["state"] == "TASK_STATE_SETTING_UP";
        if setting_up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(setting_up, "the task reached its setup");
    let cancel = ClientFrame {
        request_id: "cancel".into(),
        request: Some(ClientRequest::Cancel(CancelRequest { task_id: task_id.clone(), ..Default::default() })),
    };
    send(&mut socket, &cancel, Encoding::Binary).await;
    let ended = world.wait_for_end(token, &task_id).await;
    assert_eq!(ended["task"]["state"], "TASK_STATE_CANCELLED", "{ended}");
    let commands = "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done";
    let running = podman_ok(&["exec", &world.running_container(), "sh", "-c", commands]);
    assert!(!running.contains("sleep 300"), "the setup was left running: {running}");
}

/// Commits `tools/autopilot-hello.deb` (a package with `/usr/bin/autopilot-hello`, built here
/// with dpkg-deb) to the bare repository at `bare`.
fn add_package_to_repository(bare: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let package = dir.path().join("package");
    std::fs::create_dir_all(package.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(package.join("usr/bin")).unwrap();
    std::fs::write(
        package.join("DEBIAN/control"),
        "Package: autopilot-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: autopilot tests \
         <tests@example.invalid>\nDescription: a system package the image lacks\n",
    )
    .unwrap();
    let program = package.join("usr/bin/autopilot-hello");
    std::fs::write(&program, "#!/bin/sh\necho 'hello from a system package'\n").unwrap();
    std::fs::set_permissions(&program, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let work = dir.path().join("work");
    git(dir.path(), &["clone", "-q", &bare.display().to_string(), "work"]);
    std::fs::create_dir_all(work.join("tools")).unwrap();
    let deb = work.join("tools/autopilot-hello.deb");
    let status = std::process::Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group"])
        .arg(&package)
        .arg(&deb)
        .output()
        .unwrap();
    assert!(status.status.success(), "dpkg-deb: {}", String::from_utf8_lossy(&status.stderr));
    git(&work, &["add", "tools"]);
    git(&work, &["-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "the hello package"]);
    git(&work, &["push", "-q", "origin", "HEAD"]);
}

/// Starts a task on the world's repository and waits for its end, which must be a success: its
/// Status and its events.
async fn run(world: &World, token: &str, prompt: &str) -> (Value, Vec<Event>) {
    let started = world.start_task(token, prompt).await;
    let task_id = started["taskId"].as_str().unwrap();
    let ended = world.wait_for_end(token, task_id).await;
    assert_eq!(ended["task"]["state"], "TASK_STATE_SUCCEEDED", "{ended}\n{}", world.all_logs());
    (ended, replay_by_task(world, token, task_id).await)
}
