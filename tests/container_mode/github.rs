//! Container mode on a private GitHub repository: the container's git goes through the edge's
//! git gateway, the edge opens the pull request, and no GitHub token reaches the container.

use std::time::Duration;

use autopilot_tests::{container::podman_ok, fake_github::FakeGithub, github_sign_in::connect_github};
use serde_json::{json, Value};

use crate::{World, ONE_AT_A_TIME};

/// A task on a private GitHub repository, in a real container: its git clones and pushes through
/// the edge's git gateway (at the edge's own origin, which the container reaches), the edge opens
/// the draft pull request, and no GitHub token is in any process of the container, nor in a log.
/// (Multi-threaded: the fake GitHub answers the edge while the test waits on podman.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_github_repository_is_worked_on_through_the_git_gateway_from_a_container() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let github = FakeGithub::start().await.unwrap();
    github.add_user("octo", 1001);
    github.add_repo("octo", "private-app", true, "main");
    github.grant("octo", "octo/private-app");
    let world = World::start(&github.edge_vars()).await;
    let token = world.edge.user("octavia", 1_000_000).await;
    connect_github(&world.edge.base_url, &github, "octo", &token).await;

    let repository_url = format!("{}/octo/private-app", github.url);
    let body = json!({"repositoryUrl": repository_url, "prompt": "Add the notes\nSCENARIO:write-file",
        "delivery": {"push": true, "pullRequest": {"open": true}}});
    let started = world.edge.post_json("/api/container/start", &token, body).await;
    let task_id = started["taskId"].as_str().unwrap_or_else(|| panic!("{started}\n{}", world.all_logs())).to_string();
    let ended = world.wait_for_end(&token, &task_id).await;
    assert_eq!(ended["task"]["state"], "TASK_STATE_SUCCEEDED", "{ended}\n{}", world.all_logs());
    let branch = format!("refs/heads/autopilot/{task_id}");
    assert!(github.rev_parse("octo", "private-app", &branch).is_some(), "pushed to GitHub: {ended}");
    let mut pull = Value::Null;
    for _ in 0..100 {
        pull = world.status(&token, &task_id).await["task"]["delivery"]["pullRequest"].clone();
        if !pull.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!((pull["number"].as_u64(), pull["draft"].as_bool()), (Some(1), Some(true)), "{pull}");
    assert_eq!(github.pulls("octo", "private-app").len(), 1);

    let container = world.running_container();
    let environs = podman_ok(&["exec", "--privileged", "--user", "0", &container, "sh", "-c", ALL_ENVIRONMENTS]);
    let logs = world.all_logs();
    let live = github.live_tokens();
    assert!(!live.is_empty());
    for github_token in &live {
        assert!(!environs.contains(github_token), "a GitHub token is in the container");
        assert!(!logs.contains(github_token), "a GitHub token is in a log");
        assert!(!ended.to_string().contains(github_token), "a GitHub token is in the Status");
    }
}

/// Every process's environment in a container, NUL-separated variables as lines.
const ALL_ENVIRONMENTS: &str = "for p in /proc/[0-9]*; do tr '\\0' '\\n' < $p/environ 2>/dev/null; done";
