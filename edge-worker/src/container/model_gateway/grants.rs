//! The model credentials a user's object has handed out (see [`super::credential`]), kept in the
//! object's SQLite storage as hashes: which task each is for, whether it is revoked, and
//! the tokens its calls used. A credential is good only between its task's start and its end:
//! the object revokes it the moment the task ends however it ends, and every credential when
//! the container stops.

use serde::Serialize;
use std::rc::Rc;

use worker::SqlStorageValue;

use crate::{
    archive::{
        sql::{apply_schema, Sql},
        sql_values::{as_u64, ids_with_counts, int, text},
    },
    container::model_gateway::usage::Tokens,
};

/// How long a credential minted for a Start may go unbound to a task (the Start's reply binds
/// it at once; one that never comes must not leave a usable credential).
pub const UNBOUND_LIFETIME_MS: u64 = 120_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS model_grants (
  hash TEXT PRIMARY KEY,
  task_id TEXT,
  minted_ms INTEGER NOT NULL,
  revoked_ms INTEGER,
  calls INTEGER NOT NULL DEFAULT 0,
  input_tokens INTEGER NOT NULL DEFAULT 0,
  output_tokens INTEGER NOT NULL DEFAULT 0,
  cache_read_tokens INTEGER NOT NULL DEFAULT 0,
  cache_creation_tokens INTEGER NOT NULL DEFAULT 0,
  billed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS model_grants_by_task ON model_grants (task_id)";

/// One credential, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// `None` until the Start it was minted for answered.
    pub task_id: Option<String>,
    pub minted_ms: u64,
    pub revoked: bool,
}

impl Grant {
    /// Whether a call may use it at `now_ms` (its task's end is checked by the caller).
    pub fn usable(&self, now_ms: u64) -> bool {
        !self.revoked && (self.task_id.is_some() || now_ms < self.minted_ms + UNBOUND_LIFETIME_MS)
    }
}

/// What one task's model calls used, for the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskTokens {
    pub task_id: String,
    pub calls: u64,
    #[serde(flatten)]
    pub tokens: Tokens,
}

/// The credentials of one object.
#[derive(Clone)]
pub struct ModelGrants {
    sql: Rc<dyn Sql>,
}

impl ModelGrants {
    /// The credentials in `sql`, their table created if need be.
    ///
    /// # Errors
    /// The storage refused the schema.
    pub fn open(sql: Rc<dyn Sql>) -> worker::Result<ModelGrants> {
        apply_schema(sql.as_ref(), SCHEMA)?;
        // A table made before billing had no `billed` column; adding it again fails harmlessly.
        let _ = sql.query("ALTER TABLE model_grants ADD COLUMN billed INTEGER NOT NULL DEFAULT 0", vec![]);
        Ok(ModelGrants { sql })
    }

    /// Records a credential minted for a Start (by its hash).
    pub fn mint(&self, hash: &str, now_ms: u64) -> worker::Result<()> {
        self.sql.query("INSERT INTO model_grants (hash, minted_ms) VALUES (?, ?)", vec![text(hash), int(now_ms)])?;
        Ok(())
    }

    /// Binds the credential to the task its Start created.
    pub fn bind(&self, hash: &str, task_id: &str) -> worker::Result<()> {
        self.sql.query("UPDATE model_grants SET task_id = ? WHERE hash = ?", vec![text(task_id), text(hash)])?;
        Ok(())
    }

    pub fn lookup(&self, hash: &str) -> worker::Result<Option<Grant>> {
        let rows = self
            .sql
            .query("SELECT task_id, minted_ms, revoked_ms FROM model_grants WHERE hash = ?", vec![text(hash)])?;
        Ok(rows.into_iter().next().map(|row| Grant {
            task_id: match &row[0] {
                SqlStorageValue::String(id) => Some(id.clone()),
                _ => None,
            },
            minted_ms: as_u64(&row[1]),
            revoked: !matches!(row[2], SqlStorageValue::Null),
        }))
    }

    /// Revokes the credential `hash` (a Start that failed).
    pub fn revoke(&self, hash: &str, now_ms: u64) -> worker::Result<()> {
        self.sql.query(
            "UPDATE model_grants SET revoked_ms = ? WHERE hash = ? AND revoked_ms IS NULL",
            vec![int(now_ms), text(hash)],
        )?;
        Ok(())
    }

    /// Revokes the credentials of `task_id` (it ended).
    pub fn revoke_task(&self, task_id: &str, now_ms: u64) -> worker::Result<()> {
        self.sql.query(
            "UPDATE model_grants SET revoked_ms = ? WHERE task_id = ? AND revoked_ms IS NULL",
            vec![int(now_ms), text(task_id)],
        )?;
        Ok(())
    }

    /// Revokes every credential still good (the container stopped or was lost).
    pub fn revoke_all(&self, now_ms: u64) -> worker::Result<()> {
        self.sql.query("UPDATE model_grants SET revoked_ms = ? WHERE revoked_ms IS NULL", vec![int(now_ms)])?;
        Ok(())
    }

    /// Adds one relayed call's tokens to its credential.
    pub fn add_usage(&self, hash: &str, tokens: Tokens) -> worker::Result<()> {
        self.sql.query(
            "UPDATE model_grants SET calls = calls + 1, input_tokens = input_tokens + ?, \
             output_tokens = output_tokens + ?, cache_read_tokens = cache_read_tokens + ?, \
             cache_creation_tokens = cache_creation_tokens + ? WHERE hash = ?",
            vec![int(tokens.input), int(tokens.output), int(tokens.cache_read), int(tokens.cache_creation), text(hash)],
        )?;
        Ok(())
    }

    /// The tasks whose credentials are all revoked (the task ended) and whose tokens are not
    /// billed yet, with their tokens in all.
    pub fn unbilled(&self) -> worker::Result<Vec<(String, u64)>> {
        let rows = self.sql.query(
            "SELECT task_id, SUM(input_tokens + output_tokens + cache_read_tokens + cache_creation_tokens) \
             FROM model_grants WHERE task_id IS NOT NULL GROUP BY task_id \
             HAVING MIN(billed) = 0 AND COUNT(revoked_ms) = COUNT(*)",
            vec![],
        )?;
        Ok(ids_with_counts(&rows))
    }

    /// Records that `task_id`'s tokens are billed.
    pub fn mark_billed(&self, task_id: &str) -> worker::Result<()> {
        self.sql.query("UPDATE model_grants SET billed = 1 WHERE task_id = ?", vec![text(task_id)])?;
        Ok(())
    }

    /// The tokens of every task whose agent called the model, newest first.
    pub fn usage_by_task(&self) -> worker::Result<Vec<TaskTokens>> {
        let rows = self.sql.query(
            "SELECT task_id, SUM(calls), SUM(input_tokens), SUM(output_tokens), SUM(cache_read_tokens), \
                 SUM(cache_creation_tokens), MAX(minted_ms) AS newest FROM model_grants \
                 WHERE task_id IS NOT NULL AND calls > 0 GROUP BY task_id ORDER BY newest DESC",
            vec![],
        )?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let SqlStorageValue::String(task_id) = &row[0] else { return None };
                Some(TaskTokens {
                    task_id: task_id.clone(),
                    calls: as_u64(&row[1]),
                    tokens: Tokens {
                        input: as_u64(&row[2]),
                        output: as_u64(&row[3]),
                        cache_read: as_u64(&row[4]),
                        cache_creation: as_u64(&row[5]),
                    },
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(target_arch = "wasm32"))]
    fn grants() -> ModelGrants {
        ModelGrants::open(Rc::new(crate::archive::sql::in_memory::Memory::default())).unwrap()
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn tokens(input: u64, output: u64) -> Tokens {
        Tokens { input, output, cache_read: 1, cache_creation: 0 }
    }

    #[test]
    #[cfg(not(target_arch = "wasm32"))]
    fn a_credential_is_minted_bound_to_its_task_and_revoked_with_it() {
        let grants = grants();
        assert_eq!(grants.lookup("h1").unwrap(), None, "never minted");
        grants.mint("h1", 1_000).unwrap();
        let unbound = grants.lookup("h1").unwrap().unwrap();
        assert_eq!((unbound.task_id, unbound.revoked), (None, false));
        grants.bind("h1", "t1").unwrap();
        grants.mint("h2", 1_000).unwrap();
        grants.bind("h2", "t2").unwrap();
        grants.revoke_task("t1", 2_000).unwrap();
        assert!(grants.lookup("h1").unwrap().unwrap().revoked, "its task ended");
        assert!(grants.lookup("h2").unwrap().unwrap().usable(2_000), "another task's goes on");
        grants.revoke_all(3_000).unwrap();
        assert!(grants.lookup("h2").unwrap().unwrap().revoked, "the container stopped");
        grants.mint("h3", 4_000).unwrap();
        grants.revoke("h3", 4_001).unwrap();
        assert!(grants.lookup("h3").unwrap().unwrap().revoked, "its Start failed");
    }

    #[test]
    #[cfg(not(target_arch = "wasm32"))]
    fn a_tasks_tokens_are_billed_once_after_all_its_credentials_ended() {
        let grants = grants();
        for (hash, task, minted) in [("h1", "t1", 1), ("h2", "t1", 2), ("h3", "t2", 3)] {
            grants.mint(hash, minted).unwrap();
            grants.bind(hash, task).unwrap();
        }
        grants.add_usage("h1", tokens(10, 5)).unwrap();
        grants.add_usage("h2", tokens(20, 5)).unwrap();
        grants.add_usage("h3", tokens(7, 0)).unwrap();
        assert!(grants.unbilled().unwrap().is_empty(), "nothing has ended");
        grants.revoke("h1", 10).unwrap();
        assert!(grants.unbilled().unwrap().is_empty(), "t1 still has a credential in use");
        grants.revoke_task("t1", 11).unwrap();
        assert_eq!(grants.unbilled().unwrap(), [("t1".to_string(), 42)], "10+5+1 and 20+5+1");
        grants.mark_billed("t1").unwrap();
        assert!(grants.unbilled().unwrap().is_empty(), "billed once");
        let usage = grants.usage_by_task().unwrap();
        let listed: Vec<(&str, u64, u64)> =
            usage.iter().map(|u| (u.task_id.as_str(), u.calls, u.tokens.input)).collect();
        assert_eq!(listed, [("t2", 1, 7), ("t1", 2, 30)], "newest first, calls and tokens summed");
    }

    #[test]
    fn a_grant_is_usable_until_revoked_and_unbound_only_briefly() {
        let bound = Grant { task_id: Some("t1".into()), minted_ms: 0, revoked: false };
        assert!(bound.usable(10 * UNBOUND_LIFETIME_MS));
        assert!(!Grant { revoked: true, ..bound.clone() }.usable(1));
        let unbound = Grant { task_id: None, ..bound };
        assert!(unbound.usable(UNBOUND_LIFETIME_MS - 1));
        assert!(!unbound.usable(UNBOUND_LIFETIME_MS));
    }
}
