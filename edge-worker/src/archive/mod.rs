//! The task archive: every task a user's object started, its events, its final Task and its
//! diff, kept in the object's own SQLite storage. A container's disk goes with every idle stop,
//! crash and redeploy, and the agent-service's history with it; the archive is what makes a task
//! outlive its container: an ended task is answered from here (Status, its whole timeline, its
//! diff, the task list) with no container started and nothing charged. It also records which
//! tasks are the user's: a task id the archive does not hold is nobody's here.
//!
//! Limits: the newest `HISTORY_TASKS` tasks (default [`DEFAULT_HISTORY_TASKS`]) are kept whole,
//! older ones are deleted whole; one task keeps at most `ARCHIVE_MAX_EVENTS` events (default
//! [`DEFAULT_MAX_EVENTS`]): past it the archive keeps only the final event, and says it was
//! truncated; the task itself never fails for it.
//!
//! Beside it, for both objects: [`replay`] (an archived timeline to a socket), and pure,
//! host-tested rules: [`Entry`] (what it holds of one task, and the ends the edge makes or
//! reads), [`event_rows`] (how events are stored in rows), [`task_list`] (pages, signed
//! tokens and titles of the task list), [`task_scope`] (a user reaches only the tasks their object
//! started), [`sql_values`] (SQLite value conversions); [`sql`]: the SQL it runs, behind a trait
//! (an in-process SQLite in host tests).

mod entry;
pub mod event_rows;
mod pull_request;
pub mod replay;
pub mod sql;
pub mod sql_values;
pub mod task_list;
pub mod task_scope;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;

use autopilot_contract::v1::{
    event::Payload, Diff, Event, ListTasksRequest, ListTasksResponse, Task, TaskState, TaskSummary,
};
use prost::Message;
use std::rc::Rc;
use worker::{
    wasm_bindgen::{JsCast, JsValue},
    worker_sys::DurableObjectStorage,
    SqlStorageValue,
};

pub use self::entry::{final_failed_event, Entry};
use self::{
    event_rows::Row,
    sql::{Refusing, Sql},
};
use crate::{
    archive::sql_values::{as_blob, as_text, as_u64, ids_with_counts, int, text},
    archive::task_list::{decode_token, encode_token, page_size, Cursor},
    bridge::SharedEvent,
    grpc_web::{Code, GrpcStatus},
};

/// Tasks kept per user unless `HISTORY_TASKS` says otherwise.
pub const DEFAULT_HISTORY_TASKS: usize = 200;
/// Events kept per task unless `ARCHIVE_MAX_EVENTS` says otherwise.
pub const DEFAULT_MAX_EVENTS: u64 = 20_000;
pub use self::replay::REPLAY_CHUNK;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS archived_tasks (
  task_id TEXT PRIMARY KEY,
  created_ms INTEGER NOT NULL,
  summary BLOB NOT NULL,
  task BLOB,
  diff BLOB,
  last_seq INTEGER NOT NULL DEFAULT 0,
  events INTEGER NOT NULL DEFAULT 0,
  ended INTEGER NOT NULL DEFAULT 0,
  truncated INTEGER NOT NULL DEFAULT 0,
  awaiting_service INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS archived_tasks_newest ON archived_tasks (created_ms DESC, task_id DESC);
CREATE TABLE IF NOT EXISTS archive_keys (
  name TEXT PRIMARY KEY,
  key BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS archived_event_chunks (
  task_id TEXT NOT NULL,
  first_seq INTEGER NOT NULL,
  last_seq INTEGER NOT NULL,
  events BLOB NOT NULL,
  PRIMARY KEY (task_id, first_seq)
)";

/// How much the archive keeps, from the Worker's vars (`HISTORY_TASKS`, `ARCHIVE_MAX_EVENTS`);
/// unreadable values fall back to the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub history_tasks: usize,
    pub max_events: u64,
}

impl Retention {
    pub fn read(var: impl Fn(&str) -> Option<String>) -> Retention {
        Retention {
            history_tasks: var("HISTORY_TASKS")
                .and_then(|n| n.trim().parse().ok())
                .filter(|n| *n > 0)
                .unwrap_or(DEFAULT_HISTORY_TASKS),
            max_events: var("ARCHIVE_MAX_EVENTS").and_then(|n| n.trim().parse().ok()).unwrap_or(DEFAULT_MAX_EVENTS),
        }
    }
}

/// The key `name` kept in `sql`, made by `new_key` the first time it is asked for.
fn stored_key(sql: &dyn Sql, name: &str, new_key: impl FnOnce() -> worker::Result<Vec<u8>>) -> worker::Result<Vec<u8>> {
    let kept = sql.query("SELECT key FROM archive_keys WHERE name = ?", vec![text(name)])?;
    if let Some(key) = kept.first().and_then(|row| as_blob(&row[0])) {
        return Ok(key.to_vec());
    }
    let key = new_key()?;
    sql.query(
        "INSERT INTO archive_keys (name, key) VALUES (?, ?)",
        vec![text(name), SqlStorageValue::Blob(key.clone())],
    )?;
    Ok(key)
}

/// The archive of one object.
#[derive(Clone)]
pub struct Archive {
    sql: Rc<dyn Sql>,
    /// The same storage (a `DurableObjectStorage`), to wait for its commits; none in host tests.
    storage: Option<JsValue>,
    max_events: u64,
    /// Signs the task list's page tokens: made once per object, kept with the archive.
    page_token_key: Vec<u8>,
    /// Why the storage refused the archive, if it did (every call is refused with it).
    refused: Option<String>,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive").field("max_events", &self.max_events).finish_non_exhaustive()
    }
}

impl Archive {
    /// The archive in the object's `storage`, its tables created if need be. Every object has
    /// one: if the storage refused the schema, the archive refuses every call with that reason
    /// (see [`Archive::check`]), and the object answers UNAVAILABLE rather than half-work.
    pub fn open(storage: &worker::Storage, max_events: u64) -> Archive {
        let raw = Some(JsValue::from(storage.as_raw()));
        Archive::in_sql(Rc::new(storage.sql()), raw.clone(), max_events, || crate::entropy::random_bytes(32))
            .unwrap_or_else(|e| {
                let reason = format!("the task archive could not be opened: {e}");
                worker::console_error!("{reason}");
                Archive::refusing(reason)
            })
    }

    /// An archive whose storage refused its schema: it refuses every call with `reason`.
    pub fn refusing(reason: String) -> Archive {
        let sql = Rc::new(Refusing(reason.clone()));
        Archive { sql, storage: None, max_events: 2, page_token_key: Vec::new(), refused: Some(reason) }
    }

    /// Whether the archive works: an error, for the object to answer UNAVAILABLE with, when its
    /// storage refused the schema.
    ///
    /// # Errors
    /// The storage's refusal.
    pub fn check(&self) -> Result<(), GrpcStatus> {
        // Known when the archive was opened: no storage call on every request.
        match &self.refused {
            Some(reason) => Err(GrpcStatus::new(Code::Unavailable, reason.clone())),
            None => Ok(()),
        }
    }

    /// The archive in `sql` (its tables created if need be), keeping at most `max_events` events
    /// a task; `new_key` makes its page-token key the first time.
    ///
    /// # Errors
    /// The storage refused the schema.
    pub fn in_sql(
        sql: Rc<dyn Sql>,
        storage: Option<JsValue>,
        max_events: u64,
        new_key: impl FnOnce() -> worker::Result<Vec<u8>>,
    ) -> worker::Result<Archive> {
        sql::apply_schema(sql.as_ref(), SCHEMA)?;
        // Archives made before ends could be taken from a final event lack the column.
        if sql.query("SELECT awaiting_service FROM archived_tasks LIMIT 0", vec![]).is_err() {
            sql.query("ALTER TABLE archived_tasks ADD COLUMN awaiting_service INTEGER NOT NULL DEFAULT 0", vec![])?;
        }
        let page_token_key = stored_key(sql.as_ref(), "page_token", new_key)?;
        Ok(Archive { sql, storage, max_events: max_events.max(2), page_token_key, refused: None })
    }

    /// Waits until what was written so far is committed. Until then, workerd holds back every
    /// message the object sends (its output gate), and a busy object's commit can wait long.
    pub async fn committed(&self) -> worker::Result<()> {
        let Some(storage) = &self.storage else { return Ok(()) };
        let storage: &DurableObjectStorage = storage.unchecked_ref();
        worker::wasm_bindgen_futures::JsFuture::from(storage.sync()?).await?;
        Ok(())
    }

    fn rows(&self, query: &str, bindings: Vec<SqlStorageValue>) -> worker::Result<Vec<Vec<SqlStorageValue>>> {
        self.sql.query(query, bindings)
    }

    /// Records a task the object just started (nothing if it is already there).
    pub fn add(&self, summary: &TaskSummary, created_ms: u64) -> worker::Result<()> {
        self.sql.query(
            "INSERT OR IGNORE INTO archived_tasks (task_id, created_ms, summary) VALUES (?, ?, ?)",
            vec![text(&summary.task_id), int(created_ms), SqlStorageValue::Blob(summary.encode_to_vec())],
        )?;
        Ok(())
    }

    /// Whether the archive holds `task_id` (the user's task).
    pub fn holds(&self, task_id: &str) -> worker::Result<bool> {
        Ok(!self.rows("SELECT 1 FROM archived_tasks WHERE task_id = ?", vec![text(task_id)])?.is_empty())
    }

    /// The tasks whose end the archive does not hold yet, with their last archived seq.
    pub fn unended(&self) -> worker::Result<Vec<(String, u64)>> {
        let rows = self.rows("SELECT task_id, last_seq FROM archived_tasks WHERE ended = 0", vec![])?;
        Ok(ids_with_counts(&rows))
    }

    /// How many tasks the archive holds.
    pub fn count(&self) -> worker::Result<u64> {
        let rows = self.rows("SELECT COUNT(*) FROM archived_tasks", vec![])?;
        Ok(rows.first().and_then(|row| row.first()).map(as_u64).unwrap_or(0))
    }

    /// The task started last (what a request naming no task means).
    pub fn latest(&self) -> worker::Result<Option<String>> {
        let rows =
            self.rows("SELECT task_id FROM archived_tasks ORDER BY created_ms DESC, rowid DESC LIMIT 1", vec![])?;
        Ok(rows.first().and_then(|row| row.first()).and_then(as_text).map(str::to_string))
    }

    /// What the archive holds of `task_id`, if it holds the task; a storage failure reads as
    /// nothing (the callers then ask the service, as for a task the archive has not seen end).
    pub fn find(&self, task_id: &str) -> Option<Entry> {
        self.entry(task_id).ok().flatten()
    }

    /// What the archive holds of `task_id` once the task has ended there: then the archive alone
    /// answers for it (Status, Cancel, its events), in both objects.
    pub fn ended(&self, task_id: &str) -> Option<Entry> {
        self.find(task_id).filter(|entry| entry.ended)
    }

    /// What the archive holds of `task_id`.
    pub fn entry(&self, task_id: &str) -> worker::Result<Option<Entry>> {
        let rows = self.rows(
            "SELECT summary, task, last_seq, events, ended, truncated FROM archived_tasks WHERE task_id = ?",
            vec![text(task_id)],
        )?;
        let Some(row) = rows.into_iter().next() else { return Ok(None) };
        let summary = as_blob(&row[0]).and_then(|b| TaskSummary::decode(b).ok()).unwrap_or_default();
        let task = as_blob(&row[1]).and_then(|b| Task::decode(b).ok());
        Ok(Some(Entry {
            summary,
            task,
            last_seq: as_u64(&row[2]),
            kept_events: as_u64(&row[3]),
            ended: as_u64(&row[4]) != 0,
            truncated: as_u64(&row[5]) != 0,
        }))
    }

    /// Appends events of `task_id` received in order (one storage transaction). Events at or
    /// below the archived last seq are already there; past the cap only the final one is kept.
    pub fn append<'a>(&self, task_id: &str, events: impl IntoIterator<Item = &'a SharedEvent>) -> worker::Result<()> {
        let events: Vec<&SharedEvent> = events.into_iter().collect();
        if events.is_empty() {
            return Ok(());
        }
        let Some(entry) = self.entry(task_id)? else { return Ok(()) };
        let (mut last_seq, mut kept, mut truncated) = (entry.last_seq, entry.kept_events, entry.truncated);
        // The list shows a running task as it goes: its latest state and usage.
        let mut summary = entry.summary;
        let mut rows = Vec::new();
        for shared in events.into_iter().filter(|shared| shared.event.seq > entry.last_seq) {
            let event = &shared.event;
            last_seq = last_seq.max(event.seq);
            match &event.payload {
                Some(Payload::StateChanged(changed)) => summary.state = changed.to,
                Some(Payload::UsageUpdate(update)) => summary.usage = update.usage.or(summary.usage.take()),
                _ => {}
            }
            let is_final = matches!(event.payload, Some(Payload::TaskFinished(_)));
            if kept + 1 >= self.max_events && !is_final {
                truncated = true;
                continue;
            }
            rows.push(shared);
            kept += 1;
        }
        let (stored, cut) = event_rows::rows(&rows);
        truncated |= cut;
        for Row { first_seq, last_seq, blob } in stored {
            self.sql.query(
                "INSERT OR IGNORE INTO archived_event_chunks (task_id, first_seq, last_seq, events) VALUES (?, ?, ?, ?)",
                vec![text(task_id), int(first_seq), int(last_seq), SqlStorageValue::Blob(blob)],
            )?;
        }
        self.sql.query(
            "UPDATE archived_tasks SET last_seq = ?, events = ?, truncated = ?, summary = ? WHERE task_id = ?",
            vec![
                int(last_seq),
                int(kept),
                int(truncated as u64),
                SqlStorageValue::Blob(summary.encode_to_vec()),
                text(task_id),
            ],
        )?;
        Ok(())
    }

    /// The task was lost before its end reached the archive: `pending` (received, not written
    /// yet) is added, then the FAILED end the edge makes with `reason`. Nothing for a task whose
    /// end is archived already.
    pub fn record_loss(
        &self,
        task_id: &str,
        pending: &[Rc<SharedEvent>],
        reason: &str,
        now_ms: u64,
    ) -> worker::Result<()> {
        let Some(entry) = self.entry(task_id)?.filter(|entry| !entry.ended) else { return Ok(()) };
        self.append(task_id, pending.iter().map(Rc::as_ref))?;
        let pending = pending.iter().map(|shared| &shared.event);
        // The task's own final event may be here already (its Status was still to come): then
        // that is its end, not a loss.
        let last = self.events(task_id, entry.last_seq.max(1), usize::MAX >> 1)?.pop();
        let own_end = pending.clone().chain(last.as_ref()).find_map(|event| entry.task_ended_by(event));
        if let Some(task) = own_end {
            return self.finish(&task, None);
        }
        let last_seq = pending.map(|e| e.seq).max().unwrap_or(0).max(entry.last_seq);
        let end = final_failed_event(task_id.to_string(), last_seq, reason, now_ms);
        let task = entry.task_ended_by(&end).unwrap_or_default();
        self.append(task_id, [SharedEvent::new(end).as_ref()])?;
        self.finish(&task, None)
    }

    /// Records the end of a task from its final event `end` (the service that sent it stopped
    /// before it could be asked for the final Task): ended now, marked as awaiting the service's
    /// own account ([`Archive::awaiting_service`]), which [`Archive::finish`] then records.
    pub fn finish_from_final_event(&self, end: &Event) -> worker::Result<()> {
        let Some(entry) = self.entry(&end.task_id)?.filter(|entry| !entry.ended) else { return Ok(()) };
        let Some(task) = entry.task_ended_by(end) else { return Ok(()) };
        self.finish(&task, None)?;
        self.sql.query("UPDATE archived_tasks SET awaiting_service = 1 WHERE task_id = ?", vec![text(&end.task_id)])?;
        Ok(())
    }

    /// The ended tasks whose end came from their final event, still to be completed from the
    /// service, oldest first.
    pub fn awaiting_service(&self) -> worker::Result<Vec<String>> {
        let rows = self.rows(
            "SELECT task_id FROM archived_tasks WHERE awaiting_service = 1 ORDER BY created_ms, task_id",
            vec![],
        )?;
        Ok(rows
            .iter()
            .filter_map(|row| if let SqlStorageValue::String(id) = &row[0] { Some(id.clone()) } else { None })
            .collect())
    }

    /// `task_id`'s end stays as its final event told it: the service has nothing more to say.
    pub fn completed(&self, task_id: &str) -> worker::Result<()> {
        self.sql.query("UPDATE archived_tasks SET awaiting_service = 0 WHERE task_id = ?", vec![text(task_id)])?;
        Ok(())
    }

    /// Records the task's end: its final Task and, if it delivered one, its diff; the summary
    /// takes the end's state, time, usage and delivery. The repository stays as the user named it
    /// at the start (the service may have worked on it through the git gateway's URL).
    pub fn finish(&self, task: &Task, diff: Option<&Diff>) -> worker::Result<()> {
        let Some(entry) = self.entry(&task.task_id)? else { return Ok(()) };
        let mut task = task.clone();
        if !entry.summary.repository_url.is_empty() {
            task.repository_url = entry.summary.repository_url.clone();
        }
        // The pull request is the edge's, recorded after an earlier finish: the service's Task
        // never has it.
        let recorded_pull = entry.task.as_ref().and_then(|t| t.delivery.as_ref()).and_then(|d| d.pull_request.clone());
        if let (Some(delivery), Some(pull)) = (task.delivery.as_mut(), recorded_pull) {
            delivery.pull_request.get_or_insert(pull);
        }
        let delivery = task.delivery.clone().unwrap_or_default();
        let summary = TaskSummary {
            // A follow-up's request may name no repository: its Task does.
            repository_url: task.repository_url.clone(),
            git_ref: task.git_ref.clone(),
            state: task.state,
            end_time: task.end_time.or(entry.summary.end_time),
            usage: task.usage.or(entry.summary.usage),
            branch: delivery.branch,
            commit: delivery.commit,
            pull_request: delivery.pull_request,
            ..entry.summary
        };
        let ended = TaskState::try_from(task.state).map(TaskState::is_final).unwrap_or(false);
        self.sql.query(
            "UPDATE archived_tasks SET summary = ?, task = ?, diff = COALESCE(?, diff), ended = ?, awaiting_service = 0 \
             WHERE task_id = ?",
            vec![
                SqlStorageValue::Blob(summary.encode_to_vec()),
                SqlStorageValue::Blob(task.encode_to_vec()),
                diff.map(|d| SqlStorageValue::Blob(d.encode_to_vec())).unwrap_or(SqlStorageValue::Null),
                int(ended as u64),
                text(&task.task_id),
            ],
        )?;
        Ok(())
    }

    /// The archived diff of `task_id`, if it delivered one.
    pub fn diff(&self, task_id: &str) -> worker::Result<Option<Diff>> {
        let rows = self.rows("SELECT diff FROM archived_tasks WHERE task_id = ?", vec![text(task_id)])?;
        Ok(rows.first().and_then(|row| as_blob(&row[0])).and_then(|b| Diff::decode(b).ok()))
    }

    /// The page of the task list `request` asks for.
    ///
    /// # Errors
    /// INVALID_ARGUMENT for a page size or token out of the rules; INTERNAL if storage failed.
    pub fn page(&self, request: &ListTasksRequest) -> Result<ListTasksResponse, GrpcStatus> {
        let size = page_size(request.page_size)?;
        let cursor = decode_token(&request.page_token, &self.page_token_key)?;
        let (tasks, next_page_token) = self
            .list(cursor.as_ref(), size)
            .map_err(|e| GrpcStatus::new(Code::Internal, format!("reading the task list failed: {e}")))?;
        Ok(ListTasksResponse { tasks, next_page_token })
    }

    /// A page of the task list, newest first, after `cursor`; and the token of the next page.
    pub fn list(&self, cursor: Option<&Cursor>, page_size: usize) -> worker::Result<(Vec<TaskSummary>, String)> {
        let fetch = int(page_size as u64 + 1);
        let rows = match cursor {
            None => self.rows(
                "SELECT summary, created_ms, task_id FROM archived_tasks ORDER BY created_ms DESC, task_id DESC LIMIT ?",
                vec![fetch],
            )?,
            Some(cursor) => self.rows(
                "SELECT summary, created_ms, task_id FROM archived_tasks \
                 WHERE created_ms < ? OR (created_ms = ? AND task_id < ?) \
                 ORDER BY created_ms DESC, task_id DESC LIMIT ?",
                vec![int(cursor.created_ms), int(cursor.created_ms), text(&cursor.task_id), fetch],
            )?,
        };
        let more = rows.len() > page_size;
        let page: Vec<&Vec<SqlStorageValue>> = rows.iter().take(page_size).collect();
        let next = match (more, page.last()) {
            (true, Some(last)) => encode_token(
                &Cursor {
                    created_ms: as_u64(&last[1]),
                    task_id: match &last[2] {
                        SqlStorageValue::String(id) => id.clone(),
                        _ => String::new(),
                    },
                },
                &self.page_token_key,
            ),
            _ => String::new(),
        };
        let tasks = page.iter().filter_map(|row| as_blob(&row[0]).and_then(|b| TaskSummary::decode(b).ok())).collect();
        Ok((tasks, next))
    }

    /// Deletes, whole, the ended tasks beyond the newest `keep` (running ones are never pruned);
    /// answers their ids.
    pub fn prune(&self, keep: usize) -> worker::Result<Vec<String>> {
        let rows = self.rows(
            "SELECT task_id, ended FROM archived_tasks ORDER BY created_ms DESC, task_id DESC LIMIT -1 OFFSET ?",
            vec![int(keep as u64)],
        )?;
        let mut pruned = Vec::new();
        for row in rows {
            let (SqlStorageValue::String(task_id), true) = (&row[0], as_u64(&row[1]) != 0) else { continue };
            self.sql.query("DELETE FROM archived_event_chunks WHERE task_id = ?", vec![text(task_id)])?;
            self.sql.query("DELETE FROM archived_tasks WHERE task_id = ?", vec![text(task_id)])?;
            pruned.push(task_id.clone());
        }
        Ok(pruned)
    }
}
