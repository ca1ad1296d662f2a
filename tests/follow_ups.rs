//! End-to-end tests of follow-up turns (issue 19): a task that continues an ended task's
//! conversation in a workspace made from the parent's, on the parent's branch; its refusals; and
//! the restore of a parent's workspace in a fresh service (a new container's empty disk) from
//! ExportWorkspace's snapshot, whose transcript has the parent's model credential masked. Real
//! agent-service binary, real git on a local bare repository, the real Claude Code CLI resuming
//! real sessions; only the model API is fake, and it records what conversation reached it.

use autopilot_contract::v1::{
    autopilot_client::AutopilotClient, event::Payload, DeliveryOptions, Event, ExportWorkspaceRequest,
    ListTasksRequest, ModelAccess, StartRequest, StatusRequest, Task, TaskState, WorkspaceSnapshot,
};
use autopilot_tests::{
    events::{finished, first_tool_result, stream_all},
    git_fixture::git,
    service::{ServiceFixture, CANARY_API_KEY},
};
use tonic::{transport::Channel, Code};

/// The first turn's prompt: it writes AGENT_NOTES.md ("hello from the agent").
const PARENT_PROMPT: &str = "Write some notes\nSCENARIO:write-file PARENT-TURN-7d1e";
/// [`PARENT_PROMPT`], whose Bash call also prints the agent's model key ("gateway key: ...").
const PARENT_SHOWING_KEY_PROMPT: &str = "Write some notes\nSCENARIO:write-file-showing-key PARENT-TURN-7d1e";
/// The model credential an edge hands the parent (`model_access`): it must not leave the service.
const TASK_MODEL_KEY: &str = "apmc_task-canary-5e81b04d";
/// The follow-up's prompt: it prints AGENT_NOTES.md and appends a line.
const FOLLOW_UP_PROMPT: &str = "Now extend them\nSCENARIO:read-and-extend FOLLOW-UP-TURN-3a9c";

/// Snapshots can be 16 MiB.
async fn client(setup: &ServiceFixture) -> AutopilotClient<Channel> {
    setup.service.client().await.max_decoding_message_size(32 * 1024 * 1024)
}

fn push() -> Option<DeliveryOptions> {
    Some(DeliveryOptions { push: true, ..Default::default() })
}

/// Starts `request` and follows it to its end: its events and final Task.
async fn run(client: &mut AutopilotClient<Channel>, request: StartRequest) -> (Vec<Event>, Task) {
    let id = client.start(request).await.unwrap().into_inner().task_id;
    let events = stream_all(client, &id, 1).await;
    let task = client.status(StatusRequest { task_id: id }).await.unwrap().into_inner().task.unwrap();
    (events, task)
}

fn follow_up_of(parent: &str) -> StartRequest {
    StartRequest {
        parent_task_id: parent.into(),
        prompt: FOLLOW_UP_PROMPT.into(),
        delivery: push(),
        ..Default::default()
    }
}

/// The follow-up read what the parent wrote, its model calls carried the parent's turn, and the
/// branch moved from the parent's commit to the follow-up's, on top of it.
fn assert_continued(setup: &ServiceFixture, parent: &Task, events: &[Event], follow_up: &Task) {
    assert_eq!(follow_up.state(), TaskState::Succeeded, "{}", follow_up.error);
    assert_eq!(follow_up.parent_task_id, parent.task_id);
    assert_eq!(first_tool_result(events).output.trim(), "hello from the agent", "the parent's file is there");
    assert!(finished(events).result.contains("hello from the agent"));

    let calls = setup.model_api.requests_containing("FOLLOW-UP-TURN-3a9c");
    assert!(!calls.is_empty(), "the follow-up called the model");
    for call in &calls {
        let conversation = call["messages"].to_string();
        assert!(conversation.contains("PARENT-TURN-7d1e"), "the parent's prompt is in the conversation");
        assert!(conversation.contains("I wrote **AGENT_NOTES.md**."), "and the parent's answer");
    }
    assert_ne!(follow_up.session_id, parent.session_id, "a follow-up continues under a session of its own");

    let parent_commit = parent.delivery.as_ref().unwrap().commit.clone();
    let delivery = follow_up.delivery.clone().unwrap();
    let branch = format!("autopilot/{}", parent.task_id);
    assert_eq!(
        (delivery.branch.as_str(), delivery.base_commit.as_str(), delivery.pushed),
        (branch.as_str(), parent_commit.as_str(), true)
    );
    let stats = delivery.stats.unwrap();
    assert_eq!((stats.files_changed, stats.insertions, stats.deletions), (1, 1, 0), "only the follow-up's own change");
    let bare = setup.repo.bare_dir();
    assert_eq!(setup.repo.rev_parse(&format!("refs/heads/{branch}")), delivery.commit);
    assert_eq!(git(&bare, &["rev-parse", &format!("{}^", delivery.commit)]), parent_commit, "on top of the parent's");
    assert_eq!(
        git(&bare, &["show", &format!("{branch}:AGENT_NOTES.md")]),
        "hello from the agent\nmore from the follow-up"
    );
}

#[tokio::test]
async fn a_follow_up_continues_the_parents_conversation_and_workspace_on_its_branch() {
    let setup = ServiceFixture::start().await;
    let mut client = client(&setup).await;
    let first = StartRequest { repository_url: setup.repo.url(), prompt: PARENT_PROMPT.into(), ..Default::default() };
    let (_, parent) = run(&mut client, first).await;
    assert_eq!(parent.state(), TaskState::Succeeded, "{}", parent.error);

    // Repository and ref may be given again if they are the parent's (here with a trailing '/').
    let again = StartRequest { repository_url: format!("{}/", setup.repo.url()), ..follow_up_of(&parent.task_id) };
    let (events, follow_up) = run(&mut client, again).await;
    assert_continued(&setup, &parent, &events, &follow_up);
    assert!(events.iter().any(|e| matches!(&e.payload, Some(Payload::RepositoryReady(r)) if r.commit == parent.delivery.as_ref().unwrap().commit)));

    // The parent's workspace is as it ended (the follow-up had its own), and the list links them.
    let parent_clone = setup.service.work_dir.join("tasks").join(&parent.task_id).join("repo");
    assert_eq!(std::fs::read_to_string(parent_clone.join("AGENT_NOTES.md")).unwrap(), "hello from the agent\n");
    let listed = client.list_tasks(ListTasksRequest::default()).await.unwrap().into_inner().tasks;
    let summary = listed.iter().find(|t| t.task_id == follow_up.task_id).unwrap();
    assert_eq!(summary.parent_task_id, parent.task_id);
}

#[tokio::test]
async fn follow_ups_are_refused_for_a_running_unknown_or_other_repositorys_parent() {
    let setup = ServiceFixture::start().await;
    let mut client = client(&setup).await;
    let hang =
        StartRequest { repository_url: setup.repo.url(), prompt: "Wait\nSCENARIO:hang".into(), ..Default::default() };
    let running = client.start(hang).await.unwrap().into_inner().task_id;
    // Until its clone is done, a cancelled parent would have no workspace (another refusal).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while client.status(StatusRequest { task_id: running.clone() }).await.unwrap().into_inner().task.unwrap().state()
        != TaskState::Running
    {
        assert!(tokio::time::Instant::now() < deadline, "the task did not reach RUNNING");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let refused = client.start(follow_up_of(&running)).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(refused.message(), format!("task {running} is still running; wait for it to end or cancel it"));

    let unknown = "7d3c0c1e-0000-4000-8000-000000000000";
    let refused = client.start(follow_up_of(unknown)).await.unwrap_err();
    assert_eq!(refused.code(), Code::NotFound);
    assert_eq!(refused.message(), format!("no task with id {unknown}"), "the words of any unknown id");

    client
        .cancel(autopilot_contract::v1::CancelRequest { task_id: running.clone(), ..Default::default() })
        .await
        .unwrap();
    let other = StartRequest { repository_url: "file:///srv/other.git".into(), ..follow_up_of(&running) };
    let refused = client.start(other).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().starts_with("repository_url is not the repository of task"), "{}", refused.message());
    let other_ref = StartRequest { git_ref: "feature".into(), ..follow_up_of(&running) };
    assert_eq!(client.start(other_ref).await.unwrap_err().code(), Code::InvalidArgument);
}

#[tokio::test]
async fn an_exported_workspace_is_restored_by_a_fresh_service_and_continued() {
    let mut setup = ServiceFixture::start().await;
    let mut client = client(&setup).await;
    // The parent reaches the model with a credential of its own, and its agent prints it.
    let model_access = ModelAccess { base_url: setup.model_api.base_url.clone(), api_key: TASK_MODEL_KEY.into() };
    let first = StartRequest {
        repository_url: setup.repo.url(),
        prompt: PARENT_SHOWING_KEY_PROMPT.into(),
        model_access: Some(model_access),
        ..Default::default()
    };
    let (_, parent) = run(&mut client, first).await;
    assert_eq!(parent.state(), TaskState::Succeeded, "{}", parent.error);
    assert_eq!(setup.model_api.api_keys(), [TASK_MODEL_KEY], "the parent's agent used its own credential");
    let request = ExportWorkspaceRequest { task_id: parent.task_id.clone() };
    let snapshot = client.export_workspace(request).await.unwrap().into_inner().snapshot.unwrap();
    // The task's secrets are masked in the conversation that leaves the service, and in the copy
    // it keeps (a restarted service would no longer know the credential to mask it).
    let transcript = String::from_utf8_lossy(&snapshot.session_transcript);
    assert!(transcript.contains("gateway key: ***"), "the agent printed the masked key: {transcript}");
    assert!(!transcript.contains(TASK_MODEL_KEY) && !transcript.contains(CANARY_API_KEY), "{transcript}");
    let kept = setup.service.work_dir.join("tasks").join(&parent.task_id).join("session.jsonl");
    assert!(!std::fs::read_to_string(kept).unwrap().contains(TASK_MODEL_KEY));
    let delivery = parent.delivery.clone().unwrap();
    assert_eq!(
        (snapshot.task_id.as_str(), snapshot.base_commit.as_str(), snapshot.commit.as_str(), snapshot.branch.as_str()),
        (
            parent.task_id.as_str(),
            setup.repo.rev_parse("main").as_str(),
            delivery.commit.as_str(),
            delivery.branch.as_str()
        )
    );
    assert_eq!(snapshot.session_id, parent.session_id);
    assert!(
        !snapshot.bundle.is_empty()
            && String::from_utf8_lossy(&snapshot.session_transcript).contains("PARENT-TURN-7d1e")
    );
    assert!(!setup.repo.has_branch(&delivery.branch), "the parent's commit is only in its workspace");

    // A new container: the parent is unknown, so a follow-up without the snapshot is NOT_FOUND
    // (the edge's cue to send it), one with a broken bundle fails, one with the snapshot continues.
    setup.service.replace_with_empty_work_dir(&setup.model_api, &Default::default()).await;
    let mut client = self::client(&setup).await;
    assert_eq!(client.start(follow_up_of(&parent.task_id)).await.unwrap_err().code(), Code::NotFound);

    let mut broken = snapshot.clone();
    let half = broken.bundle.len() / 2;
    broken.bundle.truncate(half);
    let (_, failed) = run(&mut client, StartRequest { restore: Some(broken), ..follow_up_of(&parent.task_id) }).await;
    assert_eq!(failed.state(), TaskState::Failed);
    assert!(
        failed.error.starts_with(&format!("could not restore the workspace of task {}", parent.task_id)),
        "{}",
        failed.error
    );

    let restore = StartRequest { restore: Some(snapshot.clone()), ..follow_up_of(&parent.task_id) };
    let (events, follow_up) = run(&mut client, restore).await;
    assert_continued(&setup, &parent, &events, &follow_up);

    let mismatched = WorkspaceSnapshot { task_id: "another-task".into(), ..snapshot };
    let refused = client.start(StartRequest { restore: Some(mismatched), ..follow_up_of(&parent.task_id) }).await;
    assert_eq!(refused.unwrap_err().message(), "restore.task_id must equal parent_task_id");
}
