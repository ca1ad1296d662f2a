//! Delivers a task's work once its agent has succeeded: the diff since the starting commit, a
//! commit of it on the task's branch, and (when asked) a push of that branch. Thin glue over real
//! git; the logic lives in [`crate::git_diff`], [`crate::diff_cap`], [`crate::commit_message`]
//! and [`crate::git_credentials`].
//!
//! Order, each step recorded before the next starts: `diff` event (the whole diff is first written
//! to `diff.pb` in the task's directory, for GetDiff); nothing changed: done, no commit. Otherwise
//! the changes are committed (`committed` event) and, when asked, pushed (`branch_pushed` event).
//! A failure ends the task FAILED, and what was recorded before it stays.
//!
//! The agent had the clone to itself, so nothing in it is trusted: `.git/config` is put back as
//! the clone left it (the agent could have added a credential helper, an `insteadOf` rewrite of
//! the push URL, or an fsmonitor command), global config is ignored (the agent shares the
//! service's HOME), hooks are off, and the commit is made with plumbing (`write-tree`,
//! `commit-tree`, `update-ref`), which runs no hook and reads no message template.

use std::{
    io,
    path::{Path, PathBuf},
};

use autopilot_contract::v1::{event::Payload, BranchPushed, Committed, Diff};
use prost::Message;
use tokio_util::sync::CancellationToken;

use crate::{
    commit_message::commit_message,
    diff_cap::{cap, for_event, STORED_MAX_PATCH_BYTES},
    git_command::{base_command, run, GitError, GitSettings, Stdout},
    git_credentials::GitCredentials,
    git_diff::{build_diff, parse_name_status, parse_numstat, split_patch},
    redact::Redactor,
    spec::TaskSpec,
    task::Task,
};

/// The whole diff of a task, in its directory (protobuf `Diff`, secrets masked): what GetDiff answers.
pub const DIFF_FILE: &str = "diff.pb";
/// git's patch output, read into `diff.pb` and then removed.
const PATCH_FILE: &str = "diff.patch";
/// The commit message, given to `commit-tree -F` (not on the command line) and then removed.
const MESSAGE_FILE: &str = "commit-message.txt";

/// The clone's `.git/config` before the agent runs, put back before delivery. Kept in memory:
/// anything on disk the agent (same user) could rewrite.
///
/// # Errors
/// The file could not be read.
pub fn save_clean_git_config(task_dir: &Path) -> io::Result<Vec<u8>> {
    std::fs::read(task_dir.join("repo/.git/config"))
}

/// The whole diff of the task whose directory is `task_dir`, if it has one.
///
/// # Errors
/// The file exists but could not be read or decoded.
pub fn read_diff(task_dir: &Path) -> io::Result<Option<Diff>> {
    match std::fs::read(task_dir.join(DIFF_FILE)) {
        Ok(bytes) => Diff::decode(bytes.as_slice()).map(Some).map_err(io::Error::other),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// What delivery needs beyond the task.
pub struct DeliveryContext<'a> {
    pub git: &'a GitSettings,
    pub credentials: &'a GitCredentials,
    /// The clone's `.git/config` from before the agent ran ([`save_clean_git_config`]).
    pub clean_git_config: &'a [u8],
}

/// Diffs, commits and pushes the task's work; `summary` is the agent's final answer.
///
/// # Errors
/// [`GitError::Stopped`] when the task was told to stop; [`GitError::Failed`] with a message for
/// people (git's own words, secrets masked) otherwise.
pub async fn deliver(
    task: &Task,
    spec: &TaskSpec,
    base_commit: &str,
    summary: &str,
    ctx: &DeliveryContext<'_>,
) -> Result<(), GitError> {
    let dir = task.dir();
    let git = Git::new(ctx.git, dir.join("repo"), spec, task.redactor(), task.stop_token());
    restore_git_config(dir, ctx.clean_git_config)?;

    git.run(&["add", "--all"]).await?;
    let names = git.run(&["diff", "--cached", "-M", "--name-status", "-z", base_commit, "--"]).await?;
    let numstat = git.run(&["diff", "--cached", "-M", "--numstat", "-z", base_commit, "--"]).await?;
    let patch_path = dir.join(PATCH_FILE);
    let patch_args = ["diff", "--cached", "-M", "--no-color", "--no-ext-diff", "--no-textconv", base_commit, "--"];
    git.run_to_file(&patch_args, &patch_path).await?;
    let patch = read_patch(&patch_path).map_err(|e| failed(format!("could not read the diff: {e}")))?;
    let _ = std::fs::remove_file(&patch_path);

    let has_secret = patch.as_deref().is_some_and(|p| task.redactor().contains_secret(&String::from_utf8_lossy(p)));
    let names = parse_name_status(names.as_bytes()).map_err(|e| failed(e.to_string()))?;
    let numstat = parse_numstat(numstat.as_bytes()).map_err(|e| failed(e.to_string()))?;
    let patches = patch.as_deref().map(split_patch);
    let mut diff = build_diff(base_commit, names, numstat, patches).map_err(|e| failed(e.to_string()))?;
    task.redactor().redact_diff(&mut diff);
    let diff = cap(&diff, usize::MAX, STORED_MAX_PATCH_BYTES);
    write_diff(dir, &diff).map_err(|e| failed(format!("could not keep the diff: {e}")))?;
    task.record(Payload::Diff(for_event(&diff)));
    let stats = diff.stats.unwrap_or_default();
    tracing::info!(
        task_id = task.id(),
        files = stats.files_changed,
        insertions = stats.insertions,
        deletions = stats.deletions,
        "diffed the agent's work"
    );
    if diff.files.is_empty() {
        return Ok(());
    }
    if patch.is_none() {
        return Err(failed(format!(
            "the changes are larger than {} MiB of diff, too large to check for secrets, so they were not \
             committed or pushed; the diff lists the files",
            STORED_MAX_PATCH_BYTES / (1024 * 1024)
        )));
    }
    if has_secret {
        return Err(failed(
            "the changes contain a secret of the agent-service (the model API key, a git credential, or one \
             of the environment's secrets), so they were not committed or pushed; the diff shows where \
             (masked as ***)"
                .into(),
        ));
    }

    let branch = &spec.run.delivery.branch;
    // The message is pushed with the commit: no secret may ride in the prompt or the answer.
    let message =
        commit_message(&task.redactor().redact(&spec.run.prompt), &task.redactor().redact(summary), task.id());
    let commit = commit_changes(&git, dir, &message).await?;
    let branch_ref = format!("refs/heads/{branch}");
    git.run(&["update-ref", "-m", "autopilot: deliver the task's changes", &branch_ref, &commit]).await?;
    git.run(&["symbolic-ref", "HEAD", &branch_ref]).await?;
    task.record(Payload::Committed(Committed { branch: branch.clone(), commit: commit.clone() }));
    tracing::info!(task_id = task.id(), %branch, %commit, "committed the agent's work");

    if spec.run.delivery.push {
        let refspec = format!("{branch_ref}:{branch_ref}");
        let remote = &spec.repo.display;
        git.run(&["push", "--quiet", "--", &spec.repo.url, &refspec]).await.map_err(|e| match e {
            GitError::Stopped => GitError::Stopped,
            GitError::Failed(detail) => {
                let hint = ctx.credentials.auth_hint(&detail).map(|h| format!("\n{h}")).unwrap_or_default();
                failed(format!("could not push branch {branch} to {remote}: {detail}{hint}"))
            }
        })?;
        tracing::info!(task_id = task.id(), %branch, remote = %remote, "pushed the branch");
        task.record(Payload::BranchPushed(BranchPushed { branch: branch.clone(), commit, remote_url: remote.clone() }));
    }
    Ok(())
}

/// Commits the index on top of HEAD (the start commit, or the agent's own last commit); returns
/// the branch's new head. When the agent committed everything itself, that commit is the head.
async fn commit_changes(git: &Git<'_>, dir: &Path, message: &str) -> Result<String, GitError> {
    let tree = git.run(&["write-tree"]).await?.trim().to_string();
    let head = git.run(&["rev-parse", "--verify", "--end-of-options", "HEAD^{commit}"]).await?.trim().to_string();
    let head_tree = git.run(&["rev-parse", "--verify", "--end-of-options", "HEAD^{tree}"]).await?.trim().to_string();
    if tree == head_tree {
        return Ok(head);
    }
    let message_path = dir.join(MESSAGE_FILE);
    std::fs::write(&message_path, message).map_err(|e| failed(format!("could not write the commit message: {e}")))?;
    let message_arg = message_path.to_string_lossy().into_owned();
    let commit = git.run(&["commit-tree", "-p", &head, "-F", &message_arg, &tree]).await;
    let _ = std::fs::remove_file(&message_path);
    Ok(commit?.trim().to_string())
}

/// git in the clone, with the delivery's hardening and the commit identity.
struct Git<'a> {
    settings: &'a GitSettings,
    /// `settings` without credentials, for every command but the push.
    local: GitSettings,
    repo: PathBuf,
    env: Vec<(String, String)>,
    redactor: &'a Redactor,
    stop: &'a CancellationToken,
}

impl<'a> Git<'a> {
    fn new(
        settings: &'a GitSettings,
        repo: PathBuf,
        spec: &TaskSpec,
        redactor: &'a Redactor,
        stop: &'a CancellationToken,
    ) -> Self {
        let (name, email) = (&spec.run.delivery.author_name, &spec.run.delivery.author_email);
        let env = [
            ("GIT_AUTHOR_NAME", name),
            ("GIT_AUTHOR_EMAIL", email),
            ("GIT_COMMITTER_NAME", name),
            ("GIT_COMMITTER_EMAIL", email),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec();
        let local = GitSettings { credentials_env: Vec::new(), ..settings.clone() };
        Git { settings, local, repo, env, redactor, stop }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        // Only the push talks to the remote: no other command (nor a filter or helper the
        // repository might name) gets the credentials in its environment.
        let settings = if args.first() == Some(&"push") { self.settings } else { &self.local };
        let mut command = base_command(settings, Some(&self.repo));
        command
            .args(["-c", "core.fsmonitor=false", "-c", "core.quotePath=false", "-c", "commit.gpgSign=false"])
            .args(args)
            .envs(self.env.iter().cloned());
        command
    }

    async fn run(&self, args: &[&str]) -> Result<String, GitError> {
        run(self.command(args), args[0], Stdout::Capture, self.settings, self.redactor, self.stop).await
    }

    async fn run_to_file(&self, args: &[&str], path: &Path) -> Result<String, GitError> {
        run(self.command(args), args[0], Stdout::File(path), self.settings, self.redactor, self.stop).await
    }
}

fn failed(message: String) -> GitError {
    GitError::Failed(message)
}

/// Puts back the clone's own `.git/config`, replacing whatever the agent left there.
fn restore_git_config(task_dir: &Path, clean: &[u8]) -> Result<(), GitError> {
    let git_dir = task_dir.join("repo/.git");
    let is_dir = std::fs::symlink_metadata(&git_dir).map(|m| m.is_dir()).unwrap_or(false);
    if !is_dir {
        return Err(failed(
            "the clone's .git is no longer a directory (the agent replaced it), so nothing was delivered".into(),
        ));
    }
    let config = git_dir.join("config");
    // Removed first: a symlink the agent put there must not be written through.
    match std::fs::remove_file(&config) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(failed(format!("could not reset the clone's git config: {e}"))),
    }
    std::fs::write(&config, clean).map_err(|e| failed(format!("could not reset the clone's git config: {e}")))
}

/// The patch text, or `None` when it is too large to keep (GetDiff then says it is truncated).
fn read_patch(path: &Path) -> io::Result<Option<Vec<u8>>> {
    if std::fs::metadata(path)?.len() > STORED_MAX_PATCH_BYTES as u64 {
        return Ok(None);
    }
    std::fs::read(path).map(Some)
}

/// Writes `diff.pb` whole or not at all (a reader never sees half a file).
fn write_diff(task_dir: &Path, diff: &Diff) -> io::Result<()> {
    let temporary = task_dir.join(format!("{DIFF_FILE}.tmp"));
    std::fs::write(&temporary, diff.encode_to_vec())?;
    std::fs::rename(&temporary, task_dir.join(DIFF_FILE))
}
