//! The user's environments in their object's SQLite, in the order they were first saved (the
//! first that applies to a repository is its default). Secrets are kept sealed (the caller seals
//! and opens them); each save or cache reset counts a revision, which keys the prepared
//! workspaces, so an edit never meets a workspace prepared by the environment before it.

use std::{collections::BTreeMap, rc::Rc};

use worker::SqlStorageValue;

use crate::archive::{
    sql::Sql,
    sql_values::{as_text, as_u64, int, text},
};

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS environments (
  name TEXT PRIMARY KEY,
  position INTEGER NOT NULL,
  repositories TEXT NOT NULL,
  setup_script TEXT NOT NULL,
  maintenance_script TEXT NOT NULL,
  variables TEXT NOT NULL,
  sealed_secrets TEXT NOT NULL,
  setup_timeout_seconds INTEGER NOT NULL,
  revision INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL
)";

const COLUMNS: &str = "name, repositories, setup_script, maintenance_script, variables, sealed_secrets, \
                       setup_timeout_seconds, revision, updated_ms";

/// An environment as stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredEnvironment {
    pub name: String,
    pub repositories: Vec<String>,
    pub setup_script: String,
    pub maintenance_script: String,
    pub variables: BTreeMap<String, String>,
    /// Each secret's value, sealed.
    pub sealed_secrets: BTreeMap<String, String>,
    pub setup_timeout_seconds: u64,
    pub revision: u64,
    pub updated_ms: u64,
}

impl StoredEnvironment {
    fn from_row(row: &[SqlStorageValue]) -> StoredEnvironment {
        let column = |i: usize| row.get(i).and_then(as_text).unwrap_or_default();
        let number = |i: usize| row.get(i).map(as_u64).unwrap_or_default();
        StoredEnvironment {
            name: column(0).to_string(),
            repositories: serde_json::from_str(column(1)).unwrap_or_default(),
            setup_script: column(2).to_string(),
            maintenance_script: column(3).to_string(),
            variables: serde_json::from_str(column(4)).unwrap_or_default(),
            sealed_secrets: serde_json::from_str(column(5)).unwrap_or_default(),
            setup_timeout_seconds: number(6),
            revision: number(7),
            updated_ms: number(8),
        }
    }
}

#[derive(Clone)]
pub struct EnvironmentStore {
    sql: Rc<dyn Sql>,
}

impl EnvironmentStore {
    /// The table in `sql`, made if need be.
    ///
    /// # Errors
    /// The storage refused the schema.
    pub fn open(sql: Rc<dyn Sql>) -> worker::Result<EnvironmentStore> {
        sql.query(SCHEMA, vec![])?;
        Ok(EnvironmentStore { sql })
    }

    /// Every environment, in the order they were first saved.
    pub fn list(&self) -> worker::Result<Vec<StoredEnvironment>> {
        let rows = self.sql.query(&format!("SELECT {COLUMNS} FROM environments ORDER BY position"), vec![])?;
        Ok(rows.iter().map(|row| StoredEnvironment::from_row(row)).collect())
    }

    pub fn get(&self, name: &str) -> worker::Result<Option<StoredEnvironment>> {
        let rows = self.sql.query(&format!("SELECT {COLUMNS} FROM environments WHERE name = ?"), vec![text(name)])?;
        Ok(rows.first().map(|row| StoredEnvironment::from_row(row)))
    }

    /// Saves `environment` (its revision is the stored one's plus one; a new one keeps its place
    /// after the others); answers it as stored.
    pub fn put(&self, mut environment: StoredEnvironment, now_ms: u64) -> worker::Result<StoredEnvironment> {
        let before = self.get(&environment.name)?;
        environment.revision = before.as_ref().map_or(1, |stored| stored.revision + 1);
        environment.updated_ms = now_ms;
        let position = match before {
            Some(_) => None,
            None => {
                let rows = self.sql.query("SELECT COALESCE(MAX(position), 0) + 1 FROM environments", vec![])?;
                Some(rows.first().and_then(|row| row.first()).map(as_u64).unwrap_or(1))
            }
        };
        self.sql.query(
            "INSERT INTO environments (name, position, repositories, setup_script, maintenance_script, variables, \
             sealed_secrets, setup_timeout_seconds, revision, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET repositories = excluded.repositories, setup_script = \
             excluded.setup_script, maintenance_script = excluded.maintenance_script, variables = \
             excluded.variables, sealed_secrets = excluded.sealed_secrets, setup_timeout_seconds = \
             excluded.setup_timeout_seconds, revision = excluded.revision, updated_ms = excluded.updated_ms",
            vec![
                text(&environment.name),
                int(position.unwrap_or(0)),
                json_text(&environment.repositories),
                text(&environment.setup_script),
                text(&environment.maintenance_script),
                json_text(&environment.variables),
                json_text(&environment.sealed_secrets),
                int(environment.setup_timeout_seconds),
                int(environment.revision),
                int(now_ms),
            ],
        )?;
        Ok(environment)
    }

    /// Deletes `name`; whether it existed.
    pub fn delete(&self, name: &str) -> worker::Result<bool> {
        let existed = self.get(name)?.is_some();
        self.sql.query("DELETE FROM environments WHERE name = ?", vec![text(name)])?;
        Ok(existed)
    }

    /// Counts a revision of `name` without changing it (its prepared workspaces are then
    /// unusable); the new revision, or `None` when there is no such environment.
    pub fn reset(&self, name: &str, now_ms: u64) -> worker::Result<Option<u64>> {
        self.sql.query(
            "UPDATE environments SET revision = revision + 1, updated_ms = ? WHERE name = ?",
            vec![int(now_ms), text(name)],
        )?;
        Ok(self.get(name)?.map(|stored| stored.revision))
    }
}

/// A stored collection, as JSON text.
fn json_text(value: &impl serde::Serialize) -> SqlStorageValue {
    text(&serde_json::to_string(value).unwrap_or_default())
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::archive::sql::in_memory::Memory;

    fn environment(name: &str) -> StoredEnvironment {
        StoredEnvironment {
            name: name.into(),
            repositories: vec!["https://github.com/o/r".into()],
            setup_script: "make deps".into(),
            variables: BTreeMap::from([("RUST_LOG".into(), "debug".into())]),
            sealed_secrets: BTreeMap::from([("NPM_TOKEN".into(), "sealed".into())]),
            setup_timeout_seconds: 600,
            ..Default::default()
        }
    }

    #[test]
    fn environments_keep_their_order_and_count_a_revision_per_save_or_reset() {
        let store = EnvironmentStore::open(Rc::new(Memory::default())).unwrap();
        let web = store.put(environment("web"), 10).unwrap();
        assert_eq!((web.revision, web.updated_ms), (1, 10));
        store.put(environment("api"), 11).unwrap();
        let edited = store.put(StoredEnvironment { setup_script: "make".into(), ..environment("web") }, 12).unwrap();
        assert_eq!(edited.revision, 2);
        let names: Vec<String> = store.list().unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["web", "api"], "an edit keeps the environment's place");
        assert_eq!(store.get("web").unwrap().unwrap(), edited);
        assert_eq!(store.reset("web", 13).unwrap(), Some(3));
        assert_eq!(store.reset("nope", 13).unwrap(), None);
        assert!(store.delete("web").unwrap());
        assert!(!store.delete("web").unwrap());
        assert_eq!(store.get("web").unwrap(), None);
    }
}
