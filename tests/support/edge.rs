//! Starts the real edge: `wrangler dev` (workerd) from the repository root, on free loopback
//! ports, with its own state directory, its Durable Objects in local mode pointed at a running
//! agent-service. wrangler runs its build command (`make worker`) first.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tempfile::TempDir;

use crate::service::repo_root;

/// A running `wrangler dev`.
pub struct Edge {
    pub base_url: String,
    pub port: u16,
    child: Child,
    _state: TempDir,
    pub log_path: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Edge {
    /// Starts wrangler dev against the agent-service at `agent_service_url`; waits for /health.
    pub async fn start(agent_service_url: &str) -> Edge {
        Edge::start_with_vars(agent_service_url, &[]).await
    }

    /// [`Edge::start`] with more `--var NAME:VALUE` settings.
    pub async fn start_with_vars(agent_service_url: &str, vars: &[(&str, &str)]) -> Edge {
        let wrangler = repo_root().join("tools/node_modules/.bin/wrangler");
        assert!(wrangler.exists(), "{} is missing: run `make tools` (make test does)", wrangler.display());
        let state = tempfile::tempdir().unwrap();
        let log_path = state.path().join("wrangler.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let (port, inspector) = (free_port(), free_port());
        let child = Command::new(wrangler)
            .current_dir(repo_root())
            .args(["dev", "--local", "--ip", "127.0.0.1", "--show-interactive-dev-session=false"])
            .args([
                "--port",
                &port.to_string(),
                "--inspector-ip",
                "127.0.0.1",
                "--inspector-port",
                &inspector.to_string(),
            ])
            .arg("--persist-to")
            .arg(state.path().join("state"))
            .args(["--var", &format!("AGENT_SERVICE_URL:{agent_service_url}")])
            .args(vars.iter().flat_map(|(name, value)| ["--var".to_string(), format!("{name}:{value}")]))
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CI", "true")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting wrangler dev");
        let edge = Edge { base_url: format!("http://127.0.0.1:{port}"), port, child, _state: state, log_path };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            if let Ok(response) = client.get(format!("{}/health", edge.base_url)).send().await {
                if response.status() == 200 {
                    return edge;
                }
            }
            assert!(Instant::now() < deadline, "wrangler dev did not become ready:\n{}", edge.log());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// What wrangler and the Worker printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The WebSocket base URL, `ws://127.0.0.1:PORT`.
    pub fn ws_base(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        // SIGTERM lets wrangler stop workerd too.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
