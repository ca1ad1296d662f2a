//! ListTasks: the history paged newest first with masked, cut titles (a running task listed, the
//! list kept across a restart), and hostile page sizes and tokens refused.

use autopilot_contract::v1::{ListTasksRequest, ListTasksResponse, TaskState};
use autopilot_tests::{
    events::{finished, stream_all},
    service::{ServiceFixture, ServiceOptions, CANARY_API_KEY},
};
use tonic::Code;

use crate::{listed_ids, start_request};

/// Runs a task to its end; answers its id.
async fn run_to_end(setup: &ServiceFixture, prompt: &str) -> String {
    let mut client = setup.service.client().await;
    let started = client.start(start_request(&setup.repo, prompt)).await.unwrap().into_inner();
    let end = finished(&stream_all(&mut client, &started.task_id, 1).await);
    assert_eq!(end.state(), TaskState::Succeeded, "{prompt}: {}", end.error);
    started.task_id
}

async fn list(setup: &ServiceFixture, page_size: i32, page_token: &str) -> Result<ListTasksResponse, tonic::Status> {
    let request = ListTasksRequest { page_size, page_token: page_token.into() };
    setup.service.client().await.list_tasks(request).await.map(tonic::Response::into_inner)
}

#[tokio::test]
async fn list_tasks_pages_the_history_newest_first_with_masked_titles() {
    let options = ServiceOptions::default();
    let mut setup = ServiceFixture::start_with(options.clone()).await;
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
    setup.service.restart_after_crash(&setup.model_api, &options).await;
    assert_eq!(list(&setup, 100, "").await.unwrap(), everything);
    assert_eq!(list(&setup, 2, &page_one.next_page_token).await.unwrap(), page_two);
}

#[tokio::test]
async fn list_tasks_refuses_hostile_page_sizes_and_tokens() {
    let setup = ServiceFixture::start().await;
    for page_size in [-1, 101, i32::MIN, i32::MAX] {
        let status = list(&setup, page_size, "").await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{page_size}: {status:?}");
        assert!(status.message().starts_with("page_size must be between 1 and 100"), "{}", status.message());
    }
    // The service's encoding and shape, but a task id no task has: "v1:1:0:../../etc".
    let forged = "djE6MTowOi4uLy4uL2V0Yw";
    for token in ["xyz", &"a".repeat(10_000), forged, "%%%", "dj E6MTow"] {
        let status = list(&setup, 0, token).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{token:?}: {status:?}");
        assert_eq!(status.message(), "page_token is not one this service handed out");
    }
    assert_eq!(list(&setup, 100, "").await.unwrap(), ListTasksResponse::default(), "the service still answers");
}
