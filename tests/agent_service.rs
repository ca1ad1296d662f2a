//! End-to-end tests of the agent-service: the real binary on a loopback port, real git on local
//! bare repositories, the real Claude Code CLI, and real clients (native gRPC and gRPC-web).
//! Only the model API is fake (`support/fake_model_api.rs`); each test picks its script with a
//! `SCENARIO:` marker in the prompt. Tunnel mode's frames are driven through a stand-in edge
//! (a WebSocket server the real `agent-service connect` connects out to).

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use autopilot_contract::v1::{
    autopilot_client::AutopilotClient, client_frame::Request as FrameRequest, event::Payload, server_frame::Frame,
    AgentOptions, CancelRequest, ClientFrame, ListTasksRequest, ListTasksResponse, ServerFrame, ServerFrameBatch,
    StartRequest, StatusRequest, StreamEventsRequest, TaskState,
};
use autopilot_tests::{
    events::{collect, finished, first_tool_result, kind, milestones, seqs, stream_all, LIST_FILES_MILESTONES},
    fake_model_api::{FakeModelApi, API_ERROR_MESSAGE},
    git_fixture::GitFixture,
    grpc_web::grpc_web_client,
    processes::processes_under,
    service::{Service, ServiceOptions, CANARY_API_KEY},
    tunnel_machine::Machine,
};
use futures::{SinkExt, StreamExt};
use prost::Message;
use tonic::Code;

/// The pieces every test needs: the fake model API, a repository, and the running service.
struct Setup {
    _model_api: FakeModelApi,
    repo: GitFixture,
    service: Service,
}

async fn setup_with(options: ServiceOptions) -> Setup {
    let model_api = FakeModelApi::start().await.unwrap();
    let service = Service::start(&model_api, options).await;
    Setup { _model_api: model_api, repo: GitFixture::new(), service }
}

async fn setup() -> Setup {
    setup_with(ServiceOptions::default()).await
}

fn start_request(repo: &GitFixture, prompt: &str) -> StartRequest {
    StartRequest { repository_url: repo.url(), prompt: prompt.into(), ..Default::default() }
}

fn with_timeout(mut request: StartRequest, seconds: i64) -> StartRequest {
    request.options =
        Some(AgentOptions { timeout: Some(pbjson_types::Duration { seconds, nanos: 0 }), ..Default::default() });
    request
}

/// Waits until the task has recorded an event of `wanted` kind (prefix match); returns all so far.
async fn wait_for_kind(setup: &Setup, task_id: &str, wanted: &str) -> Vec<autopilot_contract::v1::Event> {
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

#[tokio::test]
async fn a_task_runs_from_start_to_succeeded_with_ordered_events() {
    let setup = setup().await;
    let mut client = setup.service.client().await;
    let started = client
        .start(start_request(&setup.repo, "SCENARIO:list-files What is in this repository?"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(started.state(), TaskState::Pending);

    let events = stream_all(&mut client, &started.task_id, 1).await;
    assert_eq!(seqs(&events), (1..=events.len() as u64).collect::<Vec<_>>(), "seqs are dense from 1");
    assert!(events.iter().all(|e| e.task_id == started.task_id && e.time.is_some()));
    assert_eq!(milestones(&events), LIST_FILES_MILESTONES);
    assert!(events.iter().any(|e| kind(e) == "git_progress"), "clone progress is reported");
    let usage_positions: Vec<usize> =
        events.iter().enumerate().filter(|(_, e)| kind(e) == "usage").map(|(i, _)| i).collect();
    let text_position = events.iter().position(|e| kind(e) == "agent_text").unwrap();
    assert!(usage_positions.first().unwrap() < &text_position, "usage arrives while the agent works");

    // The tool really ran in the clone: its output lists the repository's files.
    let tool = first_tool_result(&events);
    assert!(!tool.is_error);
    assert_eq!(tool.output.lines().collect::<Vec<_>>(), ["README.md", "main.rs"]);
    let Some(Payload::ToolStarted(call)) =
        events.iter().find(|e| kind(e).starts_with("tool_started")).and_then(|e| e.payload.clone())
    else {
        unreachable!()
    };
    assert_eq!(serde_json::from_str::<serde_json::Value>(&call.input_json).unwrap()["command"], "ls -1");
    assert_eq!(call.tool_id, tool.tool_id);

    let end = finished(&events);
    assert!(end.result.contains("README.md"), "{}", end.result);
    assert!(end.error.is_empty());
    assert_eq!(end.num_turns, 2);
    let usage = end.usage.unwrap();
    assert!(usage.input_tokens > 0 && usage.output_tokens > 0 && usage.cost_usd > 0.0, "{usage:?}");

    let task =
        client.status(StatusRequest { task_id: started.task_id.clone() }).await.unwrap().into_inner().task.unwrap();
    assert_eq!(task.state(), TaskState::Succeeded);
    assert_eq!(task.last_seq, events.len() as u64);
    assert_eq!(task.commit, setup.repo.rev_parse("main"));
    assert_eq!(task.result, end.result);
    assert!(!task.session_id.is_empty());
    assert!(task.create_time.is_some() && task.start_time.is_some() && task.end_time.is_some());
    assert!((task.usage.unwrap().cost_usd - usage.cost_usd).abs() < 1e-12);
    // With no id, Status describes the most recent task.
    let latest = client.status(StatusRequest::default()).await.unwrap().into_inner().task.unwrap();
    assert_eq!(latest.task_id, started.task_id);
}

#[tokio::test]
async fn refs_check_out_the_named_branch_tag_or_commit() {
    let setup = setup().await;
    let mut client = setup.service.client().await;
    for (git_ref, expected) in
        [("feature", "feature"), ("v1", "v1"), (setup.repo.rev_parse("feature").as_str(), "feature")]
    {
        let request =
            StartRequest { git_ref: git_ref.to_string(), ..start_request(&setup.repo, "SCENARIO:list-files") };
        let started = client.start(request).await.unwrap().into_inner();
        let events = stream_all(&mut client, &started.task_id, 1).await;
        assert_eq!(finished(&events).state(), TaskState::Succeeded, "{git_ref}: {:?}", finished(&events).error);
        let task = client.status(StatusRequest { task_id: started.task_id }).await.unwrap().into_inner().task.unwrap();
        assert_eq!(task.commit, setup.repo.rev_parse(expected), "ref {git_ref}");
        assert_eq!(task.git_ref, git_ref);
    }
}

#[tokio::test]
async fn replay_from_the_start_and_the_middle_during_and_after_the_task() {
    let setup = setup().await;
    let mut client = setup.service.client().await;
    let started =
        client.start(start_request(&setup.repo, "SCENARIO:many-tools:12 step through")).await.unwrap().into_inner();
    let id = started.task_id.clone();

    // During the task: one subscriber from the start, one from the middle of what exists so far.
    let from_start = {
        let mut client = setup.service.client().await;
        let id = id.clone();
        tokio::spawn(async move { stream_all(&mut client, &id, 1).await })
    };
    let so_far = wait_for_kind(&setup, &id, "tool_finished").await;
    let middle = so_far.len() as u64 / 2 + 1;
    let from_middle = {
        let mut client = setup.service.client().await;
        let id = id.clone();
        tokio::spawn(async move { stream_all(&mut client, &id, middle).await })
    };
    let all = from_start.await.unwrap();
    let total = all.len() as u64;
    assert!(total > 40, "a long task: {total} events");
    assert_eq!(finished(&all).state(), TaskState::Succeeded);
    assert_eq!(seqs(&all), (1..=total).collect::<Vec<_>>());
    assert_eq!(seqs(&from_middle.await.unwrap()), (middle..=total).collect::<Vec<_>>());

    // After the task: the same events again, from any point, identical to the live ones.
    assert_eq!(stream_all(&mut client, &id, 0).await, all);
    let late_middle = total - 7;
    assert_eq!(stream_all(&mut client, &id, late_middle).await, all[(late_middle - 1) as usize..].to_vec());
    assert_eq!(stream_all(&mut client, &id, total).await.len(), 1);
    assert!(
        stream_all(&mut client, &id, total + 1).await.is_empty(),
        "past the end of an ended task: nothing, and the stream ends"
    );
}

#[tokio::test]
async fn two_concurrent_subscribers_get_the_same_events() {
    let setup = setup().await;
    let mut client = setup.service.client().await;
    let started = client.start(start_request(&setup.repo, "SCENARIO:many-tools:5")).await.unwrap().into_inner();
    let subscribe = || {
        let id = started.task_id.clone();
        let addr = setup.service.addr;
        tokio::spawn(async move {
            let mut client =
                autopilot_contract::v1::autopilot_client::AutopilotClient::connect(format!("http://{addr}"))
                    .await
                    .unwrap();
            stream_all(&mut client, &id, 1).await
        })
    };
    let (first, second) = (subscribe(), subscribe());
    let (first, second) = (first.await.unwrap(), second.await.unwrap());
    assert_eq!(first, second);
    assert_eq!(seqs(&first), (1..=first.len() as u64).collect::<Vec<_>>());
    assert_eq!(finished(&first).state(), TaskState::Succeeded);
}

#[tokio::test]
async fn cancel_stops_the_agent_and_its_process_group() {
    let setup = setup().await;
    let mut client = setup.service.client().await;
    let started = client.start(start_request(&setup.repo, "SCENARIO:hang think forever")).await.unwrap().into_inner();
    wait_for_kind(&setup, &started.task_id, "agent_started").await;
    let repo_dir = setup.service.work_dir.join("tasks").join(&started.task_id).join("repo");
    assert!(!processes_under(&repo_dir).is_empty(), "the agent runs in the clone");

    let cancelled = client
        .cancel(CancelRequest { task_id: started.task_id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.state(), TaskState::Cancelled);
    let events = stream_all(&mut client, &started.task_id, 1).await;
    let end = finished(&events);
    assert_eq!(end.state(), TaskState::Cancelled);
    assert_eq!(end.error, "cancelled by request");
    assert_eq!(processes_under(&repo_dir), Vec::<(u32, String)>::new(), "no process of the task survives");

    // Cancelling again changes nothing; cancelling with no running task is refused.
    let again = client
        .cancel(CancelRequest { task_id: started.task_id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.state(), TaskState::Cancelled);
    assert_eq!(client.cancel(CancelRequest::default()).await.unwrap_err().code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn a_task_past_its_timeout_ends_timed_out() {
    let setup = setup().await;
    let mut client = setup.service.client().await;
    let started =
        client.start(with_timeout(start_request(&setup.repo, "SCENARIO:hang"), 3)).await.unwrap().into_inner();
    let events = stream_all(&mut client, &started.task_id, 1).await;
    let end = finished(&events);
    assert_eq!(end.state(), TaskState::TimedOut);
    assert!(end.error.contains("timeout of 3s"), "{}", end.error);
    let duration = end.duration.unwrap();
    assert!((3..10).contains(&duration.seconds), "{duration:?}");
}

#[tokio::test]
async fn an_api_error_fails_the_task_with_its_message() {
    let setup = setup().await;
    let mut client = setup.service.client().await;
    let started = client.start(start_request(&setup.repo, "SCENARIO:api-error")).await.unwrap().into_inner();
    let events = stream_all(&mut client, &started.task_id, 1).await;
    let end = finished(&events);
    assert_eq!(end.state(), TaskState::Failed);
    assert!(end.error.contains(API_ERROR_MESSAGE), "{}", end.error);
    let task = client.status(StatusRequest { task_id: started.task_id }).await.unwrap().into_inner().task.unwrap();
    assert_eq!((task.state(), task.error), (TaskState::Failed, end.error));
}

#[tokio::test]
async fn a_clone_failure_fails_the_task_with_gits_message() {
    let setup = setup().await;
    let mut client = setup.service.client().await;
    let request =
        StartRequest { repository_url: "file:///nonexistent/repo.git".into(), ..start_request(&setup.repo, "hi") };
    let started = client.start(request).await.unwrap().into_inner();
    let events = stream_all(&mut client, &started.task_id, 1).await;
    let end = finished(&events);
    assert_eq!(end.state(), TaskState::Failed);
    assert!(end.error.contains("git fetch failed") && end.error.contains("/nonexistent/repo.git"), "{}", end.error);
    let request = StartRequest { git_ref: "no-such-branch".into(), ..start_request(&setup.repo, "hi") };
    let started = client.start(request).await.unwrap().into_inner();
    let end = finished(&stream_all(&mut client, &started.task_id, 1).await);
    assert!(end.error.contains("no-such-branch"), "{}", end.error);
}

#[tokio::test]
async fn bad_repository_urls_are_refused_before_git_runs() {
    let setup = setup_with(ServiceOptions { allow_local_repos: false, ..Default::default() }).await;
    let mut client = setup.service.client().await;
    let mut web = grpc_web_client(setup.service.addr);
    let long = format!("https://example.com/{}", "a".repeat(3000));
    let bad_urls = [
        "",
        "ext::sh -c touch% /tmp/pwned",
        "--upload-pack=touch /tmp/pwned",
        "-u",
        "fd::3",
        "http://example.com/plain-http.git",
        "git://example.com/r.git",
        "ftp://example.com/r.git",
        "file:///etc",
        "/etc",
        "relative/dir",
        "https://",
        "https://exa mple.com/r.git",
        "https://example.com/r.git\n--upload-pack=x",
        long.as_str(),
    ];
    for url in bad_urls {
        let request = StartRequest { repository_url: url.into(), ..start_request(&setup.repo, "hi") };
        let native = client.start(request.clone()).await.unwrap_err();
        assert_eq!(native.code(), Code::InvalidArgument, "{url:?}: {native:?}");
        assert!(native.message().starts_with("repository_url "), "{url:?}: {}", native.message());
        let over_web = web.start(request).await.unwrap_err();
        assert_eq!(
            (over_web.code(), over_web.message()),
            (Code::InvalidArgument, native.message()),
            "gRPC-web: {url:?}"
        );
    }
    // No task was ever created, and the service keeps serving.
    assert_eq!(client.status(StatusRequest::default()).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(http_get(setup.service.addr, "/ping").0, 200);
}

#[tokio::test]
async fn every_bad_field_is_named_in_an_invalid_argument_error() {
    let setup = setup().await;
    let mut client = setup.service.client().await;
    let base = start_request(&setup.repo, "hi");
    let options = |o: AgentOptions| StartRequest { options: Some(o), ..base.clone() };
    let cases = [
        (StartRequest { prompt: String::new(), ..base.clone() }, "prompt is required"),
        (StartRequest { prompt: "x".repeat(100_001), ..base.clone() }, "prompt is 100001 bytes long"),
        (StartRequest { git_ref: "--output=/etc/passwd".into(), ..base.clone() }, "git_ref"),
        (
            options(AgentOptions { model: "claude$(rm -rf /)".into(), ..Default::default() }),
            "options.model contains '$'",
        ),
        (options(AgentOptions { max_turns: -3, ..Default::default() }), "options.max_turns must be between 0"),
        (
            options(AgentOptions { max_budget_usd: -1.0, ..Default::default() }),
            "options.max_budget_usd must be between 0",
        ),
        (with_timeout(base.clone(), -10), "options.timeout must be positive"),
        (with_timeout(base.clone(), 90 * 86_400), "options.timeout must be at most"),
    ];
    for (request, expected) in cases {
        let status = client.start(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with(expected), "expected {expected:?}, got {:?}", status.message());
    }
    for status in [
        client.status(StatusRequest { task_id: "7d3c0c1e-0000-4000-8000-000000000000".into() }).await.unwrap_err(),
        client
            .cancel(CancelRequest { task_id: "7d3c0c1e-0000-4000-8000-000000000000".into(), ..Default::default() })
            .await
            .unwrap_err(),
        client
            .stream_events(StreamEventsRequest { task_id: "7d3c0c1e-0000-4000-8000-000000000000".into(), from_seq: 1 })
            .await
            .unwrap_err(),
    ] {
        assert_eq!(status.code(), Code::NotFound);
        assert!(status.message().contains("no task with id 7d3c0c1e"), "{}", status.message());
    }
    let odd = client.status(StatusRequest { task_id: "../../etc/passwd".into() }).await.unwrap_err();
    assert_eq!(odd.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn a_start_past_the_task_limit_is_refused_until_one_ends() {
    let setup =
        setup_with(ServiceOptions { extra_args: vec!["--max-tasks".into(), "1".into()], ..Default::default() }).await;
    let mut client = setup.service.client().await;
    let first = client.start(start_request(&setup.repo, "SCENARIO:hang")).await.unwrap().into_inner();
    let refused = client.start(start_request(&setup.repo, "another")).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(refused.message(), "1 task is running, the limit; wait for it to end or cancel it");
    let reason = CancelRequest { reason: "the user's credits ran out".into(), ..Default::default() };
    assert_eq!(client.cancel(reason).await.unwrap().into_inner().state(), TaskState::Cancelled);
    let end = finished(&stream_all(&mut client, &first.task_id, 1).await);
    assert_eq!(end.error, "cancelled: the user's credits ran out", "the caller's reason is the task's error");
    let second = client.start(start_request(&setup.repo, "SCENARIO:answer")).await.unwrap().into_inner();
    assert_eq!(finished(&stream_all(&mut client, &second.task_id, 1).await).state(), TaskState::Succeeded);
}

#[tokio::test]
async fn grpc_web_over_http1_streams_a_whole_task() {
    let setup = setup().await;
    let mut web = grpc_web_client(setup.service.addr);
    let started = web.start(start_request(&setup.repo, "SCENARIO:write-file")).await.unwrap().into_inner();
    let stream = web
        .stream_events(StreamEventsRequest { task_id: started.task_id.clone(), from_seq: 1 })
        .await
        .unwrap()
        .into_inner();
    let events = collect(stream).await;
    assert_eq!(seqs(&events), (1..=events.len() as u64).collect::<Vec<_>>());
    assert_eq!(finished(&events).state(), TaskState::Succeeded);
    let tool = first_tool_result(&events);
    assert_eq!(tool.output.trim(), "hello from the agent");
    let file = setup.service.work_dir.join("tasks").join(&started.task_id).join("repo/AGENT_NOTES.md");
    assert_eq!(std::fs::read_to_string(file).unwrap(), "hello from the agent\n");
    let status = web.status(StatusRequest { task_id: started.task_id }).await.unwrap().into_inner();
    assert_eq!(status.task.unwrap().state(), TaskState::Succeeded);
}

#[tokio::test]
async fn malformed_grpc_web_bodies_get_a_grpc_error_and_the_service_keeps_serving() {
    let setup = setup().await;
    let addr = setup.service.addr;
    let garbage_message = {
        let mut frame = vec![0u8, 0, 0, 0, 4];
        frame.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        frame
    };
    let truncated_frame = vec![0u8, 0, 0, 1, 0, 1, 2, 3];
    let start = StartRequest { repository_url: "x".into(), ..Default::default() }.encode_to_vec();
    let compressed_flag = [&[1u8, 0, 0, 0, start.len() as u8][..], &start].concat();
    for body in [garbage_message, truncated_frame, compressed_flag, b"not grpc at all".to_vec()] {
        let (status, headers, _) =
            http_post(addr, "/autopilot.v1.Autopilot/Start", "application/grpc-web+proto", &body);
        assert_eq!(status, 200, "gRPC-web errors travel as grpc-status, not HTTP status");
        let grpc_status = headers.iter().find(|(k, _)| k == "grpc-status").map(|(_, v)| v.clone());
        assert!(matches!(grpc_status.as_deref(), Some(s) if s != "0"), "{headers:?}");
    }
    assert_eq!(http_get(addr, "/ping"), (200, "ok".to_string()));
    let mut client = setup.service.client().await;
    let started = client.start(start_request(&setup.repo, "SCENARIO:answer")).await.unwrap().into_inner();
    assert_eq!(finished(&stream_all(&mut client, &started.task_id, 1).await).state(), TaskState::Succeeded);
}

#[tokio::test]
async fn ping_answers_over_http1() {
    let setup = setup().await;
    assert_eq!(http_get(setup.service.addr, "/ping"), (200, "ok".to_string()));
    assert_eq!(http_get(setup.service.addr, "/no-such-page").0, 404);
}

#[tokio::test]
async fn no_web_page_may_call_the_service_unless_its_origin_is_named() {
    let preflight = |origin| {
        [
            ("Origin", origin),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "x-grpc-web"),
        ]
    };
    let closed = setup().await;
    let addr = closed.service.addr;
    let (status, headers, _) = grpc_web_status(addr, &[("Origin", "https://evil.example")]);
    assert_eq!((status, header(&headers, "access-control-allow-origin")), (200, None), "{headers:?}");
    let (_, headers, _) =
        http_send(addr, "OPTIONS", "/autopilot.v1.Autopilot/Status", &preflight("https://evil.example"), &[]);
    assert_eq!(header(&headers, "access-control-allow-origin"), None, "a preflight gets no CORS either: {headers:?}");

    let open = setup_with(ServiceOptions {
        extra_args: vec!["--cors-origin".into(), "https://ok.example".into()],
        ..Default::default()
    })
    .await;
    let addr = open.service.addr;
    let (status, headers, _) = grpc_web_status(addr, &[("Origin", "https://ok.example")]);
    assert_eq!((status, header(&headers, "access-control-allow-origin")), (200, Some("https://ok.example")));
    assert!(header(&headers, "access-control-expose-headers").is_some_and(|h| h.contains("grpc-status")));
    let (_, headers, _) =
        http_send(addr, "OPTIONS", "/autopilot.v1.Autopilot/Status", &preflight("https://ok.example"), &[]);
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("https://ok.example"), "{headers:?}");
    let (_, headers, _) = grpc_web_status(addr, &[("Origin", "https://evil.example")]);
    assert_eq!(header(&headers, "access-control-allow-origin"), None, "{headers:?}");
    let (_, headers, _) =
        http_send(addr, "OPTIONS", "/autopilot.v1.Autopilot/Status", &preflight("https://evil.example"), &[]);
    assert_eq!(header(&headers, "access-control-allow-origin"), None, "{headers:?}");
}

#[tokio::test]
async fn requests_for_a_host_the_service_does_not_answer_to_are_refused() {
    let setup = setup().await;
    let addr = setup.service.addr;
    // DNS rebinding: a page on evil.example whose name now points at this machine.
    let (status, _, body) = grpc_web_status(addr, &[("Host", "evil.example:8080")]);
    assert_eq!(status, 403);
    assert_eq!(
        String::from_utf8_lossy(&body),
        "host evil.example is not allowed here; start the service with --allowed-host evil.example to serve it\n"
    );
    // Over HTTP/2 the name is the :authority; the 403 carries a gRPC status for gRPC clients.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .origin("http://evil.example".parse().unwrap())
        .connect()
        .await
        .unwrap();
    let refused = AutopilotClient::new(channel).status(StatusRequest::default()).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("start the service with --allowed-host evil.example"), "{refused:?}");
    // Health checks may use any name; the names the service is known by pass, on any port.
    assert_eq!(http_send(addr, "GET", "/ping", &[("Host", "evil.example")], &[]).0, 200);
    for host in ["localhost", "localhost:8080", "127.0.0.1", &addr.to_string(), "[::1]:9"] {
        let (status, headers, _) = grpc_web_status(addr, &[("Host", host)]);
        assert_eq!((status, header(&headers, "grpc-status")), (200, Some("5")), "{host}: NOT_FOUND, no task yet");
    }
    let mut client = setup.service.client().await;
    assert_eq!(client.status(StatusRequest::default()).await.unwrap_err().code(), Code::NotFound, "still serving");

    let named = setup_with(ServiceOptions {
        extra_args: vec!["--allowed-host".into(), "evil.example".into()],
        ..Default::default()
    })
    .await;
    let (status, headers, _) = grpc_web_status(named.service.addr, &[("Host", "evil.example")]);
    assert_eq!((status, header(&headers, "grpc-status")), (200, Some("5")), "{headers:?}");
}

#[tokio::test]
async fn reflection_lists_the_service_in_v1_and_v1alpha() {
    use tonic_reflection::pb::{v1, v1alpha};
    let setup = setup().await;
    let channel = setup.service.channel().await;

    let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let mut replies = client.server_reflection_info(futures::stream::iter([request])).await.unwrap().into_inner();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        replies.message().await.unwrap().unwrap().message_response
    else {
        panic!("not a list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"autopilot.v1.Autopilot".to_string()), "{names:?}");

    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
            "autopilot.v1.Autopilot".into(),
        )),
    };
    let mut replies = client.server_reflection_info(futures::stream::iter([request])).await.unwrap().into_inner();
    let Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        replies.message().await.unwrap().unwrap().message_response
    else {
        panic!("no descriptor")
    };
    assert!(!files.file_descriptor_proto.is_empty());
}

#[tokio::test]
async fn health_reports_serving() {
    use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest};
    let setup = setup().await;
    let channel = setup.service.channel().await;
    let mut health = HealthClient::new(channel);
    for service in ["", "autopilot.v1.Autopilot"] {
        let reply = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(reply.status(), ServingStatus::Serving, "{service:?}");
    }
}

#[tokio::test]
async fn sigterm_mid_task_delivers_the_final_event_and_exits_cleanly() {
    let mut setup = setup().await;
    let mut client = setup.service.client().await;
    let started = client.start(start_request(&setup.repo, "SCENARIO:hang")).await.unwrap().into_inner();
    wait_for_kind(&setup, &started.task_id, "agent_started").await;
    let stream = client
        .stream_events(StreamEventsRequest { task_id: started.task_id.clone(), from_seq: 1 })
        .await
        .unwrap()
        .into_inner();
    let follower = tokio::spawn(collect(stream));
    setup.service.process.terminate();
    let events = follower.await.unwrap();
    let end = finished(&events);
    assert_eq!(end.state(), TaskState::Cancelled);
    assert_eq!(end.error, "the service is shutting down");
    let status = setup.service.process.wait(Duration::from_secs(20)).await.expect("the service exits");
    assert_eq!(status.code(), Some(0), "{status:?}");

    // Nothing recorded is lost: a restarted service on the same work directory replays the task.
    let work_dir = setup.service.work_dir.clone();
    let restarted =
        Service::start(&setup._model_api, ServiceOptions { work_dir: Some(work_dir), ..Default::default() }).await;
    let mut client = restarted.client().await;
    assert_eq!(stream_all(&mut client, &started.task_id, 1).await, events);
    let task = client.status(StatusRequest::default()).await.unwrap().into_inner().task.unwrap();
    assert_eq!((task.state(), task.task_id), (TaskState::Cancelled, started.task_id));
}

#[tokio::test]
async fn without_an_api_key_the_service_runs_and_tasks_say_what_is_missing() {
    let setup = setup_with(ServiceOptions { api_key: None, ..Default::default() }).await;
    assert!(
        setup.service.logs().iter().any(|l| l.contains("ANTHROPIC_API_KEY is not set")),
        "the log says what is missing"
    );
    let mut client = setup.service.client().await;
    let started = client.start(start_request(&setup.repo, "hi")).await.unwrap().into_inner();
    let end = finished(&stream_all(&mut client, &started.task_id, 1).await);
    assert_eq!(end.state(), TaskState::Failed);
    assert!(end.error.contains("ANTHROPIC_API_KEY is not set"), "{}", end.error);
}

#[tokio::test]
async fn secrets_never_appear_in_events_status_errors_or_logs() {
    let setup = setup().await;
    let mut client = setup.service.client().await;
    // The agent prints its whole environment, API key included, through a real tool call.
    let started = client.start(start_request(&setup.repo, "SCENARIO:print-env")).await.unwrap().into_inner();
    let events = stream_all(&mut client, &started.task_id, 1).await;
    assert_eq!(finished(&events).state(), TaskState::Succeeded);
    let tool = first_tool_result(&events);
    assert!(tool.output.contains("ANTHROPIC_API_KEY=***"), "the key was there, masked: {}", tool.output);
    assert!(!tool.output.contains("AWS_") && tool.output.contains("ANTHROPIC_BASE_URL="));

    // Credentials in a repository URL are used for git but masked everywhere else.
    let request = StartRequest {
        repository_url: "https://bob:hunter2-token@127.0.0.1:9/r.git".into(),
        ..start_request(&setup.repo, "hi")
    };
    let with_credentials = client.start(request).await.unwrap().into_inner();
    let failed = stream_all(&mut client, &with_credentials.task_id, 1).await;
    let status = client.status(StatusRequest { task_id: with_credentials.task_id }).await.unwrap().into_inner();
    assert_eq!(status.task.as_ref().unwrap().repository_url, "https://***@127.0.0.1:9/r.git");

    let mut everything: Vec<String> = events.iter().chain(&failed).map(|e| format!("{e:?}")).collect();
    everything.push(format!("{status:?}"));
    everything.push(format!("{:?}", client.status(StatusRequest { task_id: started.task_id }).await.unwrap()));
    everything.extend(setup.service.logs());
    for secret in [CANARY_API_KEY, "hunter2-token"] {
        let leaks: Vec<&String> = everything.iter().filter(|text| text.contains(secret)).collect();
        assert!(leaks.is_empty(), "{secret} leaked: {leaks:?}");
    }
}

/// Runs a task to its end; answers its id.
async fn run_to_end(setup: &Setup, prompt: &str) -> String {
    let mut client = setup.service.client().await;
    let started = client.start(start_request(&setup.repo, prompt)).await.unwrap().into_inner();
    let end = finished(&stream_all(&mut client, &started.task_id, 1).await);
    assert_eq!(end.state(), TaskState::Succeeded, "{prompt}: {}", end.error);
    started.task_id
}

async fn list(setup: &Setup, page_size: i32, page_token: &str) -> Result<ListTasksResponse, tonic::Status> {
    let request = ListTasksRequest { page_size, page_token: page_token.into() };
    setup.service.client().await.list_tasks(request).await.map(tonic::Response::into_inner)
}

fn listed_ids(page: &ListTasksResponse) -> Vec<&str> {
    page.tasks.iter().map(|t| t.task_id.as_str()).collect()
}

#[tokio::test]
async fn list_tasks_pages_the_history_newest_first_with_masked_titles() {
    let options = ServiceOptions::default();
    let mut setup = setup_with(options.clone()).await;
    let empty = list(&setup, 0, "").await.unwrap();
    assert_eq!((empty.tasks.len(), empty.next_page_token.as_str()), (0, ""), "no task has run yet");

    let first = run_to_end(&setup, "  SCENARIO:answer Summarise the repository  \nin three bullet points").await;
    let second = run_to_end(
        &setup,
        &format!("SCENARIO:answer Use {CANARY_API_KEY} and https://bob:hunter2-token@example.com/r.git\nnothing else"),
    )
    .await;
    let long_line = format!("SCENARIO:answer {}", "é".repeat(300));
    // The third is listed while it runs, then again once it has ended.
    let mut client = setup.service.client().await;
    let third = client.start(start_request(&setup.repo, &long_line)).await.unwrap().into_inner().task_id;
    let running = list(&setup, 1, "").await.unwrap();
    assert_eq!(listed_ids(&running), [third.as_str()]);
    assert!(!running.tasks[0].state().is_final() && running.tasks[0].end_time.is_none(), "{:?}", running.tasks[0]);
    assert!(!running.next_page_token.is_empty());
    assert_eq!(finished(&stream_all(&mut client, &third, 1).await).state(), TaskState::Succeeded);

    let page_one = list(&setup, 2, "").await.unwrap();
    assert_eq!(listed_ids(&page_one), [third.as_str(), second.as_str()], "the newest two");
    assert!(!page_one.next_page_token.is_empty());
    let page_two = list(&setup, 2, &page_one.next_page_token).await.unwrap();
    assert_eq!(listed_ids(&page_two), [first.as_str()]);
    assert_eq!(page_two.next_page_token, "", "the last page has no next token");

    let titles: Vec<&str> = page_one.tasks.iter().chain(&page_two.tasks).map(|t| t.title.as_str()).collect();
    let expected_long: String = long_line.chars().take(200).collect();
    assert_eq!(
        titles,
        [
            expected_long.as_str(),
            "SCENARIO:answer Use *** and https://***@example.com/r.git",
            "SCENARIO:answer Summarise the repository",
        ]
    );
    for summary in page_one.tasks.iter().chain(&page_two.tasks) {
        assert_eq!(summary.state(), TaskState::Succeeded);
        assert_eq!((summary.repository_url.as_str(), summary.git_ref.as_str()), (setup.repo.url().as_str(), ""));
        let (created, ended) = (summary.create_time.unwrap(), summary.end_time.unwrap());
        assert!((ended.seconds, ended.nanos) >= (created.seconds, created.nanos), "{summary:?}");
        assert!(summary.usage.unwrap().input_tokens > 0, "{summary:?}");
        assert_eq!((summary.branch.as_str(), summary.commit.as_str()), ("", ""), "the answers changed nothing");
    }
    let everything = list(&setup, 100, "").await.unwrap();
    assert_eq!(listed_ids(&everything), [third.as_str(), second.as_str(), first.as_str()]);
    assert_eq!(everything.next_page_token, "");
    let shown = format!("{everything:?}");
    assert!(!shown.contains(CANARY_API_KEY) && !shown.contains("hunter2-token"), "a secret leaked: {shown}");

    // The list, titles included, survives a restart; an earlier token still continues it.
    setup.service.restart_after_crash(&setup._model_api, &options).await;
    assert_eq!(list(&setup, 100, "").await.unwrap(), everything);
    assert_eq!(list(&setup, 2, &page_one.next_page_token).await.unwrap(), page_two);
}

#[tokio::test]
async fn list_tasks_refuses_hostile_page_sizes_and_tokens() {
    let setup = setup().await;
    for page_size in [-1, 101, i32::MIN, i32::MAX] {
        let status = list(&setup, page_size, "").await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{page_size}: {status:?}");
        assert!(status.message().starts_with("page_size must be between 1 and 100"), "{}", status.message());
    }
    // The service's encoding and shape, but a task id no task has: "v1:1:0:../../etc".
    let forged = "djE6MTowOi4uLy4uL2V0Yw";
    for token in ["xyz", &"a".repeat(10_000), forged, "%%%", "dj E6MTow"] {
        let status = list(&setup, 0, &token).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{token:?}: {status:?}");
        assert_eq!(status.message(), "page_token is not one this service handed out");
    }
    assert_eq!(list(&setup, 100, "").await.unwrap(), ListTasksResponse::default(), "the service still answers");
}

/// The edge's side of tunnel mode, as little of it as the machine needs: a WebSocket server the
/// machine connects out to, sending `ClientFrame`s and reading the `ServerFrame`s of its batches.
struct StandInEdge {
    socket: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    received: std::collections::VecDeque<ServerFrame>,
}

impl StandInEdge {
    /// Listens on loopback; `connect` starts the machine against the URL, then the edge accepts it.
    async fn accept(connect: impl FnOnce(&str) -> Machine) -> (StandInEdge, Machine) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let machine = connect(&format!("http://{}", listener.local_addr().unwrap()));
        let (stream, _) = tokio::time::timeout(Duration::from_secs(30), listener.accept())
            .await
            .expect("the machine connects")
            .unwrap();
        let socket = tokio_tungstenite::accept_async(stream).await.unwrap();
        (StandInEdge { socket, received: Default::default() }, machine)
    }

    async fn send(&mut self, request_id: &str, request: FrameRequest) {
        let frame = ClientFrame { request_id: request_id.into(), request: Some(request) };
        self.socket.send(tokio_tungstenite::tungstenite::Message::Binary(frame.encode_to_vec().into())).await.unwrap();
    }

    /// The next frame the machine sent (pings are answered by the socket itself).
    async fn receive(&mut self) -> ServerFrame {
        while self.received.is_empty() {
            let message = tokio::time::timeout(Duration::from_secs(60), self.socket.next())
                .await
                .expect("a frame within 60s")
                .expect("the machine is connected")
                .unwrap();
            if let tokio_tungstenite::tungstenite::Message::Binary(bytes) = message {
                self.received.extend(ServerFrameBatch::decode(bytes.as_ref()).unwrap().frames);
            }
        }
        self.received.pop_front().unwrap()
    }

    /// The answer to a unary request.
    async fn call(&mut self, request_id: &str, request: FrameRequest) -> Frame {
        self.send(request_id, request).await;
        let reply = self.receive().await;
        assert_eq!(reply.request_id, request_id, "{reply:?}");
        reply.frame.expect("a frame")
    }
}

#[tokio::test]
async fn tunnel_mode_answers_list_tasks_and_follow_up_frames_as_the_rpc_does() {
    let model_api = FakeModelApi::start().await.unwrap();
    let repo = GitFixture::new();
    let (mut edge, _machine) = StandInEdge::accept(|url| Machine::connect(&model_api, url, "ap_test-token")).await;

    let start =
        FrameRequest::Start(start_request(&repo, &format!("SCENARIO:answer Through the tunnel {CANARY_API_KEY}")));
    let Frame::Start(started) = edge.call("s", start).await else { panic!("expected a start reply") };
    edge.send("e", FrameRequest::StreamEvents(StreamEventsRequest { task_id: started.task_id.clone(), from_seq: 1 }))
        .await;
    while !matches!(edge.receive().await.frame, Some(Frame::EndOfStream(_))) {}

    let Frame::ListTasks(listed) = edge.call("l", FrameRequest::ListTasks(ListTasksRequest::default())).await else {
        panic!("expected a list_tasks reply")
    };
    assert_eq!(listed_ids(&listed), [started.task_id.as_str()]);
    assert_eq!(listed.tasks[0].title, "SCENARIO:answer Through the tunnel ***");
    assert_eq!((listed.tasks[0].state(), listed.next_page_token.as_str()), (TaskState::Succeeded, ""));

    for (request, field) in [
        (ListTasksRequest { page_size: 101, ..Default::default() }, "page_size"),
        (ListTasksRequest { page_token: "xyz".into(), ..Default::default() }, "page_token"),
    ] {
        let Frame::Error(error) = edge.call("bad", FrameRequest::ListTasks(request)).await else {
            panic!("expected an error")
        };
        assert_eq!(error.code, Code::InvalidArgument as i32, "{error:?}");
        assert!(error.message.starts_with(field), "{error:?}");
    }

    // Follow-ups through frames: the same task machinery, the same refusals.
    let follow_up = StartRequest {
        parent_task_id: started.task_id.clone(),
        prompt: "Once more\nSCENARIO:answer".into(),
        ..Default::default()
    };
    let Frame::Start(continued) = edge.call("f", FrameRequest::Start(follow_up.clone())).await else {
        panic!("expected a start reply")
    };
    edge.send(
        "fe",
        FrameRequest::StreamEvents(StreamEventsRequest { task_id: continued.task_id.clone(), from_seq: 1 }),
    )
    .await;
    let mut last = None;
    loop {
        match edge.receive().await.frame {
            Some(Frame::EndOfStream(_)) => break,
            Some(Frame::Event(event)) => last = Some(event),
            _ => {}
        }
    }
    assert_eq!(finished(&[last.expect("events")]).state(), TaskState::Succeeded);
    let unknown = StartRequest { parent_task_id: "7d3c0c1e-0000-4000-8000-000000000000".into(), ..follow_up };
    let Frame::Error(error) = edge.call("u", FrameRequest::Start(unknown)).await else { panic!("expected an error") };
    assert_eq!(error.code, Code::NotFound as i32, "{error:?}");
    assert_eq!(error.message, "no task with id 7d3c0c1e-0000-4000-8000-000000000000");
}

/// A raw HTTP/1.1 GET: (status, body).
fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let (status, _, body) = http_send(addr, "GET", path, &[], &[]);
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A raw HTTP/1.1 POST: (status, headers, body).
fn http_post(
    addr: std::net::SocketAddr,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    http_send(addr, "POST", path, &[("Content-Type", content_type), ("X-Grpc-Web", "1")], body)
}

/// A raw HTTP/1.1 request with `headers` (`Host: localhost` unless they name one): (status,
/// headers, body).
fn http_send(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
        head.push_str("Host: localhost\r\n");
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    http_request(addr, &request)
}

/// A gRPC-web Status call for the latest task, over HTTP/1.1 with `headers` added: (status,
/// headers, body).
fn grpc_web_status(addr: std::net::SocketAddr, headers: &[(&str, &str)]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let message = StatusRequest::default().encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    let mut all = vec![("Content-Type", "application/grpc-web+proto"), ("X-Grpc-Web", "1")];
    all.extend_from_slice(headers);
    http_send(addr, "POST", "/autopilot.v1.Autopilot/Status", &all, &frame)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Sends one request and reads the whole response (headers and any trailers frame included:
/// gRPC-web puts trailers in the body, so they are parsed from there too).
fn http_request(addr: std::net::SocketAddr, request: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a header block");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let mut body = response[split + 4..].to_vec();
    let mut lines = head.lines();
    let status: u16 = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v == "chunked") {
        body = dechunk(&body);
    }
    // A gRPC-web trailers frame: flag 0x80, then "name: value\r\n" lines.
    if body.first() == Some(&0x80) && body.len() >= 5 {
        let trailers = String::from_utf8_lossy(&body[5..]).into_owned();
        headers.extend(
            trailers
                .lines()
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())),
        );
    }
    (status, headers, body)
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = body.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(String::from_utf8_lossy(&body[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[end + 2..end + 2 + size]);
        body = &body[end + 2 + size + 2..];
    }
}
