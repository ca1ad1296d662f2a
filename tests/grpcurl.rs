//! The operator's path: grpcurl (pinned in tools/requirements.txt, installed by `make grpcurl`)
//! against the real agent-service, knowing nothing but what reflection tells it. Lists, describes
//! (with the contract's comments), starts, follows from a seq, checks status, lists tasks a page
//! at a time, cancels, and asks the health service, with the same commands the README gives
//! operators.

use std::{path::PathBuf, time::Duration};

use autopilot_tests::service::{repo_root, ServiceFixture};
use serde_json::{json, Value};

/// The grpcurl of the project-local tools venv.
fn grpcurl_binary() -> PathBuf {
    let path = repo_root().join("tools/venv/bin/grpcurl");
    assert!(path.exists(), "{} is missing: run `make grpcurl` (make test does)", path.display());
    path
}

/// What one grpcurl run printed.
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

/// An operator's grpcurl session against a fixture's service.
trait Operator {
    async fn grpcurl(&self, body: Option<Value>, args: &[&str]) -> Run;
    async fn call(&self, method: &str, body: Value) -> Vec<Value>;
    async fn start(&self, prompt: &str) -> String;
    async fn events(&self, task_id: &str, from_seq: u64) -> Vec<Value>;
}

impl Operator for ServiceFixture {
    /// Runs `grpcurl -plaintext [-d body] ADDR args...`, as an operator would.
    async fn grpcurl(&self, body: Option<Value>, args: &[&str]) -> Run {
        let mut command = tokio::process::Command::new(grpcurl_binary());
        command.arg("-plaintext");
        if let Some(body) = body {
            command.args(["-d", &body.to_string()]);
        }
        command.arg(self.service.addr.to_string()).args(args);
        let out = tokio::time::timeout(Duration::from_secs(60), command.output())
            .await
            .expect("grpcurl did not finish in time")
            .expect("running grpcurl");
        Run {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// A call that must succeed; answers every JSON message it printed (a stream prints several).
    async fn call(&self, method: &str, body: Value) -> Vec<Value> {
        let run = self.grpcurl(Some(body.clone()), &[method]).await;
        assert!(run.success, "grpcurl {method} {body} failed:\n{}{}", run.stdout, run.stderr);
        serde_json::Deserializer::from_str(&run.stdout)
            .into_iter::<Value>()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("grpcurl printed something other than JSON ({e}):\n{}", run.stdout))
    }

    async fn start(&self, prompt: &str) -> String {
        let replies = self
            .call("autopilot.v1.Autopilot/Start", json!({"repositoryUrl": self.repo.url(), "prompt": prompt}))
            .await;
        replies[0]["taskId"].as_str().expect("Start answers a taskId").to_string()
    }

    /// StreamEvents from `from_seq` to the end of the task: the events.
    async fn events(&self, task_id: &str, from_seq: u64) -> Vec<Value> {
        let replies =
            self.call("autopilot.v1.Autopilot/StreamEvents", json!({"taskId": task_id, "fromSeq": from_seq})).await;
        replies.into_iter().map(|reply| reply["event"].clone()).collect()
    }
}

/// proto3 JSON prints uint64 as a string.
fn seq(event: &Value) -> u64 {
    event["seq"].as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no seq in {event}"))
}

#[tokio::test]
async fn reflection_lists_the_services_and_describes_the_contract_with_its_comments() {
    let setup = ServiceFixture::start().await;
    let list = setup.grpcurl(None, &["list"]).await;
    assert!(list.success, "list failed: {}", list.stderr);
    let services: Vec<&str> = list.stdout.lines().collect();
    for wanted in ["autopilot.v1.Autopilot", "grpc.health.v1.Health"] {
        assert!(services.contains(&wanted), "{wanted} missing from `list`: {services:?}");
    }
    let methods = setup.grpcurl(None, &["list", "autopilot.v1.Autopilot"]).await.stdout;
    for method in ["Start", "Status", "StreamEvents", "Cancel", "GetDiff", "ListTasks"] {
        assert!(methods.lines().any(|l| l == format!("autopilot.v1.Autopilot.{method}")), "{method} in {methods}");
    }

    let service = setup.grpcurl(None, &["describe", "autopilot.v1.Autopilot"]).await.stdout;
    assert!(service.contains("rpc StreamEvents ( .autopilot.v1.StreamEventsRequest ) returns ( stream .autopilot.v1.StreamEventsResponse );"), "{service}");
    assert!(
        service.contains("// Server streaming. Replays every recorded event of the task"),
        "RPC comments:\n{service}"
    );
    let message = setup.grpcurl(None, &["describe", "autopilot.v1.StreamEventsRequest"]).await.stdout;
    assert!(message.contains("uint64 from_seq = 2;"), "{message}");
    assert!(
        message.contains("// First seq to send (events are numbered densely from 1)."),
        "field comments:\n{message}"
    );
}

#[tokio::test]
async fn start_stream_from_a_seq_status_and_health_by_reflection_alone() {
    let setup = ServiceFixture::start().await;
    let task_id = setup.start("Run some steps SCENARIO:many-tools:2").await;

    let events = setup.events(&task_id, 1).await;
    let seqs: Vec<u64> = events.iter().map(seq).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>(), "dense seqs from 1");
    let last = events.last().unwrap();
    assert_eq!(last["taskFinished"]["state"], "TASK_STATE_SUCCEEDED", "{last}");
    let tools = events.iter().filter(|e| e["toolStarted"]["name"] == "Bash").count();
    assert_eq!(tools, 2, "two Bash calls in {events:#?}");

    // Resuming from a seq sends exactly the rest, once.
    let from = events.len() as u64 - 2;
    let rest = setup.events(&task_id, from).await;
    assert_eq!(rest.iter().map(seq).collect::<Vec<_>>(), vec![from, from + 1, from + 2]);
    assert_eq!(rest, events[from as usize - 1..].to_vec(), "the replay is the same events");

    let status = setup.call("autopilot.v1.Autopilot/Status", json!({"taskId": task_id})).await;
    let task = &status[0]["task"];
    assert_eq!(task["state"], "TASK_STATE_SUCCEEDED");
    assert_eq!(task["lastSeq"], events.len().to_string());
    assert_eq!(task["commit"], setup.repo.rev_parse("main"));
    assert_eq!(task["result"], "Ran 2 steps.");

    // The task list, a page at a time: one task, so no next page (proto3 JSON leaves it out).
    let listed = setup.call("autopilot.v1.Autopilot/ListTasks", json!({"pageSize": 1})).await;
    let summary = &listed[0]["tasks"][0];
    assert_eq!(summary["taskId"], task_id.as_str(), "{}", listed[0]);
    assert_eq!(summary["state"], "TASK_STATE_SUCCEEDED");
    assert_eq!(summary["title"], "Run some steps SCENARIO:many-tools:2");
    assert_eq!(summary["repositoryUrl"], setup.repo.url());
    assert!(summary["createTime"].is_string() && summary["endTime"].is_string(), "{summary}");
    assert_eq!(listed[0].get("nextPageToken"), None, "{}", listed[0]);

    let health = setup.grpcurl(None, &["grpc.health.v1.Health/Check"]).await;
    assert!(health.success, "{}", health.stderr);
    let health: Value = serde_json::from_str(&health.stdout).unwrap();
    assert_eq!(health["status"], "SERVING");
}

#[tokio::test]
async fn cancel_stops_a_running_task() {
    let setup = ServiceFixture::start().await;
    let task_id = setup.start("Keep working SCENARIO:slow-tools:40").await;
    // Wait until the agent runs, as an operator would by watching Status.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = setup.call("autopilot.v1.Autopilot/Status", json!({"taskId": task_id})).await;
        if status[0]["task"]["state"] == "TASK_STATE_RUNNING" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the task never ran: {}", status[0]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cancelled =
        setup.call("autopilot.v1.Autopilot/Cancel", json!({"taskId": task_id, "reason": "operator stopped it"})).await;
    assert_eq!(cancelled[0], json!({"taskId": task_id, "state": "TASK_STATE_CANCELLED"}));
    let events = setup.events(&task_id, 1).await;
    let finished = &events.last().unwrap()["taskFinished"];
    assert_eq!(finished["state"], "TASK_STATE_CANCELLED");
    assert_eq!(finished["error"], "cancelled: operator stopped it");
}

#[tokio::test]
async fn bad_input_is_refused_with_the_field_named() {
    let setup = ServiceFixture::start().await;
    let run = setup
        .grpcurl(Some(json!({"repositoryUrl": setup.repo.url(), "prompt": ""})), &["autopilot.v1.Autopilot/Start"])
        .await;
    assert!(!run.success, "an empty prompt was accepted: {}", run.stdout);
    assert!(run.stderr.contains("Code: InvalidArgument"), "{}", run.stderr);
    assert!(run.stderr.contains("prompt"), "the message names the field: {}", run.stderr);

    for (body, field) in [(json!({"pageSize": 101}), "page_size"), (json!({"pageToken": "xyz"}), "page_token")] {
        let run = setup.grpcurl(Some(body.clone()), &["autopilot.v1.Autopilot/ListTasks"]).await;
        assert!(!run.success, "{body} was accepted: {}", run.stdout);
        assert!(run.stderr.contains("Code: InvalidArgument") && run.stderr.contains(field), "{}", run.stderr);
    }
}
