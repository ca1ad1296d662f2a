//! A fake of the paid model API: a small server speaking the Anthropic Messages API (streaming
//! SSE), so the real Claude Code CLI can run offline in tests. It and the fake GitHub
//! (`fake_github/`) are the only fakes in the system.
//!
//! The test picks a script through its prompt: the `SCENARIO:<name>` token of the latest user
//! turn that has one (in a single-turn conversation, the first in the request) selects one of
//! [`Scenario`]'s scripts. Each script is a list of steps; the step to play is the number of
//! tool results since that turn, so a tool call is answered by the next step, and a follow-up
//! turn (a resumed conversation) plays its own script from its start. Requests without tools
//! (the CLI's side requests, such as titles) get a short text. Every request with tools is
//! recorded, so a test can see what conversation reached the model.

use std::{
    collections::BTreeSet,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Body,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{any, post},
    Json, Router,
};
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpListener;

mod scenario;
pub use scenario::*;

/// One reply of the fake.
enum Step {
    ToolUse { name: &'static str, input: Value },
    Text(String),
}

fn step_for(scenario: &Scenario, tool_results: &[String]) -> Step {
    let done = tool_results.len();
    match scenario {
        Scenario::HtmlInjection => Step::Text(
            "**Bold claim** <img src=x onerror=\"window.__pwned=1\"> <script>window.__pwned=2</script> [click](javascript:window.__pwned=3)".into(),
        ),
        Scenario::Answer | Scenario::ApiError | Scenario::Hang => {
            Step::Text("All done: nothing needed changing.".into())
        }
        Scenario::ListFiles if done == 0 => {
            Step::ToolUse { name: "Bash", input: json!({"command": "ls -1", "description": "List files"}) }
        }
        Scenario::ListFiles => Step::Text(format!(
            "The repository contains:\n\n```\n{}\n```",
            tool_results.last().map(|s| s.trim()).unwrap_or_default()
        )),
        Scenario::WriteFile if done == 0 => Step::ToolUse { name: "Bash", input: json!({"command": WRITE_FILE_COMMAND}) },
        Scenario::WriteFileShowingKey if done == 0 => Step::ToolUse {
            name: "Bash",
            input: json!({"command": format!("{WRITE_FILE_COMMAND} && echo \"gateway key: $ANTHROPIC_API_KEY\"")}),
        },
        Scenario::WriteFile | Scenario::WriteFileShowingKey => Step::Text("I wrote **AGENT_NOTES.md**.".into()),
        Scenario::EditAndCreate if done == 0 => Step::ToolUse {
            name: "Bash",
            input: json!({"command": EDIT_AND_CREATE_COMMAND, "description": "Edit main.rs, add NOTES.md"}),
        },
        Scenario::EditAndCreate => Step::Text("I edited **main.rs** and added **NOTES.md**.".into()),
        Scenario::CommitAndEdit if done == 0 => Step::ToolUse {
            name: "Bash",
            input: json!({"command": COMMIT_AND_EDIT_COMMAND, "description": "Commit some work, leave some"}),
        },
        Scenario::CommitAndEdit => Step::Text("I committed part of the work and left the rest.".into()),
        Scenario::WriteEnv if done == 0 => {
            Step::ToolUse { name: "Bash", input: json!({"command": "env | grep ^ANTHROPIC_ | sort > ENV.txt"}) }
        }
        Scenario::WriteEnv => Step::Text("I wrote ENV.txt.".into()),
        Scenario::TamperGit if done == 0 => {
            Step::ToolUse { name: "Bash", input: json!({"command": TAMPER_GIT_COMMAND}) }
        }
        Scenario::TamperGit => Step::Text("I changed CHANGED.md.".into()),
        Scenario::BigChange if done == 0 => Step::ToolUse {
            name: "Bash",
            input: json!({"command": "seq 1 60000 > BIG.txt && echo small > SMALL.txt"}),
        },
        Scenario::BigChange => Step::Text("I wrote BIG.txt and SMALL.txt.".into()),
        Scenario::ReadAndExtend if done == 0 => {
            Step::ToolUse { name: "Bash", input: json!({"command": READ_AND_EXTEND_COMMAND}) }
        }
        Scenario::ReadAndExtend => Step::Text(format!(
            "The notes said: {}. I added a line.",
            tool_results.last().map(|s| s.trim()).unwrap_or_default()
        )),
        Scenario::WhoAndHello if done == 0 => Step::ToolUse {
            name: "Bash",
            input: json!({"command": "echo \"uid $(id -u)\"; autopilot-hello 2>&1 || echo 'no autopilot-hello'"}),
        },
        Scenario::WhoAndHello => Step::Text(format!("I ran:\n{}", tool_results.last().cloned().unwrap_or_default())),
        Scenario::PrintEnv if done == 0 => Step::ToolUse { name: "Bash", input: json!({"command": "env | sort"}) },
        Scenario::PrintEnv => {
            Step::Text(format!("My environment:\n{}", tool_results.last().cloned().unwrap_or_default()))
        }
        Scenario::ManyTools(count) if done < *count as usize => {
            Step::ToolUse { name: "Bash", input: json!({"command": format!("echo step {}", done + 1)}) }
        }
        Scenario::ManyTools(count) => Step::Text(format!("Ran {count} steps.")),
        Scenario::SlowTools(count) if done < *count as usize => Step::ToolUse {
            name: "Bash",
            input: json!({"command": format!("sleep 0.5; echo step {}", done + 1)}),
        },
        Scenario::SlowTools(count) => Step::Text(format!("Ran {count} slow steps.")),
    }
}

/// A running fake; dropped, it keeps serving until the runtime ends.
pub struct FakeModelApi {
    /// Where it listens, e.g. `http://127.0.0.1:41234`: the agent's `ANTHROPIC_BASE_URL`.
    pub base_url: String,
    /// The API keys (`x-api-key`) the Messages endpoint was called with, so a test can tell
    /// which key reached the agent.
    api_keys: ApiKeys,
    /// The body of every Messages request with tools (the agent's turns), in order.
    requests: Requests,
}

type ApiKeys = Arc<Mutex<BTreeSet<String>>>;
type Requests = Arc<Mutex<Vec<Value>>>;

impl FakeModelApi {
    /// Serves the fake on an ephemeral loopback port, in the background of the current runtime.
    pub async fn start() -> std::io::Result<FakeModelApi> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let api_keys = ApiKeys::default();
        let requests = Requests::default();
        tokio::spawn(serve_recording(listener, api_keys.clone(), requests.clone()));
        Ok(FakeModelApi { base_url: format!("http://{addr}"), api_keys, requests })
    }

    /// The bodies of the Messages requests with tools so far whose text contains `marker`.
    pub fn requests_containing(&self, marker: &str) -> Vec<Value> {
        let requests = self.requests.lock().unwrap();
        requests.iter().filter(|r| r.to_string().contains(marker)).cloned().collect()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.base_url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port in the base URL")
    }

    /// Every distinct API key the Messages endpoint has seen.
    pub fn api_keys(&self) -> Vec<String> {
        self.api_keys.lock().unwrap().iter().cloned().collect()
    }
}

/// Serves the fake on `listener` until the process ends.
pub async fn serve(listener: TcpListener) {
    serve_recording(listener, ApiKeys::default(), Requests::default()).await
}

async fn serve_recording(listener: TcpListener, api_keys: ApiKeys, requests: Requests) {
    let app = Router::new()
        .route(
            "/v1/messages",
            post(move |headers: HeaderMap, body: String| {
                if let Some(key) = headers.get("x-api-key").and_then(|k| k.to_str().ok()) {
                    api_keys.lock().unwrap().insert(key.to_string());
                }
                messages(body, requests.clone())
            }),
        )
        .route("/v1/messages/count_tokens", post(count_tokens))
        .fallback(any(|| async { StatusCode::OK }));
    let _ = axum::serve(listener, app).await;
}

/// Binds the fake on a given address (for the `fake-model-api` binary).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

async fn count_tokens() -> Json<Value> {
    Json(json!({"input_tokens": 100}))
}

async fn messages(body: String, requests: Requests) -> Response {
    let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let has_tools = request["tools"].as_array().is_some_and(|t| !t.is_empty());
    let model = request["model"].as_str().unwrap_or("claude-fake").to_string();
    let streaming = request["stream"].as_bool().unwrap_or(false);
    let (scenario, tool_results) = if has_tools { current_turn(&request, &body) } else { (Scenario::Answer, vec![]) };
    if has_tools {
        requests.lock().unwrap().push(request.clone());
    }

    if scenario == Scenario::ApiError {
        let error = json!({"type": "error", "error": {"type": "invalid_request_error", "message": API_ERROR_MESSAGE}});
        return (StatusCode::BAD_REQUEST, Json(error)).into_response();
    }
    let step = if has_tools { step_for(&scenario, &tool_results) } else { Step::Text("Fake title".into()) };
    if !streaming {
        return Json(whole_message(&model, &step)).into_response();
    }
    let mut events = sse_events(&model, &step);
    if scenario == Scenario::Hang {
        // Open the message and keep it open with pings, never reaching message_stop.
        events.truncate(1);
        let opening = stream::iter(events.into_iter().map(Ok::<_, Infallible>));
        let pings = stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Some((Ok(sse("ping", json!({"type": "ping"}))), ()))
        });
        return sse_response(Body::from_stream(opening.chain(pings)));
    }
    sse_response(Body::from_stream(stream::iter(events.into_iter().map(Ok::<_, Infallible>))))
}

fn sse_response(body: Body) -> Response {
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(body)
        .unwrap()
}

/// The scenario of the latest user turn naming one, and the tool results since that turn; with
/// no turn naming one, the first marker anywhere in `body` and every tool result.
fn current_turn(request: &Value, body: &str) -> (Scenario, Vec<String>) {
    let messages = request["messages"].as_array().map(Vec::as_slice).unwrap_or_default();
    let turn = messages.iter().enumerate().rev().find_map(|(index, message)| {
        let text = user_text(message);
        text.contains("SCENARIO:").then(|| (index, Scenario::find_in(&text)))
    });
    match turn {
        Some((index, scenario)) => (scenario, tool_results_in(&messages[index + 1..])),
        None => (Scenario::find_in(body), tool_results_in(messages)),
    }
}

/// The text a user message carries (not its tool results).
fn user_text(message: &Value) -> String {
    if message["role"] != "user" {
        return String::new();
    }
    match &message["content"] {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The text of every tool_result block in the conversation, in order.
#[cfg(test)]
fn tool_results(request: &Value) -> Vec<String> {
    tool_results_in(request["messages"].as_array().map(Vec::as_slice).unwrap_or_default())
}

/// The text of every tool_result block in `messages`, in order.
fn tool_results_in(messages: &[Value]) -> Vec<String> {
    let mut results = Vec::new();
    for message in messages {
        for block in message["content"].as_array().into_iter().flatten() {
            if block["type"] == "tool_result" {
                results.push(match &block["content"] {
                    Value::String(text) => text.clone(),
                    Value::Array(parts) => {
                        parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join("\n")
                    }
                    _ => String::new(),
                });
            }
        }
    }
    results
}

const INPUT_TOKENS: u64 = 120;
const OUTPUT_TOKENS: u64 = 30;

fn content_block(step: &Step, tool_id: &str) -> (Value, Value, &'static str) {
    match step {
        Step::Text(text) => {
            (json!({"type": "text", "text": ""}), json!({"type": "text_delta", "text": text}), "end_turn")
        }
        Step::ToolUse { name, input } => (
            json!({"type": "tool_use", "id": tool_id, "name": name, "input": {}}),
            json!({"type": "input_json_delta", "partial_json": input.to_string()}),
            "tool_use",
        ),
    }
}

fn sse(event: &str, data: Value) -> bytes::Bytes {
    bytes::Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

fn sse_events(model: &str, step: &Step) -> Vec<bytes::Bytes> {
    let id = uuid_like();
    let tool_id = format!("toolu_{id}");
    let (start, delta, stop_reason) = content_block(step, &tool_id);
    vec![
        sse(
            "message_start",
            json!({"type": "message_start", "message": {
            "id": format!("msg_{id}"), "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": 1}}}),
        ),
        sse("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": start})),
        sse("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": delta})),
        sse("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        sse(
            "message_delta",
            json!({"type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": {"output_tokens": OUTPUT_TOKENS}}),
        ),
        sse("message_stop", json!({"type": "message_stop"})),
    ]
}

fn whole_message(model: &str, step: &Step) -> Value {
    let id = uuid_like();
    let (content, stop_reason) = match step {
        Step::Text(text) => (json!([{"type": "text", "text": text}]), "end_turn"),
        Step::ToolUse { name, input } => {
            (json!([{"type": "tool_use", "id": format!("toolu_{id}"), "name": name, "input": input}]), "tool_use")
        }
    };
    json!({"id": format!("msg_{id}"), "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": stop_reason, "stop_sequence": null,
        "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS}})
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{:016x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_is_read_from_the_first_marker() {
        assert_eq!(Scenario::find_in("please SCENARIO:list-files now"), Scenario::ListFiles);
        assert_eq!(Scenario::find_in("SCENARIO:many-tools:7 x"), Scenario::ManyTools(7));
        assert_eq!(Scenario::find_in("SCENARIO:slow-tools:3"), Scenario::SlowTools(3));
        assert_eq!(Scenario::find_in("no marker"), Scenario::Answer);
        assert_eq!(Scenario::find_in("SCENARIO:bogus"), Scenario::Answer);
        assert_eq!(Scenario::find_in("SCENARIO:edit-and-create"), Scenario::EditAndCreate);
        assert_eq!(Scenario::find_in("SCENARIO:write-file-showing-key x"), Scenario::WriteFileShowingKey);
        assert_eq!(Scenario::find_in("SCENARIO:commit-and-edit"), Scenario::CommitAndEdit);
    }

    #[test]
    fn a_tool_result_advances_the_script() {
        let request = json!({"messages": [
            {"role": "user", "content": "SCENARIO:list-files"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Bash", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "README.md\n"}]}
        ]});
        let results = tool_results(&request);
        assert_eq!(results, ["README.md\n"]);
        match step_for(&Scenario::ListFiles, &results) {
            Step::Text(text) => assert!(text.contains("README.md")),
            Step::ToolUse { .. } => panic!("expected the final answer"),
        }
    }

    #[test]
    fn a_follow_up_turn_plays_its_own_script_from_its_start() {
        let request = json!({"messages": [
            {"role": "user", "content": [{"type": "text", "text": "first\nSCENARIO:write-file"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Bash", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "SCENARIO:x"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "I wrote it."}]},
            {"role": "user", "content": "again\nSCENARIO:read-and-extend"}
        ]});
        let (scenario, results) = current_turn(&request, &request.to_string());
        assert_eq!((scenario, results.len()), (Scenario::ReadAndExtend, 0));
        let single = json!({"messages": [{"role": "user", "content": "SCENARIO:list-files"}]});
        assert_eq!(current_turn(&single, &single.to_string()).0, Scenario::ListFiles);
    }
}
