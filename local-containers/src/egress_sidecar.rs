//! The sidecar workerd starts next to each container, sharing its network namespace, in place of
//! Cloudflare's `proxy-everything` (which cannot be pulled on machines without a registry).
//!
//! What workerd needs of it: an HTTP server on port 39001 that answers `PUT /egress` (workerd's
//! egress settings) and `GET /ca` (a CA certificate in PEM) with 200, and that turns
//! `CONNECT <port>` into a byte tunnel to that port inside the container; 400 when nothing listens
//! there yet, which workerd reports as "not listening" while the service starts.
//!
//! What we need of it: the agent inside the container must reach the developer's loopback
//! services (the fake model API, a local git server). For each port in `loopback_ports` the
//! sidecar listens on 127.0.0.1 inside the container and carries each connection through
//! workerd's egress listener (on the bridge's gateway) to the same port on the host's loopback.
//! Cloudflare's sidecar intercepts all traffic with TPROXY; plain listeners keep this one a small
//! static binary with no iptables.

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, server::conn::http1, service::service_fn, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::{
    io::copy_bidirectional,
    net::{TcpListener, TcpStream},
    sync::RwLock,
};

use crate::tunnel;

/// The port workerd connects to.
pub const INGRESS_PORT: u16 = 39001;

/// A certificate for `GET /ca`. workerd installs it in containers so that intercepted HTTPS can
/// be trusted; this sidecar intercepts nothing, and nobody holds the key of this certificate, so
/// trusting it grants nothing. (Self-signed, generated once with openssl; the key was discarded.)
pub const UNUSABLE_CA_PEM: &str = include_str!("unusable-ca.pem");

/// Where workerd's egress listener is: set from the command line, updated by `PUT /egress`.
#[derive(Debug, Default)]
pub struct Egress {
    pub gateway: Option<std::net::Ipv4Addr>,
    pub port: Option<u16>,
}

impl Egress {
    fn proxy(&self) -> Option<String> {
        Some(format!("{}:{}", self.gateway?, self.port?))
    }
}

pub type SharedEgress = Arc<RwLock<Egress>>;

/// Serves workerd on [`INGRESS_PORT`] until the process ends.
pub async fn serve_ingress(listener: TcpListener, egress: SharedEgress) -> std::io::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        let egress = egress.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(request, peer, egress.clone()));
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service).with_upgrades();
            if let Err(e) = connection.await {
                tracing::debug!(%peer, "ingress connection ended: {e}");
            }
        });
    }
}

async fn handle(
    request: Request<Incoming>,
    peer: SocketAddr,
    egress: SharedEgress,
) -> Result<Response<Full<Bytes>>, Infallible> {
    tracing::info!(%peer, method = %request.method(), uri = %request.uri(), "request from workerd");
    let reply = |status: StatusCode, body: &str| {
        let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
        *response.status_mut() = status;
        Ok(response)
    };
    match (request.method().clone(), request.uri().path()) {
        (Method::CONNECT, _) => {
            let Some(destination) = tunnel::destination(&request) else {
                return reply(StatusCode::BAD_REQUEST, "CONNECT needs a destination");
            };
            let target = inside_container(&destination);
            let upstream = match TcpStream::connect(&target).await {
                Ok(upstream) => upstream,
                Err(e) => return reply(StatusCode::BAD_REQUEST, &format!("nothing listens on {target}: {e}")),
            };
            tokio::spawn(async move {
                match hyper::upgrade::on(request).await {
                    Ok(upgraded) => {
                        let (mut upgraded, mut upstream) = (TokioIo::new(upgraded), upstream);
                        let _ = copy_bidirectional(&mut upgraded, &mut upstream).await;
                    }
                    Err(e) => tracing::warn!("CONNECT {target} was not upgraded: {e}"),
                }
            });
            reply(StatusCode::OK, "")
        }
        (Method::PUT, "/egress") => {
            let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let text = String::from_utf8_lossy(&body);
            tracing::info!(body = %text, "egress settings from workerd");
            if let Some(port) = egress_port(&text) {
                egress.write().await.port = Some(port);
            }
            reply(StatusCode::OK, "")
        }
        (Method::GET, "/ca") => reply(StatusCode::OK, UNUSABLE_CA_PEM),
        _ => reply(StatusCode::NOT_FOUND, "not found"),
    }
}

/// The address inside the container a `CONNECT` destination names: only its port counts (the
/// service listens on the container's own interfaces; workerd may name any of them).
pub fn inside_container(destination: &str) -> String {
    let port = destination.rsplit(':').next().unwrap_or(destination);
    format!("127.0.0.1:{port}")
}

/// The port in workerd's `PUT /egress` settings, if they carry one (`{"port": N}` or `N`).
pub fn egress_port(body: &str) -> Option<u16> {
    let value: serde_json::Value = serde_json::from_str(body.trim()).ok()?;
    let port = value.get("port").or_else(|| value.get("httpEgressPort")).unwrap_or(&value);
    port.as_u64().and_then(|p| u16::try_from(p).ok())
}

/// Carries connections to 127.0.0.1:`port` inside the container to the same port on the host,
/// through workerd's egress listener.
pub async fn forward_loopback_port(port: u16, egress: SharedEgress) -> std::io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    loop {
        let (mut inbound, _) = listener.accept().await?;
        let egress = egress.clone();
        tokio::spawn(async move {
            let Some(proxy) = egress.read().await.proxy() else {
                return tracing::warn!(port, "no egress listener known yet: connection dropped");
            };
            let destination = format!("127.0.0.1:{port}");
            match tunnel::open(&proxy, &destination).await {
                Ok(mut outbound) => {
                    let _ = copy_bidirectional(&mut inbound, &mut outbound).await;
                }
                Err(e) => tracing::warn!("{e}"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connects_inside_the_container_whatever_host_workerd_names() {
        assert_eq!(inside_container("127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(inside_container("10.89.0.2:8080"), "127.0.0.1:8080");
        assert_eq!(inside_container("[::1]:8080"), "127.0.0.1:8080");
    }

    #[test]
    fn reads_the_egress_port_in_either_shape() {
        assert_eq!(egress_port("{\"port\": 40123}"), Some(40123));
        assert_eq!(egress_port("40123\n"), Some(40123));
        assert_eq!(egress_port("{\"other\": 1}"), None);
        assert_eq!(egress_port("not json"), None);
    }
}
