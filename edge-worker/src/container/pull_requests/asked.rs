//! The pull requests tasks asked for, kept in the object's SQLite from the Start until the
//! outcome: the repository and branch, what was asked (the prompt, masked), the options, and
//! what became of it (the pull request, or GitHub's words). Kept here because the Task the
//! service reports has no prompt and the edge may open the pull request long after the Start
//! (at the task's end, or when the user asks again).

use std::rc::Rc;

use autopilot_contract::v1::{PullRequest, PullRequestOptions};
use prost::Message;
use worker::SqlStorageValue;

use crate::archive::{
    sql::Sql,
    sql_values::{as_blob, as_text, text},
};

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS pull_requests (
  task_id TEXT PRIMARY KEY,
  repository TEXT NOT NULL,
  branch TEXT NOT NULL,
  prompt TEXT NOT NULL,
  parent_task_id TEXT NOT NULL DEFAULT '',
  options BLOB NOT NULL,
  outcome BLOB
)";

/// A task's pull request as asked for, and its outcome once tried.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Asked {
    /// `owner/name` on GitHub.
    pub repository: String,
    /// The task's branch (the pull request's head).
    pub branch: String,
    pub prompt: String,
    /// The task it follows up on; empty for a first turn.
    pub parent_task_id: String,
    pub options: PullRequestOptions,
    pub outcome: Option<PullRequest>,
}

impl Asked {
    /// Whether the pull request was opened or adopted (not only tried).
    pub fn done(&self) -> bool {
        self.outcome.as_ref().is_some_and(|pull| pull.number != 0)
    }
}

#[derive(Clone)]
pub struct AskedPullRequests {
    sql: Rc<dyn Sql>,
}

impl AskedPullRequests {
    /// The table in `sql`, made if need be.
    ///
    /// # Errors
    /// The storage refused the schema.
    pub fn open(sql: Rc<dyn Sql>) -> worker::Result<AskedPullRequests> {
        sql.query(SCHEMA, vec![])?;
        Ok(AskedPullRequests { sql })
    }

    /// Records what `task_id` asked for (again: replaced, its outcome forgotten).
    pub fn ask(&self, task_id: &str, asked: &Asked) -> worker::Result<()> {
        self.sql.query(
            "INSERT OR REPLACE INTO pull_requests (task_id, repository, branch, prompt, parent_task_id, options) \
             VALUES (?, ?, ?, ?, ?, ?)",
            vec![
                text(task_id),
                text(&asked.repository),
                text(&asked.branch),
                text(&asked.prompt),
                text(&asked.parent_task_id),
                SqlStorageValue::Blob(asked.options.encode_to_vec()),
            ],
        )?;
        Ok(())
    }

    /// What `task_id` asked for, if it asked.
    pub fn get(&self, task_id: &str) -> worker::Result<Option<Asked>> {
        let rows = self.sql.query(
            "SELECT repository, branch, prompt, parent_task_id, options, outcome FROM pull_requests WHERE task_id = ?",
            vec![text(task_id)],
        )?;
        Ok(rows.first().map(|row| {
            let column = |i: usize| row.get(i).and_then(as_text).unwrap_or_default().to_string();
            let blob = |i: usize| row.get(i).and_then(as_blob);
            Asked {
                repository: column(0),
                branch: column(1),
                prompt: column(2),
                parent_task_id: column(3),
                options: blob(4).and_then(|b| PullRequestOptions::decode(b).ok()).unwrap_or_default(),
                outcome: blob(5).and_then(|b| PullRequest::decode(b).ok()),
            }
        }))
    }

    /// Records what became of `task_id`'s pull request.
    pub fn settle(&self, task_id: &str, outcome: &PullRequest) -> worker::Result<()> {
        self.sql.query(
            "UPDATE pull_requests SET outcome = ? WHERE task_id = ?",
            vec![SqlStorageValue::Blob(outcome.encode_to_vec()), text(task_id)],
        )?;
        Ok(())
    }

    /// Forgets the pull requests of tasks the archive pruned.
    pub fn forget(&self, task_ids: &[String]) -> worker::Result<()> {
        for task_id in task_ids {
            self.sql.query("DELETE FROM pull_requests WHERE task_id = ?", vec![text(task_id)])?;
        }
        Ok(())
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::archive::sql::in_memory::Memory;

    #[test]
    fn what_a_task_asked_for_is_kept_until_its_outcome_and_forgotten_with_it() {
        let asked = AskedPullRequests::open(Rc::new(Memory::default())).unwrap();
        assert_eq!(asked.get("t").unwrap(), None);
        let wish = Asked {
            repository: "octo/app".into(),
            branch: "autopilot/t".into(),
            prompt: "Fix it".into(),
            options: PullRequestOptions { open: true, base: "develop".into(), ..Default::default() },
            ..Default::default()
        };
        asked.ask("t", &wish).unwrap();
        assert_eq!(asked.get("t").unwrap(), Some(wish.clone()));
        let refused = PullRequest { error: "GitHub refused: Resource not accessible".into(), ..Default::default() };
        asked.settle("t", &refused).unwrap();
        let tried = asked.get("t").unwrap().unwrap();
        assert!(!tried.done(), "a refusal is tried, not done");
        asked.settle("t", &PullRequest { number: 3, url: "u".into(), ..Default::default() }).unwrap();
        assert!(asked.get("t").unwrap().unwrap().done());
        asked.forget(&["t".into()]).unwrap();
        assert_eq!(asked.get("t").unwrap(), None);
    }
}
