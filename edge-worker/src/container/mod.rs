//! The Durable Object `AutopilotContainer`, one per user (`id_from_name(user_id)`). It owns that
//! user's container: starts it lazily (one shared start at a time), polls `GET /ping` until it is
//! ready, watches it exit, stops it when idle, meters its time against the user's credits, and
//! keeps its record in the object's SQLite storage. It speaks the contract to the agent-service
//! over gRPC-web and bridges the user's WebSockets (hibernatable) to it.
//!
//! Local development: workerd has no containers without a Docker engine, so when
//! `state.container()` is absent the object reaches the agent-service at `AGENT_SERVICE_URL`.
//! Only the way to obtain the endpoint differs; polling, RPCs and bridging are the same code.
//!
//! This file is the entry points' glue; each concept has its own file:
//! - [`live`]: what an instance holds in memory, in owned parts: [`stored`] (the [`record`] and
//!   the account), [`activity`], [`subscriptions`], the archive, the model gateway.
//! - [`runtime`]: start, readiness, exit watch, resync with the platform, stop;
//!   [`loss`]: a container lost under its tasks, as one sequence.
//! - [`metering`]: credits, runs, ledger, and their routes.
//! - [`idle`]: the idle policy (pure) and the heartbeat alarm.
//! - [`bridge_calls`]: WebSocket frames to RPCs and back; task scope on every path.
//! - [`history`]: the task archive: following tasks into it (at the [`write_cadence`], pure),
//!   serving ended tasks from it;
//!   [`fan_out`]: one upstream stream per running task, shared by every socket following it.
//! - [`http_routes`]: Start, Status, the socket upgrade, gRPC-web passthrough.
//! - [`model_gateway`]: each task's model credential (minted, stored, counted: its own folder),
//!   and the model calls made with it.
//! - [`workspaces`]: ended tasks' workspaces kept in R2, for follow-ups in a new container.
//! - [`github_link`]: the user's GitHub connection, its tokens sealed and renewed;
//!   [`git_gateway`]: what a task's push through the edge may do (pure so far).
//! - [`settings`] (pure): the vars, read once per wake-up.
//!
//! What only this object uses, beside it: [`agent_client`] (the contract over gRPC-web to the
//! agent-service, a thin wasm transport), and pure, host-tested rules: [`lifecycle`] (the
//! container's state machine), [`readiness`] (the poll schedule), [`billing`] (credits and
//! metering), [`platform_errors`] (which platform failures are retried); [`start_with_env`] (a
//! workaround for container environment variables in worker 0.8.7).

mod activity;
pub mod agent_client;
pub mod billing;
mod bridge_calls;
pub mod environments;
mod fan_out;
pub mod git_gateway;
mod github_link;
mod history;
mod http_routes;
mod idle;
pub mod lifecycle;
mod live;
mod loss;
mod metering;
pub mod model_gateway;
pub mod platform_errors;
mod pull_requests;
pub mod readiness;
mod record;
mod runtime;
mod settings;
pub mod start_with_env;
mod stored;
mod subscriptions;
pub mod task_credential;
mod workspaces;
pub mod write_cadence;

use std::rc::Rc;

use worker::{durable_object, Date, Env, Method, Request, Response, State, WebSocket, WebSocketIncomingMessage};

use self::{
    activity::ContainerUse,
    environments::Environments,
    github_link::GitHubLink,
    live::Live,
    metering::ACCOUNT_KEY,
    model_gateway::Gateway,
    pull_requests::PullRequests,
    record::{Record, RECORD_KEY},
    settings::Settings,
};
use crate::{
    api_error::{error_response, not_found},
    archive::Archive,
    container::billing::Account,
    front::internal::USER_HEADER,
    front::route::{Backend, Internal, Route},
    front::task_routes,
    socket::answer_close,
};

fn now_ms() -> u64 {
    Date::now().as_millis()
}

#[durable_object]
pub struct AutopilotContainer {
    state: State,
    env: Env,
    /// Read from the vars when the object wakes.
    settings: Settings,
    live: Rc<Live>,
}

impl worker::DurableObject for AutopilotContainer {
    fn new(state: State, env: Env) -> Self {
        let settings = Settings::read(|name| env.var(name).ok().map(|v| v.to_string()));
        let archive = Archive::open(&state.storage(), settings.archive_max_events);
        let gateway = Gateway::open(state.storage().sql());
        let workspaces = env.bucket("WORKSPACES").ok();
        let github = GitHubLink::new(env.clone(), state.storage());
        let pull_requests = PullRequests::open(state.storage().sql(), &env);
        let environments = Environments::open(state.storage().sql(), &env);
        let live = Live::new(archive, gateway, github, pull_requests, environments, workspaces, state.id().to_string());
        AutopilotContainer { state, env, settings, live: Rc::new(live) }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        if let Err(refusal) = self.live.archive.check() {
            return error_response(&refusal);
        }
        // A gateway's call needs the credentials and the archive only, not the container's state.
        match Route::parse(&req.method(), &req.path()) {
            Some(Route::Model) => return self.model_call(req).await,
            Some(Route::Git) => return self.git_call(req).await,
            Some(Route::PreparedStore) => return self.prepared_store_call(req).await,
            _ => {}
        }
        self.wake().await?;
        if let Some(user) = req.headers().get(USER_HEADER)? {
            if self.live.stored.record().user_id.as_deref() != Some(user.as_str()) {
                self.live.stored.update(|record| record.user_id = Some(user));
            }
        }
        let path = req.path();
        if let Some(internal) = Internal::parse(&path) {
            let response = match internal {
                Internal::Grant => self.grant_route(req).await,
                Internal::Alarm => self.heartbeat().await,
                Internal::Storage => self.storage_route().await,
                Internal::AdoptTask => self.adopt_task_route(req).await,
                Internal::LinkGitHub => self.link_github_route(req).await,
                Internal::EnvironmentForStart => self.environment_for_start_route(req).await,
                Internal::GitHubMention => self.github_mention_route(req).await,
                Internal::GitHubChecks => self.github_checks_route(req).await,
                Internal::NextMention => self.next_mention_route().await,
                Internal::PreparedObject => self.prepared_object_route(&req),
            };
            self.persist().await?;
            return response;
        }
        let Some(route) = Route::parse(&req.method(), &path) else { return not_found(&path) };
        let uses_container = route.uses_container();
        let _in_use = uses_container.then(|| ContainerUse::begin(&self.live.activity));
        let response = match route {
            Route::Start(Backend::Container) => task_routes::start_route(self, req, &self.user_id()).await,
            Route::Status(Backend::Container) => self.status_route(&req).await,
            Route::Ticket(Backend::Container) => task_routes::ticket_route(self, req, &self.user_id()).await,
            Route::Socket(Backend::Container, session_id) => self.websocket_route(&req, &session_id).await,
            Route::Grpc(_) if req.method() == Method::Post => self.grpc_web_passthrough(req).await,
            Route::Tasks(Backend::Container) => task_routes::tasks_route(self, &req),
            Route::Balance => self.balance_route(),
            Route::Ledger => self.ledger_route().await,
            Route::GitHub(github) => self.github_route(&req, github).await,
            Route::PullRequest(task_id) => self.pull_request_route(&task_id).await,
            Route::Environments(environments) => self.environments_route(req, environments).await,
            _ => not_found(&path),
        };
        if uses_container {
            self.touch().await?;
        }
        self.persist().await?;
        response
    }

    async fn alarm(&self) -> worker::Result<Response> {
        self.wake().await?;
        self.heartbeat().await
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> worker::Result<()> {
        self.wake().await?;
        let _in_use = ContainerUse::begin(&self.live.activity);
        self.socket_frame(&ws, message).await;
        self.touch().await?;
        self.persist().await
    }

    async fn websocket_close(&self, ws: WebSocket, code: usize, _reason: String, _clean: bool) -> worker::Result<()> {
        answer_close(&ws, code);
        self.forget_socket(&ws);
        self.touch().await
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> worker::Result<()> {
        self.forget_socket(&ws);
        Ok(())
    }
}

impl AutopilotContainer {
    /// Every entry (request, frame, alarm) first loads what the object stored, then checks the
    /// record against the platform (see `resync`).
    async fn wake(&self) -> worker::Result<()> {
        self.load().await?;
        self.resync().await
    }

    async fn load(&self) -> worker::Result<()> {
        if !self.live.stored.is_loaded() {
            let record: Option<Record> = self.state.storage().get(RECORD_KEY).await?;
            let account: Option<Account> = self.state.storage().get(ACCOUNT_KEY).await?;
            self.live.stored.load_once(|| (record.unwrap_or_default(), account.unwrap_or_default()));
            // The time of the last activity is not stored: waking up counts as activity, so a
            // restarted object never stops a container at once for an idleness it cannot know.
            self.live.activity.last_activity_ms.set(now_ms());
        }
        Ok(())
    }

    async fn persist(&self) -> worker::Result<()> {
        if let Some(record) = self.live.stored.take_changed() {
            self.state.storage().put(RECORD_KEY, record).await?;
        }
        Ok(())
    }

    fn user_id(&self) -> String {
        self.live.stored.user_id()
    }
}
