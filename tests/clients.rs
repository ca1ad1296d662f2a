//! The generated clients in other languages, tested against the real services: this harness
//! starts them (the real agent-service with the real Claude Code CLI, a local bare repository,
//! the fake model API, and for the TypeScript client also the edge under real `wrangler dev` with
//! a user, a token and credits), then runs each client's own test suite (pytest, `node --test`)
//! with their addresses in the environment.

use std::{path::PathBuf, time::Duration};

use autopilot_tests::{
    edge::Edge,
    service::{repo_root, ServiceFixture},
};

/// How long a client's whole suite may take.
const SUITE_DEADLINE: Duration = Duration::from_secs(300);

fn installed(path: &str, make_target: &str) -> PathBuf {
    let path = repo_root().join(path);
    assert!(path.exists(), "{} is missing: run `make {make_target}` (make test does)", path.display());
    path
}

/// Runs a suite; fails the test with everything it printed unless it passed in time.
async fn run_suite(name: &str, mut command: tokio::process::Command) {
    // Output goes to a file, so a suite that hangs still shows how far it got.
    let log_dir = tempfile::tempdir().unwrap();
    let log_path = log_dir.path().join("suite.log");
    let log = std::fs::File::create(&log_path).unwrap();
    command.current_dir(repo_root()).kill_on_drop(true).stdout(log.try_clone().unwrap()).stderr(log);
    let mut child = command.spawn().unwrap_or_else(|e| panic!("running the {name} suite: {e}"));
    let status = tokio::time::timeout(SUITE_DEADLINE, child.wait()).await;
    let printed = std::fs::read_to_string(&log_path).unwrap_or_default();
    match status {
        Ok(Ok(status)) => assert!(status.success(), "the {name} suite failed ({status}):\n{printed}"),
        Ok(Err(e)) => panic!("waiting for the {name} suite: {e}"),
        Err(_) => panic!("the {name} suite did not finish in {SUITE_DEADLINE:?}:\n{printed}"),
    }
    println!("{printed}");
}

#[tokio::test]
async fn python_client_against_the_agent_service() {
    let python = installed("clients/python/.venv/bin/python", "python-client");
    let setup = ServiceFixture::start().await;
    let mut pytest = tokio::process::Command::new(python);
    pytest
        .args(["-m", "pytest", "clients/python/tests", "-q"])
        .env("AUTOPILOT_ADDRESS", setup.service.addr.to_string())
        .env("AUTOPILOT_TEST_REPOSITORY", setup.repo.url())
        .env("AUTOPILOT_TEST_MAIN_COMMIT", setup.repo.rev_parse("main"));
    run_suite("Python client", pytest).await;
}

#[tokio::test]
async fn typescript_client_against_the_agent_service_and_through_the_edge() {
    installed("clients/ts/dist/index.js", "ts-client");
    let setup = ServiceFixture::start().await;
    let service_url = format!("http://{}", setup.service.addr);
    let edge = Edge::start(&service_url).await;
    let token = edge.user("ts-client", 100_000).await;
    let broke = edge.user("ts-client-no-credits", 0).await;
    let mut node = tokio::process::Command::new("node");
    node.args(["--test", "--test-concurrency=1", "clients/ts/tests/"])
        .env("AUTOPILOT_SERVICE_URL", &service_url)
        .env("AUTOPILOT_EDGE_URL", &edge.base_url)
        .env("AUTOPILOT_EDGE_TOKEN", &token)
        .env("AUTOPILOT_EDGE_TOKEN_NO_CREDITS", &broke)
        .env("AUTOPILOT_TEST_REPOSITORY", setup.repo.url())
        .env("AUTOPILOT_TEST_MAIN_COMMIT", setup.repo.rev_parse("main"));
    run_suite("TypeScript client", node).await;
}
