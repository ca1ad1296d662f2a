//! The container's runtime: bringing it up (one shared start, retried with backoff before a
//! deadline, ready once `/ping` answers), watching it exit (per generation, so a stale exit cannot
//! fail a newer container), checking the record against the platform on every entry, and
//! stopping it. In local mode (no container runtime) the same code waits for the agent-service at
//! `AGENT_SERVICE_URL` instead.

use std::{
    cell::{Cell, RefCell},
    rc::Rc,
    time::Duration,
};

use futures::{
    channel::oneshot,
    future::{self, Either, LocalBoxFuture, Shared},
    FutureExt,
};
use worker::{wasm_bindgen_futures::spawn_local, Delay};

use super::{
    live::Live,
    loss::{archive_losses, lose, record_loss},
    now_ms, AutopilotContainer,
};
use crate::{
    container::agent_client::{AgentClient, Endpoint},
    container::lifecycle::Resync,
    container::platform_errors::start_is_transient,
    container::readiness::{backoff, poll_delays, FIRST_START_RETRY, MAX_START_RETRY, START_DEADLINE},
    container::start_with_env::{another_handle, start_with_env},
    grpc_web::{Code, GrpcStatus},
};

/// A start of the container that every request needing it meanwhile awaits.
pub type StartFuture = Shared<LocalBoxFuture<'static, Result<(), GrpcStatus>>>;

/// What this instance knows of the platform's container beyond the record.
#[derive(Default)]
pub struct ContainerWatch {
    /// The start under way, shared by every request that needs the container meanwhile.
    pub starting: RefCell<Option<StartFuture>>,
    /// The generation whose exit this instance watches (an evicted instance's watch is gone).
    pub watched_generation: Cell<Option<u32>>,
    /// When this instance last saw the platform say the container runs (an exit nobody watched
    /// is charged up to here).
    pub last_seen_running_ms: Cell<u64>,
    /// When the exit watch saw the container exit; charged and closed by the next entry.
    pub exited_at_ms: Cell<Option<u64>>,
}

impl ContainerWatch {
    pub fn start_in_flight(&self) -> bool {
        self.starting.borrow().is_some()
    }
}

impl AutopilotContainer {
    /// Every entry (request, frame, alarm) first loads the record, then checks it against the
    /// platform: a container believed running that is not is failed now (and its task with it);
    /// a running one the record never knew is adopted; a running one it gave up on is destroyed;
    /// a ready one is watched by this instance. Then a run whose container is gone is charged
    /// and closed, before anything can open a new one.
    pub(super) async fn resync(&self) -> worker::Result<()> {
        self.load().await?;
        if let Some(container) = self.state.container() {
            let in_flight = self.live.watch.starting.borrow().is_some();
            let running = container.running();
            if running {
                self.live.watch.last_seen_running_ms.set(now_ms());
            }
            let resync = self.live.stored.update(|record| record.lifecycle.resync(running, in_flight, now_ms()));
            match resync {
                Resync::InStep => {
                    let lifecycle = self.live.stored.lifecycle();
                    if let (true, Some(generation)) = (lifecycle.is_ready(), lifecycle.current_generation()) {
                        if self.live.watch.watched_generation.get() != Some(generation) {
                            drop(watch_exit(Rc::clone(&self.live), container, generation));
                        }
                    }
                }
                Resync::Lost { .. } => {
                    // Nobody saw it go: charged up to the last time it was seen running.
                    let seen = self
                        .live
                        .watch
                        .last_seen_running_ms
                        .get()
                        .max(self.live.stored.account.borrow().metered_until_ms);
                    let gone_at = self.live.watch.exited_at_ms.get().unwrap_or(seen);
                    record_loss(&self.live, crate::container::lifecycle::LOST, gone_at);
                }
                Resync::Orphan => {
                    // Adopted as a start of a new generation that skips the platform's start:
                    // the next request waits for its /ping like any start, and its time is metered.
                    worker::console_warn!("a running container the record did not know of: adopting it");
                    self.live.stored.update(|p| {
                        p.lifecycle.begin_start(now_ms());
                    });
                    self.open_run().await?;
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

    /// The agent-service's endpoint: the container's port, or the local-mode URL.
    pub(super) fn endpoint(&self) -> Result<Endpoint, GrpcStatus> {
        match self.state.container() {
            Some(container) => {
                let port = self.settings.container_port;
                container.get_tcp_port(port).map(Endpoint::Container).map_err(|e| {
                    GrpcStatus::new(Code::Unavailable, format!("the container's port {port} is unreachable: {e}"))
                })
            }
            None => self.settings.agent_service_url.clone().map(Endpoint::Url).ok_or_else(|| {
                GrpcStatus::new(Code::Unavailable, "no container runtime here and AGENT_SERVICE_URL is not set")
            }),
        }
    }

    /// A client of a ready agent-service, starting the container first if it is not running.
    /// Concurrent callers share one start: it is registered before anything is awaited.
    pub(super) async fn ready_client(&self) -> Result<AgentClient, GrpcStatus> {
        let endpoint = self.endpoint()?;
        if self.live.stored.record().lifecycle.is_ready() {
            return Ok(AgentClient::new(endpoint));
        }
        let in_flight = self.live.watch.starting.borrow().clone();
        let start = match in_flight {
            Some(start) => start,
            None => {
                let lifecycle = self.live.stored.lifecycle();
                // A start recorded by an earlier instance (or an adopted container) is finished
                // by waiting for its /ping; otherwise a new generation starts, for a user who has
                // the credits (container time costs them).
                let stopping = lifecycle.is_stopping(now_ms());
                let generation = match lifecycle.current_generation() {
                    Some(generation) => generation,
                    None => {
                        self.check_credits()?;
                        let begun = self.live.stored.update(|record| record.lifecycle.begin_start(now_ms()));
                        begun.unwrap_or(lifecycle.generation)
                    }
                };
                let start = start_container(
                    Rc::clone(&self.live),
                    self.state.container(),
                    endpoint.clone(),
                    self.container_env(),
                    generation,
                    stopping,
                )
                .boxed_local()
                .shared();
                *self.live.watch.starting.borrow_mut() = Some(start.clone());
                self.open_run().await.map_err(|e| {
                    GrpcStatus::new(Code::Internal, format!("could not record the container start: {e}"))
                })?;
                start
            }
        };
        let result = start.clone().await;
        let mine = self.live.watch.starting.borrow().as_ref().is_some_and(|current| current.ptr_eq(&start));
        if mine {
            self.live.watch.starting.borrow_mut().take();
        }
        let _ = self.persist().await;
        result.map(|()| AgentClient::new(endpoint))
    }

    /// The environment the container starts with. No model key: the agent of each task gets
    /// its own credential for the edge's model gateway, with the Start that creates the task.
    fn container_env(&self) -> Vec<(String, String)> {
        let mut env = vec![("PORT".to_string(), self.settings.container_port.to_string())];
        // An edge served over plain http (local development) hands its containers http:// git
        // gateway URLs, which the service accepts only with local repositories allowed.
        if self.settings.git_gateway_url.as_deref().is_some_and(|url| url.starts_with("http://")) {
            env.push(("AUTOPILOT_ALLOW_LOCAL_REPOS".to_string(), "true".to_string()));
        }
        env
    }

    /// Stops the container (SIGTERM in container mode) and closes its metering run.
    pub(super) async fn stop_container(&self) -> worker::Result<()> {
        if let Some(container) = self.state.container() {
            if container.running() {
                // SIGTERM: the agent-service stops its task cleanly and exits 0.
                let _ = container.signal(15);
            }
        }
        self.live.stored.update(|p| p.lifecycle.mark_stopped(now_ms()));
        self.live.gateway.revoke(None);
        // What the archive could not see end before the stop ends with it.
        archive_losses(&self.live, &self.live.unended_tasks(), "the container was stopped before the task ended");
        self.meter(|account, rate| account.stop_run(now_ms(), rate)).await
    }
}

/// Brings up the container of `generation` (container mode) and waits until `/ping` answers,
/// or [`START_DEADLINE`] passes. A start the platform refuses, or a container that exits before
/// answering, is tried again with backoff while the failure is transient and time is left. In
/// local mode (no container API) only the wait for `/ping` remains. Records the outcome.
async fn start_container(
    live: Rc<Live>,
    container: Option<worker::Container>,
    endpoint: Endpoint,
    env: Vec<(String, String)>,
    generation: u32,
    stopping: bool,
) -> Result<(), GrpcStatus> {
    let deadline = now_ms() + START_DEADLINE.as_millis() as u64;
    let fail = |reason: String| {
        worker::console_warn!("container start failed: {reason}");
        live.stored.update(|p| {
            p.lifecycle.mark_failed(generation, reason.clone(), now_ms());
        });
        Err(GrpcStatus::new(Code::Unavailable, reason))
    };
    let ready = |answered_ms: u64| {
        let marked = live.stored.update(|record| record.lifecycle.mark_ready(generation, answered_ms, now_ms()));
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
        let limit = Delay::from(Duration::from_millis(crate::container::lifecycle::STOP_GRACE_MS));
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
                let exited = watch_exit(Rc::clone(&live), another_handle(&container), generation);
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

/// Whether the platform reports the container stopped within five seconds (it learns of an
/// exit a moment after the connections to it break; under load, seconds after). Callers ask
/// only after a ready service stopped listening, so a wait here is never a healthy path.
async fn stopped_running(container: &worker::Container) -> bool {
    for _ in 0..25 {
        if !container.running() {
            return true;
        }
        Delay::from(Duration::from_millis(200)).await;
    }
    false
}

/// Whether the container stopped running behind the object's back (before the exit watch heard
/// of it); if so, its generation is recorded lost now ([`lose`]), and the next request
/// starts a fresh one.
pub(super) async fn lost_behind_our_back(live: &Live, container: &worker::Container) -> bool {
    if !stopped_running(container).await {
        return false;
    }
    let generation = live.stored.record().lifecycle.current_generation();
    generation.is_some_and(|generation| {
        lose(live, generation, crate::container::lifecycle::LOST, now_ms());
        true
    })
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
fn watch_exit(live: Rc<Live>, container: worker::Container, generation: u32) -> oneshot::Receiver<String> {
    let (report, receiver) = oneshot::channel();
    live.watch.watched_generation.set(Some(generation));
    spawn_local(async move {
        let reason = match container.wait_for_exit().await {
            Ok(()) => "the container exited".to_string(),
            Err(e) => format!("the container stopped: {}", error_text(&e)),
        };
        if live.watch.watched_generation.get() == Some(generation) {
            live.watch.watched_generation.set(None);
        }
        let lifecycle = live.stored.lifecycle();
        let starting = lifecycle.current_generation() == Some(generation) && !lifecycle.is_ready();
        if starting {
            let _ = report.send(reason);
            return;
        }
        lose(&live, generation, &reason, now_ms());
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
