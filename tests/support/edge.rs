//! Starts the real edge: `wrangler dev` (workerd) from the repository root, on free loopback
//! ports, with its own state directory, its Durable Objects in local mode pointed at a running
//! agent-service. wrangler runs its build command (`make worker`) first. Or, in container mode,
//! through `local-containers/wrangler-dev.sh`: each user's Durable Object runs the agent-service
//! in a real container on podman.

use std::{
    ffi::OsString,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use tempfile::TempDir;

use crate::service::repo_root;

/// The admin secret the tests give the edge.
pub const ADMIN_SECRET: &str = "test-admin-secret-5b1d09c2e7";
/// The ticket-signing secret the tests give the edge.
pub const TICKET_SECRET: &str = "test-ticket-secret-77a3f0d9c4";

/// A running `wrangler dev`.
pub struct Edge {
    pub base_url: String,
    pub port: u16,
    /// The V8 inspector of the Worker's isolate (the Chrome DevTools protocol).
    pub inspector_port: u16,
    child: Child,
    state: Arc<TempDir>,
    pub log_path: PathBuf,
    /// In container mode: the Worker's name, which every container's name starts with.
    pub worker_name: Option<String>,
    /// How long a SIGTERM may take (container mode removes its containers on the way out).
    stop_grace: Duration,
    /// The command line it was started with, to start it again ([`Edge::restart`]).
    relaunch: Option<Vec<OsString>>,
}

/// What a container-mode edge gets (see `local-containers/wrangler-dev.sh`).
#[derive(Default)]
pub struct ContainerOptions {
    /// Host loopback ports the containers may reach at 127.0.0.1.
    pub loopback_ports: Vec<u16>,
    /// A CA certificate (PEM) the image also trusts.
    pub ca_cert_pem: Option<String>,
    /// Secrets and vars, written to the run's `.dev.vars` (never on a command line); `{edge}` in
    /// a value stands for the edge's own base URL, which the containers can reach.
    pub vars: Vec<(String, String)>,
}

/// The edge's model settings when its containers' agents call `model_api_url`: the Worker holds
/// `key`, its gateway relays to `model_api_url`, and containers reach the gateway on the edge's
/// own port (the key never enters a container).
pub fn model_vars(key: &str, model_api_url: &str) -> Vec<(String, String)> {
    vec![
        ("ANTHROPIC_API_KEY".into(), key.into()),
        ("MODEL_API_URL".into(), model_api_url.into()),
        ("MODEL_GATEWAY_URL".into(), "{edge}/model".into()),
    ]
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Edge {
    /// Starts wrangler dev against the agent-service at `agent_service_url`; waits for /health.
    pub async fn start(agent_service_url: &str) -> Edge {
        Edge::start_with_vars(agent_service_url, &[]).await
    }

    /// [`Edge::start`] with more `--var NAME:VALUE` settings; `{edge}` in a value stands for the
    /// edge's own base URL (e.g. `PUBLIC_ORIGIN`).
    pub async fn start_with_vars(agent_service_url: &str, vars: &[(&str, &str)]) -> Edge {
        let wrangler = repo_root().join("tools/node_modules/.bin/wrangler");
        assert!(wrangler.exists(), "{} is missing: run `make tools` (make test does)", wrangler.display());
        let state = tempfile::tempdir().unwrap();
        let (port, inspector) = (free_port(), free_port());
        let own_url = format!("http://127.0.0.1:{port}");
        let vars: Vec<(&str, String)> =
            vars.iter().map(|(name, value)| (*name, value.replace("{edge}", &own_url))).collect();
        let mut argv: Vec<OsString> = vec![wrangler.into()];
        argv.extend(
            [
                "dev",
                "--local",
                "--ip",
                "127.0.0.1",
                "--show-interactive-dev-session=false",
                "--port",
                &port.to_string(),
                "--inspector-ip",
                "127.0.0.1",
                "--inspector-port",
                &inspector.to_string(),
            ]
            .map(OsString::from),
        );
        argv.extend(["--persist-to".into(), state.path().join("state").into()]);
        let settings = [
            ("AGENT_SERVICE_URL", agent_service_url.to_string()),
            ("ADMIN_SECRET", ADMIN_SECRET.to_string()),
            ("TICKET_SECRET", TICKET_SECRET.to_string()),
        ];
        for (name, value) in settings.iter().map(|(n, v)| (*n, v.clone())).chain(vars) {
            argv.extend(["--var".into(), format!("{name}:{value}").into()]);
        }
        let command = Edge::command(&argv);
        Edge::launch(command, Arc::new(state), (port, inspector), None, Duration::from_secs(5), Some(argv)).await
    }

    /// The command of `argv`, run from the repository root, without telemetry or colours.
    fn command(argv: &[OsString]) -> Command {
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .current_dir(repo_root())
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CI", "true")
            .env("NO_COLOR", "1");
        command
    }

    /// Starts wrangler dev with real containers on podman (`make local-containers` first).
    pub async fn start_with_containers(options: ContainerOptions) -> Edge {
        let script = repo_root().join("local-containers/wrangler-dev.sh");
        let state = tempfile::tempdir().unwrap();
        let (port, inspector) = (free_port(), free_port());
        let worker_name = format!("aptest-{port}");
        let own_url = format!("http://127.0.0.1:{port}");
        let mut dev_vars = format!("ADMIN_SECRET={ADMIN_SECRET}\nTICKET_SECRET={TICKET_SECRET}\n");
        for (name, value) in &options.vars {
            dev_vars.push_str(&format!("{name}={}\n", value.replace("{edge}", &own_url)));
        }
        std::fs::write(state.path().join("dev.vars"), dev_vars).unwrap();
        // The containers reach the edge itself too (its model gateway).
        let ports: Vec<String> = options.loopback_ports.iter().chain([&port]).map(u16::to_string).collect();
        let mut argv: Vec<OsString> = vec![script.into()];
        argv.extend(
            ["--port", &port.to_string(), "--name", &worker_name, "--loopback-ports", &ports.join(",")]
                .map(OsString::from),
        );
        argv.extend(["--state".into(), state.path().join("run").into()]);
        argv.extend(["--dev-vars".into(), state.path().join("dev.vars").into()]);
        if let Some(pem) = &options.ca_cert_pem {
            std::fs::write(state.path().join("ca.crt"), pem).unwrap();
            argv.extend(["--ca-cert".into(), state.path().join("ca.crt").into()]);
        }
        argv.extend(["--", "--inspector-port", &inspector.to_string()].map(OsString::from));
        let command = Edge::command(&argv);
        let ports = (port, inspector);
        Edge::launch(command, Arc::new(state), ports, Some(worker_name), Duration::from_secs(60), Some(argv)).await
    }

    /// Stops this edge (in container mode its launcher removes its containers on the way out, as
    /// a crash or the platform could take them) and starts it again with the same port, name and
    /// state, as a redeploy does: the Durable Objects wake up with only what they stored.
    pub async fn restart(self) -> Edge {
        let argv = self.relaunch.clone().expect("an edge started by Edge::start* restarts");
        let (state, ports, worker_name, stop_grace) =
            (Arc::clone(&self.state), (self.port, self.inspector_port), self.worker_name.clone(), self.stop_grace);
        drop(self);
        Edge::launch(Edge::command(&argv), state, ports, worker_name, stop_grace, Some(argv)).await
    }

    /// Spawns `command` (wrangler, or the container-mode launcher) with its output in the state
    /// directory's log, and waits until the edge answers /health.
    async fn launch(
        mut command: Command,
        state: Arc<TempDir>,
        (port, inspector_port): (u16, u16),
        worker_name: Option<String>,
        stop_grace: Duration,
        relaunch: Option<Vec<OsString>>,
    ) -> Edge {
        let log_path = state.path().join("wrangler.log");
        // Appended: a restarted edge's log follows the first run's.
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {:?}: {e}", command.get_program()));
        let base_url = format!("http://127.0.0.1:{port}");
        let edge = Edge { base_url, port, inspector_port, child, state, log_path, worker_name, stop_grace, relaunch };
        edge.until_healthy().await
    }

    async fn until_healthy(self) -> Edge {
        let mut edge = self;
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            if let Ok(response) = client.get(format!("{}/health", edge.base_url)).send().await {
                if response.status() == 200 {
                    return edge;
                }
            }
            if let Ok(Some(status)) = edge.child.try_wait() {
                panic!("wrangler dev exited ({status}) before it was ready:\n{}", edge.log());
            }
            assert!(Instant::now() < deadline, "wrangler dev did not become ready:\n{}", edge.log());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Creates an API token for `user` through the admin route; answers the create reply
    /// (`token`, `tokenId`, ...).
    pub async fn create_token(&self, user: &str, expires_in_seconds: Option<u64>) -> serde_json::Value {
        let mut body = serde_json::json!({"userId": user, "label": "tests"});
        if let Some(seconds) = expires_in_seconds {
            body["expiresInSeconds"] = seconds.into();
        }
        let reply = reqwest::Client::new()
            .post(format!("{}/api/admin/tokens", self.base_url))
            .bearer_auth(ADMIN_SECRET)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200, "creating a token");
        reply.json().await.unwrap()
    }

    /// Grants `credits` to `user` through the admin route.
    pub async fn grant(&self, user: &str, credits: u64) {
        let reply = reqwest::Client::new()
            .post(format!("{}/api/admin/credits", self.base_url))
            .bearer_auth(ADMIN_SECRET)
            .json(&serde_json::json!({"userId": user, "credits": credits}))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200, "granting credits");
    }

    /// A user with a token and `credits`: answers the token.
    pub async fn user(&self, user: &str, credits: u64) -> String {
        let token = self.create_token(user, None).await["token"].as_str().unwrap().to_string();
        if credits > 0 {
            self.grant(user, credits).await;
        }
        token
    }

    /// GETs `path` with `token`: the HTTP status and the JSON body (null when there is none).
    pub async fn get(&self, path: &str, token: &str) -> (u16, serde_json::Value) {
        let reply =
            reqwest::Client::new().get(format!("{}{path}", self.base_url)).bearer_auth(token).send().await.unwrap();
        (reply.status().as_u16(), reply.json().await.unwrap_or_default())
    }

    /// `method` on `path` with `token` and, if given, a JSON `body`: the HTTP status and the
    /// JSON body (null when there is none).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let request = reqwest::Client::new().request(method, format!("{}{path}", self.base_url)).bearer_auth(token);
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        let reply = request.send().await.unwrap();
        (reply.status().as_u16(), reply.json().await.unwrap_or_default())
    }

    /// Waits (up to 120 s) until the task's Status says it ended; answers that Status.
    pub async fn until_ended(&self, token: &str, task_id: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (_, status) = self.get(&format!("/api/container/status?taskId={task_id}"), token).await;
            let state = status["task"]["state"].as_str().unwrap_or_default();
            if ["TASK_STATE_SUCCEEDED", "TASK_STATE_FAILED", "TASK_STATE_CANCELLED", "TASK_STATE_TIMED_OUT"]
                .contains(&state)
            {
                return status;
            }
            assert!(Instant::now() < deadline, "task {task_id} did not end: {status}\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs `user`'s object's heartbeat now (the admin route): metering, the archive's follows
    /// and completions, the idle policy.
    pub async fn heartbeat(&self, user: &str) {
        let reply = reqwest::Client::new()
            .post(format!("{}/api/admin/meter", self.base_url))
            .bearer_auth(ADMIN_SECRET)
            .json(&serde_json::json!({"userId": user}))
            .send()
            .await
            .unwrap();
        assert!(reply.status().is_success(), "the heartbeat: {}", reply.text().await.unwrap());
    }

    /// GETs `path` with `token`; answers the reply's JSON.
    pub async fn get_json(&self, path: &str, token: &str) -> serde_json::Value {
        get_json(&self.base_url, path, token).await
    }

    /// POSTs `body` as JSON to `path` with `token`; answers the reply's JSON.
    pub async fn post_json(&self, path: &str, token: &str, body: serde_json::Value) -> serde_json::Value {
        post_json(&self.base_url, path, token, body).await
    }

    /// A WebSocket URL with a fresh single-use ticket for `session_id` (tickets cannot be reused,
    /// so every connection asks for its own).
    pub async fn ws_ticket_url(&self, token: &str, session_id: &str) -> String {
        self.ws_ticket_url_for("/api/container/ws-ticket", token, session_id).await
    }

    /// [`Edge::ws_ticket_url`] from the ticket route `path` of a mode (container or tunnel).
    pub async fn ws_ticket_url_for(&self, path: &str, token: &str, session_id: &str) -> String {
        let reply = self.post_json(path, token, serde_json::json!({"sessionId": session_id})).await;
        reply["websocketUrl"].as_str().unwrap_or_else(|| panic!("no websocketUrl in {reply}")).to_string()
    }

    /// Container mode: the run's directory (the Docker API shim's log, the generated config).
    pub fn run_dir(&self) -> PathBuf {
        self.state.path().join("run")
    }

    /// What wrangler and the Worker printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The resident memory (KiB) of the workerd processes this edge runs (wrangler's
    /// descendants named `workerd`), from `/proc`.
    pub fn workerd_rss_kib(&self) -> u64 {
        use agent_service::proc_table::{descendants, snapshot};
        descendants(&snapshot(), self.child.id() as i32)
            .into_iter()
            .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "workerd"))
            .filter_map(|pid| {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
                let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
            .sum()
    }

    /// The CPU time the workerd processes of this edge (wrangler's descendants named `workerd`,
    /// every thread) have used so far, from `/proc/<pid>/task/<tid>/schedstat` (nanoseconds).
    pub fn workerd_cpu(&self) -> Duration {
        use agent_service::proc_table::{descendants, snapshot};
        let nanos: u64 = descendants(&snapshot(), self.child.id() as i32)
            .into_iter()
            .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "workerd"))
            .flat_map(|pid| std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten())
            .filter_map(|thread| {
                let schedstat = std::fs::read_to_string(thread.path().join("schedstat")).ok()?;
                schedstat.split_whitespace().next()?.parse::<u64>().ok()
            })
            .sum();
        Duration::from_nanos(nanos)
    }

    /// The WebSocket base URL, `ws://127.0.0.1:PORT`.
    pub fn ws_base(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }
}

/// A request body of `chunks` chunks of `chunk_bytes` spaces, sent chunked (no Content-Length):
/// what the edge can only count as it reads.
pub fn chunked_body(chunk_bytes: usize, chunks: usize) -> reqwest::Body {
    let chunk = bytes::Bytes::from(vec![b' '; chunk_bytes]);
    reqwest::Body::wrap_stream(futures::stream::iter((0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone()))))
}

/// GETs `path` of the edge at `base_url` with `token`; answers the reply's JSON.
pub async fn get_json(base_url: &str, path: &str, token: &str) -> serde_json::Value {
    let reply = reqwest::Client::new().get(format!("{base_url}{path}")).bearer_auth(token).send().await;
    reply.unwrap().json().await.unwrap()
}

/// POSTs `body` as JSON to `path` of the edge at `base_url` with `token`; answers the reply's JSON.
pub async fn post_json(base_url: &str, path: &str, token: &str, body: serde_json::Value) -> serde_json::Value {
    let reply = reqwest::Client::new().post(format!("{base_url}{path}")).bearer_auth(token).json(&body).send().await;
    reply.unwrap().json().await.unwrap()
}

impl Drop for Edge {
    fn drop(&mut self) {
        // SIGTERM lets wrangler stop workerd too.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + self.stop_grace;
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
