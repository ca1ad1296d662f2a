//! What each git credential reaches: the one repository of its task (`owner/name` on GitHub)
//! and the one branch it may push, kept beside the credentials' grants in the object's SQLite
//! (`model_grants` holds them all: minted, bound to a task, revoked when it ends). The branch is
//! known once the Start answered (`autopilot/<task id>` unless the request named one).

use std::rc::Rc;

use crate::archive::{
    sql::Sql,
    sql_values::{as_text, text},
};

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS git_targets (
  hash TEXT PRIMARY KEY,
  repository TEXT NOT NULL,
  branch TEXT NOT NULL DEFAULT ''
)";

/// A credential's repository and branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `owner/name`.
    pub repository: String,
    /// Empty until the task's Start answered.
    pub branch: String,
}

impl Target {
    /// A `(repository, branch)` row.
    fn from_row(row: &[worker::SqlStorageValue]) -> Target {
        let column = |i: usize| row.get(i).and_then(as_text).unwrap_or_default().to_string();
        Target { repository: column(0), branch: column(1) }
    }
}

#[derive(Clone)]
pub struct GitTargets {
    sql: Rc<dyn Sql>,
}

impl GitTargets {
    /// The table in `sql`, made if need be.
    ///
    /// # Errors
    /// The storage refused the schema.
    pub fn open(sql: Rc<dyn Sql>) -> worker::Result<GitTargets> {
        sql.query(SCHEMA, vec![])?;
        Ok(GitTargets { sql })
    }

    /// Records that the credential `hash` reaches `repository`.
    pub fn add(&self, hash: &str, repository: &str) -> worker::Result<()> {
        self.sql
            .query("INSERT INTO git_targets (hash, repository) VALUES (?, ?)", vec![text(hash), text(repository)])?;
        Ok(())
    }

    /// Sets the branch the credential `hash` may push.
    pub fn set_branch(&self, hash: &str, branch: &str) -> worker::Result<()> {
        self.sql.query("UPDATE git_targets SET branch = ? WHERE hash = ?", vec![text(branch), text(hash)])?;
        Ok(())
    }

    pub fn get(&self, hash: &str) -> worker::Result<Option<Target>> {
        let rows = self.sql.query("SELECT repository, branch FROM git_targets WHERE hash = ?", vec![text(hash)])?;
        Ok(rows.first().map(|row| Target::from_row(row)))
    }

    /// The target of `task_id`'s git credential (its conversation's repository and branch, for
    /// a follow-up).
    pub fn of_task(&self, task_id: &str) -> worker::Result<Option<Target>> {
        let rows = self.sql.query(
            "SELECT t.repository, t.branch FROM git_targets t JOIN model_grants g ON g.hash = t.hash \
             WHERE g.task_id = ? AND t.branch != '' LIMIT 1",
            vec![text(task_id)],
        )?;
        Ok(rows.first().map(|row| Target::from_row(row)))
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::{archive::sql::in_memory::Memory, container::model_gateway::grants::ModelGrants};

    #[test]
    fn a_credential_reaches_its_repository_and_after_the_start_its_branch() {
        let sql: Rc<dyn Sql> = Rc::new(Memory::default());
        let grants = ModelGrants::open(Rc::clone(&sql)).unwrap();
        let targets = GitTargets::open(sql).unwrap();
        grants.mint("h1", 1).unwrap();
        targets.add("h1", "octo/app").unwrap();
        assert_eq!(targets.get("h1").unwrap().unwrap().branch, "", "no branch before the Start answered");
        assert_eq!(targets.of_task("t1").unwrap(), None);
        grants.bind("h1", "t1").unwrap();
        targets.set_branch("h1", "autopilot/t1").unwrap();
        let target = Target { repository: "octo/app".into(), branch: "autopilot/t1".into() };
        assert_eq!(targets.get("h1").unwrap(), Some(target.clone()));
        assert_eq!(targets.of_task("t1").unwrap(), Some(target), "a follow-up finds its conversation's");
        assert_eq!(targets.get("other").unwrap(), None);
    }
}
