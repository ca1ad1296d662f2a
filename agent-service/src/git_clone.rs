//! Clones a repository with the `git` CLI into a task's directory, at the requested ref, and
//! reports git's progress as it goes.
//!
//! git runs hardened ([`crate::git_command`]): protocols limited by `GIT_ALLOW_PROTOCOL`, no
//! terminal prompts, no system config, `--` before positional arguments, a timeout, and its whole
//! process group stopped on cancel. The URL was already checked by [`crate::repo_url`]. The
//! clone is shallow: an init, a depth-1 fetch of the ref (branch, tag or commit id alike), and a
//! detached checkout. The fetch and checkout alone bring a prepared workspace (a copy of an
//! earlier clone, [`crate::prepared_workspaces`]) to the ref a task asks for.

use std::{path::Path, process::Stdio};

use autopilot_contract::v1::GitProgress;
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use crate::{
    git_command::base_command,
    git_progress::{parse_progress_line, LineSplitter, ProgressTracker},
    process_group::{spawn_group, terminate_group},
    redact::Redactor,
    repo_url::RepoUrl,
};

pub use crate::git_command::GitSettings;

/// Why a clone did not produce a checkout: stopped, or git's message (credentials masked).
pub type CloneError = crate::git_command::GitError;

/// Clones `repo` at `git_ref` (empty: the default branch) into `dest`; returns the commit
/// checked out. `on_progress` sees each new progress line.
///
/// # Errors
/// [`CloneError`]: stopped, or git's message.
pub async fn clone_repo(
    repo: &RepoUrl,
    git_ref: &str,
    dest: &Path,
    settings: &GitSettings,
    redactor: &Redactor,
    stop: &CancellationToken,
    on_progress: impl FnMut(GitProgress) + Send,
) -> Result<String, CloneError> {
    init(dest, settings, &redactor.with(repo.secrets.iter().cloned()), stop).await?;
    // It adds the URL's secrets to the redactor itself.
    check_out_from_remote(repo, git_ref, dest, settings, redactor, stop, on_progress).await
}

/// Fetches `git_ref` of `repo` into the existing repository `dest` and checks it out, detached
/// and by force: files the ref tracks are as it has them, whatever was there; untracked and
/// ignored files stay (what a prepared workspace's setup installed). Returns the commit checked
/// out.
///
/// # Errors
/// [`CloneError`]: stopped, or git's message.
pub async fn check_out_from_remote(
    repo: &RepoUrl,
    git_ref: &str,
    dest: &Path,
    settings: &GitSettings,
    redactor: &Redactor,
    stop: &CancellationToken,
    mut on_progress: impl FnMut(GitProgress) + Send,
) -> Result<String, CloneError> {
    let redactor = redactor.with(repo.secrets.iter().cloned());
    let work = async {
        let refspec = if git_ref.is_empty() { "HEAD" } else { git_ref };
        let mut splitter_progress = |p: GitProgress| on_progress(p);
        run_git(
            settings,
            Some(dest),
            &["fetch", "--progress", "--depth", "1", "--no-tags", "--no-recurse-submodules", "--", &repo.url, refspec],
            &redactor,
            stop,
            &mut splitter_progress,
        )
        .await?;
        let check_out = ["checkout", "--quiet", "--force", "--detach", "FETCH_HEAD"];
        run_git(settings, Some(dest), &check_out, &redactor, stop, &mut |_| {}).await?;
        run_git(settings, Some(dest), &["rev-parse", "HEAD"], &redactor, stop, &mut |_| {}).await
    };
    match tokio::time::timeout(settings.timeout, work).await {
        Ok(result) => result.map(|out| out.trim().to_string()),
        Err(_) => Err(timed_out(settings)),
    }
}

/// Gives the repository at `dest`, a copy of an earlier clone (a prepared workspace), a
/// `.git/config` of its own, as `git init` writes one, whatever the copy had: the config a
/// task's delivery restores before it pushes ([`crate::delivery`]) must be one no earlier
/// task's agent could have touched (a push URL rewritten, a credential helper added).
///
/// # Errors
/// [`CloneError`]: stopped, `.git` is not a directory, or git's message.
pub async fn renew_git_config(
    dest: &Path,
    settings: &GitSettings,
    redactor: &Redactor,
    stop: &CancellationToken,
) -> Result<(), CloneError> {
    let git_dir = dest.join(".git");
    if !std::fs::symlink_metadata(&git_dir).is_ok_and(|meta| meta.is_dir()) {
        return Err(CloneError::Failed(format!("{} is not a directory", git_dir.display())));
    }
    // A `commondir` file would have git read its config (and more) from another directory.
    if std::fs::symlink_metadata(git_dir.join("commondir")).is_ok() {
        return Err(CloneError::Failed(format!("{} points to another repository (commondir)", git_dir.display())));
    }
    match std::fs::remove_file(git_dir.join("config")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(CloneError::Failed(format!("could not remove the copy's git config: {e}")));
        }
        _ => {}
    }
    init(dest, settings, redactor, stop).await
}

/// `git init` of `dest`: a new repository, or in an existing one what is missing of it.
async fn init(
    dest: &Path,
    settings: &GitSettings,
    redactor: &Redactor,
    stop: &CancellationToken,
) -> Result<(), CloneError> {
    let dest_arg = dest.to_string_lossy().into_owned();
    let args = ["init", "--quiet", "--", &dest_arg];
    let mut no_progress = |_| {};
    match tokio::time::timeout(settings.timeout, run_git(settings, None, &args, redactor, stop, &mut no_progress)).await
    {
        Ok(result) => result.map(drop),
        Err(_) => Err(timed_out(settings)),
    }
}

fn timed_out(settings: &GitSettings) -> CloneError {
    CloneError::Failed(format!("git did not finish within {}s", settings.timeout.as_secs()))
}

/// Runs one git command; its stdout on success, its last message on failure.
async fn run_git(
    settings: &GitSettings,
    cwd: Option<&Path>,
    args: &[&str],
    redactor: &Redactor,
    stop: &CancellationToken,
    on_progress: &mut (dyn FnMut(GitProgress) + Send),
) -> Result<String, CloneError> {
    let mut command = base_command(settings, cwd);
    command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = spawn_group(&mut command)
        .map_err(|e| CloneError::Failed(format!("could not run git ({}): {e}", settings.program.display())))?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let collect_stdout = tokio::spawn(async move {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out).await;
        out
    });

    let mut splitter = LineSplitter::default();
    let mut tracker = ProgressTracker::default();
    let mut messages: Vec<String> = Vec::new();
    let mut on_line = |line: &str| match parse_progress_line(line) {
        Some(progress) => {
            if let Some(mut progress) = tracker.keep(progress) {
                progress.message = redactor.redact(&progress.message);
                on_progress(progress);
            }
        }
        None => {
            messages.push(redactor.redact(line.trim()));
            if messages.len() > 20 {
                messages.remove(0);
            }
        }
    };
    let mut buf = [0u8; 4096];
    loop {
        tokio::select! {
            read = stderr.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => splitter.feed(&buf[..n], &mut on_line),
            },
            () = stop.cancelled() => {
                let _ = terminate_group(&mut child, settings.grace).await;
                return Err(CloneError::Stopped);
            }
        }
    }
    splitter.finish(&mut on_line);
    let status = tokio::select! {
        status = child.wait() => status.map_err(|e| CloneError::Failed(format!("git failed: {e}")))?,
        () = stop.cancelled() => {
            let _ = terminate_group(&mut child, settings.grace).await;
            return Err(CloneError::Stopped);
        }
    };
    let stdout = collect_stdout.await.unwrap_or_default();
    if status.success() {
        return Ok(stdout);
    }
    let detail = messages.iter().filter(|m| !m.is_empty()).cloned().collect::<Vec<_>>().join("\n");
    let detail = if detail.is_empty() { format!("git {} ended with {status}", args[0]) } else { detail };
    Err(CloneError::Failed(format!("git {} failed: {detail}", args[0])))
}
