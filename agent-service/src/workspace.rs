//! A follow-up's workspace, made from its parent's ([`crate::follow_up`] decides from what), and
//! the snapshot of a task's workspace that lets a follow-up continue it in another container
//! (ExportWorkspace, and `StartRequest.restore` on the way back). Thin glue over real git and
//! the agent CLI's transcript files.
//!
//! - From a parent of this service: `git init` of the follow-up's own `tasks/<id>/repo`, a fetch
//!   of the parent's commit from the parent's clone (local, no credentials; `--update-shallow`,
//!   since clones are shallow), and a checkout of the parent's branch at it. Only the commit
//!   travels, never the parent's `.git/config` or hooks, so nothing the parent's agent planted
//!   there reaches the follow-up. The parent's session transcript is copied to where the CLI
//!   resumes it for the new workspace.
//! - From a snapshot: the repository cloned at the snapshot's base commit (with the request's
//!   credentials, or the service's), the bundle verified and fetched on top, the branch checked
//!   out at the snapshot's commit, the transcript put where the CLI resumes it. The snapshot's
//!   metadata (no bundle, no transcript) is kept as `restored-from.pb` in the task's directory.
//! - A snapshot of a task: its workspace's base commit (`workspace-base.txt`, written when the
//!   workspace was made: the first turn's clone commit, which the remote has), a bundle of the
//!   commits from there to the task's commit, its branch, and its session transcript (kept in
//!   `session.jsonl` beside the task once its agent has run). At most
//!   [`MAX_SNAPSHOT_BYTES`](crate::workspace_snapshot::MAX_SNAPSHOT_BYTES).
//!
//! The transcript holds whatever the agent saw, so the task's secrets may be in it (its
//! `model_access` key, if the agent ran `env`). It is masked with the task's redactor when it is
//! kept beside the task and again when it is exported, so no snapshot carries a secret the task
//! knows. A task's own secrets (its model credential, its URL's credentials) live only in the
//! memory of the service that started it: after a restart the task is recovered with the
//! service's redactor alone. So they are never written to disk, and the agent's own transcript
//! of a task that had some ([`OWN_SECRETS_FILE`]) is never read after the agent ran: only the
//! masked copy is, and without one (the service stopped while the agent ran) the conversation
//! cannot be continued or exported.

use std::{
    io,
    path::{Path, PathBuf},
};

use autopilot_contract::v1::{GitProgress, Task as TaskSnapshot, WorkspaceSnapshot};
use prost::Message;
use tokio_util::sync::CancellationToken;

use crate::{
    agent::AgentCli,
    git_clone::clone_repo,
    git_command::{base_command, run, GitError, GitSettings, Stdout},
    redact::Redactor,
    repo_url::RepoUrl,
    workspace_snapshot::{is_commit_id, is_session_id, BUNDLE_REF, MAX_SNAPSHOT_BYTES},
};

/// The file in a task's directory naming the commit its workspace's history starts from.
pub const WORKSPACE_BASE_FILE: &str = "workspace-base.txt";
/// The file in a task's directory holding its agent's session transcript, once the agent ran.
pub const TRANSCRIPT_FILE: &str = "session.jsonl";
/// The file in a restored follow-up's directory describing what it was restored from.
pub const RESTORED_FROM_FILE: &str = "restored-from.pb";
/// The file in a task's directory saying that the task has secrets of its own beyond the
/// service's (the service never writes their values), so its agent's own transcript, which may
/// hold them unmasked, is not to be read: see [`read_transcript`].
pub const OWN_SECRETS_FILE: &str = "own-secrets";
/// A bundle on its way in or out, in the task's directory (removed after use).
const BUNDLE_FILE: &str = "workspace.bundle";

/// git in a workspace, for what stays on this machine: no credentials, and local paths allowed
/// (the parent's clone, a bundle file), whatever the operator allows for repositories.
struct LocalGit<'a> {
    settings: GitSettings,
    dir: &'a Path,
    redactor: &'a Redactor,
    stop: &'a CancellationToken,
}

impl<'a> LocalGit<'a> {
    fn new(settings: &GitSettings, dir: &'a Path, redactor: &'a Redactor, stop: &'a CancellationToken) -> Self {
        let settings = GitSettings { allow_file: true, credentials_env: Vec::new(), ..settings.clone() };
        LocalGit { settings, dir, redactor, stop }
    }

    async fn run(&self, args: &[&str]) -> Result<String, GitError> {
        let mut command = base_command(&self.settings, Some(self.dir));
        command.args(args);
        run(command, args[0], Stdout::Capture, &self.settings, self.redactor, self.stop).await.map(|s| s.trim().into())
    }

    async fn init(&self) -> Result<(), GitError> {
        let dest = self.dir.to_string_lossy().into_owned();
        std::fs::create_dir_all(self.dir).map_err(|e| GitError::Failed(format!("could not create {dest}: {e}")))?;
        self.run(&["init", "--quiet", "--", &dest]).await.map(drop)
    }

    /// Checks out `branch` at `commit` (created or moved there).
    async fn check_out(&self, branch: &str, commit: &str) -> Result<(), GitError> {
        self.run(&["checkout", "--quiet", "-B", branch, commit, "--"]).await?;
        let head = self.run(&["rev-parse", "--verify", "--end-of-options", "HEAD^{commit}"]).await?;
        if head != commit {
            return Err(GitError::Failed(format!("the workspace is at {head}, not at {commit}")));
        }
        Ok(())
    }
}

/// Makes `dest` a workspace at `commit` on `branch`, fetched from the clone in `parent_dir`.
///
/// # Errors
/// Stopped, or git's words.
pub async fn from_parent(
    parent_dir: &Path,
    commit: &str,
    branch: &str,
    dest: &Path,
    settings: &GitSettings,
    redactor: &Redactor,
    stop: &CancellationToken,
) -> Result<(), GitError> {
    let git = LocalGit::new(settings, dest, redactor, stop);
    git.init().await?;
    let source = parent_dir.join("repo").to_string_lossy().into_owned();
    git.run(&["fetch", "--quiet", "--update-shallow", "--no-tags", "--no-recurse-submodules", "--", &source, commit])
        .await?;
    git.check_out(branch, commit).await
}

/// Makes `dest` the workspace `snapshot` describes: `repo` cloned at its base commit, its bundle
/// on top, its branch checked out at its commit. `settings` are the clone's (credentials
/// included); the bundle passes through `task_dir`.
///
/// # Errors
/// Stopped, or what went wrong in words (git's, or the snapshot's mismatch).
#[allow(clippy::too_many_arguments)]
pub async fn from_snapshot(
    snapshot: &WorkspaceSnapshot,
    repo: &RepoUrl,
    dest: &Path,
    task_dir: &Path,
    settings: &GitSettings,
    redactor: &Redactor,
    stop: &CancellationToken,
    on_progress: impl FnMut(GitProgress) + Send,
) -> Result<(), GitError> {
    let cloned = clone_repo(repo, &snapshot.base_commit, dest, settings, redactor, stop, on_progress).await?;
    if cloned != snapshot.base_commit {
        return Err(GitError::Failed(format!(
            "the repository gave commit {cloned} for the snapshot's base commit {}",
            snapshot.base_commit
        )));
    }
    let git = LocalGit::new(settings, dest, redactor, stop);
    if !snapshot.bundle.is_empty() {
        let bundle = task_dir.join(BUNDLE_FILE);
        std::fs::write(&bundle, &snapshot.bundle)
            .map_err(|e| GitError::Failed(format!("could not write the bundle: {e}")))?;
        let path = bundle.to_string_lossy().into_owned();
        let fetched = async {
            git.run(&["bundle", "verify", "--quiet", "--", &path]).await?;
            git.run(&["fetch", "--quiet", "--no-tags", "--", &path, BUNDLE_REF]).await?;
            git.run(&["rev-parse", "--verify", "--end-of-options", "FETCH_HEAD^{commit}"]).await
        }
        .await;
        let _ = std::fs::remove_file(&bundle);
        let tip = fetched?;
        if tip != snapshot.commit {
            return Err(GitError::Failed(format!(
                "the bundle ends at {tip}, not at the snapshot's commit {}",
                snapshot.commit
            )));
        }
    }
    git.check_out(&snapshot.branch, &snapshot.commit).await?;
    let described = WorkspaceSnapshot { bundle: Vec::new(), session_transcript: Vec::new(), ..snapshot.clone() };
    std::fs::write(task_dir.join(RESTORED_FROM_FILE), described.encode_to_vec())
        .map_err(|e| GitError::Failed(format!("could not record what the workspace was restored from: {e}")))
}

/// Writes the commit `task_dir`'s workspace history starts from.
///
/// # Errors
/// The file could not be written.
pub fn write_base(task_dir: &Path, commit: &str) -> io::Result<()> {
    std::fs::write(task_dir.join(WORKSPACE_BASE_FILE), commit)
}

/// The commit `task_dir`'s workspace history starts from, if it was recorded (and is one).
pub fn read_base(task_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(task_dir.join(WORKSPACE_BASE_FILE)).ok()?;
    Some(text.trim().to_string()).filter(|c| is_commit_id(c))
}

/// Puts `transcript` where `agent` resumes `session_id` for a run in `workdir` with `env`.
///
/// # Errors
/// The agent keeps no transcript there, or the file could not be written.
pub fn install_transcript(
    agent: &dyn AgentCli,
    workdir: &Path,
    session_id: &str,
    env: &[(String, String)],
    transcript: &[u8],
) -> io::Result<()> {
    let path = transcript_path(agent, workdir, session_id, env)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, transcript)
}

/// Records in `task_dir` that the task has secrets of its own ([`OWN_SECRETS_FILE`]), before
/// its agent runs.
///
/// # Errors
/// The file could not be written.
pub fn mark_own_secrets(task_dir: &Path) -> io::Result<()> {
    let why = "This task's agent had secrets of its own (a model credential or repository credentials), \
               which the service does not keep; only the masked session.jsonl is read.\n";
    std::fs::write(task_dir.join(OWN_SECRETS_FILE), why)
}

/// Copies the transcript of `session_id`, run in `workdir`, into `task_dir` ([`TRANSCRIPT_FILE`]),
/// masked with the task's `redactor` (while it still knows the task's own secrets), so
/// follow-ups and snapshots find it with the task.
///
/// # Errors
/// It could not be found, read or written.
pub fn keep_transcript(
    agent: &dyn AgentCli,
    workdir: &Path,
    session_id: &str,
    env: &[(String, String)],
    task_dir: &Path,
    redactor: &Redactor,
) -> io::Result<()> {
    let transcript = std::fs::read(transcript_path(agent, workdir, session_id, env)?)?;
    std::fs::write(task_dir.join(TRANSCRIPT_FILE), redactor.redact_transcript(&transcript))
}

/// The transcript of the task in `task_dir`, whose session is `session_id`: the copy kept with
/// the task, or else, for a task without secrets of its own, the agent's own file for the
/// task's workspace.
///
/// # Errors
/// Neither could be read, or there is no kept copy of a task with secrets of its own.
pub fn read_transcript(
    agent: &dyn AgentCli,
    task_dir: &Path,
    session_id: &str,
    env: &[(String, String)],
) -> io::Result<Vec<u8>> {
    match std::fs::read(task_dir.join(TRANSCRIPT_FILE)) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Fails closed: a marker that cannot be checked counts as there.
            if task_dir.join(OWN_SECRETS_FILE).try_exists().unwrap_or(true) {
                return Err(io::Error::other(
                    "no masked copy of it was kept (the service stopped while the agent ran, or the copy failed), \
                     and the agent's own transcript may hold the task's credentials, which the service does not keep",
                ));
            }
            std::fs::read(transcript_path(agent, &task_dir.join("repo"), session_id, env)?)
        }
        other => other,
    }
}

fn transcript_path(
    agent: &dyn AgentCli,
    workdir: &Path,
    session_id: &str,
    env: &[(String, String)],
) -> io::Result<PathBuf> {
    if !is_session_id(session_id) {
        return Err(io::Error::other(format!("{session_id:?} is not a session id")));
    }
    agent.transcript_path(workdir, session_id, env).ok_or_else(|| {
        io::Error::other(format!(
            "{} keeps no transcript the service can find for {} (no HOME, or too long a path)",
            agent.name(),
            workdir.display()
        ))
    })
}

/// Why a task's workspace cannot be exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportError {
    /// Not now, or not at all (FAILED_PRECONDITION), in words for people.
    Refused(String),
    /// Something broke (INTERNAL).
    Failed(String),
}

/// The snapshot of `task`'s workspace, whose directory is `task_dir`. The task must have ended.
/// Its transcript is masked with `redactor`, the task's.
///
/// # Errors
/// [`ExportError::Refused`] while it runs, without a workspace, or over the size cap;
/// [`ExportError::Failed`] when git or the files fail.
pub async fn export(
    task: &TaskSnapshot,
    task_dir: &Path,
    agent: &dyn AgentCli,
    env: &[(String, String)],
    settings: &GitSettings,
    redactor: &Redactor,
) -> Result<WorkspaceSnapshot, ExportError> {
    let id = &task.task_id;
    if !task.state().is_final() {
        return Err(ExportError::Refused(format!("task {id} is still running; wait for it to end or cancel it")));
    }
    let delivery = task.delivery.clone().unwrap_or_default();
    let commit = if delivery.commit.is_empty() { task.commit.clone() } else { delivery.commit.clone() };
    if commit.is_empty() {
        return Err(ExportError::Refused(format!(
            "task {id} has no workspace: it ended before its repository was cloned"
        )));
    }
    let base_commit = read_base(task_dir).unwrap_or_else(|| task.commit.clone());
    let branch = if delivery.branch.is_empty() {
        task.delivery_options.as_ref().map(|d| d.branch.clone()).unwrap_or_default()
    } else {
        delivery.branch
    };
    let too_large = |size: u64| {
        ExportError::Refused(format!(
            "task {id}'s workspace snapshot would hold more than {size} bytes of commits and conversation, over the \
             limit of {MAX_SNAPSHOT_BYTES} (16 MiB), so it cannot be continued in another container"
        ))
    };
    let bundle = if commit == base_commit {
        Vec::new()
    } else {
        let stop = CancellationToken::new();
        let repo_dir = task_dir.join("repo");
        let git = LocalGit::new(settings, &repo_dir, redactor, &stop);
        let path = task_dir.join(BUNDLE_FILE);
        let path_arg = path.to_string_lossy().into_owned();
        let exclude = format!("^{base_commit}");
        let made = async {
            git.run(&["update-ref", BUNDLE_REF, &commit]).await?;
            git.run(&["bundle", "create", "--quiet", &path_arg, BUNDLE_REF, &exclude]).await
        }
        .await;
        let read = made
            .map_err(|e| match e {
                GitError::Failed(why) => ExportError::Failed(why),
                GitError::Stopped => ExportError::Failed("git was stopped".into()),
            })
            .and_then(|_| {
                let size = std::fs::metadata(&path).map_err(|e| ExportError::Failed(e.to_string()))?.len();
                if size > MAX_SNAPSHOT_BYTES as u64 {
                    return Err(too_large(size));
                }
                std::fs::read(&path).map_err(|e| ExportError::Failed(format!("could not read the bundle: {e}")))
            });
        let _ = std::fs::remove_file(&path);
        read?
    };
    // Masked here too: the agent's own file is not, nor is a copy kept by an older service.
    let session_transcript = match task.session_id.as_str() {
        "" => Vec::new(),
        session => {
            read_transcript(agent, task_dir, session, env).map(|t| redactor.redact_transcript(&t)).map_err(|e| {
                ExportError::Refused(format!("task {id}'s conversation (session {session}) cannot be read: {e}"))
            })?
        }
    };
    let size = bundle.len() + session_transcript.len();
    if size > MAX_SNAPSHOT_BYTES {
        return Err(too_large(size as u64));
    }
    Ok(WorkspaceSnapshot {
        task_id: id.clone(),
        repository_url: task.repository_url.clone(),
        git_ref: task.git_ref.clone(),
        base_commit,
        branch,
        commit,
        bundle,
        session_id: task.session_id.clone(),
        session_transcript,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::claude_code::ClaudeCode;

    const KEY: &str = "apmc_task-canary-0123";

    #[test]
    fn the_kept_transcript_is_masked_and_a_task_with_secrets_of_its_own_reads_nothing_else() {
        let root = tempfile::tempdir().unwrap();
        let (task_dir, home) = (root.path().join("task"), root.path().join("home"));
        let env = vec![("HOME".to_string(), home.to_string_lossy().into_owned())];
        let agent = ClaudeCode { program: "claude".into() };
        std::fs::create_dir_all(&task_dir).unwrap();
        let transcript = format!("{{\"content\":\"ANTHROPIC_API_KEY={KEY}\"}}\n");
        install_transcript(&agent, &task_dir.join("repo"), "s-1", &env, transcript.as_bytes()).unwrap();

        keep_transcript(&agent, &task_dir.join("repo"), "s-1", &env, &task_dir, &Redactor::new([KEY])).unwrap();
        let kept = read_transcript(&agent, &task_dir, "s-1", &env).unwrap();
        assert_eq!(String::from_utf8(kept).unwrap(), "{\"content\":\"ANTHROPIC_API_KEY=***\"}\n");

        // No kept copy (the service stopped while the agent ran): the agent's own file is read
        // only for a task without secrets of its own, whose secrets the service still knows.
        std::fs::remove_file(task_dir.join(TRANSCRIPT_FILE)).unwrap();
        assert_eq!(read_transcript(&agent, &task_dir, "s-1", &env).unwrap(), transcript.as_bytes());
        mark_own_secrets(&task_dir).unwrap();
        let refused = read_transcript(&agent, &task_dir, "s-1", &env).unwrap_err().to_string();
        assert!(refused.starts_with("no masked copy of it was kept"), "{refused}");
    }
}
