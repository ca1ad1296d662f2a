//! The routes both objects serve alike over their own tasks: Start (a `StartRequest` in proto3
//! JSON, answered with a session and its first WebSocket ticket), a WebSocket ticket (for a
//! reconnect, or a new session on one of the user's tasks), and the task list. Each object says
//! how it starts, finds and lists its tasks ([`TaskHome`]); these say what the routes answer, so
//! container and tunnel mode cannot drift apart.

use autopilot_contract::v1::{ListTasksRequest, ListTasksResponse, StartRequest, StartResponse, TaskState};
use worker::{Request, Response};

use crate::{
    api_error::error_response,
    archive::task_list::request_from_query,
    front::sessions::{Sessions, TicketAsk},
    grpc_web::{Code, GrpcStatus},
};

/// One object's tasks, as the shared routes need them.
#[allow(async_fn_in_trait)] // one object per isolate: no Send bound is wanted
pub trait TaskHome {
    /// The object's WebSocket sessions.
    fn sessions(&self) -> Sessions<'_>;

    /// Starts the task `request` asks for.
    async fn start(&self, request: &StartRequest) -> worker::Result<Result<StartResponse, GrpcStatus>>;

    /// The state of `task_id`, one of the user's tasks (an empty id: their latest), the id made
    /// the one it resolved to; NOT_FOUND for any other.
    async fn task_state(&self, task_id: &mut String) -> Result<i32, GrpcStatus>;

    /// A page of the user's task list.
    fn task_page(&self, request: &ListTasksRequest) -> Result<ListTasksResponse, GrpcStatus>;

    /// A ticket was issued (its expiry may need pruning later).
    async fn ticket_issued(&self) -> worker::Result<()> {
        Ok(())
    }
}

/// A task state's name in the contract (`TASK_STATE_RUNNING`), as the routes' JSON shows it.
pub fn state_name(state: i32) -> &'static str {
    TaskState::try_from(state).unwrap_or_default().as_str_name()
}

/// Reads a Start's JSON body.
///
/// # Errors
/// INVALID_ARGUMENT saying what is wrong with it.
/// `"environment": "name"` is the short form of `"environment": {"name": "name"}` (the edge fills
/// in the rest from the user's environments).
pub fn start_request(body: &[u8]) -> Result<StartRequest, GrpcStatus> {
    let invalid = |e: serde_json::Error| {
        GrpcStatus::new(Code::InvalidArgument, format!("the body must be a StartRequest in proto3 JSON: {e}"))
    };
    let mut json: serde_json::Value = serde_json::from_slice(body).map_err(invalid)?;
    if let Some(environment) = json.get_mut("environment").filter(|e| e.is_string()) {
        *environment = serde_json::json!({"name": environment.take()});
    }
    serde_json::from_value(json).map_err(invalid)
}

/// `POST /api/{container,tunnel}/start`: starts the task and opens a session for the browser. A
/// reply that could not carry its WebSocket URL (no site origin) must not leave a task behind:
/// that is checked first.
pub async fn start_route(home: &impl TaskHome, mut req: Request, user: &str) -> worker::Result<Response> {
    let request = match start_request(&req.bytes().await?) {
        Ok(request) => request,
        Err(status) => return error_response(&status),
    };
    if let Err(status) = home.sessions().site(&req) {
        return error_response(&status);
    }
    let started = match home.start(&request).await? {
        Ok(started) => started,
        Err(status) => return error_response(&status),
    };
    let reply = home.sessions().start_reply(&req, user, &started.task_id, state_name(started.state)).await;
    home.ticket_issued().await?;
    reply
}

/// `POST /api/{container,tunnel}/ws-ticket`: `{"sessionId"}`, a fresh ticket for a reconnect;
/// or `{"taskId"}` (one of the user's tasks), a new session on it and its first ticket, so any
/// device can open any of the user's timelines (e.g. from the task list).
pub async fn ticket_route(home: &impl TaskHome, mut req: Request, user: &str) -> worker::Result<Response> {
    let reply = match Sessions::ticket_ask(&mut req).await? {
        Ok(TicketAsk::Session(session_id)) => home.sessions().ticket_reply(&req, user, &session_id).await,
        Ok(TicketAsk::Task(mut task_id)) => match home.task_state(&mut task_id).await {
            Ok(state) => home.sessions().start_reply(&req, user, &task_id, state_name(state)).await,
            Err(status) => return error_response(&status),
        },
        Err(status) => return error_response(&status),
    };
    home.ticket_issued().await?;
    reply
}

/// `GET /api/{tasks,tunnel/tasks}?pageSize=&pageToken=`: a page of the user's task list, newest
/// first, as proto3 JSON (`{"tasks": [...], "nextPageToken": ...}`).
pub fn tasks_route(home: &impl TaskHome, req: &Request) -> worker::Result<Response> {
    match request_from_query(&req.url()?).and_then(|request| home.task_page(&request)) {
        Ok(page) => Response::from_json(&page),
        Err(status) => error_response(&status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_body_must_be_a_start_request_in_proto3_json() {
        let request = start_request(br#"{"repositoryUrl": "https://x/r.git", "prompt": "Go"}"#).unwrap();
        assert_eq!((request.repository_url.as_str(), request.prompt.as_str()), ("https://x/r.git", "Go"));
        for body in [&b"not json"[..], br#"{"prompt": 7}"#, br#"[]"#] {
            let refused = start_request(body).unwrap_err();
            assert_eq!(refused.code, Code::InvalidArgument as i32);
            assert!(
                refused.message.starts_with("the body must be a StartRequest in proto3 JSON"),
                "{}",
                refused.message
            );
        }
        let named =
            start_request(br#"{"repositoryUrl": "https://x/r", "prompt": "Go", "environment": "web"}"#).unwrap();
        assert_eq!(named.environment.map(|e| e.name), Some("web".to_string()), "a name is the short form");
    }

    #[test]
    fn states_are_named_as_the_contract_names_them() {
        assert_eq!(state_name(TaskState::Running as i32), "TASK_STATE_RUNNING");
        assert_eq!(state_name(9_999), "TASK_STATE_UNSPECIFIED", "an unknown state is not a fault");
    }
}
