//! The container object's side of the task archive ([`crate::archive`]): it records each task it
//! starts, follows each running task itself into the archive (so the archive does not depend on a
//! browser being connected), makes the archive whole before it stops a container, and serves an
//! ended task from the archive: no container is started and nothing is charged for it.

use std::{pin::Pin, rc::Rc, time::Duration};

use autopilot_contract::v1::{
    event::Payload, GetDiffRequest, GetDiffResponse, ListTasksRequest, ListTasksResponse, StartRequest, StatusRequest,
    StatusResponse, StreamEventsRequest,
};
use futures::future::{self, Either};
use worker::{wasm_bindgen_futures::spawn_local, Delay, WebSocket};

use super::{
    fan_out::{Follow, Sink, Subscriber},
    live::Live,
    loss::forgotten_by_service,
    now_ms,
    pull_requests::open_at_end,
    workspaces::{forget_workspaces, keep_workspace},
    write_cadence::{Cadence, ARCHIVE_IDLE},
    AutopilotContainer,
};
use crate::{
    archive::replay::{replay_to_socket, Replayed},
    archive::task_list::started_summary,
    archive::{Archive, Entry},
    bridge::{end_frame, Encoding, SharedEvent},
    container::agent_client::{AgentClient, EventStream},
    grpc_web::{Code, GrpcStatus},
};

/// How long a stop waits for the running tasks' archives to be made whole.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(10);

impl AutopilotContainer {
    /// Records a task just started as the user's, with what a task list shows of it.
    pub(super) fn archive_started(&self, task_id: &str, state: i32, request: &StartRequest) {
        self.live.own_tasks.borrow_mut().insert(task_id.to_string());
        let archive = &self.live.archive;
        let key = self.env.secret("ANTHROPIC_API_KEY").map(|k| k.to_string()).unwrap_or_default();
        let now = now_ms();
        let summary = started_summary(task_id, state, request, now, &[key.as_str()]);
        if let Err(e) = archive.add(&summary, now) {
            worker::console_warn!("archiving task {task_id} failed: {e}");
        }
    }

    /// Follows `task_id` into the archive in the background, unless this instance already does
    /// or the archive holds its end.
    pub(super) fn follow_into_archive(&self, client: AgentClient, task_id: String) {
        let Some(follow) = self.begin_follow(&task_id) else { return };
        let live = Rc::clone(&self.live);
        let history = self.settings.history_tasks;
        spawn_local(async move {
            follow_task(live, client, task_id, history, follow).await;
        });
    }

    /// Registers a follow of `task_id` (at once, so subscribers can join it before it has sent
    /// anything); `None` when this instance already follows it or the archive holds its end.
    fn begin_follow(&self, task_id: &str) -> Option<Rc<Follow>> {
        if self.live.following.borrow().contains_key(task_id) || self.archived_end(task_id).is_some() {
            return None;
        }
        self.live.archived(task_id)?;
        let follow = Rc::new(Follow::default());
        self.live.following.borrow_mut().insert(task_id.to_string(), Rc::clone(&follow));
        Some(follow)
    }

    /// A subscription to a running task through its one follow (started if need be), from
    /// `from_seq`, its live events sent to `sink`.
    ///
    /// # Errors
    /// UNAVAILABLE when the archive cannot serve it (its storage failed).
    pub(super) fn fan_out(
        &self,
        client: AgentClient,
        task_id: &str,
        from_seq: u64,
        sink: Box<dyn Sink>,
    ) -> Result<Subscriber, GrpcStatus> {
        if !self.live.following.borrow().contains_key(task_id) {
            self.follow_into_archive(client, task_id.to_string());
        }
        let unavailable = |why: String| GrpcStatus::new(Code::Unavailable, format!("task {task_id}: {why}"));
        let follow = self.live.following.borrow().get(task_id).cloned();
        let follow = follow.ok_or_else(|| unavailable("the archive does not hold it; try again".into()))?;
        follow.subscribe(&self.live.archive, task_id, from_seq, sink).map_err(|e| unavailable(e.to_string()))
    }

    /// Before the object stops the container: the archive of every task it ran is made whole
    /// (remaining events, end and diff; an end taken from a final event is completed), within
    /// [`CATCH_UP_LIMIT`] in all; what is still running then dies with the container and is
    /// archived as lost.
    pub(super) async fn catch_up_archive(&self) {
        let ready = self.live.stored.record().lifecycle.is_ready();
        if !ready {
            return;
        }
        let deadline = now_ms() + CATCH_UP_LIMIT.as_millis() as u64;
        let archive = &self.live.archive;
        let awaiting = archive.awaiting_service().unwrap_or_default();
        for task_id in self.live.unended_tasks().into_iter().chain(awaiting) {
            // A follower of this instance may be writing the end right now: let it finish.
            while self.live.following.borrow().contains_key(&task_id) && now_ms() < deadline {
                Delay::from(Duration::from_millis(50)).await;
            }
            if archive.awaiting_service().unwrap_or_default().contains(&task_id) {
                // Ended, but its workspace and diff are still the service's alone.
                let client = match self.endpoint() {
                    Ok(endpoint) => AgentClient::new(endpoint),
                    Err(_) => continue,
                };
                let left = Duration::from_millis(deadline.saturating_sub(now_ms()));
                let completing =
                    std::pin::pin!(archive_end(&self.live, &client, &task_id, self.settings.history_tasks));
                if let Either::Right(_) = future::select(completing, Delay::from(left)).await {
                    break;
                }
                continue;
            }
            if self.archived_end(&task_id).is_some() {
                continue;
            }
            let (Ok(endpoint), Some(follow)) = (self.endpoint(), self.begin_follow(&task_id)) else { continue };
            let history = self.settings.history_tasks;
            let client = AgentClient::new(endpoint);
            let catch_up = std::pin::pin!(follow_task(Rc::clone(&self.live), client, task_id, history, follow));
            let left = Duration::from_millis(deadline.saturating_sub(now_ms()));
            if let Either::Right(_) = future::select(catch_up, Delay::from(left)).await {
                worker::console_warn!("the archive could not catch up before the stop");
                break;
            }
        }
    }

    /// What the archive holds of `task_id`, if the task has ended there.
    pub(super) fn archived_end(&self, task_id: &str) -> Option<Entry> {
        self.live.archive.ended(task_id)
    }

    /// Replays an ended task's archived events with seq >= `from_seq` to the socket, then ends.
    pub(super) fn replay_archived(
        &self,
        ws: &WebSocket,
        request_id: String,
        task_id: String,
        from_seq: u64,
        encoding: Encoding,
    ) {
        let end = end_frame(request_id.clone());
        replay_to_socket(
            self.live.archive.clone(),
            ws.clone(),
            Replayed { request_id, task_id, from_seq, encoding, end },
        );
    }

    /// A page of the user's task list, from the archive.
    pub(super) fn list_tasks(&self, request: &ListTasksRequest) -> Result<ListTasksResponse, GrpcStatus> {
        self.live.archive.page(request)
    }
}

/// Follows `task_id` from the archive's last seq to its end: each event goes to the follow's
/// subscribers and, in batches, to the archive; then the final Task and diff. A broken stream
/// stops it and tells the subscribers (a later follow resumes from the archive).
async fn follow_task(live: Rc<Live>, client: AgentClient, task_id: String, history: usize, follow: Rc<Follow>) {
    // However the follow ends (even dropped mid-way by a stop's time limit), what it held is
    // written, it is forgotten so that a later one can take over, and its subscribers hear of it.
    let _forget = Forget { live: Rc::clone(&live), task_id: task_id.clone(), follow: Rc::clone(&follow) };
    let archive = live.archive.clone();
    let from_seq = archive.find(&task_id).map(|e| e.last_seq).unwrap_or(0) + 1;
    let mut writer = Writer::new(&archive, &task_id, &follow);
    let broke = |status: GrpcStatus| {
        // A service that no longer knows the task lost it: its followers get its FAILED end now.
        if !forgotten(&status) || !forgotten_by_service(&live, &task_id) {
            follow.broke(status);
        }
    };
    let end = match client.stream_events(&StreamEventsRequest { task_id: task_id.clone(), from_seq }).await {
        Ok(mut stream) => loop {
            match writer.next(&mut stream).await {
                Some(Ok(events)) => {
                    let end = events.iter().find(|e| matches!(e.event.payload, Some(Payload::TaskFinished(_))));
                    let end = end.map(|shared| shared.event.clone());
                    follow.receive(events);
                    if end.is_some() {
                        // Its followers send their end before a write holds messages back.
                        yield_now().await;
                        // The task's model credential ends with it, whatever else follows.
                        live.gateway.revoke(Some(&task_id));
                        break end;
                    }
                    writer.received().await;
                }
                Some(Err(status)) => {
                    broke(status);
                    break None;
                }
                None => {
                    follow.broke(GrpcStatus::new(Code::Unavailable, "the task's stream ended early; resubscribe"));
                    break None;
                }
            }
        },
        Err(status) => {
            broke(status);
            None
        }
    };
    writer.write();
    if let Some(end) = end {
        // Asked once: a service that stopped right after the task's end is not waited for.
        if let Err(status) = archive_end(&live, &client.without_retries(), &task_id, history).await {
            // The end is then answered from the task's final event, and completed from the
            // service once it answers again (see `complete_ends`).
            let told = archive.finish_from_final_event(&end);
            let settled = told.and_then(|()| if forgotten(&status) { archive.completed(&task_id) } else { Ok(()) });
            if let Err(e) = settled {
                worker::console_warn!("archiving the end of task {task_id} failed: {e}");
            }
        }
    }
}

/// Whether the service answered that it does not know the task.
fn forgotten(status: &GrpcStatus) -> bool {
    status.code == Code::NotFound as i32
}

/// A follow's writes to the archive, at the cadence [`Cadence`] decides.
struct Writer<'a> {
    archive: &'a Archive,
    task_id: &'a str,
    follow: &'a Follow,
    cadence: Cadence,
    /// Armed while events are held: when it fires and the stream was quiet long enough, they are
    /// written (one timer per pause, not one per chunk of a burst).
    pause: Option<Pin<Box<Delay>>>,
}

impl Writer<'_> {
    fn new<'a>(archive: &'a Archive, task_id: &'a str, follow: &'a Follow) -> Writer<'a> {
        Writer { archive, task_id, follow, cadence: Cadence::new(now_ms()), pause: None }
    }

    /// The stream's next events; what is held is written meanwhile if the stream pauses, when
    /// nothing else is being sent.
    async fn next(&mut self, stream: &mut EventStream) -> Option<Result<Vec<Rc<SharedEvent>>, GrpcStatus>> {
        let mut next = std::pin::pin!(stream.next_batch());
        while let Some(timer) = self.pause.as_mut() {
            if let Either::Left((events, _)) = future::select(next.as_mut(), timer.as_mut()).await {
                return events;
            }
            match self.cadence.quiet_left(now_ms()) {
                Some(left) => *timer = Box::pin(Delay::from(left)),
                None => self.write(),
            }
        }
        next.await
    }

    /// Events arrived: the pause is timed from now; a write due in the middle of a burst is made,
    /// and its commit waited for rather than each send after it waiting behind it.
    async fn received(&mut self) {
        if self.pause.is_none() {
            self.pause = Some(Box::pin(Delay::from(ARCHIVE_IDLE)));
        }
        if self.cadence.received(now_ms(), self.follow.pending_bytes()) {
            self.write();
            let _ = self.archive.committed().await;
        }
    }

    /// Writes what is held.
    fn write(&mut self) {
        write(self.archive, self.task_id, self.follow);
        self.cadence.written(now_ms());
        self.pause = None;
    }
}

/// Lets the tasks already woken run (their turn comes before this one resumes).
async fn yield_now() {
    let resolved = worker::js_sys::Promise::resolve(&worker::wasm_bindgen::JsValue::UNDEFINED);
    let _ = worker::wasm_bindgen_futures::JsFuture::from(resolved).await;
}

/// Forgets a follow when it ends or is dropped, having written what it held (see
/// [`follow_task`]).
struct Forget {
    live: Rc<Live>,
    task_id: String,
    follow: Rc<Follow>,
}

impl Drop for Forget {
    fn drop(&mut self) {
        let mut following = self.live.following.borrow_mut();
        if following.get(&self.task_id).is_some_and(|current| Rc::ptr_eq(current, &self.follow)) {
            following.remove(&self.task_id);
        }
        drop(following);
        // What it still held is written (a follow dropped by a stop's time limit leaves none
        // behind; a loss already took its events).
        write(&self.live.archive, &self.task_id, &self.follow);
        // A no-op for subscribers that already had the end or the failure.
        self.follow.broke(GrpcStatus::new(Code::Unavailable, "the task's follow stopped; resubscribe"));
    }
}

fn write(archive: &Archive, task_id: &str, follow: &Follow) {
    let batch = follow.take_pending();
    if let Err(e) = archive.append(task_id, batch.iter().map(Rc::as_ref)) {
        worker::console_warn!("archiving events of task {task_id} failed: {e}");
    }
}

/// The task ended: its workspace is kept for follow-ups, then its final Task and its diff (when
/// it delivered one) go to the archive (so an archive that shows the service's end has the
/// workspace kept), and tasks beyond the history's length are pruned (their kept workspaces
/// too). `Err` is the service's answer when it could not give the task's final Task.
pub(super) async fn archive_end(
    live: &Live,
    client: &AgentClient,
    task_id: &str,
    history: usize,
) -> Result<(), GrpcStatus> {
    let archive = &live.archive;
    let status = client.unary::<StatusResponse>("Status", &StatusRequest { task_id: task_id.to_string() }).await?;
    let Some(task) = status.task else { return Ok(()) };
    keep_workspace(live, client, &task).await;
    let diff = match task.delivery {
        Some(_) => {
            let request = GetDiffRequest { task_id: task_id.to_string() };
            client.unary::<GetDiffResponse>("GetDiff", &request).await.ok().and_then(|reply| reply.diff)
        }
        None => None,
    };
    let finished = archive.finish(&task, diff.as_ref()).and_then(|()| archive.prune(history));
    match finished {
        Ok(pruned) => {
            if let Some(asked) = &live.pull_requests.asked {
                if let Err(e) = asked.forget(&pruned) {
                    worker::console_warn!("forgetting pruned tasks' pull requests failed: {e}");
                }
            }
            forget_workspaces(live, pruned);
        }
        Err(e) => worker::console_warn!("archiving the end of task {task_id} failed: {e}"),
    }
    open_at_end(live, task_id).await;
    Ok(())
}

/// Completes the end of `task_id`, which the archive took from its final event, from the
/// service (see [`archive_end`]); a service that no longer knows the task leaves it as it is.
pub(super) async fn complete_end(live: &Live, client: &AgentClient, task_id: &str, history: usize) {
    let Err(status) = archive_end(live, client, task_id, history).await else { return };
    if !forgotten(&status) {
        return;
    }
    if let Err(e) = live.archive.completed(task_id) {
        worker::console_warn!("settling the end of task {task_id} failed: {e}");
    }
}

/// Tasks whose end the archive holds only as their final event told it, and that no follow is
/// completing now, get the service's own final Task, diff and kept workspace ([`complete_end`]).
pub(super) async fn complete_ends(live: &Live, client: &AgentClient, history: usize) {
    for task_id in live.archive.awaiting_service().unwrap_or_default() {
        if !live.following.borrow().contains_key(&task_id) {
            complete_end(live, client, &task_id, history).await;
        }
    }
}
