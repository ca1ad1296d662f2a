//! A task's pull request in the archive: the edge opens it after the task's end (the service
//! never knows it), so it is written into the archived Task's delivery and the task list's
//! summary, and [`Archive::finish`] keeps it when the service's own Task is archived again.

use autopilot_contract::v1::PullRequest;
use prost::Message;
use worker::SqlStorageValue;

use super::{sql_values::text, Archive, Entry};

impl Archive {
    /// Records the pull request the edge opened (or failed to open) for the ended `task_id`'s
    /// branch, in its Task's delivery and its summary; nothing for a task that has not ended.
    pub fn record_pull_request(&self, task_id: &str, pull: &PullRequest) -> worker::Result<()> {
        let Some(Entry { task: Some(mut task), mut summary, .. }) = self.entry(task_id)? else { return Ok(()) };
        task.delivery.get_or_insert_with(Default::default).pull_request = Some(pull.clone());
        summary.pull_request = Some(pull.clone());
        self.sql.query(
            "UPDATE archived_tasks SET summary = ?, task = ? WHERE task_id = ?",
            vec![
                SqlStorageValue::Blob(summary.encode_to_vec()),
                SqlStorageValue::Blob(task.encode_to_vec()),
                text(task_id),
            ],
        )?;
        Ok(())
    }
}
