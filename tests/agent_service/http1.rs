//! Raw HTTP/1.1 requests over a plain TCP stream, for what a gRPC client cannot send or does not
//! show: `/ping`, malformed gRPC-web bodies, another `Host`, CORS preflights, and the headers
//! (and gRPC-web trailers) of the answer.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use autopilot_contract::v1::StatusRequest;
use prost::Message;

/// A raw HTTP/1.1 GET: (status, body).
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let (status, _, body) = http_send(addr, "GET", path, &[], &[]);
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A raw HTTP/1.1 POST: (status, headers, body).
pub fn http_post(
    addr: std::net::SocketAddr,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    http_send(addr, "POST", path, &[("Content-Type", content_type), ("X-Grpc-Web", "1")], body)
}

/// A raw HTTP/1.1 request with `headers` (`Host: localhost` unless they name one): (status,
/// headers, body).
pub fn http_send(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
        head.push_str("Host: localhost\r\n");
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    http_request(addr, &request)
}

/// A gRPC-web Status call for the latest task, over HTTP/1.1 with `headers` added: (status,
/// headers, body).
pub fn grpc_web_status(addr: std::net::SocketAddr, headers: &[(&str, &str)]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let message = StatusRequest::default().encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    let mut all = vec![("Content-Type", "application/grpc-web+proto"), ("X-Grpc-Web", "1")];
    all.extend_from_slice(headers);
    http_send(addr, "POST", "/autopilot.v1.Autopilot/Status", &all, &frame)
}

/// The value of the header (or gRPC-web trailer) `name`, given in lower case.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Sends one request and reads the whole response (headers and any trailers frame included:
/// gRPC-web puts trailers in the body, so they are parsed from there too).
fn http_request(addr: std::net::SocketAddr, request: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a header block");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let mut body = response[split + 4..].to_vec();
    let mut lines = head.lines();
    let status: u16 = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v == "chunked") {
        body = dechunk(&body);
    }
    // A gRPC-web trailers frame: flag 0x80, then "name: value\r\n" lines.
    if body.first() == Some(&0x80) && body.len() >= 5 {
        let trailers = String::from_utf8_lossy(&body[5..]).into_owned();
        headers.extend(
            trailers
                .lines()
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())),
        );
    }
    (status, headers, body)
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = body.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(String::from_utf8_lossy(&body[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[end + 2..end + 2 + size]);
        body = &body[end + 2 + size + 2..];
    }
}
