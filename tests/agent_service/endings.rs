//! The ways a task ends other than done: Cancel (its whole process group stopped), its timeout,
//! the model API's or git's error, and the service's SIGTERM (the final event delivered, and
//! kept for a restarted service).

use std::time::Duration;

use autopilot_contract::v1::{CancelRequest, StartRequest, StatusRequest, StreamEventsRequest, TaskState};
use autopilot_tests::{
    events::{collect, finished, stream_all},
    fake_model_api::API_ERROR_MESSAGE,
    processes::processes_under,
    service::{Service, ServiceFixture, ServiceOptions},
};
use tonic::Code;

use crate::{start_request, wait_for_kind, with_timeout};

#[tokio::test]
async fn cancel_stops_the_agent_and_its_process_group() {
    let setup = ServiceFixture::start().await;
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
    let setup = ServiceFixture::start().await;
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
    let setup = ServiceFixture::start().await;
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
    let setup = ServiceFixture::start().await;
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
async fn sigterm_mid_task_delivers_the_final_event_and_exits_cleanly() {
    let mut setup = ServiceFixture::start().await;
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
        Service::start(&setup.model_api, ServiceOptions { work_dir: Some(work_dir), ..Default::default() }).await;
    let mut client = restarted.client().await;
    assert_eq!(stream_all(&mut client, &started.task_id, 1).await, events);
    let task = client.status(StatusRequest::default()).await.unwrap().into_inner().task.unwrap();
    assert_eq!((task.state(), task.task_id), (TaskState::Cancelled, started.task_id));
}
