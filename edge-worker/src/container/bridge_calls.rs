//! The WebSocket bridge's calls: each `ClientFrame` of a user's socket becomes one RPC to the
//! agent-service, its reply a `ServerFrame` tagged with the frame's request id; a subscription
//! streams a task's events in the background until the task ends, the socket closes or the
//! container dies. The JSON and gRPC-web routes start tasks and scope task ids through the same
//! functions, so every path applies the same rules: credits, and a user reaches only the tasks
//! their object started.

use std::{cell::Cell, rc::Rc};

use autopilot_contract::v1::{server_frame::Frame, ServerFrame, StartRequest, StartResponse, StreamEventsRequest};
use futures::future::{AbortHandle, Abortable};
use worker::{wasm_bindgen_futures::spawn_local, WebSocket, WebSocketIncomingMessage};

use super::{
    activity::{SocketFrame, StreamUse},
    fan_out::Sink,
    loss::forgotten_by_service,
    runtime::lost_behind_our_back,
    subscriptions::{socket_id, Subscription},
    workspaces::kept_workspace,
    AutopilotContainer,
};
use crate::{
    archive::task_scope,
    archive::Entry,
    bridge::{
        decode_client_frame, encode_server_frame, end_frame, error_frame, too_many_subscriptions, Call, Rpc,
        SharedEvent, MAX_IN_FLIGHT_PER_SOCKET, MAX_SUBSCRIPTIONS_PER_SOCKET,
    },
    container::agent_client::AgentClient,
    container::platform_errors::is_not_listening,
    grpc_web::{Code, GrpcStatus},
    socket::{incoming, send, send_error, try_send},
};

impl AutopilotContainer {
    /// One frame from a user's socket: read, bounded per socket, answered.
    pub(super) async fn socket_frame(&self, ws: &WebSocket, message: WebSocketIncomingMessage) {
        match decode_client_frame(&incoming(message)) {
            Ok(call) => match SocketFrame::begin(&self.live.activity, socket_id(ws)) {
                Some(_in_flight) => self.handle_call(ws, call).await,
                None => {
                    let status = GrpcStatus::new(
                        Code::ResourceExhausted,
                        format!("at most {MAX_IN_FLIGHT_PER_SOCKET} requests in flight per socket: wait for replies"),
                    );
                    send_error(ws, call.request_id, status, call.encoding)
                }
            },
            Err(reply) => send(ws, reply),
        }
    }

    async fn handle_call(&self, ws: &WebSocket, call: Call) {
        let Call { request_id, rpc, encoding } = call;
        let reply = |frame: Frame| ServerFrame { request_id: request_id.clone(), frame: Some(frame) };
        let frame = match rpc {
            Rpc::Start(request) => self.start_task(&request).await.map(|started| reply(Frame::Start(started))),
            Rpc::Status(mut request) => match self.scope(&mut request.task_id).await {
                Ok(Some(ended)) => Ok(ended.status_response()),
                Ok(None) => self.ask_about_task("Status", &request, &request.task_id, Entry::status_response).await,
                Err(status) => Err(status),
            }
            .map(|status| reply(Frame::Status(status))),
            Rpc::Cancel(mut request) => match self.scope(&mut request.task_id).await {
                // Cancelling a task that has ended changes nothing and answers its final state.
                Ok(Some(ended)) => Ok(ended.cancel_response(&request.task_id)),
                Ok(None) => {
                    let ended = |entry: Entry| entry.cancel_response(&request.task_id);
                    self.ask_about_task("Cancel", &request, &request.task_id, ended).await
                }
                Err(status) => Err(status),
            }
            .map(|cancel| reply(Frame::Cancel(cancel))),
            Rpc::Subscribe(mut request) => match self.scope(&mut request.task_id).await {
                Ok(Some(_)) => {
                    return self.replay_archived(ws, request_id, request.task_id, request.from_seq, encoding)
                }
                Ok(None) => match self.ready_client().await {
                    Ok(client) => return self.subscribe(ws, client, request_id, request, encoding),
                    Err(status) => Err(status),
                },
                Err(status) => Err(status),
            },
            Rpc::ListTasks(request) => self.list_tasks(&request).map(|page| reply(Frame::ListTasks(page))),
            Rpc::Unsubscribe(subscription) => return self.unsubscribe(ws, &subscription),
        };
        let frame = frame.unwrap_or_else(|status| error_frame(request_id.clone(), status));
        send(ws, encode_server_frame(&frame, encoding));
    }

    /// A unary call to the ready service (started first if need be).
    async fn ask_service<R: prost::Message + Default>(
        &self,
        method: &str,
        request: &impl prost::Message,
    ) -> Result<R, GrpcStatus> {
        self.ready_client().await?.unary(method, request).await
    }

    /// [`Self::ask_service`] about `task_id`, one of the user's tasks that has not ended in the
    /// archive (see [`Self::unless_lost`]).
    pub(super) async fn ask_about_task<R: prost::Message + Default>(
        &self,
        method: &str,
        request: &impl prost::Message,
        task_id: &str,
        from_archive: impl FnOnce(Entry) -> R,
    ) -> Result<R, GrpcStatus> {
        let answer = self.ask_service(method, request).await;
        self.unless_lost(answer, task_id, from_archive)
    }

    /// The service's `answer` about `task_id`, one of the user's tasks that has not ended in the
    /// archive. A service that answers it does not know the task has lost it (see
    /// [`forgotten_by_service`]): the answer is then the archive's, with the
    /// FAILED end recorded at once, never "no task" for a task the user started.
    pub(super) fn unless_lost<R>(
        &self,
        answer: Result<R, GrpcStatus>,
        task_id: &str,
        from_archive: impl FnOnce(Entry) -> R,
    ) -> Result<R, GrpcStatus> {
        match answer {
            Err(status) if status.code == Code::NotFound as i32 && forgotten_by_service(&self.live, task_id) => {
                self.archived_end(task_id).map(from_archive).ok_or(status)
            }
            answer => answer,
        }
    }

    /// Starts a task for this user on every path (JSON route, bridge frame, gRPC-web): checks the
    /// credits, brings up the container, and records the task as this user's. A Start the
    /// service refuses names no other user's task, and leaves no metering run open that was
    /// opened for it. The task's agent gets a model credential of its own (see
    /// [`super::model_gateway`]); whatever `model_access` the client sent is replaced.
    ///
    /// A follow-up names a task of this user's (NOT_FOUND otherwise, as for any unknown id; the
    /// service refuses one that still runs); a container that does not know the parent (a new
    /// one) gets the parent's kept workspace, and without one the refusal says why. A `restore`
    /// the client sent is dropped: the service would rebuild the follow-up's workspace from it
    /// (any branch and commits the client chose), and only the snapshot this object kept may.
    pub(super) async fn start_task(&self, request: &StartRequest) -> Result<StartResponse, GrpcStatus> {
        let parent = request.parent_task_id.as_str();
        if !parent.is_empty() && !self.owns_task(parent) {
            return Err(task_scope::unknown_task(parent));
        }
        self.check_credits()?;
        let as_asked = request;
        let mut request = StartRequest { restore: None, ..request.clone() };
        self.inherit_delivery(&mut request);
        let store_credential = self.attach_environment(&mut request)?;
        let github_task = self.route_through_git_gateway(&mut request).await?;
        let minted = self.mint_model_access()?;
        let had_run = self.live.run_open();
        request.model_access = minted.as_ref().map(|(access, _)| access.clone());
        let answer = self.ask_to_start(&request).await;
        let started_id = answer.as_ref().ok().map(|(_, started)| started.task_id.as_str());
        for hash in minted.as_ref().map(|(_, hash)| hash).into_iter().chain(&store_credential) {
            self.settle_model_access(hash, started_id);
        }
        if let Some(github_task) = &github_task {
            self.settle_git_access(github_task, started_id);
            if let Some(task_id) = started_id {
                self.remember_pull_request(github_task, &request, task_id);
            }
        }
        match answer {
            Ok((client, started)) => {
                // The list shows the repository as the user named it (a follow-up on GitHub:
                // its conversation's), not the gateway's URL.
                let recorded = match &github_task {
                    Some(github_task) if as_asked.repository_url.is_empty() => {
                        &StartRequest { repository_url: github_task.repository_url.clone(), ..as_asked.clone() }
                    }
                    _ => as_asked,
                };
                self.archive_started(&started.task_id, started.state, recorded);
                self.follow_into_archive(client, started.task_id.clone());
                Ok(started)
            }
            Err(status) => {
                let opened_for_this = !had_run && self.live.run_open();
                let nothing_else = !self.live.task_running() && self.live.activity.only_this_request();
                if opened_for_this && nothing_else {
                    // A refused Start costs nothing: the run opened for it closes uncharged.
                    let closed = async {
                        self.meter(|account, _| {
                            account.waive_run();
                            None
                        })
                        .await?;
                        self.stop_container().await
                    };
                    if let Err(e) = closed.await {
                        worker::console_warn!("closing the run of a refused start failed: {e}");
                    }
                }
                let own = self.live.own_tasks.borrow();
                let status = task_scope::scrub_refusal(status, |id| own.contains(id));
                // Only in local mode do other users' tasks share the service; a Start of this
                // user's still in flight may be one of those that filled it.
                let only_others_run = self.state.container().is_none()
                    && !self.live.task_running()
                    && self.live.activity.requests_in_use() <= 1;
                Err(task_scope::busy_with_others(status, only_others_run))
            }
        }
    }

    /// The ready service's answer to `request`; a follow-up the service cannot place (a new
    /// container) is asked again with its parent's kept workspace, or refused saying why.
    async fn ask_to_start(&self, request: &StartRequest) -> Result<(AgentClient, StartResponse), GrpcStatus> {
        let mut client = self.ready_client().await?;
        let mut answer = client.unary::<StartResponse>("Start", request).await;
        if let Err(status) = &answer {
            // Nothing listened: the container stopped behind the object's back before the exit
            // watch heard of it. The Start never reached a service, so it is asked of a fresh
            // container, once, rather than refused.
            if self.container_gone(status).await {
                client = self.ready_client().await?;
                answer = client.unary::<StartResponse>("Start", request).await;
            }
        }
        let parent = request.parent_task_id.as_str();
        let answer = match answer {
            Err(status) if !parent.is_empty() && status.code == Code::NotFound as i32 => {
                match kept_workspace(&self.live, parent).await {
                    Some(snapshot) => {
                        let restoring = StartRequest { restore: Some(snapshot), ..request.clone() };
                        client.unary::<StartResponse>("Start", &restoring).await
                    }
                    None => Err(GrpcStatus::new(
                        Code::FailedPrecondition,
                        format!(
                            "the workspace of task {parent} went with its container and none was kept (the task \
                             left no workspace, or it was over 16 MiB): start a new task instead"
                        ),
                    )),
                }
            }
            answer => answer,
        };
        answer.map(|started| (client, started))
    }

    /// Whether `status` (a call that found nothing listening) is because the container is gone
    /// (see [`lost_behind_our_back`]).
    async fn container_gone(&self, status: &GrpcStatus) -> bool {
        let Some(container) = self.state.container() else { return false };
        is_not_listening(&status.message) && lost_behind_our_back(&self.live, &container).await
    }

    /// Points `task_id` at the user's own task (their latest when empty); NOT_FOUND, as for a
    /// task that never existed, if it is not theirs. Answers what the archive holds of it when
    /// it has ended there: then nothing needs the container.
    pub(super) async fn scope(&self, task_id: &mut String) -> Result<Option<Entry>, GrpcStatus> {
        let latest = self.live.latest_task();
        let owned = !task_id.is_empty() && self.owns_task(task_id);
        *task_id = task_scope::resolve(task_id, latest.as_deref(), owned)?;
        Ok(self.archived_end(task_id))
    }

    /// Whether this object started `task_id` (the archive holds it).
    pub(super) fn owns_task(&self, task_id: &str) -> bool {
        if self.live.own_tasks.borrow().contains(task_id) {
            return true;
        }
        // Task ids are UUIDs; anything longer is nobody's.
        let held = task_id.len() <= 64 && self.live.archive.holds(task_id).unwrap_or(false);
        if held {
            self.live.own_tasks.borrow_mut().insert(task_id.to_string());
        }
        held
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
        if self.live.subscriptions.open_on(&socket) >= MAX_SUBSCRIPTIONS_PER_SOCKET {
            return send_error(ws, request_id, too_many_subscriptions(), encoding);
        }
        // One upstream stream per task: this socket joins the task's follow.
        let last_seq = Rc::new(Cell::new(request.from_seq.saturating_sub(1)));
        let sink =
            SocketSink { ws: ws.clone(), request_id: request_id.clone(), encoding, last_seq: Rc::clone(&last_seq) };
        let mut stream = match self.fan_out(client, &request.task_id, request.from_seq, Box::new(sink)) {
            Ok(subscriber) => subscriber,
            Err(status) => return send_error(ws, request_id, status, encoding),
        };
        let (abort, registration) = AbortHandle::new_pair();
        let subscription = Subscription {
            socket_id: socket,
            ws: ws.clone(),
            request_id: request_id.clone(),
            encoding,
            abort,
            task_id: request.task_id.clone(),
            last_seq: Rc::clone(&last_seq),
        };
        let id = self.live.subscriptions.add(subscription);
        let live = Rc::clone(&self.live);
        let ws = ws.clone();
        let container = self.state.container();
        let streaming = StreamUse::begin(&live.activity);
        spawn_local(async move {
            let forward = async {
                loop {
                    let frame = match stream.next().await {
                        Some(Ok(shared)) => {
                            last_seq.set(shared.event.seq);
                            shared.frame(&request_id, encoding)
                        }
                        Some(Err(status)) => {
                            // A stream that breaks because the container died may break before
                            // the exit watch hears of it: then this is the news, and followers
                            // get the task's FAILED end rather than a bare transport error.
                            if let Some(container) = &container {
                                if status.code == Code::Unavailable as i32
                                    && lost_behind_our_back(&live, container).await
                                {
                                    break;
                                }
                            }
                            break send_error(&ws, request_id, status, encoding);
                        }
                        None => break send(&ws, encode_server_frame(&end_frame(request_id), encoding)),
                    };
                    // A failed send means the socket is gone: stop reading for it.
                    if try_send(&ws, frame).is_err() {
                        break;
                    }
                }
            };
            let _ = Abortable::new(forward, registration).await;
            live.subscriptions.remove(id);
            drop(streaming);
        });
    }

    /// Stops one of this socket's subscriptions; the socket stays open.
    fn unsubscribe(&self, ws: &WebSocket, request_id: &str) {
        self.live.subscriptions.abort(&socket_id(ws), Some(request_id));
    }

    pub(super) fn forget_socket(&self, ws: &WebSocket) {
        self.live.subscriptions.abort(&socket_id(ws), None);
    }
}

/// A caught-up subscription's socket, which the task's follow sends each new event to.
struct SocketSink {
    ws: WebSocket,
    request_id: String,
    encoding: crate::bridge::Encoding,
    last_seq: Rc<Cell<u64>>,
}

impl Sink for SocketSink {
    fn send(&self, event: &SharedEvent) -> bool {
        self.last_seq.set(event.event.seq);
        try_send(&self.ws, event.frame(&self.request_id, self.encoding)).is_ok()
    }
}
