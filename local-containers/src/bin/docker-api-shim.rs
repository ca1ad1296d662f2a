//! `docker-api-shim --listen <socket> --podman <socket>`: serves the Docker API on `--listen`
//! for workerd (`WRANGLER_DOCKER_HOST=unix://<socket>`), passing each request to podman's
//! socket with the changes `local_containers::docker_api_shim` decides.

use std::{convert::Infallible, path::PathBuf, sync::Arc};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::{
    body::Incoming, client::conn::http1 as client, server::conn::http1 as server, service::service_fn, Method, Request,
    Response, StatusCode,
};
use hyper_util::rt::TokioIo;
use local_containers::docker_api_shim::{dependents_in_the_way, docker_status, is_create, rewrite_create};
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
        full(Bytes::from(rewrite_create(&bytes, &args.loopback_ports)))
    } else {
        body.boxed()
    };
    let retry = (method == Method::DELETE).then(|| (parts.uri.clone(), parts.headers.clone()));
    let mut request = Request::from_parts(parts, body);
    if create {
        request.headers_mut().remove(hyper::header::CONTENT_LENGTH);
    }
    let response = send(&args.podman, request).await?;
    if response.status() != StatusCode::INTERNAL_SERVER_ERROR {
        return Ok(response.map(BodyExt::boxed));
    }
    let (mut parts, body) = response.into_parts();
    let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    let dependents = dependents_in_the_way(&method, &path, parts.status, &bytes);
    if let (false, Some((uri, headers))) = (dependents.is_empty(), retry) {
        tracing::info!(%path, ?dependents, "removing the dependents podman wants gone first, as Docker would");
        for dependent in &dependents {
            let remove = Request::delete(format!("/containers/{dependent}?force=true"))
                .header(hyper::header::HOST, "podman")
                .body(full(Bytes::new()))
                .map_err(|e| e.to_string())?;
            let removed = send(&args.podman, remove).await?;
            tracing::info!(%dependent, status = %removed.status(), "removed a dependent");
        }
        let mut again = Request::delete(uri).body(full(Bytes::new())).map_err(|e| e.to_string())?;
        *again.headers_mut() = headers;
        return Ok(send(&args.podman, again).await?.map(BodyExt::boxed));
    }
    parts.status = docker_status(&method, &path, parts.status, &bytes);
    if parts.status != StatusCode::INTERNAL_SERVER_ERROR {
        tracing::info!(%path, "podman's 500 for a taken name answered as Docker's {}", parts.status);
    }
    Ok(Response::from_parts(parts, full(bytes)))
}

/// Sends one request to podman's socket on a connection of its own.
async fn send(podman: &std::path::Path, request: Request<Body>) -> Result<Response<Incoming>, String> {
    let stream = UnixStream::connect(podman).await.map_err(|e| format!("podman's socket: {e}"))?;
    let (mut sender, connection) = client::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    sender.send_request(request).await.map_err(|e| e.to_string())
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

fn bad_gateway(reason: String) -> Response<Body> {
    tracing::warn!("{reason}");
    let mut response = Response::new(full(Bytes::from(reason)));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}
