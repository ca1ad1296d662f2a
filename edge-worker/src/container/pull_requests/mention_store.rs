//! What the pull-request loop keeps in the user's object's SQLite: each pull request's latest
//! turn (the task a mention continues), the webhook deliveries already acted on (GitHub
//! redelivers; a delivery starts at most one turn), and the mentions waiting for the turn before
//! them to end (one turn at a time per pull request, in the order they came).

use std::rc::Rc;

use crate::archive::{
    sql::{apply_schema, Sql},
    sql_values::{as_text, as_u64, int, text},
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS pull_request_turns (
  repository TEXT NOT NULL,
  number INTEGER NOT NULL,
  task_id TEXT NOT NULL,
  PRIMARY KEY (repository, number)
);
CREATE TABLE IF NOT EXISTS github_deliveries (
  delivery TEXT PRIMARY KEY,
  received_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS fix_turns (
  repository TEXT NOT NULL,
  number INTEGER NOT NULL,
  count INTEGER NOT NULL,
  PRIMARY KEY (repository, number)
);
CREATE TABLE IF NOT EXISTS queued_mentions (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  repository TEXT NOT NULL,
  number INTEGER NOT NULL,
  comment_id INTEGER NOT NULL,
  prompt TEXT NOT NULL,
  queued_ms INTEGER NOT NULL
)";

/// Deliveries remembered at most this long (GitHub redelivers within days, by hand).
pub const DELIVERY_MEMORY_MS: u64 = 30 * 24 * 3_600_000;

/// A mention waiting for its pull request's turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub id: u64,
    pub repository: String,
    pub number: u64,
    pub comment_id: u64,
    pub prompt: String,
}

#[derive(Clone)]
pub struct MentionStore {
    sql: Rc<dyn Sql>,
}

impl MentionStore {
    /// The tables in `sql`, made if need be.
    ///
    /// # Errors
    /// The storage refused the schema.
    pub fn open(sql: Rc<dyn Sql>) -> worker::Result<MentionStore> {
        apply_schema(sql.as_ref(), SCHEMA)?;
        Ok(MentionStore { sql })
    }

    /// Records that `task_id` is the latest turn of `repository`'s pull request `number`.
    pub fn set_turn(&self, repository: &str, number: u64, task_id: &str) -> worker::Result<()> {
        self.sql.query(
            "INSERT INTO pull_request_turns (repository, number, task_id) VALUES (?, ?, ?) \
             ON CONFLICT (repository, number) DO UPDATE SET task_id = excluded.task_id",
            vec![text(&repository.to_ascii_lowercase()), int(number), text(task_id)],
        )?;
        Ok(())
    }

    /// The latest turn of the pull request, if autopilot opened or adopted it here.
    pub fn turn(&self, repository: &str, number: u64) -> worker::Result<Option<String>> {
        let rows = self.sql.query(
            "SELECT task_id FROM pull_request_turns WHERE repository = ? AND number = ?",
            vec![text(&repository.to_ascii_lowercase()), int(number)],
        )?;
        Ok(rows.first().and_then(|row| row.first()).and_then(as_text).map(str::to_string))
    }

    /// The pull request `task_id` is the latest turn of, as `(repository, number)`.
    pub fn pull_request_of(&self, task_id: &str) -> worker::Result<Option<(String, u64)>> {
        let rows = self
            .sql
            .query("SELECT repository, number FROM pull_request_turns WHERE task_id = ?", vec![text(task_id)])?;
        Ok(rows.first().map(|row| {
            (row.first().and_then(as_text).unwrap_or_default().to_string(), row.get(1).map(as_u64).unwrap_or_default())
        }))
    }

    /// How many turns in a row fixed failing checks on the pull request.
    pub fn fix_turns(&self, repository: &str, number: u64) -> worker::Result<u64> {
        let rows = self.sql.query(
            "SELECT count FROM fix_turns WHERE repository = ? AND number = ?",
            vec![text(&repository.to_ascii_lowercase()), int(number)],
        )?;
        Ok(rows.first().and_then(|row| row.first()).map(as_u64).unwrap_or(0))
    }

    /// Sets that count (a person's mention sets it back to 0).
    pub fn set_fix_turns(&self, repository: &str, number: u64, count: u64) -> worker::Result<()> {
        self.sql.query(
            "INSERT INTO fix_turns (repository, number, count) VALUES (?, ?, ?) \
             ON CONFLICT (repository, number) DO UPDATE SET count = excluded.count",
            vec![text(&repository.to_ascii_lowercase()), int(number), int(count)],
        )?;
        Ok(())
    }

    /// Whether `delivery` is new (then it is remembered): a redelivery answers false.
    pub fn first_delivery(&self, delivery: &str, now_ms: u64) -> worker::Result<bool> {
        self.sql.query(
            "DELETE FROM github_deliveries WHERE received_ms < ?",
            vec![int(now_ms.saturating_sub(DELIVERY_MEMORY_MS))],
        )?;
        let known = self.sql.query("SELECT 1 FROM github_deliveries WHERE delivery = ?", vec![text(delivery)])?;
        if !known.is_empty() {
            return Ok(false);
        }
        self.sql.query(
            "INSERT INTO github_deliveries (delivery, received_ms) VALUES (?, ?)",
            vec![text(delivery), int(now_ms)],
        )?;
        Ok(true)
    }

    /// Queues a mention behind the pull request's running turn.
    pub fn queue(
        &self,
        repository: &str,
        number: u64,
        comment_id: u64,
        prompt: &str,
        now_ms: u64,
    ) -> worker::Result<()> {
        self.sql.query(
            "INSERT INTO queued_mentions (repository, number, comment_id, prompt, queued_ms) VALUES (?, ?, ?, ?, ?)",
            vec![text(&repository.to_ascii_lowercase()), int(number), int(comment_id), text(prompt), int(now_ms)],
        )?;
        Ok(())
    }

    /// The oldest queued mention of any pull request, taken off the queue.
    pub fn take_next(&self, repository: &str, number: u64) -> worker::Result<Option<Queued>> {
        let rows = self.sql.query(
            "SELECT id, repository, number, comment_id, prompt FROM queued_mentions WHERE repository = ? AND number = ? \
             ORDER BY id LIMIT 1",
            vec![text(&repository.to_ascii_lowercase()), int(number)],
        )?;
        let Some(row) = rows.first() else { return Ok(None) };
        let column = |i: usize| row.get(i).and_then(as_text).unwrap_or_default().to_string();
        let number_at = |i: usize| row.get(i).map(as_u64).unwrap_or_default();
        let queued = Queued {
            id: number_at(0),
            repository: column(1),
            number: number_at(2),
            comment_id: number_at(3),
            prompt: column(4),
        };
        self.sql.query("DELETE FROM queued_mentions WHERE id = ?", vec![int(queued.id)])?;
        Ok(Some(queued))
    }

    /// The pull requests with mentions waiting, as `(repository, number)`.
    pub fn waiting(&self) -> worker::Result<Vec<(String, u64)>> {
        let rows =
            self.sql.query("SELECT DISTINCT repository, number FROM queued_mentions ORDER BY repository", vec![])?;
        Ok(rows
            .iter()
            .map(|row| {
                (
                    row.first().and_then(as_text).unwrap_or_default().to_string(),
                    row.get(1).map(as_u64).unwrap_or_default(),
                )
            })
            .collect())
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::archive::sql::in_memory::Memory;

    #[test]
    fn a_pull_requests_latest_turn_a_delivery_once_and_mentions_in_order() {
        let store = MentionStore::open(Rc::new(Memory::default())).unwrap();
        assert_eq!(store.turn("Octo/App", 7).unwrap(), None);
        store.set_turn("Octo/App", 7, "t1").unwrap();
        store.set_turn("octo/app", 7, "t2").unwrap();
        assert_eq!(store.turn("OCTO/app", 7).unwrap().as_deref(), Some("t2"), "the latest, by name case-insensitive");
        assert_eq!(store.pull_request_of("t2").unwrap(), Some(("octo/app".to_string(), 7)));
        assert_eq!(store.pull_request_of("t1").unwrap(), None, "no longer the latest");

        assert!(store.first_delivery("d-1", 1_000).unwrap());
        assert!(!store.first_delivery("d-1", 2_000).unwrap(), "a redelivery");
        assert!(store.first_delivery("d-1", 1_000 + DELIVERY_MEMORY_MS + 1).unwrap(), "forgotten after a month");

        assert_eq!(store.fix_turns("octo/app", 7).unwrap(), 0);
        store.set_fix_turns("Octo/App", 7, 2).unwrap();
        assert_eq!(store.fix_turns("octo/app", 7).unwrap(), 2);

        store.queue("octo/app", 7, 1, "first", 10).unwrap();
        store.queue("octo/app", 8, 2, "other pull request", 11).unwrap();
        store.queue("octo/app", 7, 3, "second", 12).unwrap();
        assert_eq!(store.waiting().unwrap(), [("octo/app".to_string(), 7), ("octo/app".to_string(), 8)]);
        assert_eq!(store.take_next("octo/app", 7).unwrap().map(|q| q.prompt), Some("first".into()));
        assert_eq!(store.take_next("octo/app", 7).unwrap().map(|q| q.comment_id), Some(3));
        assert_eq!(store.take_next("octo/app", 7).unwrap(), None);
    }
}
