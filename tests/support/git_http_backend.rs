//! The real `git http-backend`, run as a CGI for the test servers that serve git over HTTP (the
//! fake GitHub, the HTTPS git server): the CGI/1.1 variables for a request, its body streamed in
//! from a task of its own (the backend may answer while it still reads, as receive-pack does),
//! and its answer read back as a status, headers and a body streamed out. Each server wraps the
//! answer in its own HTTP types.

use std::{ffi::OsStr, os::unix::ffi::OsStrExt, path::Path, process::Stdio};

use axum::http::{header, HeaderMap, StatusCode};
use bytes::Bytes;
use futures::{stream::BoxStream, Stream, StreamExt};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdout, Command},
};

/// One request, as the CGI sees it.
pub struct CgiRequest<'a> {
    /// The directory the repositories are under (`GIT_PROJECT_ROOT`).
    pub root: &'a Path,
    pub method: &'a str,
    /// `/<repository>.git/<info/refs | git-upload-pack | git-receive-pack>`.
    pub path_info: &'a str,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    /// The authenticated user (`REMOTE_USER`), if any; credentials never reach the backend.
    pub remote_user: Option<&'a str>,
    pub remote_addr: &'a str,
}

/// The backend's answer; `body` ends when the backend exits.
pub struct CgiAnswer {
    pub status: StatusCode,
    pub headers: Vec<(String, String)>,
    pub body: BoxStream<'static, std::io::Result<Bytes>>,
}

type Backend = (BufReader<ChildStdout>, Child);

/// Runs `git http-backend` for `request` with `body`.
///
/// # Errors
/// The backend could not be started or read.
pub async fn run(
    request: CgiRequest<'_>,
    body: impl Stream<Item = Bytes> + Send + 'static,
) -> std::io::Result<CgiAnswer> {
    let mut cmd = Command::new("git");
    // A clean environment, so the test runner's own git settings cannot leak in; receive-pack is
    // on (it is only on by default for an authenticated REMOTE_USER).
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs([("GIT_CONFIG_NOSYSTEM", "1"), ("GIT_CONFIG_GLOBAL", "/dev/null"), ("GIT_HTTP_EXPORT_ALL", "1")])
        .envs([("GIT_CONFIG_COUNT", "1"), ("GIT_CONFIG_KEY_0", "http.receivepack"), ("GIT_CONFIG_VALUE_0", "true")])
        .env("GIT_PROJECT_ROOT", request.root)
        .envs([("GATEWAY_INTERFACE", "CGI/1.1"), ("SERVER_PROTOCOL", "HTTP/1.1")])
        .env("REQUEST_METHOD", request.method)
        // Git's paths never need percent-decoding, so the raw path is PATH_INFO as it stands.
        .env("PATH_INFO", request.path_info)
        .env("QUERY_STRING", request.query)
        .env("REMOTE_ADDR", request.remote_addr);
    if let Some(user) = request.remote_user {
        cmd.env("REMOTE_USER", user);
    }
    for (name, value) in request.headers {
        let value = OsStr::from_bytes(value.as_bytes());
        match *name {
            header::CONTENT_TYPE => cmd.env("CONTENT_TYPE", value),
            header::CONTENT_LENGTH => cmd.env("CONTENT_LENGTH", value),
            // As CGI servers do, credentials are not handed to the script.
            header::AUTHORIZATION | header::PROXY_AUTHORIZATION => continue,
            // This carries Content-Encoding (the backend inflates a gzipped request itself) and
            // Git-Protocol (v2).
            _ => cmd.env(format!("HTTP_{}", name.as_str().to_ascii_uppercase().replace('-', "_")), value),
        };
    }
    let mut child =
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).kill_on_drop(true).spawn()?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    tokio::spawn(async move {
        let mut body = std::pin::pin!(body);
        while let Some(data) = body.next().await {
            if stdin.write_all(&data).await.is_err() {
                break;
            }
        }
    });

    let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut headers = Vec::new();
    let mut status = StatusCode::OK;
    loop {
        let mut line = String::new();
        if out.read_line(&mut line).await? == 0 {
            // The backend died before finishing its headers (its stderr says why).
            return Ok(CgiAnswer { status: StatusCode::BAD_GATEWAY, headers, body: futures::stream::empty().boxed() });
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split(' ').next().and_then(|code| code.parse().ok());
            status = code.and_then(|code| StatusCode::from_u16(code).ok()).unwrap_or(StatusCode::BAD_GATEWAY);
        } else {
            headers.push((name.to_string(), value.to_string()));
        }
    }
    let body = futures::stream::unfold(Some((out, child)), body_chunk).boxed();
    Ok(CgiAnswer { status, headers, body })
}

/// The next chunk of the backend's output; at its end, waits for the backend to exit, so it is
/// reaped rather than killed (a push's hooks may still be running).
async fn body_chunk(state: Option<Backend>) -> Option<(std::io::Result<Bytes>, Option<Backend>)> {
    let (mut out, mut child) = state?;
    let mut buf = vec![0; 64 * 1024];
    match out.read(&mut buf).await {
        Ok(0) => {
            let _ = child.wait().await;
            None
        }
        Ok(n) => {
            buf.truncate(n);
            Some((Ok(Bytes::from(buf)), Some((out, child))))
        }
        Err(err) => Some((Err(err), None)),
    }
}
