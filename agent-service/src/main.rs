//! `agent-service`: parses flags, starts logging, binds and runs the service (or, with `connect`,
//! connects out to the edge in tunnel mode) until SIGTERM or SIGINT. Everything else lives in the library.

use clap::Parser;
use tokio::{
    net::TcpListener,
    signal::unix::{signal, SignalKind},
};
use tracing_subscriber::EnvFilter;

use agent_service::{
    config::{Command, Config},
    tunnel::TunnelSettings,
};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Not dumpable: the agent runs as the same user, and must not read this process's memory or
    // its environment (the model API key, git credentials) through /proc.
    if let Err(error) = nix::sys::prctl::set_dumpable(false) {
        eprintln!("agent-service: could not make the process undumpable: {error}");
    }
    let config = Config::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if config.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
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
