//! The container object's HTTP routes: Start (JSON), Status (asked of the running service, or
//! answered from the record when no container runs: a stopped container is not started just to
//! answer), the WebSocket upgrade onto a session, the gRPC-web passthrough, and the operator's
//! storage report. Each is thin: the rules live in the modules they call.

use autopilot_contract::v1::{
    CancelRequest, GetDiffRequest, GetDiffResponse, ListTasksRequest, ListTasksResponse, StartRequest, StartResponse,
    StatusRequest, StatusResponse, StreamEventsRequest, StreamEventsResponse, TaskState,
};
use worker::{js_sys, Method, Request, RequestInit, Response, WebSocketPair};

use super::{now_ms, subscriptions::SocketInfo, AutopilotContainer};
use crate::{
    api_error::{error_response, grpc_web_error},
    archive::{task_scope, Entry},
    container::agent_client::AgentClient,
    entropy::random_id,
    front::internal::USER_HEADER,
    front::route::Backend,
    front::sessions::Sessions,
    front::task_routes::TaskHome,
    grpc_web::{self, Code, GrpcStatus},
};

impl AutopilotContainer {
    /// `GET /api/container/status[?taskId=]`. Asks the running container; a stopped container
    /// is not started just to answer (its tasks left with it): the archive answers, as for an
    /// ended task.
    pub(super) async fn status_route(&self, req: &Request) -> worker::Result<Response> {
        let mut task_id =
            req.url()?.query_pairs().find(|(k, _)| k == "taskId").map(|(_, v)| v.into_owned()).unwrap_or_default();
        let answer = match self.scope(&mut task_id).await {
            Ok(Some(ended)) => serde_json::to_value(ended.status_response()).map_err(|e| e.to_string()),
            Ok(None) => match self.status_of(task_id).await {
                Ok(answer) => Ok(answer),
                Err(status) => return error_response(&status),
            },
            Err(status) => return error_response(&status),
        };
        let mut body = answer.map_err(worker::Error::RustError)?;
        let lifecycle = self.live.stored.lifecycle();
        body["container"] = serde_json::to_value(&lifecycle.state).unwrap_or_default();
        body["containerChangedMs"] = lifecycle.changed_ms.into();
        Response::from_json(&body)
    }

    /// Status of one of the user's tasks that has not ended in the archive: from the running
    /// service, or, when no container runs, from the archive (a stopped container is not
    /// started just to answer).
    async fn status_of(&self, task_id: String) -> Result<serde_json::Value, GrpcStatus> {
        // `wake` has already checked "ready" against the platform's `running()`.
        let status = if self.live.stored.record().lifecycle.is_ready() {
            let client = AgentClient::new(self.endpoint()?);
            let request = StatusRequest { task_id: task_id.clone() };
            let answer = client.unary::<StatusResponse>("Status", &request).await;
            let status = self.unless_lost(answer, &task_id, Entry::status_response)?;
            // The service knows the task ended: make sure its end reaches the archive (a follow
            // broken by a restart would otherwise wait for the heartbeat).
            if status.task.as_ref().is_some_and(|task| TaskState::try_from(task.state).is_ok_and(TaskState::is_final)) {
                self.follow_into_archive(client, task_id);
            }
            status
        } else {
            let entry = self.live.archived(&task_id).ok_or_else(|| task_scope::unknown_task(&task_id))?;
            entry.status_response()
        };
        serde_json::to_value(&status).map_err(|e| GrpcStatus::new(Code::Internal, e.to_string()))
    }

    /// Upgrades to a WebSocket on one of this user's sessions (see [`Sessions::admit`]).
    pub(super) async fn websocket_route(&self, req: &Request, session_id: &str) -> worker::Result<Response> {
        if let Err(refusal) = self.sessions().admit(req, session_id).await? {
            return Ok(refusal);
        }
        let pair = WebSocketPair::new()?;
        self.state.accept_web_socket(&pair.server);
        pair.server.serialize_attachment(SocketInfo { socket_id: random_id()?, session_id: session_id.to_string() })?;
        Response::from_websocket(pair.client)
    }

    /// Serves a gRPC-web call, so generated clients can use the contract through the edge. Start
    /// and ListTasks are answered here (credits, the user's archive); the calls that name a task
    /// are answered from the archive when it has ended there, and otherwise passed on once the
    /// task is known to be this user's, the reply streaming back unchanged. A method the edge
    /// does not know is UNIMPLEMENTED: it could not tell whose task it would reach.
    pub(super) async fn grpc_web_passthrough(&self, mut req: Request) -> worker::Result<Response> {
        let path = req.path();
        let method = path.trim_start_matches("/autopilot.v1.Autopilot/").to_string();
        let body = req.bytes().await?;
        let answer = match grpc_web::request_message(&body) {
            Ok(message) => self.grpc_web_answer(&method, &message).await,
            Err(status) => Err(status),
        };
        let body = match answer {
            Ok(Answer::Here(response)) => return response,
            Ok(Answer::Service(body)) => body,
            Err(status) => return grpc_web_error(&status, 200),
        };
        let client = match self.ready_client().await {
            Ok(client) => client,
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

    /// How the edge answers `method` with request `message`: itself, or by passing the request
    /// (its task id scoped to the user) on to the service.
    async fn grpc_web_answer(&self, method: &str, message: &[u8]) -> Result<Answer, GrpcStatus> {
        let here = |response: worker::Result<Response>| Ok(Answer::Here(response));
        match method {
            "Start" => here(grpc_web_reply(&self.start_task(&decode::<StartRequest>(message)?).await?)),
            "ListTasks" => here(grpc_web_reply(&self.list_tasks(&decode::<ListTasksRequest>(message)?)?)),
            "Status" => {
                let mut request = decode::<StatusRequest>(message)?;
                match self.scope(&mut request.task_id).await? {
                    Some(ended) => here(grpc_web_reply(&ended.status_response())),
                    None => Ok(Answer::Service(grpc_web::encode_request(&request))),
                }
            }
            "StreamEvents" => {
                let mut request = decode::<StreamEventsRequest>(message)?;
                match self.scope(&mut request.task_id).await? {
                    Some(_) => here(self.archived_stream(&request)),
                    None => Ok(Answer::Service(grpc_web::encode_request(&request))),
                }
            }
            "Cancel" => {
                let mut request = decode::<CancelRequest>(message)?;
                match self.scope(&mut request.task_id).await? {
                    Some(ended) => here(grpc_web_reply(&ended.cancel_response(&request.task_id))),
                    None => Ok(Answer::Service(grpc_web::encode_request(&request))),
                }
            }
            "GetDiff" => {
                let mut request = decode::<GetDiffRequest>(message)?;
                match self.scope(&mut request.task_id).await? {
                    Some(ended) => match self.live.archive.diff(&request.task_id).ok().flatten() {
                        Some(diff) => here(grpc_web_reply(&GetDiffResponse { diff: Some(diff) })),
                        None => Err(GrpcStatus::new(
                            Code::NotFound,
                            format!(
                                "task {} has no diff: it ended {} before its agent's work was delivered",
                                request.task_id,
                                TaskState::try_from(ended.summary.state)
                                    .unwrap_or_default()
                                    .as_str_name()
                                    .trim_start_matches("TASK_STATE_")
                            ),
                        )),
                    },
                    None => Ok(Answer::Service(grpc_web::encode_request(&request))),
                }
            }
            other => Err(GrpcStatus::new(Code::Unimplemented, format!("the edge does not serve {other}"))),
        }
    }

    /// An ended task's events from the archive, as a whole gRPC-web StreamEvents reply.
    fn archived_stream(&self, request: &StreamEventsRequest) -> worker::Result<Response> {
        let mut body = Vec::new();
        for chunk in self.live.archive.replay(&request.task_id, request.from_seq) {
            for event in chunk? {
                body.extend(grpc_web::encode_request(&StreamEventsResponse { event: Some(event) }));
            }
        }
        body.extend(grpc_web::encode_reply_end());
        grpc_web_response(body)
    }

    /// Bench only (see the admin route): `{"taskId"}` recorded as this user's task.
    pub(super) async fn adopt_task_route(&self, mut req: Request) -> worker::Result<Response> {
        let body: serde_json::Value = req.json().await.unwrap_or_default();
        let task_id = body["taskId"].as_str().unwrap_or_default();
        if task_id.is_empty() || task_id.len() > 64 || !task_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return error_response(&GrpcStatus::new(Code::InvalidArgument, "taskId must be a task id"));
        }
        let recorded = StartRequest { prompt: "a recorded task".into(), ..Default::default() };
        self.archive_started(task_id, TaskState::Succeeded as i32, &recorded);
        Response::from_json(&serde_json::json!({"taskId": task_id}))
    }

    /// Operator's view of what this object stores: `{"sessions", "tickets", "tasks"}` counts.
    pub(super) async fn storage_route(&self) -> worker::Result<Response> {
        let (sessions, tickets) = self.sessions().counts().await?;
        let tasks = self.live.archive.count()?;
        Response::from_json(&serde_json::json!({"sessions": sessions, "tickets": tickets, "tasks": tasks}))
    }
}

impl TaskHome for AutopilotContainer {
    fn sessions(&self) -> Sessions<'_> {
        Sessions { state: &self.state, env: &self.env, backend: Backend::Container }
    }

    async fn start(&self, request: &StartRequest) -> worker::Result<Result<StartResponse, GrpcStatus>> {
        Ok(self.start_task(request).await)
    }

    async fn task_state(&self, task_id: &mut String) -> Result<i32, GrpcStatus> {
        self.scope(task_id).await?;
        let archived = self.live.archived(task_id);
        Ok(archived.map_or(TaskState::Unspecified as i32, |entry| entry.summary.state))
    }

    fn task_page(&self, request: &ListTasksRequest) -> Result<ListTasksResponse, GrpcStatus> {
        self.list_tasks(request)
    }

    /// The alarm prunes tickets once they lapse.
    async fn ticket_issued(&self) -> worker::Result<()> {
        self.alarm_by(now_ms() + self.sessions().ticket_ttl_ms() + 1_000).await
    }
}

/// How the edge answers a gRPC-web call.
enum Answer {
    /// Made here (or from the archive).
    Here(worker::Result<Response>),
    /// The service answers this request body (its task id scoped to the user).
    Service(Vec<u8>),
}

/// A request message of the contract.
fn decode<M: prost::Message + Default>(bytes: &[u8]) -> Result<M, GrpcStatus> {
    M::decode(bytes).map_err(|e| GrpcStatus::new(Code::InvalidArgument, format!("malformed request message: {e}")))
}

/// A gRPC-web OK reply carrying `message`.
fn grpc_web_reply(message: &impl prost::Message) -> worker::Result<Response> {
    grpc_web_response(grpc_web::encode_reply(message))
}

/// A gRPC-web response with `body` (its messages and trailers).
fn grpc_web_response(body: Vec<u8>) -> worker::Result<Response> {
    let headers = worker::Headers::new();
    headers.set("content-type", grpc_web::CONTENT_TYPE)?;
    Ok(Response::from_bytes(body)?.with_headers(headers))
}
