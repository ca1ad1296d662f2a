//! `egress-sidecar`: the program of the local egress sidecar image (see
//! `local_containers::egress_sidecar`). workerd starts it with its own flags; the loopback
//! ports to carry come from `AUTOPILOT_LOOPBACK_PORTS`, which the Docker API shim adds.

use std::sync::Arc;

use clap::Parser;
use local_containers::{
    egress_sidecar::{forward_loopback_port, serve_ingress, Egress, INGRESS_PORT},
    gateway::default_gateway,
};
use tokio::{
    net::TcpListener,
    signal::unix::{signal, SignalKind},
    sync::RwLock,
};

#[derive(Parser, Debug)]
#[command(about, ignore_errors = true)]
struct Args {
    /// The port of workerd's egress listener on the bridge's gateway.
    #[arg(long = "http-egress-port")]
    http_egress_port: Option<u16>,
    /// Ports on the host's loopback the container may reach at 127.0.0.1 (comma-separated).
    #[arg(long, env = "AUTOPILOT_LOOPBACK_PORTS", value_delimiter = ',')]
    loopback_ports: Vec<u16>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_target(false).init();
    let args = Args::parse();
    tracing::info!(argv = ?std::env::args().collect::<Vec<_>>(), "egress sidecar starting");
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let egress = Arc::new(RwLock::new(Egress { gateway: default_gateway(&routes), port: args.http_egress_port }));
    tracing::info!(egress = ?*egress.read().await, ports = ?args.loopback_ports, "egress");
    for port in args.loopback_ports {
        let egress = egress.clone();
        tokio::spawn(async move {
            if let Err(e) = forward_loopback_port(port, egress).await {
                tracing::error!(port, "cannot carry the port: {e}");
            }
        });
    }
    let mut terminate = signal(SignalKind::terminate())?;
    let listener = TcpListener::bind(("0.0.0.0", INGRESS_PORT)).await?;
    tokio::select! {
        served = serve_ingress(listener, egress) => served,
        // As PID 1 nothing else would end it on `docker stop`.
        _ = terminate.recv() => Ok(()),
    }
}
