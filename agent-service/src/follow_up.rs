//! Follow-up turns: what a Start with `parent_task_id` continues from ([`FollowUp`], in
//! [`crate::spec`]), decided before the task exists. Pure: the task manager looks the parent up
//! and calls this; the runner then makes the workspace ([`crate::workspace`]).
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

use autopilot_contract::v1::Task as TaskSnapshot;

use crate::{
    repo_url::{parse_repo_url, same_repository, without_credentials, RepoUrl},
    spec::{FollowUp, ParentRequest, Restore, WorkspaceSource},
    validate::FieldError,
};

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

/// What the parent worked on: its repository (as people see it, so masked), ref and branch.
struct ParentWork<'a> {
    repository: &'a str,
    git_ref: &'a str,
    branch: &'a str,
}

/// A follow-up of `parent`, a task of this service that has ended, whose directory is
/// `task_dir` and whose workspace history starts at `base_commit` (`None`: its own start), as
/// `request` asks, delivered to `branch` (the request's; empty: the parent's).
///
/// # Errors
/// The request names another repository or ref; the parent never got its repository.
pub fn from_parent(
    parent: &TaskSnapshot,
    task_dir: PathBuf,
    base_commit: Option<String>,
    request: &ParentRequest,
    branch: &str,
) -> Result<Resolved, Refusal> {
    let delivery = parent.delivery.clone().unwrap_or_default();
    let commit = if delivery.commit.is_empty() { parent.commit.clone() } else { delivery.commit.clone() };
    if commit.is_empty() {
        return Err(Refusal::NoWorkspace(format!(
            "task {} ended before its repository was cloned, so there is nothing to follow up on; start a new task",
            parent.task_id
        )));
    }
    let parent_branch = if delivery.branch.is_empty() {
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
    let work = ParentWork { repository: &parent.repository_url, git_ref: &parent.git_ref, branch: &parent_branch };
    resolve(work, follow_up, request.repo.as_ref(), &request.git_ref, branch)
}

/// A follow-up of a task this service does not know, continued from `restore` (`request`'s), as
/// `request` asks, delivered to `branch` (the request's; empty: the snapshot's).
///
/// # Errors
/// The request names another repository or ref than the snapshot.
pub fn from_restore(restore: &Restore, request: &ParentRequest, branch: &str) -> Result<Resolved, Refusal> {
    let snapshot = &restore.snapshot;
    let follow_up = FollowUp {
        parent_id: snapshot.task_id.clone(),
        resume_session: Some(snapshot.session_id.clone()).filter(|s| !s.is_empty()),
        source: WorkspaceSource::Restore(snapshot.clone()),
    };
    let repo = request.repo.as_ref().unwrap_or(&restore.repo);
    let work =
        ParentWork { repository: &snapshot.repository_url, git_ref: &snapshot.git_ref, branch: &snapshot.branch };
    resolve(work, follow_up, Some(repo), &request.git_ref, branch)
}

/// The follow-up on `parent`'s work, given the request's `repo`, `git_ref` and `branch`.
fn resolve(
    parent: ParentWork<'_>,
    follow_up: FollowUp,
    repo: Option<&RepoUrl>,
    git_ref: &str,
    branch: &str,
) -> Result<Resolved, Refusal> {
    let ParentWork { repository: parent_repository, git_ref: parent_ref, branch: parent_branch } = parent;
    let invalid = |field: &str, message: String| Refusal::Invalid(FieldError { field: field.into(), message });
    let repo = match repo {
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
    if !git_ref.is_empty() && git_ref != parent_ref {
        return Err(invalid(
            "git_ref",
            format!("is not the ref of task {} ({parent_ref:?}); leave it empty for a follow-up", follow_up.parent_id),
        ));
    }
    let branch = if branch.is_empty() { parent_branch.to_string() } else { branch.to_string() };
    Ok(Resolved { repo, git_ref: parent_ref.to_string(), branch, follow_up })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        spec::Origin,
        validate::{validate_start, Limits},
    };
    use autopilot_contract::v1::{Delivery, DeliveryOptions, StartRequest};
    use std::time::Duration;

    /// [`from_parent`] for `request`, validated as a follow-up of task "p-1".
    fn follow_up_of(
        parent: &TaskSnapshot,
        task_dir: PathBuf,
        base_commit: Option<String>,
        request: StartRequest,
    ) -> Result<Resolved, Refusal> {
        let limits = Limits {
            allow_local_repos: true,
            default_timeout: Duration::from_secs(60),
            max_timeout: Duration::from_secs(600),
        };
        let spec =
            validate_start(&StartRequest { parent_task_id: "p-1".into(), prompt: "more".into(), ..request }, &limits)
                .unwrap();
        let Origin::Parent(request) = spec.origin else { panic!("a follow-up names its parent") };
        from_parent(parent, task_dir, base_commit, &request, &spec.run.delivery.branch)
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
        let resolved = follow_up_of(&parent(), "/w/tasks/p-1".into(), None, StartRequest::default()).unwrap();
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
        let resolved = follow_up_of(&parent(), "/w".into(), Some("c".repeat(40)), request).unwrap();
        assert_eq!(
            (resolved.repo.url.as_str(), resolved.branch.as_str()),
            ("https://tok@EXAMPLE.com/team/app/", "fix/more")
        );
    }

    #[test]
    fn an_undelivered_parent_is_continued_from_its_start_and_a_clone_less_one_not_at_all() {
        let undelivered = TaskSnapshot { delivery: None, session_id: String::new(), ..parent() };
        let resolved = follow_up_of(&undelivered, "/w".into(), None, StartRequest::default()).unwrap();
        assert_eq!(resolved.follow_up.start_commit(), "a".repeat(40));
        assert_eq!(resolved.branch, "autopilot/p-1");
        assert_eq!(resolved.follow_up.resume_session, None, "no session: the agent starts a new one");
        let never_cloned = TaskSnapshot { commit: String::new(), ..undelivered };
        let refusal = follow_up_of(&never_cloned, "/w".into(), None, StartRequest::default()).unwrap_err();
        assert!(matches!(refusal, Refusal::NoWorkspace(m) if m.contains("task p-1 ended before its repository")));
    }

    #[test]
    fn another_repository_or_ref_is_refused() {
        let other = StartRequest { repository_url: "https://example.com/team/other.git".into(), ..Default::default() };
        let Refusal::Invalid(error) = follow_up_of(&parent(), "/w".into(), None, other).unwrap_err() else { panic!() };
        assert_eq!(error.field, "repository_url");
        assert!(error.message.contains("https://***@example.com/team/app.git"), "{}", error.message);
        let other_ref = StartRequest { git_ref: "dev".into(), ..Default::default() };
        let Refusal::Invalid(error) = follow_up_of(&parent(), "/w".into(), None, other_ref).unwrap_err() else {
            panic!()
        };
        assert_eq!(error.field, "git_ref");
    }
}
