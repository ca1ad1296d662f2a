//! The archive's SQL on an in-process SQLite (the dialect Durable Object storage speaks): what a
//! task's timeline, end, list and history look like after each of the object's writes.

use std::rc::Rc;

use autopilot_contract::v1::{
    event::Payload, AgentText, Delivery, Diff, Event, ListTasksRequest, PullRequest, StartRequest, StateChanged, Task,
    TaskFinished, TaskState,
};

use super::{
    sql::{in_memory::Memory, Sql},
    task_list::started_summary,
    Archive,
};
use crate::bridge::SharedEvent;

const KEY: &[u8] = b"a test archive's page-token key";

fn archive_in(sql: Rc<dyn Sql>, max_events: u64) -> Archive {
    Archive::in_sql(sql, None, max_events, || Ok(KEY.to_vec())).unwrap()
}

fn archive(max_events: u64) -> Archive {
    archive_in(Rc::new(Memory::default()), max_events)
}

fn started(archive: &Archive, task_id: &str, created_ms: u64) {
    let request = StartRequest { repository_url: "file:///r.git".into(), prompt: task_id.into(), ..Default::default() };
    archive.add(&started_summary(task_id, TaskState::Pending as i32, &request, created_ms, &[]), created_ms).unwrap();
}

fn text(task_id: &str, seq: u64) -> Rc<SharedEvent> {
    let payload = Payload::AgentText(AgentText { text: format!("event {seq}") });
    SharedEvent::new(Event { task_id: task_id.into(), seq, time: None, payload: Some(payload) })
}

fn end(task_id: &str, seq: u64, state: TaskState) -> Rc<SharedEvent> {
    let finished = TaskFinished { state: state as i32, ..Default::default() };
    SharedEvent::new(Event { task_id: task_id.into(), seq, time: None, payload: Some(Payload::TaskFinished(finished)) })
}

fn append(archive: &Archive, events: &[Rc<SharedEvent>]) {
    archive.append(&events[0].event.task_id, events.iter().map(Rc::as_ref)).unwrap();
}

fn replayed(archive: &Archive, task_id: &str, from_seq: u64) -> Vec<u64> {
    archive.replay(task_id, from_seq).flat_map(Result::unwrap).map(|event| event.seq).collect()
}

#[test]
fn a_timeline_is_kept_once_in_order_and_replays_from_any_seq() {
    let archive = archive(100);
    started(&archive, "t", 1);
    assert!(archive.holds("t").unwrap() && !archive.holds("other").unwrap());
    append(&archive, &(1..=3).map(|seq| text("t", seq)).collect::<Vec<_>>());
    append(&archive, &(2..=5).map(|seq| text("t", seq)).collect::<Vec<_>>());
    assert_eq!(replayed(&archive, "t", 1), [1, 2, 3, 4, 5], "events already there are not stored twice");
    assert_eq!(replayed(&archive, "t", 4), [4, 5]);
    let entry = archive.entry("t").unwrap().unwrap();
    assert_eq!((entry.last_seq, entry.kept_events, entry.ended), (5, 5, false));
    assert_eq!(archive.unended().unwrap(), [("t".to_string(), 5)]);
}

#[test]
fn the_list_shows_a_running_tasks_latest_state() {
    let archive = archive(100);
    started(&archive, "t", 1);
    let running = Payload::StateChanged(StateChanged { to: TaskState::Running as i32, ..Default::default() });
    append(&archive, &[SharedEvent::new(Event { task_id: "t".into(), seq: 1, time: None, payload: Some(running) })]);
    assert_eq!(archive.entry("t").unwrap().unwrap().summary.state, TaskState::Running as i32);
}

#[test]
fn past_the_cap_only_the_final_event_is_kept() {
    let archive = archive(4);
    started(&archive, "t", 1);
    append(&archive, &(1..=9).map(|seq| text("t", seq)).collect::<Vec<_>>());
    append(&archive, &[end("t", 10, TaskState::Succeeded)]);
    assert_eq!(replayed(&archive, "t", 1), [1, 2, 3, 10], "three events, then the end");
    let entry = archive.entry("t").unwrap().unwrap();
    assert!(entry.truncated);
    assert_eq!(entry.last_seq, 10);
}

#[test]
fn a_loss_adds_what_was_held_then_the_failed_end_once() {
    let archive = archive(100);
    started(&archive, "t", 1);
    append(&archive, &[text("t", 1)]);
    assert_eq!(archive.ended("t"), None, "running: the service answers for it");
    archive.record_loss("t", &[text("t", 2), text("t", 3)], "the container exited", 9).unwrap();
    assert!(archive.ended("t").is_some(), "ended: the archive answers for it");
    assert_eq!(replayed(&archive, "t", 1), [1, 2, 3, 4]);
    let entry = archive.entry("t").unwrap().unwrap();
    let task = entry.task.clone().unwrap();
    assert!(entry.ended);
    assert_eq!((task.state, task.error.as_str()), (TaskState::Failed as i32, "the container exited"));
    archive.record_loss("t", &[], "again", 10).unwrap();
    assert_eq!(replayed(&archive, "t", 1), [1, 2, 3, 4], "an ended task is not lost twice");

    started(&archive, "own-end", 2);
    archive.record_loss("own-end", &[text("own-end", 1), end("own-end", 2, TaskState::Cancelled)], "lost", 9).unwrap();
    let entry = archive.entry("own-end").unwrap().unwrap();
    assert_eq!(entry.task.unwrap().state, TaskState::Cancelled as i32, "its own end, not a loss");
    assert_eq!(replayed(&archive, "own-end", 1), [1, 2]);
}

#[test]
fn an_end_from_the_final_event_awaits_the_services_own_until_finished() {
    let archive = archive(100);
    started(&archive, "t", 1);
    let last = end("t", 2, TaskState::Cancelled);
    append(&archive, &[text("t", 1), Rc::clone(&last)]);
    archive.finish_from_final_event(&last.event).unwrap();
    let entry = archive.entry("t").unwrap().unwrap();
    assert!(entry.ended, "answered from the archive at once");
    assert_eq!(entry.task.unwrap().state, TaskState::Cancelled as i32);
    assert_eq!(archive.awaiting_service().unwrap(), ["t"]);
    let diff = Diff { files: vec![], ..Default::default() };
    let task = Task {
        task_id: "t".into(),
        state: TaskState::Cancelled as i32,
        commit: "c0ffee".into(),
        repository_url: "http://***@127.0.0.1:8787/git/o/r.git".into(),
        ..Default::default()
    };
    archive.finish(&task, Some(&diff)).unwrap();
    assert!(archive.awaiting_service().unwrap().is_empty(), "completed by the service's own Task");
    let entry = archive.entry("t").unwrap().unwrap();
    assert_eq!(entry.task.as_ref().unwrap().commit, "c0ffee");
    let kept = (entry.summary.repository_url.as_str(), entry.task.unwrap().repository_url);
    assert_eq!(kept, ("file:///r.git", "file:///r.git".to_string()), "as the user named it, not the gateway's URL");
    assert_eq!(archive.diff("t").unwrap(), Some(diff));

    started(&archive, "forgotten", 2);
    archive.finish_from_final_event(&end("forgotten", 1, TaskState::Failed).event).unwrap();
    archive.completed("forgotten").unwrap();
    assert!(archive.awaiting_service().unwrap().is_empty(), "a service that forgot it has nothing more");
}

#[test]
fn a_pull_request_is_shown_in_status_and_list_and_outlives_a_later_finish() {
    let archive = archive(100);
    started(&archive, "t", 1);
    let pull =
        PullRequest { number: 7, url: "https://github.test/o/r/pull/7".into(), draft: true, ..Default::default() };
    archive.record_pull_request("t", &pull).unwrap();
    assert_eq!(archive.entry("t").unwrap().unwrap().summary.pull_request, None, "nothing before the task ended");
    let delivered = Delivery { branch: "autopilot/t".into(), pushed: true, ..Default::default() };
    let task = Task {
        task_id: "t".into(),
        state: TaskState::Succeeded as i32,
        delivery: Some(delivered.clone()),
        ..Default::default()
    };
    archive.finish(&task, None).unwrap();
    archive.record_pull_request("t", &pull).unwrap();
    let shown = |archive: &Archive| {
        let entry = archive.entry("t").unwrap().unwrap();
        (entry.summary.pull_request, entry.task.unwrap().delivery.unwrap().pull_request)
    };
    assert_eq!(shown(&archive), (Some(pull.clone()), Some(pull.clone())));
    let listed = archive.page(&ListTasksRequest::default()).unwrap().tasks;
    assert_eq!(listed[0].pull_request, Some(pull.clone()));
    archive.finish(&task, None).unwrap();
    assert_eq!(shown(&archive), (Some(pull.clone()), Some(pull)), "the service's Task again keeps the edge's part");
}

#[test]
fn the_list_pages_newest_first_with_tokens_only_it_signed() {
    let archive = archive(100);
    for (i, id) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        started(&archive, id, 100 + i as u64);
    }
    let page = |token: &str| archive.page(&ListTasksRequest { page_size: 2, page_token: token.into() });
    let ids =
        |tasks: Vec<autopilot_contract::v1::TaskSummary>| tasks.into_iter().map(|t| t.task_id).collect::<Vec<_>>();
    let first = page("").unwrap();
    assert_eq!(ids(first.tasks), ["e", "d"]);
    let second = page(&first.next_page_token).unwrap();
    assert_eq!(ids(second.tasks), ["c", "b"]);
    let last = page(&second.next_page_token).unwrap();
    assert_eq!((ids(last.tasks), last.next_page_token.as_str()), (vec!["a".to_string()], ""));
    let other =
        Archive::in_sql(Rc::new(Memory::default()), None, 100, || Ok(b"another object's key".to_vec())).unwrap();
    started(&other, "x", 1);
    let refused = other.page(&ListTasksRequest { page_size: 2, page_token: first.next_page_token }).unwrap_err();
    assert!(refused.message.contains("page_token"), "another archive's token: {}", refused.message);
}

#[test]
fn the_page_token_key_is_made_once_and_kept() {
    let sql: Rc<dyn Sql> = Rc::new(Memory::default());
    let first = Archive::in_sql(Rc::clone(&sql), None, 100, || Ok(b"made once".to_vec())).unwrap();
    let reopened = Archive::in_sql(sql, None, 100, || panic!("a kept key is not made again")).unwrap();
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        started(&first, id, i as u64);
    }
    let token = first.page(&ListTasksRequest { page_size: 1, page_token: String::new() }).unwrap().next_page_token;
    assert!(reopened.page(&ListTasksRequest { page_size: 1, page_token: token }).is_ok(), "a woken object takes it");
}

#[test]
fn history_keeps_the_newest_tasks_whole_and_never_prunes_a_running_one() {
    let archive = archive(100);
    for (i, id) in ["old", "running", "mid", "new"].iter().enumerate() {
        started(&archive, id, i as u64);
        append(&archive, &[text(id, 1)]);
        if *id != "running" {
            append(&archive, &[end(id, 2, TaskState::Succeeded)]);
            archive
                .finish(
                    &Task { task_id: id.to_string(), state: TaskState::Succeeded as i32, ..Default::default() },
                    None,
                )
                .unwrap();
        }
    }
    let pruned = archive.prune(2).unwrap();
    assert_eq!(pruned, ["old"], "beyond the newest two, only ended tasks go");
    assert!(!archive.holds("old").unwrap() && archive.holds("running").unwrap());
    assert!(replayed(&archive, "old", 1).is_empty(), "with its events");
    assert_eq!(archive.count().unwrap(), 3);
}

#[test]
fn an_archive_made_before_ends_came_from_final_events_gains_the_column() {
    let sql: Rc<dyn Sql> = Rc::new(Memory::default());
    sql.query(
        "CREATE TABLE archived_tasks (task_id TEXT PRIMARY KEY, created_ms INTEGER NOT NULL, summary BLOB NOT NULL, \
         task BLOB, diff BLOB, last_seq INTEGER NOT NULL DEFAULT 0, events INTEGER NOT NULL DEFAULT 0, \
         ended INTEGER NOT NULL DEFAULT 0, truncated INTEGER NOT NULL DEFAULT 0)",
        vec![],
    )
    .unwrap();
    let archive = archive_in(sql, 100);
    started(&archive, "t", 1);
    archive.finish_from_final_event(&end("t", 1, TaskState::Failed).event).unwrap();
    assert_eq!(archive.awaiting_service().unwrap(), ["t"]);
}

#[test]
fn a_request_naming_no_task_means_the_one_started_last() {
    let archive = archive(100);
    assert_eq!(archive.latest().unwrap(), None);
    started(&archive, "first", 5);
    started(&archive, "second", 5);
    assert_eq!(archive.latest().unwrap().as_deref(), Some("second"), "in the same millisecond, the later start");
    started(&archive, "third", 9);
    append(&archive, &[end("third", 1, TaskState::Succeeded)]);
    assert_eq!(archive.latest().unwrap().as_deref(), Some("third"), "ended or not");
}

#[test]
fn an_archive_its_storage_refused_refuses_every_call_with_the_reason() {
    let archive = Archive::refusing("the task archive could not be opened: disk full".into());
    let refusal = archive.check().unwrap_err();
    assert_eq!(refusal.code, crate::grpc_web::Code::Unavailable as i32);
    assert!(refusal.message.contains("disk full"), "{}", refusal.message);
    assert!(archive.holds("t").is_err() && archive.find("t").is_none());
    assert!(self::archive(100).check().is_ok());
}
