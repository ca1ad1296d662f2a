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
    collections::{HashMap, HashSet},
    rc::Rc,
    time::Duration,
};

use autopilot_contract::v1::{
    event::Payload, server_frame::Frame, CancelRequest, CancelResponse, Event, GetDiffRequest, ServerFrame,
    StartRequest, StartResponse, StatusRequest, StatusResponse, StreamEventsRequest, TaskFinished, TaskState,
};
use futures::{
    channel::oneshot,
    future::{self, AbortHandle, Abortable, Either, LocalBoxFuture, Shared},
    FutureExt,
};
use serde::{Deserialize, Serialize};
use worker::{
    durable_object, js_sys, wasm_bindgen::JsValue, wasm_bindgen_futures::spawn_local, Date, Delay, Env, ListOptions,
    Method, Request, RequestInit, Response, State, WebSocket, WebSocketIncomingMessage, WebSocketPair,
};

use crate::{
    agent_client::{AgentClient, Endpoint},
    api_error::{error_response, grpc_web_error, not_found},
    billing::{Account, LedgerEntry, Rate},
    bridge::{
        decode_client_frame, encode_server_frame, end_frame, error_frame, event_frame, Call, Rpc,
        MAX_IN_FLIGHT_PER_SOCKET, MAX_SUBSCRIPTIONS_PER_SOCKET,
    },
    container_errors::start_is_transient,
    container_start::{another_handle, start_with_env},
    entropy::random_id,
    grpc_web::{self, Code, GrpcStatus},
    lifecycle::{Lifecycle, Resync},
    readiness::{backoff, poll_delays, FIRST_START_RETRY, MAX_START_RETRY, START_DEADLINE},
    routes::USER_HEADER,
    sessions::Sessions,
    socket::{incoming, send, try_send},
    task_scope,
};

/// Storage key of the object's own state.
const STATE_KEY: &str = "state";
/// Storage key of the user's credits and metering state.
const ACCOUNT_KEY: &str = "account";
/// Storage key prefix of ledger entries (followed by a zero-padded sequence number).
const LEDGER_PREFIX: &str = "ledger:";
/// Storage key prefix of the tasks this object started (followed by the task id): the only
/// tasks its user's requests may reach.
const TASK_PREFIX: &str = "task:";
/// How often container time is charged while it runs (the `METER_INTERVAL_SECONDS` var overrides).
const DEFAULT_METER_INTERVAL: Duration = Duration::from_secs(60);
/// What a task cancelled for lack of credits says.
const CREDITS_EXHAUSTED: &str = "your credits ran out; the container was stopped";
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
    /// Why the current task ended, when this object ended it (credits) or learned it.
    #[serde(default)]
    current_task_error: String,
    last_seen_seq: u64,
}

/// What a hibernatable socket carries with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SocketInfo {
    socket_id: String,
    session_id: String,
}

type StartFuture = Shared<LocalBoxFuture<'static, Result<(), GrpcStatus>>>;

/// A socket's subscription to a task's events, forwarded in the background.
struct Subscription {
    socket_id: String,
    ws: WebSocket,
    request_id: String,
    encoding: crate::bridge::Encoding,
    abort: AbortHandle,
    task_id: String,
    /// The seq of the last event forwarded, so that a final event made here follows it.
    last_seq: Rc<Cell<u64>>,
}

/// In-memory state shared with the object's background tasks (starts, monitors, subscriptions).
#[derive(Default)]
struct Inner {
    persisted: RefCell<Persisted>,
    /// The user's credits; written only together with its ledger entry.
    account: RefCell<Account>,
    /// When the monitor saw the container exit; charged and closed by the next handler.
    exited_at_ms: Cell<Option<u64>>,
    loaded: Cell<bool>,
    /// Set when `persisted` changed and should be written.
    dirty: Cell<bool>,
    /// The start under way, shared by every request that needs the container meanwhile.
    starting: RefCell<Option<StartFuture>>,
    /// The generation whose exit this instance watches (an evicted instance's watch is gone).
    watched_generation: Cell<Option<u32>>,
    /// Live subscriptions by id: aborted when their socket closes, and told why when the
    /// container dies under them.
    subscriptions: RefCell<HashMap<u64, Subscription>>,
    next_subscription: Cell<u64>,
    /// Subscriptions streaming now; while any is, the container is not idle.
    active_streams: Cell<u32>,
    /// When a request or frame last arrived; the idle deadline counts from it.
    last_activity_ms: Cell<u64>,
    /// Requests and frames for the container being handled now; while any is, it is not idle.
    handling: Cell<u32>,
    /// When this instance last saw the platform say the container runs (an exit nobody watched
    /// is charged up to here).
    last_seen_running_ms: Cell<u64>,
    /// Whether this instance has an alarm scheduled (so activity need not write one each time).
    alarm_scheduled: Cell<bool>,
    /// Task ids known to be this user's (a cache of the `task:` entries in storage).
    own_tasks: RefCell<HashSet<String>>,
    /// Frames being handled per socket id, bounded by [`MAX_IN_FLIGHT_PER_SOCKET`].
    in_flight: RefCell<HashMap<String, u32>>,
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
        task_is_running(&self.persisted.borrow())
    }

    /// The container of `generation` is gone without the object stopping it: the record fails
    /// it (unless a newer generation replaced it), its run is charged up to `gone_at_ms`, and its
    /// task fails with `reason`.
    fn lose(&self, generation: u32, reason: &str, gone_at_ms: u64) {
        if self.persisted.borrow_mut().lifecycle.mark_failed(generation, reason, now_ms()) {
            self.record_loss(reason, gone_at_ms);
        }
    }

    /// What follows a loss the record already shows: it is logged and persisted, the run is to
    /// be charged up to `gone_at_ms`, and the task fails with `reason`.
    fn record_loss(&self, reason: &str, gone_at_ms: u64) {
        worker::console_warn!("{reason}");
        self.dirty.set(true);
        self.exited_at_ms.set(Some(gone_at_ms));
        self.fail_running_task(reason);
    }

    /// The container died under its task: the task is recorded FAILED with `reason`, and every
    /// subscription gets the task's final event and its end. The event is made here because the
    /// service that would have sent it is gone; it follows the last event the client received.
    fn fail_running_task(&self, reason: &str) {
        self.update(|p| {
            if task_is_running(p) {
                p.current_task_state = TaskState::Failed as i32;
                p.current_task_error = reason.to_string();
            }
        });
        let time = autopilot_contract::time::timestamp(std::time::UNIX_EPOCH + Duration::from_millis(now_ms()));
        let current_task = self.persisted.borrow().current_task_id.clone().unwrap_or_default();
        for subscription in self.subscriptions.borrow().values() {
            subscription.abort.abort();
            // An empty task id followed "the running task": the current one.
            let task_id =
                Some(subscription.task_id.clone()).filter(|id| !id.is_empty()).unwrap_or(current_task.clone());
            let finished =
                TaskFinished { state: TaskState::Failed as i32, error: reason.to_string(), ..Default::default() };
            let event = Event {
                task_id,
                seq: subscription.last_seq.get() + 1,
                time: Some(time),
                payload: Some(Payload::TaskFinished(finished)),
            };
            let (request_id, encoding) = (subscription.request_id.clone(), subscription.encoding);
            send(&subscription.ws, encode_server_frame(&event_frame(request_id.clone(), event), encoding));
            send(&subscription.ws, encode_server_frame(&end_frame(request_id), encoding));
        }
    }
}

/// Counts a request or frame for the container while it is handled (see [`Inner::handling`]);
/// the idle stop waits for it.
struct Handling(Rc<Inner>);

impl Handling {
    fn begin(inner: &Rc<Inner>) -> Handling {
        inner.handling.set(inner.handling.get() + 1);
        inner.last_activity_ms.set(now_ms());
        Handling(Rc::clone(inner))
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.handling.set(self.0.handling.get().saturating_sub(1));
    }
}

/// Counts a frame in flight on one socket (see [`Inner::in_flight`]) while it is handled.
struct InFlight {
    inner: Rc<Inner>,
    socket: String,
}

impl InFlight {
    /// `None` when the socket already has [`MAX_IN_FLIGHT_PER_SOCKET`] frames in flight.
    fn begin(inner: &Rc<Inner>, socket: String) -> Option<InFlight> {
        let mut in_flight = inner.in_flight.borrow_mut();
        let count = in_flight.entry(socket.clone()).or_default();
        if *count >= MAX_IN_FLIGHT_PER_SOCKET {
            return None;
        }
        *count += 1;
        Some(InFlight { inner: Rc::clone(inner), socket })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut in_flight = self.inner.in_flight.borrow_mut();
        if let Some(count) = in_flight.get_mut(&self.socket) {
            *count -= 1;
            if *count == 0 {
                in_flight.remove(&self.socket);
            }
        }
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
        self.enter().await?;
        if let Some(user) = req.headers().get(USER_HEADER)? {
            if self.inner.persisted.borrow().user_id.as_deref() != Some(user.as_str()) {
                self.inner.update(|p| p.user_id = Some(user));
            }
        }
        let path = req.path();
        // Only use of the container is activity: reading one's balance or ledger, asking for a
        // ticket, or an admin call must not keep an idle container alive.
        let uses_container = path.starts_with("/api/container/") && path != "/api/container/ws-ticket"
            || path.starts_with("/autopilot.v1.");
        let _handling = uses_container.then(|| Handling::begin(&self.inner));
        let response = match (req.method(), path.as_str()) {
            (Method::Post, "/api/container/start") => self.start_route(req).await,
            (Method::Get, "/api/container/status") => self.status_route(&req).await,
            (Method::Post, "/api/container/ws-ticket") => {
                let reply = self.sessions().ticket_route(req, &self.user_id()).await;
                self.alarm_by(now_ms() + self.sessions().ticket_ttl_ms() + 1_000).await?;
                reply
            }
            (Method::Get, p) if p.starts_with("/api/container/ws/") => {
                self.websocket_route(&req, p.trim_start_matches("/api/container/ws/")).await
            }
            (Method::Post, p) if p.starts_with("/autopilot.v1.Autopilot/") => self.grpc_web_passthrough(req).await,
            (Method::Get, "/api/billing/balance") => self.balance_route(),
            (Method::Get, "/api/billing/ledger") => self.ledger_route().await,
            (Method::Post, "/internal/grant") => self.grant_route(req).await,
            (Method::Post, "/internal/alarm") => <Self as worker::DurableObject>::alarm(self).await,
            (Method::Get, "/internal/storage") => self.storage_route().await,
            (Method::Post, "/internal/adopt-task") => self.adopt_task_route(req).await,
            _ => not_found(&path),
        };
        if uses_container {
            self.touch().await?;
        }
        self.persist().await?;
        response
    }

    /// The heartbeat: charges container time, stops the container when credits run out or when
    /// it has been idle long enough, and re-arms itself while there is anything to watch.
    async fn alarm(&self) -> worker::Result<Response> {
        self.enter().await?;
        self.inner.alarm_scheduled.set(false);
        self.charge(|account, rate| account.meter(now_ms(), rate)).await?;
        let running = self.inner.account.borrow().run_started_ms.is_some();
        if running && self.inner.account.borrow().balance <= 0 {
            self.stop_for_credits().await?;
        }
        self.refresh_task_state().await;
        let running_task = self.inner.task_running().then(|| self.inner.persisted.borrow().current_task_id.clone());
        let prune_due = self.sessions().prune(now_ms(), running_task.flatten().as_deref()).await?;
        let idle_for = Duration::from_millis(now_ms().saturating_sub(self.inner.last_activity_ms.get()));
        let busy = self.inner.active_streams.get() > 0
            || self.inner.handling.get() > 0
            || !self.state.get_websockets().is_empty()
            || self.inner.task_running()
            || self.inner.starting.borrow().is_some();
        let running = self.inner.account.borrow().run_started_ms.is_some();
        let outcome = if busy {
            "busy"
        } else if idle_for < self.idle_timeout() {
            "waiting"
        } else if running {
            self.stop_container().await?;
            worker::console_log!("container stopped after the idle period");
            "stopped"
        } else {
            "idle"
        };
        self.persist().await?;
        if let Some(delay) = self.next_alarm(busy, idle_for) {
            self.schedule_alarm(delay).await?;
        }
        if let Some(due) = prune_due {
            self.alarm_by(due).await?;
        }
        Response::ok(outcome)
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> worker::Result<()> {
        self.enter().await?;
        let _handling = Handling::begin(&self.inner);
        match decode_client_frame(&incoming(message)) {
            Ok(call) => match InFlight::begin(&self.inner, socket_id(&ws)) {
                Some(_in_flight) => self.handle_call(&ws, call).await,
                None => {
                    let status = GrpcStatus::new(
                        Code::ResourceExhausted,
                        format!("at most {MAX_IN_FLIGHT_PER_SOCKET} requests in flight per socket: wait for replies"),
                    );
                    send(&ws, encode_server_frame(&error_frame(call.request_id, status), call.encoding))
                }
            },
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
    /// Every entry (request, frame, alarm) first loads the record, then checks it against the
    /// platform: a container believed running that is not is failed now (and its task with it);
    /// a running one the record never knew is adopted; a running one it gave up on is destroyed;
    /// a ready one is watched by this instance. Then a run whose container is gone is charged
    /// and closed, before anything can open a new one.
    async fn enter(&self) -> worker::Result<()> {
        self.load().await?;
        if let Some(container) = self.state.container() {
            let in_flight = self.inner.starting.borrow().is_some();
            let running = container.running();
            if running {
                self.inner.last_seen_running_ms.set(now_ms());
            }
            let resync = self.inner.persisted.borrow_mut().lifecycle.resync(running, in_flight, now_ms());
            match resync {
                Resync::InStep => {
                    let lifecycle = self.inner.persisted.borrow().lifecycle.clone();
                    if let (true, Some(generation)) = (lifecycle.is_ready(), lifecycle.current_generation()) {
                        if self.inner.watched_generation.get() != Some(generation) {
                            drop(watch_exit(Rc::clone(&self.inner), container, generation));
                        }
                    }
                }
                Resync::Lost { .. } => {
                    // Nobody saw it go: charged up to the last time it was seen running.
                    let seen = self.inner.last_seen_running_ms.get().max(self.inner.account.borrow().metered_until_ms);
                    let gone_at = self.inner.exited_at_ms.get().unwrap_or(seen);
                    self.inner.record_loss(crate::lifecycle::LOST, gone_at);
                }
                Resync::Orphan => {
                    // Adopted as a start of a new generation that skips the platform's start:
                    // the next request waits for its /ping like any start, and its time is metered.
                    worker::console_warn!("a running container the record did not know of: adopting it");
                    self.inner.update(|p| {
                        p.lifecycle.begin_start(now_ms());
                    });
                    self.charge(|account, _| {
                        account.start_run(now_ms());
                        None
                    })
                    .await?;
                }
                Resync::Unwanted => {
                    worker::console_warn!("a container the record gave up on still runs: destroying it");
                    if let Err(e) = container.destroy(Some("the edge gave up on this container")).await {
                        worker::console_warn!("destroying it failed: {}", error_text(&e));
                    }
                }
            }
        }
        self.close_finished_run().await
    }

    /// A metering run is open only while the record has a container (starting or ready): one
    /// that exited, failed or was lost is charged up to when it went (the exit seen, or else
    /// the record's last change) and closed.
    async fn close_finished_run(&self) -> worker::Result<()> {
        let lifecycle = self.inner.persisted.borrow().lifecycle.clone();
        if lifecycle.current_generation().is_some() || self.inner.account.borrow().run_started_ms.is_none() {
            return Ok(());
        }
        let gone_at = self.inner.exited_at_ms.take().unwrap_or(lifecycle.changed_ms);
        self.charge(|account, rate| account.stop_run(gone_at, rate)).await
    }

    async fn load(&self) -> worker::Result<()> {
        if !self.inner.loaded.get() {
            let stored: Option<Persisted> = self.state.storage().get(STATE_KEY).await?;
            *self.inner.persisted.borrow_mut() = stored.unwrap_or_default();
            let account: Option<Account> = self.state.storage().get(ACCOUNT_KEY).await?;
            *self.inner.account.borrow_mut() = account.unwrap_or_default();
            self.inner.loaded.set(true);
            // The time of the last activity is not stored: waking up counts as activity, so a
            // restarted object never stops a container at once for an idleness it cannot know.
            self.inner.last_activity_ms.set(now_ms());
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
        let delay = self.next_alarm(true, Duration::ZERO).unwrap_or(self.idle_timeout());
        self.schedule_alarm(delay).await
    }

    /// When the heartbeat should next run: at the next metering while the container runs,
    /// otherwise when the idle period would end; not at all when nothing runs and nothing waits.
    fn next_alarm(&self, busy: bool, idle_for: Duration) -> Option<Duration> {
        let until_idle = if busy { self.idle_timeout() } else { self.idle_timeout().saturating_sub(idle_for) };
        let running = self.inner.account.borrow().run_started_ms.is_some();
        match (running, busy) {
            (true, _) => Some(until_idle.min(self.meter_interval()).max(Duration::from_millis(100))),
            (false, true) => Some(self.idle_timeout()),
            (false, false) => None,
        }
    }

    fn meter_interval(&self) -> Duration {
        self.var("METER_INTERVAL_SECONDS")
            .and_then(|s| s.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_METER_INTERVAL)
    }

    fn rate(&self) -> Rate {
        self.var("CREDITS_PER_CONTAINER_SECOND")
            .and_then(|s| Rate::parse(&s))
            .unwrap_or(Rate { millicredits_per_second: 1000 })
    }

    fn minimum_to_start(&self) -> i64 {
        self.var("MIN_CREDITS_TO_START").and_then(|s| s.parse().ok()).unwrap_or(1)
    }

    /// Applies a metering step to the account and writes the account and its ledger entry in
    /// one atomic storage write (so a step is never half-recorded).
    async fn charge(&self, step: impl FnOnce(&mut Account, Rate) -> Option<LedgerEntry>) -> worker::Result<()> {
        let rate = self.rate();
        let mut account = self.inner.account.borrow().clone();
        let entry = step(&mut account, rate);
        if account == *self.inner.account.borrow() {
            return Ok(());
        }
        self.write_account(&account, entry.as_ref()).await?;
        *self.inner.account.borrow_mut() = account;
        Ok(())
    }

    async fn write_account(&self, account: &Account, entry: Option<&LedgerEntry>) -> worker::Result<()> {
        let batch = js_sys::Object::new();
        js_sys::Reflect::set(&batch, &JsValue::from_str(ACCOUNT_KEY), &serde_wasm_bindgen::to_value(account)?)?;
        if let Some(entry) = entry {
            let key = format!("{LEDGER_PREFIX}{:012}", entry.seq);
            js_sys::Reflect::set(&batch, &JsValue::from_str(&key), &serde_wasm_bindgen::to_value(entry)?)?;
        }
        self.state.storage().put_multiple_raw(batch).await
    }

    /// Whether the user may start work; the error says why not.
    fn check_credits(&self) -> Result<(), GrpcStatus> {
        let balance = self.inner.account.borrow().balance;
        let minimum = self.minimum_to_start();
        if self.inner.account.borrow().can_start(minimum) {
            return Ok(());
        }
        Err(GrpcStatus::new(
            Code::ResourceExhausted,
            format!("insufficient credits: the balance is {balance}, and starting needs at least {}", minimum.max(1)),
        ))
    }

    /// Stops the container (SIGTERM in container mode) and closes its metering run.
    async fn stop_container(&self) -> worker::Result<()> {
        if let Some(container) = self.state.container() {
            if container.running() {
                // SIGTERM: the agent-service stops its task cleanly and exits 0.
                let _ = container.signal(15);
            }
        }
        self.inner.update(|p| p.lifecycle.mark_stopped(now_ms()));
        self.charge(|account, rate| account.stop_run(now_ms(), rate)).await
    }

    /// Asks the service how the current task stands when nobody is following it, so a task that
    /// ended unwatched (the user closed the page) does not keep the container awake.
    async fn refresh_task_state(&self) {
        let task_id = self.inner.persisted.borrow().current_task_id.clone();
        let ready = self.inner.persisted.borrow().lifecycle.is_ready();
        if let (Some(task_id), true, true, 0) =
            (task_id, ready, self.inner.task_running(), self.inner.active_streams.get())
        {
            if let Ok(endpoint) = self.endpoint() {
                if let Ok(status) =
                    AgentClient::new(endpoint).unary::<StatusResponse>("Status", &StatusRequest { task_id }).await
                {
                    if let Some(task) = status.task {
                        self.remember_task(&task.task_id, task.state);
                    }
                }
            }
        }
    }

    /// Credits ran out: cancels the running task with a reason that says so, then stops.
    async fn stop_for_credits(&self) -> worker::Result<()> {
        let task_id = self.inner.persisted.borrow().current_task_id.clone();
        if let (Some(task_id), true, Ok(endpoint)) = (task_id, self.inner.task_running(), self.endpoint()) {
            let request = CancelRequest { task_id, reason: CREDITS_EXHAUSTED.into() };
            match AgentClient::new(endpoint).unary::<CancelResponse>("Cancel", &request).await {
                Ok(reply) => {
                    self.remember_task(&reply.task_id, reply.state);
                    self.inner.update(|p| p.current_task_error = format!("cancelled: {CREDITS_EXHAUSTED}"));
                }
                Err(status) => worker::console_warn!("cancelling for credits failed: {status}"),
            }
        }
        worker::console_log!("credits exhausted: stopping the container");
        self.stop_container().await
    }

    /// Makes sure the alarm runs by `due_ms` (an earlier one is kept): stored entries that lapse
    /// then (unused tickets, old sessions) are pruned by it.
    async fn alarm_by(&self, due_ms: u64) -> worker::Result<()> {
        let scheduled = self.state.storage().get_alarm().await?;
        if scheduled.is_some_and(|at| at >= 0 && at as u64 <= due_ms) {
            return Ok(());
        }
        self.schedule_alarm(Duration::from_millis(due_ms.saturating_sub(now_ms()))).await
    }

    /// Bench only (see the admin route): `{"taskId"}` recorded as this user's task.
    async fn adopt_task_route(&self, mut req: Request) -> worker::Result<Response> {
        let body: serde_json::Value = req.json().await.unwrap_or_default();
        let task_id = body["taskId"].as_str().unwrap_or_default();
        if task_id.is_empty() || task_id.len() > 64 || !task_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return error_response(&GrpcStatus::new(Code::InvalidArgument, "taskId must be a task id"));
        }
        self.record_own_task(task_id).await;
        Response::from_json(&serde_json::json!({"taskId": task_id}))
    }

    /// Operator's view of what this object stores: `{"sessions", "tickets", "tasks"}` counts.
    async fn storage_route(&self) -> worker::Result<Response> {
        let (sessions, tickets) = self.sessions().counts().await?;
        let tasks = self.state.storage().list_with_options(ListOptions::new().prefix(TASK_PREFIX)).await?.size();
        Response::from_json(&serde_json::json!({"sessions": sessions, "tickets": tickets, "tasks": tasks}))
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

    /// The port the agent-service listens on in the container (told to it as `PORT`).
    fn container_port(&self) -> u16 {
        self.var("CONTAINER_PORT").and_then(|p| p.parse().ok()).unwrap_or(DEFAULT_CONTAINER_PORT)
    }

    /// The agent-service's endpoint: the container's port, or the local-mode URL.
    fn endpoint(&self) -> Result<Endpoint, GrpcStatus> {
        match self.state.container() {
            Some(container) => {
                let port = self.container_port();
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
    /// Concurrent callers share one start: it is registered before anything is awaited.
    async fn ready_client(&self) -> Result<AgentClient, GrpcStatus> {
        let endpoint = self.endpoint()?;
        if self.inner.persisted.borrow().lifecycle.is_ready() {
            return Ok(AgentClient::new(endpoint));
        }
        let in_flight = self.inner.starting.borrow().clone();
        let start = match in_flight {
            Some(start) => start,
            None => {
                let lifecycle = self.inner.persisted.borrow().lifecycle.clone();
                // A start recorded by an earlier instance (or an adopted container) is finished
                // by waiting for its /ping; otherwise a new generation starts, for a user who has
                // the credits (container time costs them).
                let stopping = lifecycle.is_stopping(now_ms());
                let generation = match lifecycle.current_generation() {
                    Some(generation) => generation,
                    None => {
                        self.check_credits()?;
                        let begun = self.inner.persisted.borrow_mut().lifecycle.begin_start(now_ms());
                        self.inner.dirty.set(true);
                        begun.unwrap_or(lifecycle.generation)
                    }
                };
                let start = start_container(
                    Rc::clone(&self.inner),
                    self.state.container(),
                    endpoint.clone(),
                    self.container_env(),
                    generation,
                    stopping,
                )
                .boxed_local()
                .shared();
                *self.inner.starting.borrow_mut() = Some(start.clone());
                self.charge(|account, _| {
                    account.start_run(now_ms());
                    None
                })
                .await
                .map_err(|e| GrpcStatus::new(Code::Internal, format!("could not record the container start: {e}")))?;
                start
            }
        };
        let result = start.clone().await;
        let mine = self.inner.starting.borrow().as_ref().is_some_and(|current| current.ptr_eq(&start));
        if mine {
            self.inner.starting.borrow_mut().take();
        }
        let _ = self.persist().await;
        result.map(|()| AgentClient::new(endpoint))
    }

    /// The environment the container starts with. The API key comes from a Worker secret and is
    /// handed to the runtime only; it is never logged. `ANTHROPIC_BASE_URL`, when set, sends the
    /// agent to another Messages API endpoint (a gateway, or a local fake in development).
    fn container_env(&self) -> Vec<(String, String)> {
        let mut env = vec![("PORT".to_string(), self.container_port().to_string())];
        if let Ok(key) = self.env.secret("ANTHROPIC_API_KEY") {
            env.push(("ANTHROPIC_API_KEY".into(), key.to_string()));
        }
        if let Some(url) = self.var("ANTHROPIC_BASE_URL").filter(|url| !url.is_empty()) {
            env.push(("ANTHROPIC_BASE_URL".into(), url));
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
        // A reply that could not carry its WebSocket URL must not leave a task behind.
        if let Err(status) = self.sessions().site(&req) {
            return error_response(&status);
        }
        let started = match self.start_task(&request).await {
            Ok(started) => started,
            Err(status) => return error_response(&status),
        };
        let state_name = TaskState::try_from(started.state).unwrap_or_default().as_str_name();
        let reply = self.sessions().start_reply(&req, &self.user_id(), &started.task_id, state_name).await;
        self.alarm_by(now_ms() + self.sessions().ticket_ttl_ms() + 1_000).await?;
        reply
    }

    fn sessions(&self) -> Sessions<'_> {
        Sessions {
            state: &self.state,
            env: &self.env,
            ws_path: "/api/container/ws/",
            ticket_path: "/api/container/ws-ticket",
        }
    }

    fn user_id(&self) -> String {
        self.inner.persisted.borrow().user_id.clone().unwrap_or_default()
    }

    /// `GET /api/billing/balance`.
    fn balance_route(&self) -> worker::Result<Response> {
        let account = self.inner.account.borrow();
        Response::from_json(&serde_json::json!({
            "userId": self.inner.persisted.borrow().user_id,
            "balance": account.balance,
            "minimumToStart": self.minimum_to_start().max(1),
            "creditsPerContainerSecond": self.var("CREDITS_PER_CONTAINER_SECOND").unwrap_or_else(|| "1".into()),
            "containerRunningSinceMs": account.run_started_ms,
        }))
    }

    /// `GET /api/billing/ledger`: every debit and grant, oldest first.
    async fn ledger_route(&self) -> worker::Result<Response> {
        let entries = self.state.storage().list_with_options(ListOptions::new().prefix(LEDGER_PREFIX)).await?;
        let mut ledger: Vec<LedgerEntry> = Vec::new();
        for value in entries.values() {
            ledger.push(serde_wasm_bindgen::from_value(value?)?);
        }
        ledger.sort_by_key(|e| e.seq);
        Response::from_json(&serde_json::json!({"entries": ledger}))
    }

    /// Admin: `{"credits": N, "note"?}` granted to this user.
    async fn grant_route(&self, mut req: Request) -> worker::Result<Response> {
        let body: serde_json::Value = req.json().await.unwrap_or_default();
        let Some(credits) = body["credits"].as_u64().filter(|c| *c > 0 && *c <= 1_000_000_000) else {
            return error_response(&GrpcStatus::new(Code::InvalidArgument, "credits must be a positive integer"));
        };
        let note = body["note"].as_str().unwrap_or("granted by an admin").to_string();
        let mut account = self.inner.account.borrow().clone();
        let entry = account.grant(credits, now_ms(), &note);
        self.write_account(&account, Some(&entry)).await?;
        *self.inner.account.borrow_mut() = account;
        Response::from_json(&serde_json::json!({"balance": entry.balance_after, "entry": entry}))
    }

    /// `GET /api/container/status[?taskId=]`. Asks the running container; a stopped container
    /// is not started just to answer (its tasks left with it): the object answers from what it
    /// remembers of its current task, or NOT_FOUND.
    async fn status_route(&self, req: &Request) -> worker::Result<Response> {
        let requested =
            req.url()?.query_pairs().find(|(k, _)| k == "taskId").map(|(_, v)| v.into_owned()).unwrap_or_default();
        let latest = self.inner.persisted.borrow().current_task_id.clone();
        let owned = !requested.is_empty() && self.owns_task(&requested).await;
        let task_id = match task_scope::resolve(&requested, latest.as_deref(), owned) {
            Ok(task_id) => task_id,
            Err(status) => return error_response(&status),
        };
        let lifecycle = self.inner.persisted.borrow().lifecycle.clone();
        let container = serde_json::to_value(&lifecycle.state).unwrap_or_default();
        let container_changed_ms = lifecycle.changed_ms;
        // `enter` has already checked "ready" against the platform's `running()`.
        if !lifecycle.is_ready() {
            let persisted = self.inner.persisted.borrow().clone();
            return match persisted.current_task_id.filter(|current| task_id.is_empty() || *current == task_id) {
                Some(current) => Response::from_json(&serde_json::json!({
                    "task": {
                        "taskId": current,
                        "state": TaskState::try_from(persisted.current_task_state).unwrap_or_default().as_str_name(),
                        "error": persisted.current_task_error,
                        "lastSeq": persisted.last_seen_seq.to_string(),
                    },
                    "container": container,
                    "containerChangedMs": container_changed_ms,
                })),
                None => error_response(&GrpcStatus::new(
                    Code::NotFound,
                    format!("no task with id {task_id} (the container is not running)"),
                )),
            };
        }
        let client = match self.endpoint() {
            Ok(endpoint) => AgentClient::new(endpoint),
            Err(status) => return error_response(&status),
        };
        match client.unary::<StatusResponse>("Status", &StatusRequest { task_id }).await {
            Ok(status) => {
                if let Some(task) = &status.task {
                    self.remember_task(&task.task_id, task.state);
                    if task.task_id == self.inner.persisted.borrow().current_task_id.clone().unwrap_or_default() {
                        let error = task.error.clone();
                        self.inner.update(|p| p.current_task_error = error);
                    }
                }
                let mut body = serde_json::to_value(&status).map_err(|e| worker::Error::RustError(e.to_string()))?;
                body["container"] = container;
                body["containerChangedMs"] = container_changed_ms.into();
                Response::from_json(&body)
            }
            Err(status) => error_response(&status),
        }
    }

    /// Upgrades to a WebSocket on one of this user's sessions (see [`Sessions::admit`]).
    async fn websocket_route(&self, req: &Request, session_id: &str) -> worker::Result<Response> {
        if let Err(refusal) = self.sessions().admit(req, session_id).await? {
            return Ok(refusal);
        }
        let pair = WebSocketPair::new()?;
        self.state.accept_web_socket(&pair.server);
        pair.server.serialize_attachment(SocketInfo { socket_id: random_id()?, session_id: session_id.to_string() })?;
        Response::from_websocket(pair.client)
    }

    /// Serves a gRPC-web call, so generated clients can use the contract through the edge. Start
    /// is made here (credits, the user's task record); the calls that name a task are passed on
    /// once the task is known to be this user's, the reply streaming back unchanged. A method the
    /// edge does not know is UNIMPLEMENTED: it could not tell whose task it would reach.
    async fn grpc_web_passthrough(&self, mut req: Request) -> worker::Result<Response> {
        let path = req.path();
        let method = path.trim_start_matches("/autopilot.v1.Autopilot/").to_string();
        let body = req.bytes().await?;
        let message = match grpc_web::request_message(&body) {
            Ok(message) => message,
            Err(status) => return grpc_web_error(&status, 200),
        };
        let scoped = match method.as_str() {
            "Start" => {
                return match decode::<StartRequest>(&message) {
                    Ok(request) => match self.start_task(&request).await {
                        Ok(started) => grpc_web_reply(&started),
                        Err(status) => grpc_web_error(&status, 200),
                    },
                    Err(status) => grpc_web_error(&status, 200),
                }
            }
            "Status" => self.rescope(&message, |r: &mut StatusRequest| &mut r.task_id).await,
            "StreamEvents" => self.rescope(&message, |r: &mut StreamEventsRequest| &mut r.task_id).await,
            "Cancel" => self.rescope(&message, |r: &mut CancelRequest| &mut r.task_id).await,
            "GetDiff" => self.rescope(&message, |r: &mut GetDiffRequest| &mut r.task_id).await,
            other => {
                let status = GrpcStatus::new(Code::Unimplemented, format!("the edge does not serve {other}"));
                return grpc_web_error(&status, 200);
            }
        };
        let (client, body) = match scoped {
            Ok(scoped) => scoped,
            Err(status) => return grpc_web_error(&status, 200),
        };
        // The user's credentials and the Worker's internal headers stay at the edge: the
        // container needs neither (it trusts whoever reaches it through this object).
        let headers = req.headers().clone();
        for name in ["authorization", "cookie", "content-length", USER_HEADER] {
            headers.delete(name)?;
        }
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_headers(headers)
            .with_body(Some(js_sys::Uint8Array::from(body.as_slice()).into()));
        match client.endpoint().fetch(&path, init).await {
            Ok(response) => Ok(response),
            Err(e) => grpc_web_error(
                &GrpcStatus::new(Code::Unavailable, format!("could not reach the agent-service: {e}")),
                200,
            ),
        }
    }

    /// A gRPC-web request of type `M` pointed at the user's own task (see [`Self::scoped`]),
    /// framed again, with a client of the ready service to send it to.
    async fn rescope<M: prost::Message + Default>(
        &self,
        message: &[u8],
        task_id: fn(&mut M) -> &mut String,
    ) -> Result<(AgentClient, Vec<u8>), GrpcStatus> {
        let mut request = decode::<M>(message)?;
        let client = self.scoped(task_id(&mut request)).await?;
        Ok((client, grpc_web::encode_request(&request)))
    }

    async fn handle_call(&self, ws: &WebSocket, call: Call) {
        let Call { request_id, rpc, encoding } = call;
        let reply = |frame: Frame| ServerFrame { request_id: request_id.clone(), frame: Some(frame) };
        let frame = match rpc {
            Rpc::Start(request) => self.start_task(&request).await.map(|started| reply(Frame::Start(started))),
            Rpc::Status(mut request) => match self.scoped(&mut request.task_id).await {
                Ok(client) => {
                    client.unary::<StatusResponse>("Status", &request).await.map(|s| reply(Frame::Status(s)))
                }
                Err(status) => Err(status),
            },
            Rpc::Cancel(mut request) => match self.scoped(&mut request.task_id).await {
                Ok(client) => {
                    client.unary::<CancelResponse>("Cancel", &request).await.map(|c| reply(Frame::Cancel(c)))
                }
                Err(status) => Err(status),
            },
            Rpc::Subscribe(mut request) => match self.scoped(&mut request.task_id).await {
                Ok(client) => return self.subscribe(ws, client, request_id, request, encoding),
                Err(status) => Err(status),
            },
            Rpc::Unsubscribe(subscription) => return self.unsubscribe(ws, &subscription),
        };
        let frame = frame.unwrap_or_else(|status| error_frame(request_id.clone(), status));
        send(ws, encode_server_frame(&frame, encoding));
    }

    /// Starts a task for this user on every path (JSON route, bridge frame, gRPC-web): checks the
    /// credits, brings up the container, and records the task as this user's. A Start the
    /// service refuses names no other user's task, and leaves no metering run open that was
    /// opened for it.
    async fn start_task(&self, request: &StartRequest) -> Result<StartResponse, GrpcStatus> {
        self.check_credits()?;
        let had_run = self.inner.account.borrow().run_started_ms.is_some();
        let client = self.ready_client().await?;
        match client.unary::<StartResponse>("Start", request).await {
            Ok(started) => {
                self.remember_task(&started.task_id, started.state);
                self.record_own_task(&started.task_id).await;
                Ok(started)
            }
            Err(status) => {
                let opened_for_this = !had_run && self.inner.account.borrow().run_started_ms.is_some();
                let nothing_else = !self.inner.task_running()
                    && self.inner.active_streams.get() == 0
                    && self.inner.handling.get() <= 1;
                if opened_for_this && nothing_else {
                    if let Err(e) = self.stop_container().await {
                        worker::console_warn!("closing the run of a refused start failed: {e}");
                    }
                }
                let current = self.inner.persisted.borrow().current_task_id.clone();
                let own = self.inner.own_tasks.borrow();
                Err(task_scope::scrub_refusal(status, |id| current.as_deref() == Some(id) || own.contains(id)))
            }
        }
    }

    /// Points `task_id` at the user's own task (their latest when empty) and answers a client
    /// of the ready service; NOT_FOUND, as for a task that never existed, if it is not theirs.
    async fn scoped(&self, task_id: &mut String) -> Result<AgentClient, GrpcStatus> {
        let latest = self.inner.persisted.borrow().current_task_id.clone();
        let owned = !task_id.is_empty() && self.owns_task(task_id).await;
        *task_id = task_scope::resolve(task_id, latest.as_deref(), owned)?;
        self.ready_client().await
    }

    /// Whether this object started `task_id`.
    async fn owns_task(&self, task_id: &str) -> bool {
        if self.inner.own_tasks.borrow().contains(task_id) {
            return true;
        }
        // Task ids are UUIDs; anything longer is nobody's (and is not made a storage key).
        if task_id.len() > 64 {
            return false;
        }
        let stored: Option<u64> = self.state.storage().get(&format!("{TASK_PREFIX}{task_id}")).await.ok().flatten();
        if stored.is_some() {
            self.inner.own_tasks.borrow_mut().insert(task_id.to_string());
        }
        stored.is_some()
    }

    async fn record_own_task(&self, task_id: &str) {
        self.inner.own_tasks.borrow_mut().insert(task_id.to_string());
        if let Err(e) = self.state.storage().put(&format!("{TASK_PREFIX}{task_id}"), now_ms()).await {
            worker::console_warn!("recording task {task_id} as the user's failed: {e}");
        }
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
        let socket = socket_id(ws);
        let open = self.inner.subscriptions.borrow().values().filter(|s| s.socket_id == socket).count();
        if open >= MAX_SUBSCRIPTIONS_PER_SOCKET {
            let status = GrpcStatus::new(
                Code::ResourceExhausted,
                format!("at most {MAX_SUBSCRIPTIONS_PER_SOCKET} subscriptions per socket: unsubscribe first"),
            );
            return send(ws, encode_server_frame(&error_frame(request_id, status), encoding));
        }
        let (abort, registration) = AbortHandle::new_pair();
        let id = self.inner.next_subscription.get();
        self.inner.next_subscription.set(id + 1);
        let last_seq = Rc::new(Cell::new(request.from_seq.saturating_sub(1)));
        let subscription = Subscription {
            socket_id: socket,
            ws: ws.clone(),
            request_id: request_id.clone(),
            encoding,
            abort,
            task_id: request.task_id.clone(),
            last_seq: Rc::clone(&last_seq),
        };
        self.inner.subscriptions.borrow_mut().insert(id, subscription);
        let inner = Rc::clone(&self.inner);
        let ws = ws.clone();
        let container = self.state.container();
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
                            last_seq.set(event.seq);
                            event_frame(request_id.clone(), event)
                        }
                        Some(Err(status)) => {
                            // A stream that breaks because the container died may break before
                            // the exit watch hears of it: then this is the news, and followers
                            // get the task's FAILED end rather than a bare transport error.
                            if let Some(container) = &container {
                                if status.code == Code::Unavailable as i32 && stopped_running(container).await {
                                    let generation = inner.persisted.borrow().lifecycle.current_generation();
                                    if let Some(generation) = generation {
                                        inner.lose(generation, crate::lifecycle::LOST, now_ms());
                                        break;
                                    }
                                }
                            }
                            break send(&ws, encode_server_frame(&error_frame(request_id, status), encoding));
                        }
                        None => break send(&ws, encode_server_frame(&end_frame(request_id), encoding)),
                    };
                    // A failed send means the socket is gone: stop reading for it.
                    if try_send(&ws, encode_server_frame(&frame, encoding)).is_err() {
                        break;
                    }
                }
            };
            let _ = Abortable::new(forward, registration).await;
            inner.subscriptions.borrow_mut().remove(&id);
            inner.active_streams.set(inner.active_streams.get().saturating_sub(1));
        });
    }

    /// Stops one of this socket's subscriptions; the socket stays open.
    fn unsubscribe(&self, ws: &WebSocket, request_id: &str) {
        let socket = socket_id(ws);
        let subscriptions = self.inner.subscriptions.borrow();
        let mine = subscriptions.values().filter(|s| s.socket_id == socket && s.request_id == request_id);
        mine.for_each(|s| s.abort.abort());
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
                p.current_task_error.clear();
            }
            p.current_task_state = state;
        });
    }

    fn forget_socket(&self, ws: &WebSocket) {
        let socket = socket_id(ws);
        self.inner.subscriptions.borrow().values().filter(|s| s.socket_id == socket).for_each(|s| s.abort.abort());
    }
}

/// Brings up the container of `generation` (container mode) and waits until `/ping` answers,
/// or [`START_DEADLINE`] passes. A start the platform refuses, or a container that exits before
/// answering, is tried again with backoff while the failure is transient and time is left. In
/// local mode (no container API) only the wait for `/ping` remains. Records the outcome.
async fn start_container(
    inner: Rc<Inner>,
    container: Option<worker::Container>,
    endpoint: Endpoint,
    env: Vec<(String, String)>,
    generation: u32,
    stopping: bool,
) -> Result<(), GrpcStatus> {
    let deadline = now_ms() + START_DEADLINE.as_millis() as u64;
    let fail = |reason: String| {
        worker::console_warn!("container start failed: {reason}");
        inner.update(|p| {
            p.lifecycle.mark_failed(generation, reason.clone(), now_ms());
        });
        Err(GrpcStatus::new(Code::Unavailable, reason))
    };
    let ready = |answered_ms: u64| {
        let marked = inner.persisted.borrow_mut().lifecycle.mark_ready(generation, answered_ms, now_ms());
        inner.dirty.set(true);
        if marked {
            Ok(())
        } else {
            // Stopped (idle, credits) or replaced while it came up: not this start's to use.
            Err(GrpcStatus::new(Code::Unavailable, "the container was stopped while it started; try again"))
        }
    };
    let Some(container) = container else {
        return match wait_for_ping(&endpoint, None, deadline).await {
            PingOutcome::Answered(at) => ready(at),
            _ => fail(format!("the agent-service did not answer /ping within {}s", START_DEADLINE.as_secs())),
        };
    };
    if stopping && container.running() {
        // The container this object just stopped is still exiting: a start now would find it
        // "running", adopt a dying service, and lose it a moment later. Wait for it to go.
        let exit = std::pin::pin!(container.wait_for_exit());
        let limit = Delay::from(Duration::from_millis(crate::lifecycle::STOP_GRACE_MS));
        let _ = future::select(exit, limit).await;
    }
    let mut retries = backoff(FIRST_START_RETRY, MAX_START_RETRY, START_DEADLINE);
    loop {
        let failure = if container.running() {
            None
        } else {
            start_with_env(&container, &env, true).err().map(|e| format!("the platform refused the start: {e}"))
        };
        let failure = match failure {
            Some(failure) => failure,
            None => {
                let exited = watch_exit(Rc::clone(&inner), another_handle(&container), generation);
                match wait_for_ping(&endpoint, Some(exited), deadline).await {
                    PingOutcome::Answered(at) => return ready(at),
                    PingOutcome::Exited(reason) => reason,
                    PingOutcome::TimedOut => {
                        let reason =
                            format!("the agent-service did not answer /ping within {}s", START_DEADLINE.as_secs());
                        abandon(&container, &reason).await;
                        return fail(reason);
                    }
                }
            }
        };
        match retries.next() {
            Some(delay) if start_is_transient(&failure) && now_ms() + (delay.as_millis() as u64) < deadline => {
                worker::console_warn!("container start failed ({failure}); trying again in {delay:?}");
                Delay::from(delay).await;
            }
            _ => {
                let reason = format!("the container did not start: {failure}");
                abandon(&container, &reason).await;
                return fail(reason);
            }
        }
    }
}

/// Whether the platform reports the container stopped within a second (it learns of an exit a
/// moment after the connections to it break).
async fn stopped_running(container: &worker::Container) -> bool {
    for _ in 0..5 {
        if !container.running() {
            return true;
        }
        Delay::from(Duration::from_millis(200)).await;
    }
    false
}

/// Destroys a container the start gave up on, so that it is not found "running" and used later.
async fn abandon(container: &worker::Container, reason: &str) {
    if container.running() {
        if let Err(e) = container.destroy(Some(reason)).await {
            worker::console_warn!("destroying the container failed: {}", error_text(&e));
        }
    }
}

/// How a wait for `/ping` ended.
enum PingOutcome {
    /// It answered 200 at this time (ms since the epoch).
    Answered(u64),
    /// The container exited first, for this reason.
    Exited(String),
    TimedOut,
}

/// Polls `/ping` on the [`poll_delays`] schedule until it answers, the container exits (when
/// `exited` is given) or `deadline_ms` passes.
async fn wait_for_ping(
    endpoint: &Endpoint,
    mut exited: Option<oneshot::Receiver<String>>,
    deadline_ms: u64,
) -> PingOutcome {
    let budget = Duration::from_millis(deadline_ms.saturating_sub(now_ms()));
    for delay in std::iter::once(Duration::ZERO).chain(poll_delays(budget)) {
        let attempt = std::pin::pin!(async {
            Delay::from(delay).await;
            endpoint.ping().await
        });
        let answered = match exited.as_mut() {
            Some(receiver) => match future::select(receiver, attempt).await {
                Either::Left((Ok(reason), _)) => return PingOutcome::Exited(reason),
                // The watch ended without news: keep polling without it.
                Either::Left((Err(_), attempt)) => {
                    exited = None;
                    attempt.await
                }
                Either::Right((answered, _)) => answered,
            },
            None => attempt.await,
        };
        if answered {
            return PingOutcome::Answered(now_ms());
        }
    }
    PingOutcome::TimedOut
}

/// Watches the container of `generation` exit. While it is starting, the exit's reason goes to
/// the returned receiver (the start decides whether to try again); once it was ready, the exit
/// fails it in the record, fails its task and tells every client. The generation makes a late
/// exit of an old container harmless to a newer one.
fn watch_exit(inner: Rc<Inner>, container: worker::Container, generation: u32) -> oneshot::Receiver<String> {
    let (report, receiver) = oneshot::channel();
    inner.watched_generation.set(Some(generation));
    spawn_local(async move {
        let reason = match container.wait_for_exit().await {
            Ok(()) => "the container exited".to_string(),
            Err(e) => format!("the container stopped: {}", error_text(&e)),
        };
        if inner.watched_generation.get() == Some(generation) {
            inner.watched_generation.set(None);
        }
        let lifecycle = inner.persisted.borrow().lifecycle.clone();
        let starting = lifecycle.current_generation() == Some(generation) && !lifecycle.is_ready();
        if starting {
            let _ = report.send(reason);
            return;
        }
        inner.lose(generation, &reason, now_ms());
    });
    receiver
}

/// The message of a runtime error, without the wrapper's prefixes.
fn error_text(error: &worker::Error) -> String {
    match error {
        worker::Error::JsError(message) => message.clone(),
        worker::Error::Internal(value) => value.as_string().unwrap_or_else(|| format!("{value:?}")),
        other => other.to_string(),
    }
}

/// Whether the object's record says its current task is still running.
fn task_is_running(persisted: &Persisted) -> bool {
    persisted.current_task_id.is_some()
        && !TaskState::try_from(persisted.current_task_state).map(TaskState::is_final).unwrap_or(true)
}

fn socket_id(ws: &WebSocket) -> String {
    ws.deserialize_attachment::<SocketInfo>().ok().flatten().map(|info| info.socket_id).unwrap_or_default()
}

/// A request message of the contract.
fn decode<M: prost::Message + Default>(bytes: &[u8]) -> Result<M, GrpcStatus> {
    M::decode(bytes).map_err(|e| GrpcStatus::new(Code::InvalidArgument, format!("malformed request message: {e}")))
}

/// A gRPC-web OK reply carrying `message`.
fn grpc_web_reply(message: &impl prost::Message) -> worker::Result<Response> {
    let headers = worker::Headers::new();
    headers.set("content-type", grpc_web::CONTENT_TYPE)?;
    Ok(Response::from_bytes(grpc_web::encode_reply(message))?.with_headers(headers))
}
