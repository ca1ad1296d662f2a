//! Tunnel mode's machine for a test: the real `agent-service connect` process (the same task
//! machinery, the real Claude Code CLI against the fake model API), connected out to an edge with
//! a user's token. Its JSON logs are kept, to wait for its connections and to check for secrets.

use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{
    child_process::{spawn_logged, ChildProcess, Logs},
    fake_model_api::FakeModelApi,
    service::{agent_command, ServiceOptions},
};

/// A running `agent-service connect`.
pub struct Machine {
    /// The process: `terminate` it, `wait` for it.
    pub process: ChildProcess,
    logs: Logs,
    _home: TempDir,
    _work: TempDir,
}

impl Machine {
    /// Starts `agent-service connect --edge <edge_url>` with `token` in its environment.
    pub fn connect(model_api: &FakeModelApi, edge_url: &str, token: &str) -> Machine {
        Machine::connect_with(model_api, edge_url, token, ServiceOptions::default())
    }

    /// [`Machine::connect`] with service options (e.g. a prepared work directory).
    pub fn connect_with(model_api: &FakeModelApi, edge_url: &str, token: &str, options: ServiceOptions) -> Machine {
        let (home, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let work_dir = options.work_dir.clone().unwrap_or_else(|| work.path().to_path_buf());
        let mut command = agent_command(model_api, &options, home.path(), &work_dir);
        command.args(["connect", "--edge", edge_url, "--ping-interval", "1s"]).env("AUTOPILOT_TOKEN", token);
        let (process, logs) = spawn_logged(&mut command, |_| {});
        Machine { process, logs, _home: home, _work: work }
    }

    /// Every log line so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lines()
    }

    /// How many times the machine has connected to the edge so far.
    pub fn connections(&self) -> usize {
        self.logs().iter().filter(|line| line.contains("tunnel: connected")).count()
    }

    /// Waits until the machine has connected `count` times in all.
    pub async fn wait_for_connections(&self, count: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.connections() < count {
            assert!(
                Instant::now() < deadline,
                "the machine did not connect {count} times:\n{}",
                self.logs().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
