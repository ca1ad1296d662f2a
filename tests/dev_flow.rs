//! The README's own flow, as a newcomer runs it: `make dev-offline` from the repository root
//! (relative paths, `.dev/`, the printed token), here on free ports so it runs beside anything
//! else, then a task that changes a file and pushes its branch, through the edge, to SUCCEEDED.
//! Fixtures with absolute temporary directories cannot catch what only the documented command
//! does (it once ran the service with a relative `--work-dir`, and every delivery failed).

use std::{
    io::{BufRead, BufReader},
    os::unix::process::CommandExt,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use autopilot_tests::{
    edge::{get_json, post_json},
    git_fixture::GitFixture,
    service::repo_root,
};
use serde_json::json;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `make dev-offline` in its own process group, stopped (the whole group) when dropped.
struct DevOffline {
    child: std::process::Child,
    output: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for DevOffline {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn make_dev_offline_runs_a_file_changing_task_with_push_to_succeeded() {
    let (service_port, edge_port, model_port) = (free_port(), free_port(), free_port());
    let mut child = Command::new("make")
        .arg("dev-offline")
        .arg(format!("DEV_PORT={service_port}"))
        .arg(format!("EDGE_PORT={edge_port}"))
        .arg(format!("FAKE_MODEL_PORT={model_port}"))
        .current_dir(repo_root())
        .env_remove("ANTHROPIC_API_KEY")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("running make dev-offline");
    let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (token_tx, token_rx) = mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let (output, token_tx) = (output.clone(), token_tx.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                // The token is printed once, indented, on a line of its own.
                if let Some(token) = line.trim().strip_prefix("ap_") {
                    let _ = token_tx.send(format!("ap_{token}"));
                }
                output.lock().unwrap().push(line);
            }
        });
    }
    let dev = DevOffline { child, output };
    let log = || dev.output.lock().unwrap().join("\n");
    let token = tokio::task::spawn_blocking(move || token_rx.recv_timeout(Duration::from_secs(600)))
        .await
        .unwrap()
        .unwrap_or_else(|_| panic!("make dev-offline printed no token:\n{}", log()));

    let repo = GitFixture::new();
    let edge = format!("http://127.0.0.1:{edge_port}");
    let body = json!({
        "repositoryUrl": repo.url(),
        "prompt": "Write the notes SCENARIO:write-file",
        "delivery": {"branch": "dev-flow/notes", "push": true},
    });
    let started = post_json(&edge, "/api/container/start", &token, body).await;
    let task_id = started["taskId"].as_str().unwrap_or_else(|| panic!("no task in {started}\n{}", log())).to_string();
    assert!(
        started["websocketUrl"].as_str().unwrap().starts_with(&format!("ws://127.0.0.1:{edge_port}/")),
        "{started}"
    );

    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        let status = get_json(&edge, &format!("/api/container/status?taskId={task_id}"), &token).await;
        let state = status["task"]["state"].as_str().unwrap_or_default().to_string();
        if ["TASK_STATE_SUCCEEDED", "TASK_STATE_FAILED", "TASK_STATE_CANCELLED", "TASK_STATE_TIMED_OUT"]
            .contains(&state.as_str())
        {
            break status;
        }
        assert!(Instant::now() < deadline, "the task did not end: {status}\n{}", log());
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(status["task"]["state"], "TASK_STATE_SUCCEEDED", "{status}\n{}", log());
    assert_eq!(status["task"]["delivery"]["pushed"], true, "{status}");
    let commit = status["task"]["delivery"]["commit"].as_str().unwrap();
    assert_eq!(repo.rev_parse("dev-flow/notes"), commit, "the pushed branch holds the delivered commit");
    println!("make dev-offline: task {task_id} SUCCEEDED, pushed dev-flow/notes at {commit}");
}
