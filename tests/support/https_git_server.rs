//! An HTTPS git server on loopback, so a test can have the agent-service clone (and push) over
//! `https://` the way it does in production, with nothing but a throwaway certificate authority
//! to trust. The git side is the real `git http-backend`, run as a CGI per request; this module
//! only supplies what a web server would: TLS (rustls), HTTP/1.1 (hyper) and the CGI plumbing.

use std::{
    ffi::OsStr,
    net::{Ipv4Addr, SocketAddr},
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, StreamBody};
use hyper::{
    body::{Frame, Incoming},
    header, Request, Response, StatusCode,
};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
    process::{Child, ChildStdout, Command},
    task::{JoinHandle, JoinSet},
};
use tokio_rustls::{
    rustls::{
        self,
        pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer},
    },
    TlsAcceptor,
};

/// A certificate authority that lives for one test run: its key never leaves memory, so trusting
/// it (in a container image or `GIT_SSL_CAINFO`) trusts only the servers this run starts.
pub struct LocalCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl LocalCa {
    pub fn new() -> LocalCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.distinguished_name.push(DnType::CommonName, "autopilot test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("generating the CA key");
        LocalCa { issuer: CertifiedIssuer::self_signed(params, key).expect("self-signing the CA") }
    }

    /// The CA certificate (PEM), for whoever should trust this run's servers.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A rustls server configuration presenting a fresh certificate for 127.0.0.1 (and
    /// `localhost`) signed by this CA. HTTP/1.1 only: that is all `git http-backend` needs.
    pub fn loopback_server_config(&self) -> rustls::ServerConfig {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("server parameters");
        params.distinguished_name.push(DnType::CommonName, "127.0.0.1");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("generating the server key");
        let cert = params.signed_by(&key, &self.issuer).expect("signing the server certificate");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        // ring, not the process default: the workspace builds rustls with ring alone.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone(), self.issuer.der().clone()], key)
            .expect("server certificate");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }
}

impl Default for LocalCa {
    fn default() -> Self {
        Self::new()
    }
}

/// Serves every repository under a directory over git's smart HTTP protocol, fetch and push, at
/// `https://127.0.0.1:<port>/<name>.git`. Stops (connections and running backends too) when
/// dropped.
pub struct HttpsGitServer {
    port: u16,
    accept: JoinHandle<()>,
}

type Body = BoxBody<Bytes, std::io::Error>;
/// A running `git http-backend`, past its CGI headers.
type Backend = (BufReader<ChildStdout>, Child);

impl HttpsGitServer {
    pub async fn start(ca: &LocalCa, project_root: &Path) -> HttpsGitServer {
        let acceptor = TlsAcceptor::from(Arc::new(ca.loopback_server_config()));
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("binding the git server");
        let port = listener.local_addr().expect("git server address").port();
        let root = Arc::new(project_root.to_path_buf());
        let accept = tokio::spawn(async move {
            // The connections live in this task's set, so aborting the task ends them all.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((tcp, peer)) = accepted else { continue };
                        let (acceptor, root) = (acceptor.clone(), root.clone());
                        connections.spawn(async move {
                            // A client refusing the certificate ends the handshake: that is for
                            // the client to report (the tests expect it), not an error here.
                            let Ok(tls) = acceptor.accept(tcp).await else { return };
                            let service = hyper::service::service_fn(move |req| cgi(root.clone(), peer, req));
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(tls), service)
                                .await;
                        });
                    }
                    Some(_) = connections.join_next() => {}
                }
            }
        });
        HttpsGitServer { port, accept }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The clone URL of the bare repository `<project_root>/<repo_name>.git`.
    pub fn url(&self, repo_name: &str) -> String {
        format!("https://127.0.0.1:{}/{repo_name}.git", self.port)
    }
}

impl Drop for HttpsGitServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Answers one request by running `git http-backend` with the CGI/1.1 variables for it.
async fn cgi(root: Arc<PathBuf>, peer: SocketAddr, req: Request<Incoming>) -> Result<Response<Body>, std::io::Error> {
    let mut cmd = Command::new("git");
    // A clean environment, so the test runner's own git settings (GIT_DIR, ~/.gitconfig) cannot
    // leak in; receive-pack is off by default without REMOTE_USER, and pushing is wanted here.
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs([("GIT_CONFIG_NOSYSTEM", "1"), ("GIT_CONFIG_GLOBAL", "/dev/null"), ("GIT_HTTP_EXPORT_ALL", "1")])
        .envs([("GIT_CONFIG_COUNT", "1"), ("GIT_CONFIG_KEY_0", "http.receivepack"), ("GIT_CONFIG_VALUE_0", "true")])
        .env("GIT_PROJECT_ROOT", &*root)
        .envs([("GATEWAY_INTERFACE", "CGI/1.1"), ("SERVER_PROTOCOL", "HTTP/1.1")])
        .env("REQUEST_METHOD", req.method().as_str())
        // Git's paths never need percent-decoding, so the raw path is PATH_INFO as it stands.
        .env("PATH_INFO", req.uri().path())
        .env("QUERY_STRING", req.uri().query().unwrap_or(""))
        .env("REMOTE_ADDR", peer.ip().to_string());
    for (name, value) in req.headers() {
        let value = OsStr::from_bytes(value.as_bytes());
        match *name {
            header::CONTENT_TYPE => cmd.env("CONTENT_TYPE", value),
            header::CONTENT_LENGTH => cmd.env("CONTENT_LENGTH", value),
            // As CGI servers do, credentials are not handed to the script.
            header::AUTHORIZATION | header::PROXY_AUTHORIZATION => continue,
            // This carries Content-Encoding (git inflates gzip itself) and Git-Protocol (v2).
            _ => cmd.env(format!("HTTP_{}", name.as_str().to_ascii_uppercase().replace('-', "_")), value),
        };
    }
    let mut child =
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).kill_on_drop(true).spawn()?;

    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut body = req.into_body();
    // Fed from its own task: the backend may answer while it still reads (e.g. receive-pack).
    tokio::spawn(async move {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                if stdin.write_all(&data).await.is_err() {
                    break;
                }
            }
        }
    });

    let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut response = Response::builder();
    let mut status = StatusCode::OK;
    loop {
        let mut line = String::new();
        if out.read_line(&mut line).await? == 0 {
            // The backend died before finishing its headers (its stderr says why).
            return Ok(Response::builder().status(StatusCode::BAD_GATEWAY).body(empty()).expect("response"));
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
            response = response.header(name, value);
        }
    }
    let stream = futures::stream::unfold(Some((out, child)), body_chunk);
    Ok(response.status(status).body(BodyExt::boxed(StreamBody::new(stream))).expect("response"))
}

/// The next chunk of the backend's output; at its end, waits for the backend to exit, so it is
/// reaped rather than killed (a push's hooks may still be running).
async fn body_chunk(state: Option<Backend>) -> Option<(Result<Frame<Bytes>, std::io::Error>, Option<Backend>)> {
    let (mut out, mut child) = state?;
    let mut buf = vec![0; 64 * 1024];
    match out.read(&mut buf).await {
        Ok(0) => {
            let _ = child.wait().await;
            None
        }
        Ok(n) => {
            buf.truncate(n);
            Some((Ok(Frame::data(Bytes::from(buf))), Some((out, child))))
        }
        Err(err) => Some((Err(err), None)),
    }
}

fn empty() -> Body {
    BodyExt::boxed(Empty::new().map_err(|never| match never {}))
}
