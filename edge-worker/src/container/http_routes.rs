//! The container object's HTTP routes: Start (JSON), Status (asked of the running service, or
//! answered from the record when no container runs: a stopped container is not started just to
//! answer), the WebSocket upgrade onto a session, the gRPC-web passthrough, and the operator's
//! storage report. Each is thin: the rules live in the modules they call.

use autopilot_contract::v1::{
    CancelRequest, GetDiffRequest, StartRequest, StatusRequest, StatusResponse, StreamEventsRequest, TaskState,
};
use worker::{js_sys, ListOptions, Method, Request, RequestInit, Response, WebSocketPair};

use super::{bridge_calls::TASK_PREFIX, live::SocketInfo, now_ms, AutopilotContainer};
use crate::{
    agent_client::AgentClient,
    api_error::{error_response, grpc_web_error},
    entropy::random_id,
    grpc_web::{self, Code, GrpcStatus},
    internal::USER_HEADER,
    task_scope,
};

impl AutopilotContainer {
    pub(super) async fn start_route(&self, mut req: Request) -> worker::Result<Response> {
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

    /// `GET /api/container/status[?taskId=]`. Asks the running container; a stopped container
    /// is not started just to answer (its tasks left with it): the object answers from what it
    /// remembers of its current task, or NOT_FOUND.
    pub(super) async fn status_route(&self, req: &Request) -> worker::Result<Response> {
        let requested =
            req.url()?.query_pairs().find(|(k, _)| k == "taskId").map(|(_, v)| v.into_owned()).unwrap_or_default();
        let latest = self.live.record.borrow().current_task_id.clone();
        let owned = !requested.is_empty() && self.owns_task(&requested).await;
        let task_id = match task_scope::resolve(&requested, latest.as_deref(), owned) {
            Ok(task_id) => task_id,
            Err(status) => return error_response(&status),
        };
        let lifecycle = self.live.record.borrow().lifecycle.clone();
        let container = serde_json::to_value(&lifecycle.state).unwrap_or_default();
        let container_changed_ms = lifecycle.changed_ms;
        // `wake` has already checked "ready" against the platform's `running()`.
        if !lifecycle.is_ready() {
            let answer = self.live.record.borrow().status_without_container(&task_id);
            return match answer {
                Ok(mut body) => {
                    body["container"] = container;
                    body["containerChangedMs"] = container_changed_ms.into();
                    Response::from_json(&body)
                }
                Err(status) => error_response(&status),
            };
        }
        let client = match self.endpoint() {
            Ok(endpoint) => AgentClient::new(endpoint),
            Err(status) => return error_response(&status),
        };
        match client.unary::<StatusResponse>("Status", &StatusRequest { task_id }).await {
            Ok(status) => {
                if let Some(task) = &status.task {
                    self.live.remember_task(&task.task_id, task.state);
                    if task.task_id == self.live.record.borrow().current_task_id.clone().unwrap_or_default() {
                        let error = task.error.clone();
                        self.live.update(|p| p.current_task_error = error);
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
    /// is made here (credits, the user's task record); the calls that name a task are passed on
    /// once the task is known to be this user's, the reply streaming back unchanged. A method the
    /// edge does not know is UNIMPLEMENTED: it could not tell whose task it would reach.
    pub(super) async fn grpc_web_passthrough(&self, mut req: Request) -> worker::Result<Response> {
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

    /// Bench only (see the admin route): `{"taskId"}` recorded as this user's task.
    pub(super) async fn adopt_task_route(&self, mut req: Request) -> worker::Result<Response> {
        let body: serde_json::Value = req.json().await.unwrap_or_default();
        let task_id = body["taskId"].as_str().unwrap_or_default();
        if task_id.is_empty() || task_id.len() > 64 || !task_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return error_response(&GrpcStatus::new(Code::InvalidArgument, "taskId must be a task id"));
        }
        self.record_own_task(task_id).await;
        Response::from_json(&serde_json::json!({"taskId": task_id}))
    }

    /// Operator's view of what this object stores: `{"sessions", "tickets", "tasks"}` counts.
    pub(super) async fn storage_route(&self) -> worker::Result<Response> {
        let (sessions, tickets) = self.sessions().counts().await?;
        let tasks = self.state.storage().list_with_options(ListOptions::new().prefix(TASK_PREFIX)).await?.size();
        Response::from_json(&serde_json::json!({"sessions": sessions, "tickets": tickets, "tasks": tasks}))
    }
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
