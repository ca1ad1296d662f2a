//! Follow-up turns: what a Start with `parent_task_id` continues from, decided before the task
//! exists. Pure: the task manager looks the parent up and calls this; the runner then makes the
//! workspace ([`crate::workspace`]).
//!
//! A follow-up is a task of its own (its own id, events, Status and delivery) that continues its
//! parent's agent conversation in a workspace of its own, made from the parent's:
//! - Where it starts: the parent's delivered commit, on the parent's branch. A parent that
//!   delivered no commit (it changed nothing, failed, was cancelled or timed out before
//!   committing) is continued from the commit it started from; what it left uncommitted is not
//!   carried over (the conversation is: the agent knows what it did, and can redo it). A parent
//!   that never got its repository (it ended while cloning) cannot be continued
//!   (FAILED_PRECONDITION).
//! - Its repository and ref are the parent's. The request may leave them empty; given, they must
//!   name the same repository as a person would read it (credentials, a trailing `/` or `.git`,
//!   and the case of scheme and host aside) and the same ref, or the request is
//!   INVALID_ARGUMENT. Credentials in the request's URL are used for the push; without a URL the
//!   parent's is used with its (masked) credentials removed, so the service's own git
//!   credentials apply.
//! - Its branch is the parent's unless `delivery.branch` names another; it commits on top of the
//!   parent's commit, so a pushed branch simply moves forward. Its other options are the
//!   request's, but an empty model keeps the parent's (when the parent is a task of this service).
//! - Its agent resumes the parent's session (Claude Code: `--resume --fork-session`, so each
//!   follow-up gets a session id of its own and siblings never share a transcript). A parent
//!   whose agent never started has no session: the follow-up's agent starts a new one.
//!
//! Each task keeps its own workspace (`tasks/<id>/repo`), so follow-ups of one parent (several
//! at once, or one after another) never see each other's changes, and the parent's stays as it
//! ended, for later follow-ups and ExportWorkspace.

use std::path::PathBuf;

use autopilot_contract::v1::{Task as TaskSnapshot, WorkspaceSnapshot};
use url::Url;

use crate::{
    repo_url::{parse_repo_url, RepoUrl},
    validate::{FieldError, Restore, StartSpec},
};

/// A follow-up's parent and the workspace it continues from.
#[derive(Debug, Clone)]
pub struct FollowUp {
    pub parent_id: String,
    /// The parent's agent session to resume; `None` when its agent never started.
    pub resume_session: Option<String>,
    pub source: WorkspaceSource,
}

/// Where a follow-up's workspace comes from.
#[derive(Debug, Clone)]
pub enum WorkspaceSource {
    /// A task of this service: its clone, at `commit`, whose history starts at `base_commit`.
    Parent { task_dir: PathBuf, commit: String, base_commit: String },
    /// A task of another service (a container that is gone): rebuilt from its snapshot.
    Restore(Box<WorkspaceSnapshot>),
}

impl FollowUp {
    /// The commit the follow-up starts from (its diff's base).
    pub fn start_commit(&self) -> &str {
        match &self.source {
            WorkspaceSource::Parent { commit, .. } => commit,
            WorkspaceSource::Restore(snapshot) => &snapshot.commit,
        }
    }
}

/// A follow-up, resolved: the task's repository, ref and branch, and what it continues from.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub repo: RepoUrl,
    pub git_ref: String,
    pub branch: String,
    pub follow_up: FollowUp,
}

/// Why a follow-up cannot start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The request disagrees with the parent (INVALID_ARGUMENT).
    Invalid(FieldError),
    /// The parent has nothing to continue from (FAILED_PRECONDITION).
    NoWorkspace(String),
}

/// A follow-up of `parent`, a task of this service that has ended, whose directory is
/// `task_dir` and whose workspace history starts at `base_commit` (`None`: its own start).
///
/// # Errors
/// The request names another repository or ref; the parent never got its repository.
pub fn from_parent(
    parent: &TaskSnapshot,
    task_dir: PathBuf,
    base_commit: Option<String>,
    spec: &StartSpec,
) -> Result<Resolved, Refusal> {
    let delivery = parent.delivery.clone().unwrap_or_default();
    let commit = if delivery.commit.is_empty() { parent.commit.clone() } else { delivery.commit.clone() };
    if commit.is_empty() {
        return Err(Refusal::NoWorkspace(format!(
            "task {} ended before its repository was cloned, so there is nothing to follow up on; start a new task",
            parent.task_id
        )));
    }
    let branch = if delivery.branch.is_empty() {
        parent.delivery_options.as_ref().map(|d| d.branch.clone()).unwrap_or_default()
    } else {
        delivery.branch
    };
    let follow_up = FollowUp {
        parent_id: parent.task_id.clone(),
        resume_session: Some(parent.session_id.clone()).filter(|s| !s.is_empty()),
        source: WorkspaceSource::Parent {
            task_dir,
            base_commit: base_commit.unwrap_or_else(|| parent.commit.clone()),
            commit,
        },
    };
    resolve(&parent.repository_url, &parent.git_ref, &branch, follow_up, spec)
}

/// A follow-up of a task this service does not know, continued from `restore`.
///
/// # Errors
/// The request names another repository or ref than the snapshot.
pub fn from_restore(restore: &Restore, spec: &StartSpec) -> Result<Resolved, Refusal> {
    let snapshot = &restore.snapshot;
    let follow_up = FollowUp {
        parent_id: snapshot.task_id.clone(),
        resume_session: Some(snapshot.session_id.clone()).filter(|s| !s.is_empty()),
        source: WorkspaceSource::Restore(snapshot.clone()),
    };
    let repo = spec.repo.clone().unwrap_or_else(|| restore.repo.clone());
    let spec = StartSpec { repo: Some(repo), ..spec.clone() };
    resolve(&snapshot.repository_url, &snapshot.git_ref, &snapshot.branch, follow_up, &spec)
}

fn resolve(
    parent_repository: &str,
    parent_ref: &str,
    parent_branch: &str,
    follow_up: FollowUp,
    spec: &StartSpec,
) -> Result<Resolved, Refusal> {
    let invalid = |field, message: String| Refusal::Invalid(FieldError { field, message });
    let repo = match &spec.repo {
        Some(repo) if !same_repository(&repo.display, parent_repository) => {
            return Err(invalid(
                "repository_url",
                format!(
                    "is not the repository of task {} ({parent_repository}); a follow-up continues on its parent's",
                    follow_up.parent_id
                ),
            ));
        }
        Some(repo) => repo.clone(),
        // Accepted by this service once already (or checked as a restore).
        None => parse_repo_url(&without_credentials(parent_repository), true)
            .map_err(|why| invalid("repository_url", format!("of task {}: {why}", follow_up.parent_id)))?,
    };
    if !spec.git_ref.is_empty() && spec.git_ref != parent_ref {
        return Err(invalid(
            "git_ref",
            format!("is not the ref of task {} ({parent_ref:?}); leave it empty for a follow-up", follow_up.parent_id),
        ));
    }
    let branch =
        if spec.run.delivery.branch.is_empty() { parent_branch.to_string() } else { spec.run.delivery.branch.clone() };
    Ok(Resolved { repo, git_ref: parent_ref.to_string(), branch, follow_up })
}

/// Whether two repository URLs name the same repository as a person reads them: credentials,
/// a trailing `/` or `.git`, and the case of the scheme and host do not count.
pub fn same_repository(a: &str, b: &str) -> bool {
    normalized(a) == normalized(b)
}

fn normalized(raw: &str) -> String {
    let bare = without_credentials(raw);
    let bare = match Url::parse(&bare) {
        // The url crate lower-cases the scheme and host already.
        Ok(url) if raw.contains("://") => url.to_string(),
        _ => bare,
    };
    let trimmed = bare.trim_end_matches('/');
    trimmed.strip_suffix(".git").unwrap_or(trimmed).to_string()
}

/// `raw` without the user and password of a `scheme://` URL (scp-like `user@host:path` keeps its
/// user, which names the SSH account, not a secret).
pub fn without_credentials(raw: &str) -> String {
    if !raw.contains("://") {
        return raw.to_string();
    }
    match Url::parse(raw) {
        Ok(mut url) if url.has_host() => {
            let _ = url.set_password(None);
            let _ = url.set_username("");
            url.to_string()
        }
        _ => raw.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{validate_start, Limits};
    use autopilot_contract::v1::{Delivery, DeliveryOptions, StartRequest};
    use std::time::Duration;

    fn spec(request: StartRequest) -> StartSpec {
        let limits = Limits {
            allow_local_repos: true,
            default_timeout: Duration::from_secs(60),
            max_timeout: Duration::from_secs(600),
        };
        validate_start(&StartRequest { parent_task_id: "p-1".into(), prompt: "more".into(), ..request }, &limits)
            .unwrap()
    }

    fn parent() -> TaskSnapshot {
        TaskSnapshot {
            task_id: "p-1".into(),
            repository_url: "https://***@example.com/team/app.git".into(),
            git_ref: "main".into(),
            commit: "a".repeat(40),
            session_id: "s-1".into(),
            delivery_options: Some(DeliveryOptions { branch: "autopilot/p-1".into(), ..Default::default() }),
            delivery: Some(Delivery {
                branch: "autopilot/p-1".into(),
                commit: "b".repeat(40),
                base_commit: "a".repeat(40),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_follow_up_continues_on_the_parents_commit_branch_and_session() {
        let resolved = from_parent(&parent(), "/w/tasks/p-1".into(), None, &spec(StartRequest::default())).unwrap();
        assert_eq!(resolved.repo.url, "https://example.com/team/app.git", "masked credentials are dropped");
        assert_eq!((resolved.git_ref.as_str(), resolved.branch.as_str()), ("main", "autopilot/p-1"));
        assert_eq!(resolved.follow_up.start_commit(), "b".repeat(40));
        assert_eq!(resolved.follow_up.resume_session.as_deref(), Some("s-1"));
        let WorkspaceSource::Parent { base_commit, .. } = &resolved.follow_up.source else { panic!() };
        assert_eq!(base_commit, &"a".repeat(40));

        // Credentials given again are used; another branch may be named.
        let request = StartRequest {
            repository_url: "https://tok@EXAMPLE.com/team/app/".into(),
            delivery: Some(DeliveryOptions { branch: "fix/more".into(), ..Default::default() }),
            ..Default::default()
        };
        let resolved = from_parent(&parent(), "/w".into(), Some("c".repeat(40)), &spec(request)).unwrap();
        assert_eq!(
            (resolved.repo.url.as_str(), resolved.branch.as_str()),
            ("https://tok@EXAMPLE.com/team/app/", "fix/more")
        );
    }

    #[test]
    fn an_undelivered_parent_is_continued_from_its_start_and_a_clone_less_one_not_at_all() {
        let undelivered = TaskSnapshot { delivery: None, session_id: String::new(), ..parent() };
        let resolved = from_parent(&undelivered, "/w".into(), None, &spec(StartRequest::default())).unwrap();
        assert_eq!(resolved.follow_up.start_commit(), "a".repeat(40));
        assert_eq!(resolved.branch, "autopilot/p-1");
        assert_eq!(resolved.follow_up.resume_session, None, "no session: the agent starts a new one");
        let never_cloned = TaskSnapshot { commit: String::new(), ..undelivered };
        let refusal = from_parent(&never_cloned, "/w".into(), None, &spec(StartRequest::default())).unwrap_err();
        assert!(matches!(refusal, Refusal::NoWorkspace(m) if m.contains("task p-1 ended before its repository")));
    }

    #[test]
    fn another_repository_or_ref_is_refused() {
        let other = StartRequest { repository_url: "https://example.com/team/other.git".into(), ..Default::default() };
        let Refusal::Invalid(error) = from_parent(&parent(), "/w".into(), None, &spec(other)).unwrap_err() else {
            panic!()
        };
        assert_eq!(error.field, "repository_url");
        assert!(error.message.contains("https://***@example.com/team/app.git"), "{}", error.message);
        let other_ref = StartRequest { git_ref: "dev".into(), ..Default::default() };
        let Refusal::Invalid(error) = from_parent(&parent(), "/w".into(), None, &spec(other_ref)).unwrap_err() else {
            panic!()
        };
        assert_eq!(error.field, "git_ref");
    }

    #[test]
    fn the_same_repository_as_people_read_it() {
        assert!(same_repository("https://***@example.com/a/b.git", "https://example.com/a/b"));
        assert!(same_repository("HTTPS://Example.COM/a/b/", "https://example.com/a/b.git"));
        assert!(same_repository("git@github.com:a/b.git", "git@github.com:a/b"));
        assert!(same_repository("file:///srv/r.git", "file:///srv/r.git"));
        assert!(!same_repository("https://example.com/a/b", "https://example.com/a/c"));
        assert!(!same_repository("https://example.com/A/b", "https://example.com/a/b"), "paths keep their case");
        assert_eq!(without_credentials("git@github.com:a/b.git"), "git@github.com:a/b.git");
        assert_eq!(without_credentials("ssh://git:pw@host/r"), "ssh://host/r");
    }
}
