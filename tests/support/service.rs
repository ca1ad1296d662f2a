//! Starts the real `agent-service` binary for a test: on an ephemeral loopback port, with a
//! fresh work directory and HOME, the real Claude Code CLI from `tools/`, the fake model API,
//! and local repositories allowed. Its JSON logs are kept for the secret checks.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use autopilot_contract::v1::autopilot_client::AutopilotClient;
use tempfile::TempDir;
use tonic::transport::Channel;

use crate::{
    child_process::{spawn_logged, ChildProcess, Logs},
    fake_model_api::FakeModelApi,
    git_fixture::GitFixture,
};

/// The model API key the tests give the service: it must never show anywhere.
pub const CANARY_API_KEY: &str = "sk-ant-canary-7f3e9c1d5b2a";

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// The Claude Code CLI that `make tools` installs (pinned in tools/package.json).
pub fn claude_cli() -> PathBuf {
    let path = repo_root().join("tools/node_modules/.bin/claude");
    assert!(
        path.exists(),
        "{} is missing: run `make tools` (make test does) to install the pinned Claude Code CLI",
        path.display()
    );
    path
}

/// Names another agent-service binary for the tests to run, e.g. the static musl build that
/// the Dockerfile ships (`make test` runs the suite against it too).
pub const AGENT_SERVICE_BIN_ENV: &str = "AUTOPILOT_AGENT_SERVICE_BIN";

/// The agent-service binary built beside this test (`make test` builds it first), or the one
/// `AUTOPILOT_AGENT_SERVICE_BIN` names.
pub fn agent_service_binary() -> PathBuf {
    if let Some(path) = std::env::var_os(AGENT_SERVICE_BIN_ENV) {
        let path = PathBuf::from(path);
        assert!(path.exists(), "{AGENT_SERVICE_BIN_ENV} names {}, which does not exist", path.display());
        return path;
    }
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>");
    let path = profile_dir.join("agent-service");
    assert!(path.exists(), "{} is missing: run `cargo build -p agent-service` first (make test does)", path.display());
    path
}

/// How to start the service.
#[derive(Clone)]
pub struct ServiceOptions {
    pub api_key: Option<String>,
    pub allow_local_repos: bool,
    pub extra_args: Vec<String>,
    /// Reuse this work directory (to test restarts) instead of a fresh one. A relative one is
    /// passed as it is, relative to `current_dir`.
    pub work_dir: Option<PathBuf>,
    /// The directory the service starts in (default: the test's own).
    pub current_dir: Option<PathBuf>,
    /// The Claude Code CLI to pass as `--claude-path`, as it is (default: [`claude_cli`]).
    pub claude_path: Option<PathBuf>,
    /// Whether the agent retries a failed model call as the image's does (the CLI's default).
    /// Off by default: the fake's scripted API errors would otherwise be retried for minutes.
    pub model_retries: bool,
    /// A directory put first on the service's `PATH` (a test's wrapper of a tool, e.g. one
    /// that logs git's command lines before running the real git).
    pub path_prefix: Option<PathBuf>,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            api_key: Some(CANARY_API_KEY.into()),
            allow_local_repos: true,
            extra_args: vec![],
            work_dir: None,
            current_dir: None,
            claude_path: None,
            model_retries: false,
            path_prefix: None,
        }
    }
}

/// The agent-service command line and environment every test uses (JSON logs on stderr, the
/// pinned Claude Code CLI against `model_api`, a private HOME), before the mode's own flags.
pub fn agent_command(model_api: &FakeModelApi, options: &ServiceOptions, home: &Path, work_dir: &Path) -> Command {
    command_for(&model_api.base_url, options, home, work_dir)
}

/// [`agent_command`] against the model API at `model_api_url`.
fn command_for(model_api_url: &str, options: &ServiceOptions, home: &Path, work_dir: &Path) -> Command {
    let mut command = Command::new(agent_service_binary());
    command
        .args(["--log-format", "json", "--stop-grace", "2s"])
        .arg("--work-dir")
        .arg(work_dir)
        .arg("--claude-path")
        .arg(options.claude_path.clone().unwrap_or_else(claude_cli))
        .args(&options.extra_args)
        .env_clear()
        .env("PATH", search_path(options.path_prefix.as_deref()))
        .env("HOME", home)
        .env("RUST_LOG", "info")
        .env("ANTHROPIC_BASE_URL", model_api_url)
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if !options.model_retries {
        command.env("CLAUDE_CODE_MAX_RETRIES", "0");
    }
    if options.allow_local_repos {
        command.arg("--allow-local-repos");
    }
    if let Some(key) = &options.api_key {
        command.env("ANTHROPIC_API_KEY", key);
    }
    if let Some(dir) = &options.current_dir {
        command.current_dir(dir);
    }
    command
}

/// The test's `PATH`, after `prefix` if given.
fn search_path(prefix: Option<&Path>) -> std::ffi::OsString {
    let inherited = std::env::var_os("PATH").unwrap_or_default();
    let Some(prefix) = prefix else { return inherited };
    std::env::join_paths(std::iter::once(prefix.to_path_buf()).chain(std::env::split_paths(&inherited)))
        .expect("a PATH")
}

/// What most service tests start from: the service, the fake model API it talks to, and a
/// repository for it to work on.
pub struct ServiceFixture {
    pub model_api: FakeModelApi,
    pub repo: GitFixture,
    pub service: Service,
}

impl ServiceFixture {
    /// Starts the fake model API and the service with default options, and makes a repository.
    pub async fn start() -> ServiceFixture {
        ServiceFixture::start_with(ServiceOptions::default()).await
    }

    /// [`ServiceFixture::start`] with the service's `options`.
    pub async fn start_with(options: ServiceOptions) -> ServiceFixture {
        let model_api = FakeModelApi::start().await.unwrap();
        let service = Service::start(&model_api, options).await;
        ServiceFixture { model_api, repo: GitFixture::new(), service }
    }
}

/// A running agent-service process.
pub struct Service {
    pub addr: std::net::SocketAddr,
    pub work_dir: PathBuf,
    /// The process: `terminate` it, `wait` for it.
    pub process: ChildProcess,
    logs: Logs,
    _home: TempDir,
    _work: Option<TempDir>,
}

impl Service {
    /// Starts the service against `model_api`, waiting until it listens.
    pub async fn start(model_api: &FakeModelApi, options: ServiceOptions) -> Service {
        Service::start_against(&model_api.base_url, options).await
    }

    /// Starts the service against the model API at `model_api_url` (another fake than
    /// [`FakeModelApi`], say), waiting until it listens.
    pub async fn start_against(model_api_url: &str, options: ServiceOptions) -> Service {
        let home = tempfile::tempdir().unwrap();
        let (work, work_dir) = match &options.work_dir {
            Some(dir) => (None, dir.clone()),
            None => {
                let work = tempfile::tempdir().unwrap();
                let dir = work.path().to_path_buf();
                (Some(work), dir)
            }
        };
        let mut command = command_for(model_api_url, &options, home.path(), &work_dir);
        // The test finds the service's files through an absolute path, whatever it was given.
        let work_dir = match &options.current_dir {
            Some(cwd) if work_dir.is_relative() => cwd.join(work_dir),
            _ => work_dir,
        };
        command.args(["--listen", "127.0.0.1:0"]);
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (process, logs) = spawn_logged(&mut command, move |line| {
            if let Ok(json) = serde_json::from_str::<serde_json::Value>(line) {
                if json["fields"]["message"] == "listening" {
                    let _ = addr_tx.send(json["fields"]["addr"].as_str().unwrap_or_default().to_string());
                }
            }
        });
        let addr = tokio::task::spawn_blocking(move || addr_rx.recv_timeout(Duration::from_secs(30)))
            .await
            .unwrap()
            .expect("agent-service did not report its address");
        Service { addr: addr.parse().unwrap(), work_dir, process, logs, _home: home, _work: work }
    }

    /// Kills the service as a crash would (SIGKILL: no final events, open streams cut) and
    /// starts it again on the same address, with the same work directory and HOME, as the
    /// platform restarts a container's service. Tasks it was running come back FAILED with their
    /// final event recorded. `options` should be those it was started with (the work directory
    /// and listen address are this service's own). The logs kept from now on are the new
    /// process's. Answers once the new process listens.
    pub async fn restart_after_crash(&mut self, model_api: &FakeModelApi, options: &ServiceOptions) {
        let _ = self.process.0.kill();
        let _ = self.process.wait(Duration::from_secs(10)).await.expect("the killed agent-service exited");
        let mut command = agent_command(model_api, options, self._home.path(), &self.work_dir);
        command.arg("--listen").arg(self.addr.to_string());
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (process, logs) = spawn_logged(&mut command, move |line| {
            if let Ok(json) = serde_json::from_str::<serde_json::Value>(line) {
                if json["fields"]["message"] == "listening" {
                    let _ = addr_tx.send(json["fields"]["addr"].as_str().unwrap_or_default().to_string());
                }
            }
        });
        // Dropping the old process here reaps it (it is already dead).
        self.process = process;
        self.logs = logs;
        let addr = tokio::task::spawn_blocking(move || addr_rx.recv_timeout(Duration::from_secs(30)))
            .await
            .unwrap()
            .unwrap_or_else(|_| panic!("the restarted agent-service did not listen on {}", self.addr));
        assert_eq!(addr.parse::<std::net::SocketAddr>().unwrap(), self.addr, "restarted on the same address");
    }

    /// Replaces the service as a new container would: killed, then started on the same address
    /// with an empty work directory, so its task history is gone.
    pub async fn replace_with_empty_work_dir(&mut self, model_api: &FakeModelApi, options: &ServiceOptions) {
        let work = tempfile::tempdir().unwrap();
        self.work_dir = work.path().to_path_buf();
        let old = self._work.replace(work);
        self.restart_after_crash(model_api, options).await;
        drop(old);
    }

    /// A native gRPC (HTTP/2) connection, for any of the service's gRPC services.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr)).unwrap().connect().await.expect("connecting over gRPC")
    }

    /// A native gRPC (HTTP/2) client of the contract.
    pub async fn client(&self) -> AutopilotClient<Channel> {
        AutopilotClient::new(self.channel().await)
    }

    /// Every log line the service wrote so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lines()
    }
}
