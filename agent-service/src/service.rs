//! The whole service assembled from its parts: reads the environment (the model API key, git
//! credentials), builds the task manager with its redactor and run context, puts the
//! [`AutopilotApi`] over it with the request limits, and serves that API on a listener
//! ([`run`], through [`crate::server`]) or through the edge in tunnel mode ([`connect`], through
//! [`crate::tunnel`]). It exists so that the binary only parses flags, starts logging and binds
//! (`main.rs`), and the library's root only lists modules; tests and benches call [`run`] to get
//! the very service the binary runs. Shutdown stops the running tasks before serving ends.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::net::TcpListener;

use crate::{
    agent::{claude_code::ClaudeCode, guard::Guard},
    config::{agent_env, Config},
    git_clone::GitSettings,
    git_credentials::GitCredentials,
    grpc_api::AutopilotApi,
    host_guard::AllowedHosts,
    prepared_store::PreparedStoreClient,
    prepared_workspaces::PreparedWorkspaces,
    redact::Redactor,
    run_context::RunContext,
    server,
    task_manager::TaskManager,
    tunnel,
    validate::Limits,
};

/// Error type of the service's entry points.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Runs the whole service on `listener` with `config` until `shutdown` completes; then stops the
/// running task (its final event recorded and delivered), finishes open requests, and returns.
///
/// `config`'s paths are used as they are: the binary makes them absolute at start
/// ([`crate::absolute_paths`]). Tasks run their agent under this binary's guard mode
/// ([`crate::agent::guard`]), so the program calling this must be the agent-service.
///
/// # Errors
/// The work directory could not be prepared, or serving failed.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let (api, shutdown) = build(&config, shutdown)?;
    let access = server::Access {
        cors_origins: config.cors_origins.clone(),
        allowed_hosts: AllowedHosts::with_own_hostname(&config.allowed_hosts),
    };
    tracing::info!(
        addr = %listener.local_addr()?,
        work_dir = %config.work_dir.display(),
        allowed_hosts = %access.allowed_hosts.names().collect::<Vec<_>>().join(","),
        cors_origins = %access.cors_origins.join(","),
        "listening"
    );
    server::run(listener, api, access, shutdown).await
}

/// Tunnel mode: runs the same task machinery, reached through the edge over the connection this
/// machine opens to it ([`crate::tunnel`]) instead of a listener, until `shutdown` completes.
///
/// # Errors
/// The work directory could not be prepared, or the edge refused this machine for good (a
/// rejected token, or another machine replaced this one).
pub async fn connect(
    config: Config,
    settings: tunnel::TunnelSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let (api, shutdown) = build(&config, shutdown)?;
    tracing::info!(edge = %settings.edge, work_dir = %config.work_dir.display(), "tunnel mode");
    tunnel::run(api, settings, shutdown).await
}

/// The service's API over its task manager, and a shutdown that stops the running tasks first,
/// so that streams following them deliver their final events and end by themselves.
fn build(
    config: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(Arc<AutopilotApi>, impl Future<Output = ()> + Send + 'static), Error> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let api_key = env.iter().find(|(k, _)| k == "ANTHROPIC_API_KEY").map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
    if api_key.is_none() {
        tracing::warn!(
            "ANTHROPIC_API_KEY is not set: only tasks started with their own model access (an edge's model \
             gateway) can run; others fail until the service is given a key"
        );
    }
    // Read from the environment only, like the API key: never a flag (it would show in `ps`).
    let git_credentials = GitCredentials::from_env(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let guard = Guard::this_program()
        .map_err(|e| format!("cannot find this program's own path, which the agent runs under: {e}"))?;
    let ctx = RunContext {
        agent: Arc::new(ClaudeCode { program: config.claude_path.clone() }),
        guard,
        git: GitSettings {
            program: config.git_path.clone(),
            allow_file: config.allow_local_repos,
            timeout: config.clone_timeout,
            grace: config.stop_grace,
            credentials_env: git_credentials.git_env(),
        },
        git_credentials: git_credentials.clone(),
        grace: config.stop_grace,
        agent_env: agent_env(env),
        has_api_key: api_key.is_some(),
        agent_problem: Arc::default(),
        prepared: PreparedWorkspaces::open(&config.work_dir, config.stop_grace).map_err(|e| {
            format!("cannot prepare {}/prepared for prepared workspaces: {e}", config.work_dir.display())
        })?,
        store_client: PreparedStoreClient::default(),
    };
    // Asking the CLI its version takes longer than the service needs to start answering /ping,
    // so it runs beside serving; a pinned version that does not match fails every task.
    tokio::spawn(check_agent_version(config.clone(), Arc::clone(&ctx.agent_problem)));
    let redactor = Redactor::new(api_key.into_iter().chain(git_credentials.secrets()));
    let manager = TaskManager::new(config.work_dir.clone(), config.history, config.max_tasks as usize, ctx, redactor)?;
    let limits = Limits {
        allow_local_repos: config.allow_local_repos,
        default_timeout: config.default_timeout,
        max_timeout: config.max_timeout,
    };
    let stopping = Arc::clone(&manager);
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutting down: stopping the running tasks");
        stopping.shutdown().await;
    };
    Ok((Arc::new(AutopilotApi::new(manager, limits)), shutdown))
}

/// Logs the agent CLI's version and, when the operator pinned one that does not match, records
/// the mismatch as the reason every task will fail.
async fn check_agent_version(config: Config, problem: Arc<std::sync::OnceLock<String>>) {
    let output = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new(&config.claude_path).arg("--version").kill_on_drop(true).output(),
    )
    .await;
    let reported = match output {
        Ok(Ok(out)) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        Ok(Ok(out)) => format!("(--version failed: {})", out.status),
        Ok(Err(e)) => format!("(not runnable: {e})"),
        Err(_) => "(--version timed out)".to_string(),
    };
    tracing::info!(cli = %config.claude_path.display(), version = %reported, "agent CLI");
    if let Some(expected) = &config.claude_version {
        if !reported.split_whitespace().any(|word| word == expected) {
            let message = format!(
                "the agent CLI at {} reports {reported:?}, but version {expected} is required",
                config.claude_path.display()
            );
            tracing::error!("{message}");
            let _ = problem.set(message);
        }
    }
}
