//! End-to-end tests of the agent-service: the real binary on a loopback port, real git on local
//! bare repositories, the real Claude Code CLI, and real clients (native gRPC and gRPC-web).
//! Only the model API is fake (`support/fake_model_api.rs`); each test picks its script with a
//! `SCENARIO:` marker in the prompt. Tunnel mode's frames are driven through a stand-in edge
//! (a WebSocket server the real `agent-service connect` connects out to).
//!
//! Layout, one module an area, each test over one [`ServiceFixture`] (the fake model API, a
//! repository and the running service):
//! - [`task_run`]: a task from Start to its end, the refs it checks out, its events replayed and
//!   followed by two subscribers at once.
//! - [`endings`]: the other ways a task ends: Cancel, its timeout, the model API's or git's
//!   error, the service's SIGTERM.
//! - [`refusals`]: what Start refuses before anything runs: bad repository URLs, every bad
//!   field, a task past the limit.
//! - [`serving`]: the one port: gRPC-web over HTTP/1.1 (malformed bodies too), `/ping`, CORS,
//!   the hosts it answers to, reflection and health.
//! - [`credentials`]: a service without an API key, and secrets masked everywhere.
//! - [`environments`]: the setup phase of a task with an environment (its script's events, its
//!   failures, time limit and cancel, its secrets kept from the agent and masked), and prepared
//!   workspaces.
//! - [`task_list`]: ListTasks' pages and its refusals.
//! - [`tunnel`]: tunnel mode's frames, through a stand-in edge.
//! - [`http1`]: the raw HTTP/1.1 requests the serving and refusal tests send.
//!
//! The helpers below are the ones several areas share.

mod credentials;
mod endings;
mod environments;
mod http1;
mod refusals;
mod serving;
mod task_list;
mod task_run;
mod tunnel;

use std::time::Duration;

use autopilot_contract::v1::{AgentOptions, Event, ListTasksResponse, StartRequest, StreamEventsRequest};
use autopilot_tests::{events::kind, git_fixture::GitFixture, service::ServiceFixture};

/// A Start on `repo` with `prompt`, everything else left to the service.
fn start_request(repo: &GitFixture, prompt: &str) -> StartRequest {
    StartRequest { repository_url: repo.url(), prompt: prompt.into(), ..Default::default() }
}

/// `request` with a timeout of `seconds`.
fn with_timeout(mut request: StartRequest, seconds: i64) -> StartRequest {
    request.options =
        Some(AgentOptions { timeout: Some(pbjson_types::Duration { seconds, nanos: 0 }), ..Default::default() });
    request
}

/// Waits until the task has recorded an event of `wanted` kind (prefix match); returns all so far.
async fn wait_for_kind(setup: &ServiceFixture, task_id: &str, wanted: &str) -> Vec<Event> {
    let mut client = setup.service.client().await;
    let mut stream =
        client.stream_events(StreamEventsRequest { task_id: task_id.into(), from_seq: 1 }).await.unwrap().into_inner();
    let mut seen = Vec::new();
    let wait = async {
        while let Some(item) = stream.message().await.unwrap() {
            let event = item.event.unwrap();
            let done = kind(&event).starts_with(wanted);
            seen.push(event);
            if done {
                return;
            }
        }
        panic!("the stream ended before a {wanted} event: {:?}", seen.iter().map(kind).collect::<Vec<_>>());
    };
    tokio::time::timeout(Duration::from_secs(60), wait).await.expect("waiting for an event");
    seen
}

/// The ids of a ListTasks page, in its order.
fn listed_ids(page: &ListTasksResponse) -> Vec<&str> {
    page.tasks.iter().map(|t| t.task_id.as_str()).collect()
}
