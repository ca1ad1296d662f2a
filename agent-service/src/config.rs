//! The service's settings: flags, each with an environment variable of the same meaning, and
//! defaults that run as-is in the container. The model API key is read only from the environment
//! (never a flag, so it cannot show in `ps` or `--help`).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

/// Command-line flags and environment of the agent-service.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "agent-service",
    version,
    about = "Runs a coding agent on git repositories and streams every step over gRPC and gRPC-web."
)]
pub struct Config {
    /// Address to listen on. Defaults to 0.0.0.0 on --port.
    #[arg(long, global = true, env = "LISTEN_ADDR")]
    pub listen: Option<SocketAddr>,
    /// Port to listen on (all interfaces), when --listen is not given.
    #[arg(long, global = true, env = "PORT", default_value_t = 8080)]
    pub port: u16,
    /// Directory for task workspaces and event logs.
    #[arg(long, global = true, env = "AUTOPILOT_WORK_DIR", default_value = "/tmp/autopilot")]
    pub work_dir: PathBuf,
    /// The Claude Code CLI to run.
    #[arg(long, global = true, env = "CLAUDE_CODE_PATH", default_value = "claude")]
    pub claude_path: PathBuf,
    /// The Claude Code version the service expects; it refuses to start if the CLI reports another.
    #[arg(long, global = true, env = "CLAUDE_CODE_VERSION")]
    pub claude_version: Option<String>,
    /// The git executable.
    #[arg(long, global = true, env = "GIT_PATH", default_value = "git")]
    pub git_path: PathBuf,
    /// Allow file:// URLs and local paths as repositories (local development and tests only).
    #[arg(long, global = true, env = "AUTOPILOT_ALLOW_LOCAL_REPOS")]
    pub allow_local_repos: bool,
    /// Wall-clock limit of a task that does not set one.
    #[arg(long, global = true, env = "AUTOPILOT_DEFAULT_TIMEOUT", default_value = "30m", value_parser = humantime::parse_duration)]
    pub default_timeout: Duration,
    /// Largest wall-clock limit a task may ask for.
    #[arg(long, global = true, env = "AUTOPILOT_MAX_TIMEOUT", default_value = "24h", value_parser = humantime::parse_duration)]
    pub max_timeout: Duration,
    /// Longest a clone, or one git command of the delivery (such as the push), may take.
    #[arg(long, global = true, env = "AUTOPILOT_CLONE_TIMEOUT", default_value = "10m", value_parser = humantime::parse_duration)]
    pub clone_timeout: Duration,
    /// How long a stopped agent or git gets between SIGTERM and SIGKILL.
    #[arg(long, global = true, env = "AUTOPILOT_STOP_GRACE", default_value = "5s", value_parser = humantime::parse_duration)]
    pub stop_grace: Duration,
    /// Tasks that may run at once, each in its own workspace with its own agent; one more Start
    /// is refused with RESOURCE_EXHAUSTED until one ends.
    #[arg(long, global = true, env = "AUTOPILOT_MAX_TASKS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub max_tasks: u32,
    /// Ended tasks kept (with their workspaces and logs); older ones are deleted.
    #[arg(long, global = true, env = "AUTOPILOT_HISTORY", default_value_t = 50)]
    pub history: usize,
    /// A browser origin allowed to call the service directly (CORS), e.g. https://app.example.com;
    /// repeatable. None by default: the edge calls the service server to server, and no web page
    /// needs to.
    #[arg(long = "cors-origin", value_name = "URL", env = "AUTOPILOT_CORS_ORIGINS", value_delimiter = ',', value_parser = crate::cors::parse_origin)]
    pub cors_origins: Vec<String>,
    /// A host name requests may be addressed to (Host header, or :authority), on any port, besides
    /// localhost, 127.0.0.1, ::1 and this machine's hostname; repeatable. Requests for other names
    /// are refused with 403 (GET /ping excepted), so a web page whose name points at this machine
    /// (DNS rebinding) cannot reach it.
    #[arg(long = "allowed-host", value_name = "NAME", env = "AUTOPILOT_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    /// Log format: "text" or "json".
    #[arg(long, global = true, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// Started as root (the container image): the user the service and everything it runs
    /// become, root kept for environments' setup scripts only (see `privileges.rs`). Ignored
    /// when not started as root.
    #[arg(long, global = true, env = "AUTOPILOT_AGENT_USER")]
    pub agent_user: Option<String>,
    /// What to run: without a subcommand, the service on its port.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The modes the binary runs in besides serving on a port.
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Tunnel mode (free): run the agent here, on this machine, reached through the edge. Opens a
    /// WebSocket out to the edge (no port is opened here) and reconnects when it drops; tasks keep
    /// running meanwhile. Give the token in AUTOPILOT_TOKEN rather than --token, so it stays out
    /// of `ps`.
    Connect(ConnectArgs),
    /// Internal: leads the agent's process group and takes it down with the service
    /// ([`crate::agent::guard`]). The service runs it; people do not.
    #[command(name = crate::agent::guard::SUBCOMMAND, hide = true)]
    AgentGuard(crate::agent::guard::GuardArgs),
}

/// Flags of `agent-service connect`.
#[derive(Args, Clone)]
pub struct ConnectArgs {
    /// The edge's URL, e.g. https://autopilot.example.com (http://127.0.0.1:8787 with `make dev`).
    #[arg(long, env = "AUTOPILOT_EDGE_URL")]
    pub edge: url::Url,
    /// Your API token.
    #[arg(long, env = "AUTOPILOT_TOKEN", hide_env_values = true)]
    pub token: String,
    /// How often to ping the edge; three intervals without a word from it count as a drop.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration, hide = true)]
    pub ping_interval: Duration,
}

impl std::fmt::Debug for ConnectArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectArgs").field("edge", &self.edge).field("token", &"<redacted>").finish()
    }
}

impl Config {
    /// The address to bind.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], self.port)))
    }
}

/// Environment variables the agent CLI inherits from the service; nothing else is passed, so
/// the agent (and every command it runs) sees no other secret of the service's environment.
pub fn agent_env(vars: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    const EXACT: [&str; 13] = [
        "PATH",
        "HOME",
        "USER",
        "LANG",
        "LC_ALL",
        "TMPDIR",
        "SHELL",
        "TERM",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
    ];
    const PREFIXES: [&str; 4] = ["ANTHROPIC_", "CLAUDE_CODE_", "DISABLE_", "CLAUDE_CONFIG_DIR"];
    let mut env: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(name, _)| {
            EXACT.contains(&name.as_str()) || PREFIXES.iter().any(|p| name.starts_with(p)) || name == "no_proxy"
        })
        .collect();
    env.sort();
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_agents_variables_pass() {
        let vars = [
            ("PATH", "/bin"),
            ("ANTHROPIC_API_KEY", "k"),
            ("ANTHROPIC_BASE_URL", "http://x"),
            ("CLAUDE_CODE_MAX_RETRIES", "0"),
            ("AWS_SECRET_ACCESS_KEY", "nope"),
            ("DATABASE_URL", "nope"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()));
        let names: Vec<String> = agent_env(vars).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "CLAUDE_CODE_MAX_RETRIES", "PATH"]);
    }

    #[test]
    fn defaults_suit_the_container() {
        let config = Config::parse_from(["agent-service"]);
        assert_eq!(config.listen_addr().to_string(), "0.0.0.0:8080");
        assert_eq!(config.default_timeout, Duration::from_secs(1800));
        assert!(!config.allow_local_repos);
        assert!(config.command.is_none());
        assert!(config.cors_origins.is_empty(), "no web page may call the service unless named");
        assert!(config.allowed_hosts.is_empty());
        assert_eq!(config.max_tasks, 3);
        assert!(Config::try_parse_from(["agent-service", "--max-tasks", "0"]).is_err());
    }

    #[test]
    fn origins_and_hosts_repeat_or_come_comma_separated() {
        let config = Config::parse_from([
            "agent-service",
            "--cors-origin",
            "https://a.example",
            "--cors-origin",
            "http://localhost:5173,https://b.example/",
            "--allowed-host",
            "agent.internal",
        ]);
        assert_eq!(config.cors_origins, ["https://a.example", "http://localhost:5173", "https://b.example"]);
        assert_eq!(config.allowed_hosts, ["agent.internal"]);
        assert!(Config::try_parse_from(["agent-service", "--cors-origin", "*"]).is_err());
    }

    #[test]
    fn connect_takes_the_service_flags_after_it() {
        let config = Config::parse_from([
            "agent-service",
            "connect",
            "--edge",
            "http://127.0.0.1:8787",
            "--token",
            "ap_secret",
            "--work-dir",
            "/tmp/w",
        ]);
        assert_eq!(config.work_dir, PathBuf::from("/tmp/w"));
        let Some(Command::Connect(args)) = config.command else { panic!("expected connect") };
        assert_eq!(args.edge.as_str(), "http://127.0.0.1:8787/");
        assert!(!format!("{args:?}").contains("ap_secret"), "the token never prints");
    }
}
