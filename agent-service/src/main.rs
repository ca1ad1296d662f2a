//! `agent-service`: parses flags, makes every configured path absolute, starts logging, binds and
//! runs the service (or, with `connect`, connects out to the edge in tunnel mode) until SIGTERM or
//! SIGINT. Run as `agent-guard` (by the service itself), it is the agent's guard instead.
//! Everything else lives in the library.

use clap::Parser;
use tokio::{
    net::TcpListener,
    signal::unix::{signal, SignalKind},
};
use tracing_subscriber::EnvFilter;

use agent_service::{
    absolute_paths,
    agent::guard as agent_guard,
    config::{Command, Config},
    privileges,
    tunnel::TunnelSettings,
};

fn main() -> std::process::ExitCode {
    let config = Config::parse();
    // The guard is a plain single-threaded process: it must not start the runtime, and stays
    // dumpable so a restarted service can check what it is through /proc.
    if let Some(Command::AgentGuard(args)) = &config.command {
        agent_guard::run(args);
    }
    // Root, when started so, is kept for setup scripts alone; before any thread starts.
    let dropped = match config.agent_user.as_deref().map(privileges::drop_keeping_root).transpose() {
        Ok(dropped) => dropped.flatten(),
        Err(error) => {
            eprintln!("agent-service: cannot become AUTOPILOT_AGENT_USER: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Not dumpable: the agent runs as the same user, and must not read this process's memory or
    // its environment (the model API key, git credentials) through /proc.
    if let Err(error) = nix::sys::prctl::set_dumpable(false) {
        eprintln!("agent-service: could not make the process undumpable: {error}");
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if config.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    // Once, before any other thread starts: the environment is rewritten here too.
    let config = match absolute_paths::current_dir().and_then(|cwd| {
        absolute_paths::resolve_environment(&cwd);
        absolute_paths::resolve_config(config, &cwd)
    }) {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%error, "agent-service cannot start");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Some(user) = &dropped {
        tracing::info!(user = %user.name, uid = user.uid, "running as this user; setup scripts run as root");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "agent-service cannot start its runtime");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> std::process::ExitCode {
    let result = match config.command.clone() {
        None => {
            async {
                let listener = TcpListener::bind(config.listen_addr())
                    .await
                    .map_err(|e| format!("cannot listen on {}: {e}", config.listen_addr()))?;
                agent_service::run(listener, config, shutdown_signal()).await
            }
            .await
        }
        Some(Command::Connect(args)) => {
            let settings = TunnelSettings { edge: args.edge, token: args.token, ping_interval: args.ping_interval };
            agent_service::connect(config, settings, shutdown_signal()).await
        }
        Some(Command::AgentGuard(_)) => unreachable!("the guard never reaches the runtime"),
    };
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "agent-service failed");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Completes on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("received SIGTERM"),
        _ = int.recv() => tracing::info!("received SIGINT"),
    }
}
