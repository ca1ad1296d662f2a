//! The service's credentials: without an API key it runs and its tasks say what is missing; the
//! key and a repository URL's credentials never appear in events, Status, errors or logs.

use autopilot_contract::v1::{StartRequest, StatusRequest, TaskState};
use autopilot_tests::{
    events::{finished, first_tool_result, stream_all},
    service::{ServiceFixture, ServiceOptions, CANARY_API_KEY},
};

use crate::start_request;

#[tokio::test]
async fn without_an_api_key_the_service_runs_and_tasks_say_what_is_missing() {
    let setup = ServiceFixture::start_with(ServiceOptions { api_key: None, ..Default::default() }).await;
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
    let setup = ServiceFixture::start().await;
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
