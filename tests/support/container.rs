//! Runs the agent-service container image with podman for a test (the stand-in of the
//! Dockerfile's runtime stage that `make image` builds). The container shares the host's network,
//! so every connection stays on 127.0.0.1: the test reaches the service on a free loopback port,
//! and the service reaches the fake model API the test runs on the host. Repository folders are
//! mounted read-only at their own paths, so fixtures' file:// URLs work unchanged. The API key
//! is handed over through the environment only (never on podman's command line). The container
//! is removed when dropped.

use std::{
    io::Write,
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::Path,
    process::{Command, Output},
    time::{Duration, Instant},
};

use autopilot_contract::v1::autopilot_client::AutopilotClient;
use tonic::transport::Channel;

use crate::{fake_model_api::FakeModelApi, service::CANARY_API_KEY};

/// Names the image to run; `DEFAULT_IMAGE` otherwise.
pub const IMAGE_ENV: &str = "AUTOPILOT_TEST_IMAGE";
/// The tag `make image` gives the image.
pub const DEFAULT_IMAGE: &str = "localhost/autopilot-agent:test";
/// When set, a missing podman fails the tests instead of skipping them (`make test` sets it).
pub const REQUIRE_PODMAN_ENV: &str = "AUTOPILOT_REQUIRE_PODMAN";
/// The non-root user the image runs as.
pub const IMAGE_UID: u32 = 10001;

/// How long the service in a fresh container may take to answer `/ping` (it is ~1 s here).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether podman is installed. Without it the container tests skip, saying so loudly, unless
/// `AUTOPILOT_REQUIRE_PODMAN` is set, where they fail.
pub fn podman_available() -> bool {
    let found = Command::new("podman").arg("--version").output().is_ok_and(|out| out.status.success());
    if !found {
        assert!(
            std::env::var_os(REQUIRE_PODMAN_ENV).is_none(),
            "podman is not installed but {REQUIRE_PODMAN_ENV} is set: apt-get install podman runc (.ci/run does)"
        );
        // Written to stderr directly: the test harness captures eprintln! of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED: podman is not installed, so the container image is NOT tested. ***\n"
        );
    }
    found
}

/// The image under test.
pub fn image() -> String {
    std::env::var(IMAGE_ENV).unwrap_or_else(|_| DEFAULT_IMAGE.to_string())
}

/// Runs podman with `args` and returns what it printed; panics if it cannot start.
pub fn podman(args: &[&str]) -> Output {
    Command::new("podman").args(args).output().expect("running podman")
}

/// Runs podman with `args`, panicking with its stderr unless it succeeds; returns its stdout.
pub fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(out.status.success(), "podman {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Everything container `name` printed, as `podman logs` shows it (stdout, then stderr).
pub fn podman_logs(name: &str) -> String {
    let out = podman(&["logs", name]);
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A free port on 127.0.0.1 (the service in the container binds it next).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port()
}

/// A running container of the image.
pub struct Container {
    pub name: String,
    /// Where the service listens (on the host's loopback).
    pub addr: SocketAddr,
}

impl Container {
    /// Starts the image against `model_api` with `read_only_mounts` mounted at their own paths,
    /// waiting until the service answers `/ping`.
    pub async fn start(model_api: &FakeModelApi, read_only_mounts: &[&Path]) -> Container {
        let image = image();
        let images = podman_ok(&["images", "--quiet", &image]);
        assert!(!images.trim().is_empty(), "the image {image} is missing: build it with `make image` (make test does)");
        let port = free_port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let name = format!("autopilot-test-{}-{port}", std::process::id());
        let mut command = Command::new("podman");
        command.args(["run", "--detach", "--pull=never", "--log-driver=k8s-file", "--network=host", "--name", &name]);
        for mount in read_only_mounts {
            command.arg("--volume").arg(format!("{0}:{0}:ro", mount.display()));
        }
        // LISTEN_ADDR keeps the service on loopback (the host's network is shared); PORT is what
        // the image's healthcheck reads. `-e NAME` without a value takes it from podman's own
        // environment, so the key is not on any command line.
        command
            .env("ANTHROPIC_API_KEY", CANARY_API_KEY)
            .args(["-e", "ANTHROPIC_API_KEY"])
            .args(["-e", &format!("ANTHROPIC_BASE_URL={}", model_api.base_url)])
            .args(["-e", &format!("LISTEN_ADDR={addr}"), "-e", &format!("PORT={port}")])
            .args(["-e", "AUTOPILOT_ALLOW_LOCAL_REPOS=true", "-e", "AUTOPILOT_STOP_GRACE=2s", "-e", "RUST_LOG=info"])
            .args(["-e", "DISABLE_ERROR_REPORTING=1", "-e", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1"])
            .args(["-e", "CLAUDE_CODE_MAX_RETRIES=0"])
            .arg(&image);
        let out = command.output().expect("running podman");
        assert!(out.status.success(), "podman run failed: {}", String::from_utf8_lossy(&out.stderr));
        let container = Container { name, addr };
        container.wait_until_ready().await;
        container
    }

    async fn wait_until_ready(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let url = format!("http://{}/ping", self.addr);
        loop {
            if let Ok(response) = reqwest::get(&url).await {
                if response.status().is_success() {
                    return;
                }
            }
            let running = self.inspect("{{.State.Running}}");
            assert!(running == "true", "the container stopped before /ping answered:\n{}", self.logs());
            assert!(Instant::now() < deadline, "/ping did not answer within {READY_TIMEOUT:?}:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A native gRPC client of the contract, connected to the containerised service.
    pub async fn client(&self) -> AutopilotClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .expect("connecting over gRPC");
        AutopilotClient::new(channel)
    }

    /// Everything the container printed (the service's logs), as `podman logs` shows it.
    pub fn logs(&self) -> String {
        podman_logs(&self.name)
    }

    /// A field of `podman inspect`, e.g. `{{.State.ExitCode}}`.
    pub fn inspect(&self, format: &str) -> String {
        String::from_utf8_lossy(&podman(&["inspect", "--format", format, &self.name]).stdout).trim().to_string()
    }

    /// Runs a command in the container (as the image's user) and returns its stdout.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut all = vec!["exec", self.name.as_str()];
        all.extend_from_slice(args);
        podman_ok(&all)
    }

    /// The container's processes as (host uid, uid, command line), from `podman top`.
    pub fn processes(&self) -> Vec<(String, String, String)> {
        podman_ok(&["top", &self.name, "huser", "user", "args"])
            .lines()
            .skip(1)
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                Some((fields.next()?.to_string(), fields.next()?.to_string(), fields.collect::<Vec<_>>().join(" ")))
            })
            .collect()
    }

    /// Runs the image's HEALTHCHECK once, as the engine would.
    pub fn healthcheck(&self) -> Output {
        podman(&["healthcheck", "run", &self.name])
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "--force", "--time", "0", &self.name]);
    }
}
