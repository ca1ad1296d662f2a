//! The Durable Object `AutopilotContainer`, one per user (`id_from_name(user_id)`). It owns that
//! user's container: starts it lazily (one shared start at a time), polls `GET /ping` until it is
//! ready, watches it exit, stops it when idle, and keeps its own state in the object's SQLite
//! storage. It speaks the contract to the agent-service over gRPC-web and bridges the user's
//! WebSockets (hibernatable) to it: each `ClientFrame` becomes one RPC, each reply, event, error
//! and end of stream goes back as a `ServerFrame` tagged with the client's request id.
//!
//! Local development: workerd has no containers without a Docker engine, so when
//! `state.container()` is absent the object reaches the agent-service at `AGENT_SERVICE_URL`.
//! Only the way to obtain the endpoint differs; polling, RPCs and bridging are the same code.

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    rc::Rc,
    time::Duration,
};

use autopilot_contract::v1::{
    event::Payload, server_frame::Frame, CancelResponse, Event, ServerFrame, StartRequest, StartResponse,
    StatusRequest, StatusResponse, StreamEventsRequest, TaskState,
};
use futures::{
    future::{AbortHandle, Abortable, LocalBoxFuture, Shared},
    FutureExt,
};
use serde::{Deserialize, Serialize};
use worker::{
    durable_object, wasm_bindgen_futures::spawn_local, Date, Delay, Env, Method, Request, RequestInit, Response, State,
    WebSocket, WebSocketIncomingMessage, WebSocketPair,
};

use crate::{
    agent_client::{AgentClient, Endpoint},
    api_error::{error_response, not_found},
    bridge::{decode_client_frame, encode_server_frame, end_frame, error_frame, event_frame, Call, Rpc, WsMessage},
    container_start::start_with_env,
    grpc_web::{Code, GrpcStatus},
    lifecycle::{ContainerState, Lifecycle},
    readiness::{poll_delays, START_DEADLINE},
};

/// Storage key of the object's own state.
const STATE_KEY: &str = "state";
/// Storage key prefix of WebSocket sessions.
const SESSION_PREFIX: &str = "session:";
/// Port the agent-service listens on in the container (the `CONTAINER_PORT` var overrides).
const DEFAULT_CONTAINER_PORT: u16 = 8080;
/// Idle period before the container is stopped (the `IDLE_TIMEOUT_SECONDS` var overrides).
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// How often `last_seen_seq` is written while a subscription streams (events, not time).
const PERSIST_EVERY_EVENTS: u64 = 256;

/// What the object remembers across evictions and restarts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Persisted {
    user_id: Option<String>,
    lifecycle: Lifecycle,
    current_task_id: Option<String>,
    current_task_state: i32,
    last_seen_seq: u64,
}

/// What a hibernatable socket carries with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SocketInfo {
    socket_id: String,
    session_id: String,
}

/// A WebSocket session: created by Start, opened by the WebSocket route.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Session {
    task_id: String,
    created_ms: u64,
}

type StartFuture = Shared<LocalBoxFuture<'static, Result<(), GrpcStatus>>>;

/// In-memory state shared with the object's background tasks (starts, monitors, subscriptions).
#[derive(Default)]
struct Inner {
    persisted: RefCell<Persisted>,
    loaded: Cell<bool>,
    /// Set when `persisted` changed and should be written.
    dirty: Cell<bool>,
    /// The start under way, shared by every request that needs the container meanwhile.
    starting: RefCell<Option<StartFuture>>,
    /// Live subscriptions per socket, aborted when the socket closes.
    subscriptions: RefCell<HashMap<String, Vec<AbortHandle>>>,
    /// Subscriptions streaming now; while any is, the container is not idle.
    active_streams: Cell<u32>,
    /// When a request or frame last arrived; the idle deadline counts from it.
    last_activity_ms: Cell<u64>,
    /// Whether this instance has an alarm scheduled (so activity need not write one each time).
    alarm_scheduled: Cell<bool>,
}

impl Inner {
    fn update(&self, change: impl FnOnce(&mut Persisted)) {
        change(&mut self.persisted.borrow_mut());
        self.dirty.set(true);
    }

    fn note_event(&self, event: &Event) {
        let mut persisted = self.persisted.borrow_mut();
        if persisted.current_task_id.as_deref() == Some(event.task_id.as_str()) {
            persisted.last_seen_seq = persisted.last_seen_seq.max(event.seq);
        }
        if let Some(Payload::TaskFinished(finished)) = &event.payload {
            persisted.current_task_state = finished.state;
        }
        if event.seq % PERSIST_EVERY_EVENTS == 0 || matches!(event.payload, Some(Payload::TaskFinished(_))) {
            self.dirty.set(true);
        }
    }

    fn task_running(&self) -> bool {
        let persisted = self.persisted.borrow();
        persisted.current_task_id.is_some()
            && !TaskState::try_from(persisted.current_task_state).map(TaskState::is_final).unwrap_or(true)
    }
}

fn now_ms() -> u64 {
    Date::now().as_millis()
}

#[durable_object]
pub struct AutopilotContainer {
    state: State,
    env: Env,
    inner: Rc<Inner>,
}

impl worker::DurableObject for AutopilotContainer {
    fn new(state: State, env: Env) -> Self {
        AutopilotContainer { state, env, inner: Rc::new(Inner::default()) }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        self.load().await?;
        if let Some(user) = req.headers().get(crate::routes::USER_HEADER)? {
            if self.inner.persisted.borrow().user_id.as_deref() != Some(user.as_str()) {
                self.inner.update(|p| p.user_id = Some(user));
            }
        }
        let path = req.path();
        let response = match (req.method(), path.as_str()) {
            (Method::Post, "/api/container/start") => self.start_route(req).await,
            (Method::Get, "/api/container/status") => self.status_route(&req).await,
            (Method::Get, p) if p.starts_with("/api/container/ws/") => {
                self.websocket_route(p.trim_start_matches("/api/container/ws/")).await
            }
            (Method::Post, p) if p.starts_with("/autopilot.v1.Autopilot/") => self.grpc_web_passthrough(req).await,
            _ => not_found(&path),
        };
        self.touch().await?;
        self.persist().await?;
        response
    }

    async fn alarm(&self) -> worker::Result<Response> {
        self.load().await?;
        self.inner.alarm_scheduled.set(false);
        let idle_for = Duration::from_millis(now_ms().saturating_sub(self.inner.last_activity_ms.get()));
        if idle_for < self.idle_timeout() {
            self.schedule_alarm(self.idle_timeout() - idle_for).await?;
            return Response::ok("active");
        }
        let idle = self.inner.active_streams.get() == 0
            && self.state.get_websockets().is_empty()
            && !self.inner.task_running()
            && self.inner.starting.borrow().is_none();
        if !idle {
            self.schedule_alarm(self.idle_timeout()).await?;
            return Response::ok("busy");
        }
        if self.inner.persisted.borrow().lifecycle.running_since_ms().is_some() {
            if let Some(container) = self.state.container() {
                if container.running() {
                    // SIGTERM: the agent-service stops its task cleanly and exits 0.
                    let _ = container.signal(15);
                }
            }
            self.inner.update(|p| p.lifecycle.mark_stopped());
            worker::console_log!("container stopped after the idle period");
        }
        self.persist().await?;
        Response::ok("stopped")
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> worker::Result<()> {
        self.load().await?;
        let message = match message {
            WebSocketIncomingMessage::Binary(bytes) => WsMessage::Binary(bytes),
            WebSocketIncomingMessage::String(text) => WsMessage::Text(text),
        };
        match decode_client_frame(&message) {
            Ok(call) => self.handle_call(&ws, call).await,
            Err(reply) => send(&ws, reply),
        }
        self.touch().await?;
        self.persist().await
    }

    async fn websocket_close(&self, ws: WebSocket, _code: usize, _reason: String, _clean: bool) -> worker::Result<()> {
        self.forget_socket(&ws);
        self.touch().await
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> worker::Result<()> {
        self.forget_socket(&ws);
        Ok(())
    }
}

impl AutopilotContainer {
    async fn load(&self) -> worker::Result<()> {
        if !self.inner.loaded.get() {
            let stored: Option<Persisted> = self.state.storage().get(STATE_KEY).await?;
            *self.inner.persisted.borrow_mut() = stored.unwrap_or_default();
            self.inner.loaded.set(true);
        }
        Ok(())
    }

    async fn persist(&self) -> worker::Result<()> {
        if self.inner.dirty.replace(false) {
            let snapshot = self.inner.persisted.borrow().clone();
            self.state.storage().put(STATE_KEY, snapshot).await?;
        }
        Ok(())
    }

    /// Renews the idle deadline, `IDLE_TIMEOUT_SECONDS` after this activity. Only the time is
    /// noted: the alarm, once scheduled, re-arms itself for the remainder when it fires early, so
    /// a busy socket costs no storage write per frame.
    async fn touch(&self) -> worker::Result<()> {
        self.inner.last_activity_ms.set(now_ms());
        if self.inner.alarm_scheduled.get() {
            return Ok(());
        }
        self.schedule_alarm(self.idle_timeout()).await
    }

    async fn schedule_alarm(&self, after: Duration) -> worker::Result<()> {
        self.state.storage().set_alarm(after).await?;
        self.inner.alarm_scheduled.set(true);
        Ok(())
    }

    fn idle_timeout(&self) -> Duration {
        self.var("IDLE_TIMEOUT_SECONDS")
            .and_then(|s| s.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_IDLE_TIMEOUT)
    }

    fn var(&self, name: &str) -> Option<String> {
        self.env.var(name).ok().map(|v| v.to_string())
    }

    /// The agent-service's endpoint: the container's port, or the local-mode URL.
    fn endpoint(&self) -> Result<Endpoint, GrpcStatus> {
        match self.state.container() {
            Some(container) => {
                let port = self.var("CONTAINER_PORT").and_then(|p| p.parse().ok()).unwrap_or(DEFAULT_CONTAINER_PORT);
                container.get_tcp_port(port).map(Endpoint::Container).map_err(|e| {
                    GrpcStatus::new(Code::Unavailable, format!("the container's port {port} is unreachable: {e}"))
                })
            }
            None => self
                .var("AGENT_SERVICE_URL")
                .map(|url| Endpoint::Url(url.trim_end_matches('/').to_string()))
                .ok_or_else(|| {
                    GrpcStatus::new(Code::Unavailable, "no container runtime here and AGENT_SERVICE_URL is not set")
                }),
        }
    }

    /// A client of a ready agent-service, starting the container first if it is not running.
    /// Concurrent callers share one start.
    async fn ready_client(&self) -> Result<AgentClient, GrpcStatus> {
        let endpoint = self.endpoint()?;
        let container = self.state.container();
        {
            let lifecycle = self.inner.persisted.borrow().lifecycle.clone();
            let alive = container.as_ref().map(|c| c.running()).unwrap_or(true);
            if lifecycle.is_ready() && alive {
                return Ok(AgentClient::new(endpoint));
            }
            if lifecycle.is_ready() {
                let generation = lifecycle.current_generation().unwrap_or_default();
                self.inner.update(|p| {
                    p.lifecycle.mark_failed(generation, "the container was no longer running", now_ms());
                });
            }
        }
        let in_flight = self.inner.starting.borrow().clone();
        let start = match in_flight {
            Some(start) => start,
            None => {
                let Some(generation) = self.inner.persisted.borrow_mut().lifecycle.begin_start(now_ms()) else {
                    return Ok(AgentClient::new(endpoint));
                };
                self.inner.dirty.set(true);
                let start = start_container(
                    Rc::clone(&self.inner),
                    container,
                    endpoint.clone(),
                    self.container_env(),
                    generation,
                )
                .boxed_local()
                .shared();
                *self.inner.starting.borrow_mut() = Some(start.clone());
                start
            }
        };
        let result = start.await;
        self.inner.starting.borrow_mut().take();
        let _ = self.persist().await;
        result.map(|()| AgentClient::new(endpoint))
    }

    /// The environment the container starts with. The API key comes from a Worker secret and is
    /// handed to the runtime only; it is never logged.
    fn container_env(&self) -> Vec<(String, String)> {
        let mut env = vec![("PORT".to_string(), DEFAULT_CONTAINER_PORT.to_string())];
        if let Ok(key) = self.env.secret("ANTHROPIC_API_KEY") {
            env.push(("ANTHROPIC_API_KEY".into(), key.to_string()));
        }
        env
    }

    async fn start_route(&self, mut req: Request) -> worker::Result<Response> {
        let body = req.bytes().await?;
        let request: StartRequest = match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(e) => {
                return error_response(&GrpcStatus::new(
                    Code::InvalidArgument,
                    format!("the body must be a StartRequest in proto3 JSON: {e}"),
                ))
            }
        };
        let client = match self.ready_client().await {
            Ok(client) => client,
            Err(status) => return error_response(&status),
        };
        let started: StartResponse = match client.unary("Start", &request).await {
            Ok(started) => started,
            Err(status) => return error_response(&status),
        };
        self.remember_task(&started.task_id, started.state);
        let session_id = random_id()?;
        let session = Session { task_id: started.task_id.clone(), created_ms: now_ms() };
        self.state.storage().put(&format!("{SESSION_PREFIX}{session_id}"), session).await?;
        let url = req.url()?;
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        let host = url.host_str().unwrap_or("localhost");
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        Response::from_json(&serde_json::json!({
            "taskId": started.task_id,
            "state": TaskState::try_from(started.state).unwrap_or_default().as_str_name(),
            "sessionId": session_id,
            "websocketUrl": format!("{scheme}://{host}{port}/api/container/ws/{session_id}"),
        }))
    }

    async fn status_route(&self, req: &Request) -> worker::Result<Response> {
        let task_id =
            req.url()?.query_pairs().find(|(k, _)| k == "taskId").map(|(_, v)| v.into_owned()).unwrap_or_default();
        let client = match self.ready_client().await {
            Ok(client) => client,
            Err(status) => return error_response(&status),
        };
        match client.unary::<StatusResponse>("Status", &StatusRequest { task_id }).await {
            Ok(status) => {
                if let Some(task) = &status.task {
                    self.remember_task(&task.task_id, task.state);
                }
                let container = self.inner.persisted.borrow().lifecycle.state.clone();
                let mut body = serde_json::to_value(&status).map_err(|e| worker::Error::RustError(e.to_string()))?;
                body["container"] = container_json(&container);
                Response::from_json(&body)
            }
            Err(status) => error_response(&status),
        }
    }

    async fn websocket_route(&self, session_id: &str) -> worker::Result<Response> {
        let session: Option<Session> = self.state.storage().get(&format!("{SESSION_PREFIX}{session_id}")).await?;
        if session.is_none() {
            return error_response(&GrpcStatus::new(Code::NotFound, "no such session"));
        }
        let pair = WebSocketPair::new()?;
        self.state.accept_web_socket(&pair.server);
        pair.server.serialize_attachment(SocketInfo { socket_id: random_id()?, session_id: session_id.to_string() })?;
        Response::from_websocket(pair.client)
    }

    /// Forwards a gRPC-web call as it is, so generated clients can use the contract through the
    /// edge. The reply streams back unchanged.
    async fn grpc_web_passthrough(&self, req: Request) -> worker::Result<Response> {
        let client = match self.ready_client().await {
            Ok(client) => client,
            Err(status) => return grpc_web_error(&status),
        };
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_headers(req.headers().clone())
            .with_body(req.inner().body().map(Into::into));
        match client.endpoint().fetch(&req.path(), init).await {
            Ok(response) => Ok(response),
            Err(e) => {
                grpc_web_error(&GrpcStatus::new(Code::Unavailable, format!("could not reach the agent-service: {e}")))
            }
        }
    }

    async fn handle_call(&self, ws: &WebSocket, call: Call) {
        let Call { request_id, rpc, encoding } = call;
        let reply = |frame: Frame| ServerFrame { request_id: request_id.clone(), frame: Some(frame) };
        let client = match self.ready_client().await {
            Ok(client) => client,
            Err(status) => return send(ws, encode_server_frame(&error_frame(request_id, status), encoding)),
        };
        let frame = match rpc {
            Rpc::Start(request) => client.unary::<StartResponse>("Start", &request).await.map(|started| {
                self.remember_task(&started.task_id, started.state);
                reply(Frame::Start(started))
            }),
            Rpc::Status(request) => {
                client.unary::<StatusResponse>("Status", &request).await.map(|s| reply(Frame::Status(s)))
            }
            Rpc::Cancel(request) => {
                client.unary::<CancelResponse>("Cancel", &request).await.map(|c| reply(Frame::Cancel(c)))
            }
            Rpc::Subscribe(request) => return self.subscribe(ws, client, request_id, request, encoding),
        };
        let frame = frame.unwrap_or_else(|status| error_frame(request_id.clone(), status));
        send(ws, encode_server_frame(&frame, encoding));
    }

    /// Streams a task's events to the socket in the background until the task ends, the socket
    /// closes or the stream fails.
    fn subscribe(
        &self,
        ws: &WebSocket,
        client: AgentClient,
        request_id: String,
        request: StreamEventsRequest,
        encoding: crate::bridge::Encoding,
    ) {
        let socket_id = socket_id(ws);
        let (handle, registration) = AbortHandle::new_pair();
        self.inner.subscriptions.borrow_mut().entry(socket_id).or_default().push(handle);
        let inner = Rc::clone(&self.inner);
        let ws = ws.clone();
        inner.active_streams.set(inner.active_streams.get() + 1);
        spawn_local(async move {
            let forward = async {
                let mut stream = match client.stream_events(&request).await {
                    Ok(stream) => stream,
                    Err(status) => return send(&ws, encode_server_frame(&error_frame(request_id, status), encoding)),
                };
                loop {
                    let frame = match stream.next().await {
                        Some(Ok(event)) => {
                            inner.note_event(&event);
                            event_frame(request_id.clone(), event)
                        }
                        Some(Err(status)) => {
                            break send(&ws, encode_server_frame(&error_frame(request_id, status), encoding))
                        }
                        None => break send(&ws, encode_server_frame(&end_frame(request_id), encoding)),
                    };
                    // A failed send means the socket is gone: stop reading for it.
                    if ws_send(&ws, encode_server_frame(&frame, encoding)).is_err() {
                        break;
                    }
                }
            };
            let _ = Abortable::new(forward, registration).await;
            inner.active_streams.set(inner.active_streams.get().saturating_sub(1));
        });
    }

    fn remember_task(&self, task_id: &str, state: i32) {
        {
            let persisted = self.inner.persisted.borrow();
            if persisted.current_task_id.as_deref() == Some(task_id) && persisted.current_task_state == state {
                return;
            }
        }
        self.inner.update(|p| {
            if p.current_task_id.as_deref() != Some(task_id) {
                p.current_task_id = Some(task_id.to_string());
                p.last_seen_seq = 0;
            }
            p.current_task_state = state;
        });
    }

    fn forget_socket(&self, ws: &WebSocket) {
        if let Some(handles) = self.inner.subscriptions.borrow_mut().remove(&socket_id(ws)) {
            handles.into_iter().for_each(|h| h.abort());
        }
    }
}

/// Starts the container (container mode), watches its exit, and polls `/ping` until it answers
/// or [`START_DEADLINE`] passes. Records the outcome in the lifecycle.
async fn start_container(
    inner: Rc<Inner>,
    container: Option<worker::Container>,
    endpoint: Endpoint,
    env: Vec<(String, String)>,
    generation: u32,
) -> Result<(), GrpcStatus> {
    let fail = |reason: String| {
        inner.update(|p| {
            p.lifecycle.mark_failed(generation, reason.clone(), now_ms());
        });
        Err(GrpcStatus::new(Code::Unavailable, reason))
    };
    if let Some(container) = container {
        if !container.running() {
            if let Err(e) = start_with_env(&container, &env, true) {
                return fail(format!("the container did not start: {e}"));
            }
        }
        let watcher = Rc::clone(&inner);
        spawn_local(async move {
            let reason = match container.wait_for_exit().await {
                Ok(()) => "the container exited".to_string(),
                Err(e) => format!("the container crashed: {e}"),
            };
            worker::console_warn!("{reason}");
            watcher.update(|p| {
                if p.lifecycle.mark_failed(generation, reason.clone(), now_ms())
                    && !TaskState::try_from(p.current_task_state).map(TaskState::is_final).unwrap_or(true)
                {
                    p.current_task_state = TaskState::Failed as i32;
                }
            });
        });
    }
    if endpoint.ping().await {
        inner.update(|p| {
            p.lifecycle.mark_ready(generation);
        });
        return Ok(());
    }
    for delay in poll_delays(START_DEADLINE) {
        Delay::from(delay).await;
        if endpoint.ping().await {
            inner.update(|p| {
                p.lifecycle.mark_ready(generation);
            });
            return Ok(());
        }
    }
    fail(format!("the agent-service did not answer /ping within {}s", START_DEADLINE.as_secs()))
}

fn container_json(state: &ContainerState) -> serde_json::Value {
    serde_json::to_value(state).unwrap_or(serde_json::Value::Null)
}

fn socket_id(ws: &WebSocket) -> String {
    ws.deserialize_attachment::<SocketInfo>().ok().flatten().map(|info| info.socket_id).unwrap_or_default()
}

fn ws_send(ws: &WebSocket, message: WsMessage) -> worker::Result<()> {
    match message {
        WsMessage::Binary(bytes) => ws.send_with_bytes(bytes),
        WsMessage::Text(text) => ws.send_with_str(text),
    }
}

/// Sends a frame, ignoring a socket that has just closed (its close handler cleans up).
fn send(ws: &WebSocket, message: WsMessage) {
    let _ = ws_send(ws, message);
}

/// A gRPC-web "trailers-only" error response, so gRPC-web clients see a gRPC status.
fn grpc_web_error(status: &GrpcStatus) -> worker::Result<Response> {
    let headers = worker::Headers::new();
    headers.set("content-type", crate::grpc_web::CONTENT_TYPE)?;
    headers.set("grpc-status", &status.code.to_string())?;
    headers.set("grpc-message", &status.message.replace(['\r', '\n'], " "))?;
    Ok(Response::empty()?.with_headers(headers))
}

/// A random UUID from the runtime's CSPRNG (`crypto.randomUUID()`).
pub fn random_id() -> worker::Result<String> {
    use worker::{
        js_sys::{global, Function, Reflect},
        wasm_bindgen::JsCast,
    };
    let crypto = Reflect::get(&global(), &"crypto".into())?;
    let random_uuid: Function = Reflect::get(&crypto, &"randomUUID".into())?.dyn_into()?;
    random_uuid
        .call0(&crypto)?
        .as_string()
        .ok_or_else(|| worker::Error::RustError("crypto.randomUUID returned no string".into()))
}
