//! `docker-api-shim --listen <socket> --podman <socket>`: serves the Docker API on `--listen`
//! for workerd (`WRANGLER_DOCKER_HOST=unix://<socket>`), passing each request to podman's
//! socket with the changes `local_containers::docker_api_shim` decides.

use std::{convert::Infallible, path::PathBuf, sync::Arc};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::{body::Incoming, client::conn::http1 as client, server::conn::http1 as server, service::service_fn, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use local_containers::docker_api_shim::{docker_status, is_create, rewrite_create};
use tokio::net::{UnixListener, UnixStream};

#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    /// The socket to serve the Docker API on (replaced if it exists).
    #[arg(long)]
    listen: PathBuf,
    /// podman's Docker-compatible socket (`podman system service unix://<path>`).
    #[arg(long)]
    podman: PathBuf,
    /// Host loopback ports the containers may reach at 127.0.0.1 (comma-separated).
    #[arg(long, value_delimiter = ',')]
    loopback_ports: Vec<u16>,
}

type Body = BoxBody<Bytes, hyper::Error>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_target(false).init();
    let args = Arc::new(Args::parse());
    let _ = std::fs::remove_file(&args.listen);
    let listener = UnixListener::bind(&args.listen)?;
    tracing::info!(listen = %args.listen.display(), podman = %args.podman.display(), ports = ?args.loopback_ports, "docker API shim ready");
    loop {
        let (stream, _) = listener.accept().await?;
        let args = args.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let args = args.clone();
                async move { Ok::<_, Infallible>(forward(request, &args).await.unwrap_or_else(bad_gateway)) }
            });
            let _ = server::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn forward(request: Request<Incoming>, args: &Args) -> Result<Response<Body>, String> {
    let (parts, body) = request.into_parts();
    let (method, path) = (parts.method.clone(), parts.uri.to_string());
    let create = is_create(&method, &path);
    let body: Body = if create {
        let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        let rewritten = Bytes::from(rewrite_create(&bytes, &args.loopback_ports));
        Full::new(rewritten).map_err(|never| match never {}).boxed()
    } else {
        body.boxed()
    };
    let mut request = Request::from_parts(parts, body);
    if create {
        request.headers_mut().remove(hyper::header::CONTENT_LENGTH);
    }
    let stream = UnixStream::connect(&args.podman).await.map_err(|e| format!("podman's socket: {e}"))?;
    let (mut sender, connection) = client::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    if response.status() != StatusCode::INTERNAL_SERVER_ERROR {
        return Ok(response.map(BodyExt::boxed));
    }
    let (mut parts, body) = response.into_parts();
    let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    parts.status = docker_status(&method, &path, parts.status, &bytes);
    if parts.status != StatusCode::INTERNAL_SERVER_ERROR {
        tracing::info!(%path, "podman's 500 for a taken name answered as Docker's {}", parts.status);
    }
    Ok(Response::from_parts(parts, Full::new(bytes).map_err(|never| match never {}).boxed()))
}

fn bad_gateway(reason: String) -> Response<Body> {
    tracing::warn!("{reason}");
    let mut response = Response::new(Full::new(Bytes::from(reason)).map_err(|never| match never {}).boxed());
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}
