//! What Start and the other calls refuse before anything runs, naming the field and why: bad
//! repository URLs (natively and over gRPC-web alike), every bad field, unknown or malformed task
//! ids, and a Start past the task limit until a task ends.

use autopilot_contract::v1::{
    AgentOptions, CancelRequest, StartRequest, StatusRequest, StreamEventsRequest, TaskState,
};
use autopilot_tests::{
    events::{finished, stream_all},
    grpc_web::grpc_web_client,
    service::{ServiceFixture, ServiceOptions},
};
use tonic::Code;

use crate::{http1::http_get, start_request, with_timeout};

#[tokio::test]
async fn bad_repository_urls_are_refused_before_git_runs() {
    let setup = ServiceFixture::start_with(ServiceOptions { allow_local_repos: false, ..Default::default() }).await;
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
    let setup = ServiceFixture::start().await;
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
    let setup = ServiceFixture::start_with(ServiceOptions {
        extra_args: vec!["--max-tasks".into(), "1".into()],
        ..Default::default()
    })
    .await;
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
