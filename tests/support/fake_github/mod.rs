//! A fake of GitHub, for the paths the product uses: the GitHub App user-to-server OAuth flow,
//! a slice of the REST API (user, repositories, pull requests, issue comments) and git over
//! smart HTTP. It speaks GitHub's protocol and error shapes, so a client cannot tell it from the
//! real one on these paths; the git side is the real `git http-backend`.
//!
//! One server on `127.0.0.1:<port>` plays both github.com and its API, the way GitHub Enterprise
//! Server does: the web base is [`FakeGithub::url`] (`http://127.0.0.1:<port>`), the API base
//! [`FakeGithub::api_url`] (`<url>/api/v3`). The test sets the world up (users, repositories,
//! who may see what) and inspects what clients did (requests, pull requests, comments, tokens).
//!
//! Layout:
//! - `mod.rs`: the fake's handle, its state and the request router;
//! - `oauth.rs`: `/login/oauth/authorize`, `/login/oauth/access_token` and token revocation;
//! - `api.rs`: the REST API under `/api/v3`;
//! - `git.rs`: git's smart HTTP protocol through `git http-backend`, and the fake's own git calls.
//!
//! Where GitHub's behaviour is not modelled (forks, organisations' teams, issues that are not
//! pull requests, merging), the fake answers as GitHub does for a path it does not know: 404.

mod api;
mod git;
mod github_formats;
mod oauth;
mod webhooks;

pub use webhooks::deliver;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    io::Read,
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::{Request, State as AxumState},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::Response,
    Router,
};
use base64::{engine::general_purpose::STANDARD as BASE64, Engine};
use tempfile::TempDir;
use tokio::{net::TcpListener, task::JoinHandle};

use self::github_formats::{node_id, timestamp};

/// The client ID of the fake's GitHub App (GitHub App client IDs start `Iv`).
pub const CLIENT_ID: &str = "Iv23liFakeGitHubApp1";
/// The App's slug (its bot is `autopilot[bot]`, its handle in comments `@autopilot`).
pub const APP_SLUG: &str = "autopilot";
/// The secret the App's webhook deliveries are signed with (the edge's GITHUB_WEBHOOK_SECRET).
pub const WEBHOOK_SECRET: &str = "a test deployment's webhook secret 5e2a";
/// The client secret of the fake's GitHub App (40 hex digits, as GitHub's).
pub const CLIENT_SECRET: &str = "0123456789abcdef0123456789abcdef01234567";
/// How long a user access token lives unless a test changes it: GitHub's eight hours.
pub const ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(28_800);
/// How long a refresh token lives: GitHub's six months (15,811,200 s).
pub const REFRESH_TOKEN_LIFETIME: Duration = Duration::from_secs(15_811_200);
/// How long an authorization code may wait for its exchange: GitHub's ten minutes.
pub const CODE_LIFETIME: Duration = Duration::from_secs(600);

/// One request the fake received, for tests that check what a client sent.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// The path and query, as sent (`/api/v3/user/repos?per_page=2`).
    pub path: String,
    pub headers: HeaderMap,
    /// The body as text (lossy UTF-8); empty for git's requests, whose packs are streamed.
    pub body: String,
}

/// A pull request the fake holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Pull {
    pub id: u64,
    pub number: u64,
    pub title: String,
    pub body: Option<String>,
    pub draft: bool,
    /// `open` or `closed`.
    pub state: String,
    /// The head branch (in the same repository: the fake has no forks).
    pub head: String,
    pub head_sha: String,
    pub base: String,
    pub base_sha: String,
    /// Who opened it.
    pub user: String,
    pub created_at: String,
}

/// A comment on a pull request (GitHub's issue comment).
#[derive(Debug, Clone, PartialEq)]
pub struct Comment {
    pub id: u64,
    pub number: u64,
    pub body: String,
    pub user: String,
    pub created_at: String,
    /// Made through the App (with a user-to-server token), so GitHub marks it
    /// `performed_via_github_app`.
    pub via_app: bool,
}

/// A running fake GitHub. Dropped, it stops serving and removes its repositories.
pub struct FakeGithub {
    /// The web base, github.com's stand-in: `http://127.0.0.1:<port>`.
    pub url: String,
    /// The REST API base: `<url>/api/v3`.
    pub api_url: String,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
    /// Holds the bare repositories (`<dir>/<owner>/<name>.git`); removed on drop.
    _dir: TempDir,
}

/// What the server and the test's handle share.
struct Shared {
    url: String,
    api_url: String,
    /// `git http-backend`'s GIT_PROJECT_ROOT.
    root: PathBuf,
    state: Mutex<World>,
}

struct User {
    login: String,
    id: u64,
}

struct Repo {
    id: u64,
    owner: String,
    name: String,
    private: bool,
    default_branch: String,
    path: PathBuf,
    pulls: Vec<Pull>,
    comments: Vec<Comment>,
    /// Reactions on comments: (comment id, content, who).
    reactions: Vec<(u64, String, String)>,
    /// The last number handed to a pull request (pulls and issues share the sequence).
    last_number: u64,
}

struct Code {
    login: String,
    redirect_uri: Option<String>,
    issued: Instant,
}

struct AccessToken {
    login: String,
    expires: Instant,
    refresh_token: String,
}

struct RefreshToken {
    login: String,
    expires: Instant,
    access_token: String,
}

/// Everything the fake knows; one lock, never held across an await.
#[derive(Default)]
struct World {
    users: Vec<User>,
    approve_as: Option<String>,
    callback_url: Option<String>,
    /// Repositories by lowercased `owner/name` (GitHub's names are case-insensitive).
    repos: BTreeMap<String, Repo>,
    /// `(login, lowercased owner/name)` pairs with read and write access (owners have it anyway).
    grants: BTreeSet<(String, String)>,
    codes: HashMap<String, Code>,
    tokens: HashMap<String, AccessToken>,
    refresh_tokens: HashMap<String, RefreshToken>,
    revoked: Vec<String>,
    token_lifetime: Option<Duration>,
    refuse_pull_creation: bool,
    /// Check suites' runs, by suite id (GitHub's `check_runs` objects).
    check_suites: HashMap<u64, Vec<serde_json::Value>>,
    last_id: u64,
    requests: Vec<RecordedRequest>,
}

impl World {
    fn next_id(&mut self) -> u64 {
        self.last_id += 1;
        self.last_id
    }

    fn user(&self, login: &str) -> Option<&User> {
        self.users.iter().find(|u| u.login.eq_ignore_ascii_case(login))
    }

    fn repo(&self, owner: &str, name: &str) -> Option<&Repo> {
        self.repos.get(&repo_key(owner, name))
    }

    fn repo_mut(&mut self, owner: &str, name: &str) -> Option<&mut Repo> {
        self.repos.get_mut(&repo_key(owner, name))
    }

    /// Whether `login` may push to (and open pull requests in) the repository.
    fn can_write(&self, login: &str, repo: &Repo) -> bool {
        repo.owner.eq_ignore_ascii_case(login)
            || self.grants.contains(&(login.to_ascii_lowercase(), repo_key(&repo.owner, &repo.name)))
    }

    /// Whether the repository exists for `login` (`None`: anonymous).
    fn can_read(&self, login: Option<&str>, repo: &Repo) -> bool {
        !repo.private || login.is_some_and(|login| self.can_write(login, repo))
    }

    /// The user a live access token belongs to; `None` for an unknown, expired or revoked one.
    fn token_user(&self, token: &str) -> Option<String> {
        let token = self.tokens.get(token)?;
        (token.expires > Instant::now()).then(|| token.login.clone())
    }

    /// Issues a fresh access and refresh token pair for `login`.
    fn issue_tokens(&mut self, login: &str) -> (String, String) {
        let access = format!("ghu_{}", random_alphanumeric(36));
        let refresh = format!("ghr_{}", random_alphanumeric(76));
        let now = Instant::now();
        let lifetime = self.token_lifetime.unwrap_or(ACCESS_TOKEN_LIFETIME);
        let login = login.to_string();
        self.tokens.insert(
            access.clone(),
            AccessToken { login: login.clone(), expires: now + lifetime, refresh_token: refresh.clone() },
        );
        self.refresh_tokens.insert(
            refresh.clone(),
            RefreshToken { login, expires: now + REFRESH_TOKEN_LIFETIME, access_token: access.clone() },
        );
        (access, refresh)
    }
}

fn repo_key(owner: &str, name: &str) -> String {
    format!("{owner}/{name}").to_ascii_lowercase()
}

impl FakeGithub {
    /// The edge's settings for this GitHub, as a deployment's GitHub App would set them (its
    /// client, a token key, the git gateway at the edge's own origin: `{edge}`).
    pub fn edge_vars(&self) -> [(&str, &str); 7] {
        [
            ("GITHUB_URL", self.url.as_str()),
            ("GITHUB_API_URL", self.api_url.as_str()),
            ("GITHUB_CLIENT_ID", CLIENT_ID),
            ("GITHUB_CLIENT_SECRET", CLIENT_SECRET),
            ("GITHUB_TOKEN_KEY", "a test deployment's token key 3c1d"),
            ("GIT_GATEWAY_URL", "{edge}"),
            ("GITHUB_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ]
    }

    /// Serves the fake on an ephemeral loopback port, in the background of the current runtime.
    pub async fn start() -> std::io::Result<FakeGithub> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let dir = tempfile::tempdir()?;
        let url = format!("http://{addr}");
        let api_url = format!("{url}/api/v3");
        let shared = Arc::new(Shared {
            url: url.clone(),
            api_url: api_url.clone(),
            root: dir.path().to_path_buf(),
            state: Mutex::default(),
        });
        let app = Router::new().fallback(route).with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeGithub { url, api_url, shared, server, _dir: dir })
    }

    fn world(&self) -> MutexGuard<'_, World> {
        self.shared.state.lock().unwrap()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port in the URL")
    }

    /// Adds a user account. The first one added is who approves OAuth requests by default.
    pub fn add_user(&self, login: &str, id: u64) {
        self.world().users.push(User { login: login.to_string(), id });
    }

    /// Makes `login` the person who approves the next OAuth authorization requests.
    pub fn approve_as(&self, login: &str) {
        self.world().approve_as = Some(login.to_string());
    }

    /// Registers the app's callback URL: authorization requests without a `redirect_uri` go there,
    /// and ones naming another URL are redirected there with `error=redirect_uri_mismatch`.
    /// Without it, any `redirect_uri` is accepted.
    pub fn set_callback_url(&self, url: &str) {
        self.world().callback_url = Some(url.to_string());
    }

    /// Creates a bare repository `<owner>/<name>` whose `default_branch` holds one commit (a
    /// README.md), made with real git; returns its directory. Its owner (when a user of that
    /// login exists) and users granted access may read and write it; a public one anyone may read.
    pub fn add_repo(&self, owner: &str, name: &str, private: bool, default_branch: &str) -> PathBuf {
        let path = self.shared.root.join(owner).join(format!("{name}.git"));
        git::seed_bare_repository(&path, name, default_branch);
        let mut world = self.world();
        let id = world.next_id() + 100_000;
        let repo = Repo {
            id,
            owner: owner.to_string(),
            name: name.to_string(),
            private,
            default_branch: default_branch.to_string(),
            path: path.clone(),
            pulls: Vec::new(),
            comments: Vec::new(),
            reactions: Vec::new(),
            last_number: 0,
        };
        world.repos.insert(repo_key(owner, name), repo);
        path
    }

    /// Gives `login` read and write access to `full_name` (`owner/repo`).
    pub fn grant(&self, login: &str, full_name: &str) {
        self.world().grants.insert((login.to_ascii_lowercase(), full_name.to_ascii_lowercase()));
    }

    /// The URL git clones `owner/name` from: `<url>/<owner>/<name>.git`.
    pub fn clone_url(&self, owner: &str, name: &str) -> String {
        format!("{}/{owner}/{name}.git", self.url)
    }

    /// The commit `rev` names in `owner/name` (e.g. a branch a client pushed), if any.
    pub fn rev_parse(&self, owner: &str, name: &str, rev: &str) -> Option<String> {
        let path = self.world().repo(owner, name)?.path.clone();
        git::rev_parse(&path, rev)
    }

    /// Access tokens issued from now on live for `lifetime` (GitHub: eight hours), so a test can
    /// let one expire; the API refuses an expired token with 401.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.world().token_lifetime = Some(lifetime);
    }

    /// While `refuse` holds, creating a pull request answers 403 "Resource not accessible by
    /// integration", as GitHub does when the app lacks the permission.
    pub fn refuse_pull_creation(&self, refuse: bool) {
        self.world().refuse_pull_creation = refuse;
    }

    /// A user access token for `login` as the OAuth flow would issue it (with its refresh token),
    /// for tests that do not exercise the flow itself.
    pub fn issue_token(&self, login: &str) -> String {
        self.world().issue_tokens(login).0
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.world().requests.clone()
    }

    /// The pull requests of `owner/repo`, oldest first.
    pub fn pulls(&self, owner: &str, repo: &str) -> Vec<Pull> {
        self.world().repo(owner, repo).map(|r| r.pulls.clone()).unwrap_or_default()
    }

    /// The comments on pull request `number` of `owner/repo`, oldest first.
    pub fn comments(&self, owner: &str, repo: &str, number: u64) -> Vec<Comment> {
        let world = self.world();
        let comments = world.repo(owner, repo).map(|r| r.comments.as_slice()).unwrap_or_default();
        comments.iter().filter(|c| c.number == number).cloned().collect()
    }

    /// The access tokens revoked through `DELETE /applications/{client_id}/token`, in order.
    pub fn revoked_tokens(&self) -> Vec<String> {
        self.world().revoked.clone()
    }

    /// The access tokens the API accepts now (issued, not expired, revoked or refreshed away).
    pub fn live_tokens(&self) -> Vec<String> {
        let world = self.world();
        let now = Instant::now();
        let mut live: Vec<String> =
            world.tokens.iter().filter(|(_, t)| t.expires > now).map(|(token, _)| token.clone()).collect();
        live.sort();
        live
    }
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Sends each request to its part of the fake: the API, the OAuth pages or git.
async fn route(AxumState(shared): AxumState<Arc<Shared>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["api", "v3", ..] => {}
        [owner, repo, "info", "refs"] | [owner, repo, "git-upload-pack" | "git-receive-pack"] => {
            let (owner, repo) = (owner.to_string(), repo.to_string());
            record(&shared, &req, "");
            return git::serve(&shared, req, &owner, &repo).await;
        }
        _ => {}
    }
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20).await.unwrap_or_default();
    let req = Request::from_parts(parts, ());
    record(&shared, &req, &String::from_utf8_lossy(&body));
    match segments.as_slice() {
        ["api", "v3", ..] => api::serve(&shared, &req, &body).await,
        ["login", "oauth", "authorize"] => oauth::authorize(&shared, &req),
        ["login", "oauth", "access_token"] => oauth::access_token(&shared, &req, &body),
        _ => html(StatusCode::NOT_FOUND, "Not Found"),
    }
}

fn record<B>(shared: &Shared, req: &Request<B>, body: &str) {
    let path = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    shared.state.lock().unwrap().requests.push(RecordedRequest {
        method: req.method().to_string(),
        path,
        headers: req.headers().clone(),
        body: body.to_string(),
    });
}

/// A page the way github.com answers one it has no page for.
fn html(status: StatusCode, title: &str) -> Response {
    let page = format!("<!DOCTYPE html>\n<html lang=\"en\">\n<head><title>{title} · GitHub</title></head>\n<body><h1>{title}</h1></body>\n</html>\n");
    respond(status, "text/html; charset=utf-8", page)
}

fn respond(status: StatusCode, content_type: &str, body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_str(content_type).expect("content type"));
    response
}

/// The parameters of a query string or form body, in order.
fn form_pairs(input: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(input).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The `(user, password)` of a Basic `Authorization` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(BASE64.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// `len` random ASCII letters and digits, from the kernel's generator.
fn random_alphanumeric(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = vec![0u8; len];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).expect("reading /dev/urandom");
    bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}
