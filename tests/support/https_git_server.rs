//! An HTTPS git server on loopback, so a test can have the agent-service clone (and push) over
//! `https://` the way it does in production, with nothing but a throwaway certificate authority
//! to trust. The git side is the real `git http-backend`, run as a CGI per request; this module
//! only supplies what a web server would: TLS (rustls), HTTP/1.1 (hyper) and the CGI plumbing.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::Arc,
};

use crate::git_http_backend::{self, CgiRequest};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, BodyStream, Empty, StreamBody};
use hyper::{
    body::{Frame, Incoming},
    Request, Response, StatusCode,
};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tokio::{
    net::TcpListener,
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

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

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

/// Answers one request by running `git http-backend` (see [`crate::git_http_backend`]).
async fn cgi(root: Arc<PathBuf>, peer: SocketAddr, req: Request<Incoming>) -> Result<Response<Body>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let request = CgiRequest {
        root: &root,
        method: parts.method.as_str(),
        path_info: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        remote_user: None,
        remote_addr: &peer.ip().to_string(),
    };
    let body =
        BodyStream::new(body).filter_map(|frame| std::future::ready(frame.ok().and_then(|f| f.into_data().ok())));
    let answer = git_http_backend::run(request, body).await?;
    if answer.status == StatusCode::BAD_GATEWAY && answer.headers.is_empty() {
        return Ok(Response::builder().status(StatusCode::BAD_GATEWAY).body(empty()).expect("response"));
    }
    let mut response = Response::builder().status(answer.status);
    for (name, value) in answer.headers {
        response = response.header(name, value);
    }
    let stream = answer.body.map(|chunk| chunk.map(Frame::data));
    Ok(response.body(BodyExt::boxed_unsync(StreamBody::new(stream))).expect("response"))
}

fn empty() -> Body {
    BodyExt::boxed_unsync(Empty::new().map_err(|never| match never {}))
}
