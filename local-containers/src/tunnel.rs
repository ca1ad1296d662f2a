//! Byte tunnels over HTTP `CONNECT`: accepting one (workerd asks the sidecar for a port inside
//! the container) and opening one (the sidecar asks workerd for a port on the host).

use hyper::{body::Incoming, client::conn::http1, upgrade::Upgraded, Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Opens a tunnel through the HTTP proxy at `proxy` to `destination` (`host:port`).
pub async fn open(proxy: &str, destination: &str) -> std::io::Result<TokioIo<Upgraded>> {
    let io = TokioIo::new(TcpStream::connect(proxy).await?);
    let (mut sender, connection) =
        http1::handshake::<_, http_body_util::Empty<bytes::Bytes>>(io).await.map_err(std::io::Error::other)?;
    tokio::spawn(connection.with_upgrades());
    let request = Request::builder()
        .method(Method::CONNECT)
        .uri(destination)
        .header(hyper::header::HOST, destination)
        .body(http_body_util::Empty::new())
        .map_err(std::io::Error::other)?;
    let response = sender.send_request(request).await.map_err(std::io::Error::other)?;
    // workerd's egress listener accepts with 202, other proxies with 200.
    if !response.status().is_success() {
        return Err(std::io::Error::other(format!("{proxy} refused CONNECT {destination}: {}", response.status())));
    }
    hyper::upgrade::on(response).await.map(TokioIo::new).map_err(std::io::Error::other)
}

/// Where a `CONNECT` request wants to go: workerd names it in `X-Dst-Addr`, otherwise the
/// request target is the address.
pub fn destination(request: &Request<Incoming>) -> Option<String> {
    let header = request.headers().get("x-dst-addr").and_then(|v| v.to_str().ok()).map(str::to_owned);
    header.or_else(|| request.uri().authority().map(|a| a.to_string()))
}
