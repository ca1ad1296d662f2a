//! The edge's route table, as plain Rust: every path is spelled here once, parsed once into a
//! [`Route`] that the Worker and both Durable Objects match on, so a path cannot drift between
//! the router and the object that serves it. Also the internal paths the Worker uses to reach a
//! user's object on an admin's behalf ([`Internal`]), which no client can reach.

use worker::Method;

/// Where the prepared store is served ([`Route::PreparedStore`]).
pub const STORE_PREFIX: &str = "/cache/prepared";

/// The two modes a user chooses between, each served by its own Durable Object per user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Paid: the agent runs in the user's container (`AutopilotContainer`).
    Container,
    /// Free: the agent runs on the user's own machine, connected out to `TunnelRelay`.
    Tunnel,
}

impl Backend {
    /// The Durable Object binding of the mode (wrangler.toml).
    pub fn binding(self) -> &'static str {
        match self {
            Backend::Container => "AUTOPILOT_CONTAINER",
            Backend::Tunnel => "TUNNEL_RELAY",
        }
    }

    /// Where a browser of this mode asks for a fresh WebSocket ticket.
    pub fn ticket_path(self) -> &'static str {
        match self {
            Backend::Container => "/api/container/ws-ticket",
            Backend::Tunnel => "/api/tunnel/ws-ticket",
        }
    }

    /// The prefix of this mode's WebSocket paths; the session id follows it.
    pub fn socket_prefix(self) -> &'static str {
        match self {
            Backend::Container => "/api/container/ws/",
            Backend::Tunnel => "/api/tunnel/ws/",
        }
    }
}

/// Admin routes (`Authorization: Bearer $ADMIN_SECRET`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRoute {
    CreateToken,
    RevokeToken(String),
    GrantCredits,
    RunMeter,
    Storage,
    /// Bench only: records a task as a user's.
    AdoptTask,
}

/// A request the edge serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Health,
    SignIn,
    SignOut,
    Me,
    /// `GET /api/auth/providers`: how people may sign in here (whether GitHub is set up).
    AuthProviders,
    Admin(AdminRoute),
    /// The benchmark's plain WebSocket echo (only with `BENCH_ROUTES=true`).
    BenchEcho,
    /// The benchmark's fan-out floor, in one Durable Object (only with `BENCH_ROUTES=true`).
    BenchFanout,
    /// The benchmark's archive baseline: a task streamed with no archive (only with `BENCH_ROUTES=true`).
    BenchStream,
    Start(Backend),
    /// Container status; the tunnel's says whether the machine is connected.
    Status(Backend),
    Ticket(Backend),
    /// A browser's WebSocket to one of the user's sessions.
    Socket(Backend, String),
    /// Tunnel mode: the user's machine connects.
    TunnelConnect,
    Balance,
    Ledger,
    /// The user's task list, from the archive of the mode's object.
    Tasks(Backend),
    /// A gRPC-web call of the contract's service: the method's name.
    Grpc(String),
    /// The model gateway (`/model/...`, any method): a task's agent calling the model with its
    /// task credential, which also names the object that answers.
    Model,
    /// The git gateway (`/git/...`): a task's git with its task credential, which also names the
    /// object that answers.
    Git,
    /// The prepared store (`/cache/prepared[/...]`): a task's service reading or keeping its
    /// prepared workspace with its task credential, which also names the object that answers.
    PreparedStore,
    /// Sign in with GitHub (or connect it to the signed-in account): off to GitHub's authorize page.
    GitHubSignIn,
    /// Where GitHub sends the browser back with a code.
    GitHubCallback,
    /// GitHub's webhook deliveries (`POST /webhooks/github`), signed with the App's secret.
    GitHubWebhook,
    /// The signed-in user's GitHub connection, in their container object.
    GitHub(GitHubRoute),
    /// `POST /api/tasks/{id}/pull-request`: opens (or tries again) an ended task's pull request.
    PullRequest(String),
    /// The user's environments, in their container object.
    Environments(EnvironmentRoute),
}

/// The routes of a user's environments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvironmentRoute {
    /// `GET /api/environments`.
    List,
    /// `GET /api/environments/{name}` (secrets by name only).
    Get(String),
    /// `PUT /api/environments/{name}`: saves it.
    Put(String),
    /// `DELETE /api/environments/{name}`.
    Delete(String),
    /// `DELETE /api/environments/{name}/cache`: its prepared workspaces are not used again.
    ResetCache(String),
}

impl EnvironmentRoute {
    /// The route `method` and `path` (under `/api/environments`) ask for.
    fn parse(method: &Method, path: &str) -> Option<EnvironmentRoute> {
        let rest = path.strip_prefix("/api/environments")?;
        let named = rest.strip_prefix('/').filter(|name| !name.is_empty());
        let route = match (method, named) {
            (Method::Get, None) if rest.is_empty() => EnvironmentRoute::List,
            (Method::Delete, Some(name)) if name.ends_with("/cache") => {
                EnvironmentRoute::ResetCache(name.trim_end_matches("/cache").to_string())
            }
            (_, Some(name)) if name.contains('/') => return None,
            (Method::Get, Some(name)) => EnvironmentRoute::Get(name.to_string()),
            (Method::Put, Some(name)) => EnvironmentRoute::Put(name.to_string()),
            (Method::Delete, Some(name)) => EnvironmentRoute::Delete(name.to_string()),
            _ => return None,
        };
        Some(route)
    }
}

/// The routes of a user's GitHub connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitHubRoute {
    /// `GET /api/github`: whether GitHub is connected, as which account.
    Connection,
    /// `DELETE /api/github`: disconnects (the token is deleted, and revoked at GitHub).
    Disconnect,
    /// `GET /api/github/repositories?pageToken=`: what the user's token reaches.
    Repositories,
}

/// The gRPC-web path prefix of the contract's service.
pub const GRPC_SERVICE_PREFIX: &str = "/autopilot.v1.Autopilot/";

impl Route {
    /// The route `method` and `path` ask for; `None` if the edge serves no such route.
    pub fn parse(method: &Method, path: &str) -> Option<Route> {
        use Backend::{Container, Tunnel};
        let route = match (method, path) {
            (Method::Get, "/health") => Route::Health,
            (Method::Post, "/api/auth/signin") => Route::SignIn,
            (Method::Post, "/api/auth/signout") => Route::SignOut,
            (Method::Get, "/api/auth/me") => Route::Me,
            (Method::Get, "/api/auth/providers") => Route::AuthProviders,
            (Method::Post, "/api/admin/tokens") => Route::Admin(AdminRoute::CreateToken),
            (Method::Delete, p) if p.starts_with("/api/admin/tokens/") => {
                Route::Admin(AdminRoute::RevokeToken(p["/api/admin/tokens/".len()..].to_string()))
            }
            (Method::Post, "/api/admin/credits") => Route::Admin(AdminRoute::GrantCredits),
            (Method::Post, "/api/admin/meter") => Route::Admin(AdminRoute::RunMeter),
            (Method::Get, "/api/admin/storage") => Route::Admin(AdminRoute::Storage),
            (Method::Post, "/api/admin/tasks") => Route::Admin(AdminRoute::AdoptTask),
            (Method::Get, "/bench/echo") => Route::BenchEcho,
            (Method::Get, "/bench/fanout") => Route::BenchFanout,
            (Method::Get, "/bench/stream") => Route::BenchStream,
            (Method::Post, "/api/container/start") => Route::Start(Container),
            (Method::Post, "/api/tunnel/start") => Route::Start(Tunnel),
            (Method::Get, "/api/container/status") => Route::Status(Container),
            (Method::Get, "/api/tunnel/status") => Route::Status(Tunnel),
            (Method::Post, "/api/container/ws-ticket") => Route::Ticket(Container),
            (Method::Post, "/api/tunnel/ws-ticket") => Route::Ticket(Tunnel),
            (Method::Get, "/api/tunnel/connect") => Route::TunnelConnect,
            (Method::Get, "/api/billing/balance") => Route::Balance,
            (Method::Get, "/api/billing/ledger") => Route::Ledger,
            (Method::Get, "/api/tasks") => Route::Tasks(Container),
            (Method::Get, "/api/tunnel/tasks") => Route::Tasks(Tunnel),
            (Method::Get, "/auth/github") => Route::GitHubSignIn,
            (Method::Get, "/auth/github/callback") => Route::GitHubCallback,
            (Method::Post, "/webhooks/github") => Route::GitHubWebhook,
            (Method::Get, "/api/github") => Route::GitHub(GitHubRoute::Connection),
            (Method::Delete, "/api/github") => Route::GitHub(GitHubRoute::Disconnect),
            (Method::Get, "/api/github/repositories") => Route::GitHub(GitHubRoute::Repositories),
            (Method::Post, p) if p.starts_with("/api/tasks/") && p.ends_with("/pull-request") => {
                let task_id = &p["/api/tasks/".len()..p.len() - "/pull-request".len()];
                if task_id.is_empty() || task_id.contains('/') {
                    return None;
                }
                Route::PullRequest(task_id.to_string())
            }
            (_, p) if p == "/api/environments" || p.starts_with("/api/environments/") => {
                return EnvironmentRoute::parse(method, p).map(Route::Environments)
            }
            (_, p) if p.starts_with("/model/") => Route::Model,
            (_, p) if p.starts_with("/git/") => Route::Git,
            (_, p) if p == STORE_PREFIX || p.starts_with(&format!("{STORE_PREFIX}/")) => Route::PreparedStore,
            // Every method of the contract's service is routed; the object answers UNIMPLEMENTED
            // for one it does not serve.
            (Method::Post, p) if p.starts_with(GRPC_SERVICE_PREFIX) => {
                Route::Grpc(p[GRPC_SERVICE_PREFIX.len()..].to_string())
            }
            (Method::Get, p) => {
                let socket = |backend: Backend| {
                    p.strip_prefix(backend.socket_prefix()).map(|session| Route::Socket(backend, session.to_string()))
                };
                return socket(Container).or_else(|| socket(Tunnel));
            }
            _ => return None,
        };
        Some(route)
    }

    /// The mode whose object serves this route for the signed-in user, if one does.
    pub fn backend(&self) -> Option<Backend> {
        match self {
            Route::Start(backend)
            | Route::Status(backend)
            | Route::Ticket(backend)
            | Route::Socket(backend, _)
            | Route::Tasks(backend) => Some(*backend),
            Route::TunnelConnect => Some(Backend::Tunnel),
            Route::Balance
            | Route::Ledger
            | Route::Grpc(_)
            | Route::GitHub(_)
            | Route::PullRequest(_)
            | Route::Environments(_) => Some(Backend::Container),
            _ => None,
        }
    }

    /// Whether serving this route uses the user's container, and so counts as activity that
    /// keeps it from the idle stop. Reading one's balance or ledger, asking for a ticket, or an
    /// admin call must not keep an idle container alive.
    pub fn uses_container(&self) -> bool {
        matches!(
            self,
            Route::Start(Backend::Container)
                | Route::Status(Backend::Container)
                | Route::Socket(Backend::Container, _)
                | Route::Grpc(_)
        )
    }
}

/// The paths on which the Worker reaches a user's object on an admin's behalf. Only the Worker
/// builds requests to them; no client route leads there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Internal {
    Grant,
    Alarm,
    Storage,
    AdoptTask,
    /// The Worker hands the object a GitHub grant the user just signed in with.
    LinkGitHub,
    /// The user's tunnel relay asks for the environment a Start on the user's machine runs in.
    EnvironmentForStart,
    /// The Worker hands on a mention of autopilot on one of the user's pull requests.
    GitHubMention,
    /// The Worker hands on a failed check suite on one of the user's pull requests.
    GitHubChecks,
    /// The object asks itself to start what waits behind a pull request's turn that ended.
    NextMention,
    /// The Worker asks which prepared workspace a store credential reaches, to serve it itself.
    PreparedObject,
}

impl Internal {
    const ALL: [Internal; 10] = [
        Internal::Grant,
        Internal::Alarm,
        Internal::Storage,
        Internal::AdoptTask,
        Internal::LinkGitHub,
        Internal::EnvironmentForStart,
        Internal::GitHubMention,
        Internal::GitHubChecks,
        Internal::NextMention,
        Internal::PreparedObject,
    ];

    pub fn path(self) -> &'static str {
        match self {
            Internal::Grant => "/internal/grant",
            Internal::Alarm => "/internal/alarm",
            Internal::Storage => "/internal/storage",
            Internal::AdoptTask => "/internal/adopt-task",
            Internal::LinkGitHub => "/internal/link-github",
            Internal::EnvironmentForStart => "/internal/environment-for-start",
            Internal::GitHubMention => "/internal/github-mention",
            Internal::GitHubChecks => "/internal/github-checks",
            Internal::NextMention => "/internal/next-mention",
            Internal::PreparedObject => "/internal/prepared-object",
        }
    }

    /// The internal route at `path`.
    pub fn parse(path: &str) -> Option<Internal> {
        Internal::ALL.into_iter().find(|internal| internal.path() == path)
    }

    /// The URL the Worker sends an internal request to (the host is the object's, not a network's).
    pub fn url(self) -> String {
        format!("https://user-object{}", self.path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_path_parses_to_its_route_and_mode() {
        assert_eq!(Route::parse(&Method::Post, "/api/container/start"), Some(Route::Start(Backend::Container)));
        assert_eq!(Route::parse(&Method::Post, "/api/tunnel/start"), Some(Route::Start(Backend::Tunnel)));
        assert_eq!(Route::parse(&Method::Get, "/api/container/start"), None, "the method matters");
        assert_eq!(Route::parse(&Method::Get, "/auth/github"), Some(Route::GitHubSignIn));
        assert_eq!(Route::parse(&Method::Get, "/cache/prepared"), Some(Route::PreparedStore));
        assert_eq!(Route::parse(&Method::Put, "/cache/prepared/parts/1"), Some(Route::PreparedStore));
        assert_eq!(Route::parse(&Method::Get, "/cache/preparedx"), None);
        let repositories = Route::parse(&Method::Get, "/api/github/repositories").unwrap();
        assert_eq!(repositories.backend(), Some(Backend::Container), "the connection lives in the user's object");
        assert_eq!(Route::parse(&Method::Delete, "/api/github"), Some(Route::GitHub(GitHubRoute::Disconnect)));
        assert_eq!(
            Route::parse(&Method::Get, "/api/tunnel/ws/abc"),
            Some(Route::Socket(Backend::Tunnel, "abc".into()))
        );
        assert_eq!(
            Route::parse(&Method::Delete, "/api/admin/tokens/ff00"),
            Some(Route::Admin(AdminRoute::RevokeToken("ff00".into())))
        );
        assert_eq!(Route::parse(&Method::Post, "/autopilot.v1.Autopilot/GetDiff"), Some(Route::Grpc("GetDiff".into())));
        assert_eq!(Route::parse(&Method::Get, "/internal/alarm"), None, "internal paths are no client's route");
        assert_eq!(Route::Grpc("Status".into()).backend(), Some(Backend::Container));
        assert_eq!(Route::TunnelConnect.backend(), Some(Backend::Tunnel));
        assert_eq!(Route::parse(&Method::Get, "/api/tunnel/tasks").and_then(|r| r.backend()), Some(Backend::Tunnel));
        assert_eq!(Route::Admin(AdminRoute::Storage).backend(), None);
        let retry = Route::parse(&Method::Post, "/api/tasks/t-1/pull-request");
        assert_eq!(retry, Some(Route::PullRequest("t-1".into())));
        assert_eq!(retry.and_then(|r| r.backend()), Some(Backend::Container));
        for odd in ["/api/tasks//pull-request", "/api/tasks/a/b/pull-request"] {
            assert_eq!(Route::parse(&Method::Post, odd), None, "{odd}");
        }
        let environments = |method: Method, path: &str| Route::parse(&method, path);
        assert_eq!(environments(Method::Get, "/api/environments"), Some(Route::Environments(EnvironmentRoute::List)));
        assert_eq!(
            environments(Method::Put, "/api/environments/web"),
            Some(Route::Environments(EnvironmentRoute::Put("web".into())))
        );
        assert_eq!(
            environments(Method::Delete, "/api/environments/web/cache"),
            Some(Route::Environments(EnvironmentRoute::ResetCache("web".into())))
        );
        assert_eq!(environments(Method::Post, "/api/environments/web"), None);
        assert_eq!(environments(Method::Get, "/api/environments/a/b"), None);
        assert_eq!(environments(Method::Get, "/api/environmentsx"), None);
    }

    #[test]
    fn only_uses_of_the_container_count_as_its_activity() {
        let active = ["/api/container/status", "/api/container/ws/s1"].map(|p| Route::parse(&Method::Get, p).unwrap());
        assert!(active.iter().all(Route::uses_container));
        assert!(Route::Start(Backend::Container).uses_container() && Route::Grpc("Cancel".into()).uses_container());
        let idle = [
            Route::Ticket(Backend::Container),
            Route::Balance,
            Route::Ledger,
            Route::Tasks(Backend::Container),
            Route::Start(Backend::Tunnel),
        ];
        assert!(idle.iter().all(|route| !route.uses_container()), "a ticket, the balance or the ledger is not use");
    }

    #[test]
    fn internal_paths_round_trip() {
        for internal in Internal::ALL {
            assert_eq!(Internal::parse(internal.path()), Some(internal));
            assert!(internal.url().ends_with(internal.path()));
        }
        assert_eq!(Internal::parse("/internal/other"), None);
    }
}
