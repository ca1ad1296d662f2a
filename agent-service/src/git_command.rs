//! The one way the service runs `git`: hardened (protocols limited by `GIT_ALLOW_PROTOCOL`, no
//! terminal prompts, no system config, hooks off, an empty environment but for what git needs),
//! in its own process group so a stop reaches every helper, with a timeout. Callers put `--`
//! before positional arguments.
//!
//! [`base_command`] is shared by the clone and the delivery steps; [`run`] runs one command to
//! its end and gives back its stdout (or writes it to a file), or git's last words on failure.

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::{io::AsyncReadExt, process::Command};
use tokio_util::sync::CancellationToken;

use crate::{
    process_group::{spawn_group, terminate_group},
    redact::Redactor,
};

/// How git is run.
#[derive(Debug, Clone)]
pub struct GitSettings {
    /// The git executable.
    pub program: PathBuf,
    /// Whether file:// and local paths, and plain http:// (a development service), may be cloned
    /// (GIT_ALLOW_PROTOCOL gains `file` and `http`).
    pub allow_file: bool,
    /// Longest one clone, or one git command of the delivery, may take.
    pub timeout: Duration,
    /// How long git gets to exit after SIGTERM.
    pub grace: Duration,
    /// Environment that lets git authenticate (credential helper, SSH key), from
    /// [`crate::git_credentials`]; empty when the operator configured none.
    pub credentials_env: Vec<(String, String)>,
}

/// Why a git command did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitError {
    /// The stop token fired; git was terminated.
    Stopped,
    /// git failed; the message is git's own (secrets masked).
    Failed(String),
}

/// Most stdout kept from a captured command (name and count listings of huge diffs stay far below).
const MAX_CAPTURED_STDOUT: usize = 64 * 1024 * 1024;
/// Lines of stderr kept for an error message.
const STDERR_TAIL_LINES: usize = 20;

/// `git` with the hardening every invocation shares, in `cwd` when given. stdio is not set.
pub fn base_command(settings: &GitSettings, cwd: Option<&Path>) -> Command {
    let mut command = Command::new(&settings.program);
    command
        .args(["-c", "init.defaultBranch=main", "-c", "advice.detachedHead=false", "-c", "core.hooksPath=/dev/null"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
        .env("GIT_ALLOW_PROTOCOL", if settings.allow_file { "https:ssh:file:http" } else { "https:ssh" })
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        // The agent shares the service's HOME: its ~/.gitconfig (an `insteadOf` that redirects the
        // next clone, say) is not to be trusted by any git the service runs.
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new")
        .env("LC_ALL", "C")
        .envs(settings.credentials_env.iter().cloned());
    if let Some(home) = std::env::var_os("HOME") {
        command.env("HOME", home);
    }
    if let Some(sock) = std::env::var_os("SSH_AUTH_SOCK") {
        command.env("SSH_AUTH_SOCK", sock);
    }
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    command
}

/// Where a command's stdout goes.
pub enum Stdout<'a> {
    /// Returned as text (at most 64 MiB; more fails the command).
    Capture,
    /// Written to this file (created or truncated); the returned text is empty.
    File(&'a Path),
}

/// Runs `command` (from [`base_command`], arguments added) to its end within `settings.timeout`,
/// stopping its process group if `stop` fires.
///
/// # Errors
/// [`GitError::Stopped`]; or [`GitError::Failed`] with git's last stderr lines (masked by
/// `redactor`), prefixed by `git <what>`.
pub async fn run(
    mut command: Command,
    what: &str,
    stdout: Stdout<'_>,
    settings: &GitSettings,
    redactor: &Redactor,
    stop: &CancellationToken,
) -> Result<String, GitError> {
    let failed = |detail: String| GitError::Failed(redactor.redact(&format!("git {what} failed: {detail}")));
    command.stdin(Stdio::null()).stderr(Stdio::piped());
    match stdout {
        Stdout::Capture => command.stdout(Stdio::piped()),
        Stdout::File(path) => {
            let file = std::fs::File::create(path).map_err(|e| failed(format!("{}: {e}", path.display())))?;
            command.stdout(file)
        }
    };
    let mut child = spawn_group(&mut command)
        .map_err(|e| failed(format!("could not run git ({}): {e}", settings.program.display())))?;
    let stdout_task = child.stdout.take().map(|mut out| {
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let read = (&mut out).take(MAX_CAPTURED_STDOUT as u64 + 1).read_to_end(&mut buf).await;
            // Drain the rest so git is not blocked on a full pipe; the output is refused anyway.
            let _ = tokio::io::copy(&mut out, &mut tokio::io::sink()).await;
            read.map(|_| buf)
        })
    });
    let stderr = child.stderr.take().expect("stderr is piped");
    let stderr_task = tokio::spawn(read_tail_lines(stderr));
    let wait = async {
        tokio::select! {
            status = child.wait() => Some(status),
            () = stop.cancelled() => None,
        }
    };
    let status = match tokio::time::timeout(settings.timeout, wait).await {
        Ok(Some(status)) => status.map_err(|e| failed(e.to_string()))?,
        Ok(None) => {
            let _ = terminate_group(&mut child, settings.grace).await;
            return Err(GitError::Stopped);
        }
        Err(_) => {
            let _ = terminate_group(&mut child, settings.grace).await;
            return Err(failed(format!("it did not finish within {}s", settings.timeout.as_secs())));
        }
    };
    let stderr = stderr_task.await.unwrap_or_default();
    if !status.success() {
        let detail = if stderr.is_empty() { format!("it ended with {status}") } else { stderr };
        return Err(failed(detail));
    }
    let out = match stdout_task {
        Some(task) => task.await.map_err(|e| failed(e.to_string()))?.map_err(|e| failed(e.to_string()))?,
        None => Vec::new(),
    };
    if out.len() > MAX_CAPTURED_STDOUT {
        return Err(failed(format!("its output is larger than {MAX_CAPTURED_STDOUT} bytes")));
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Reads `stream` to its end; its last non-empty lines, joined.
async fn read_tail_lines(mut stream: impl tokio::io::AsyncRead + Unpin) -> String {
    let mut lines: VecDeque<String> = VecDeque::new();
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    let keep = |line: &[u8], lines: &mut VecDeque<String>| {
        let line = String::from_utf8_lossy(line).trim().to_string();
        if !line.is_empty() {
            lines.push_back(line);
            if lines.len() > STDERR_TAIL_LINES {
                lines.pop_front();
            }
        }
    };
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.iter().position(|b| *b == b'\n' || *b == b'\r') {
            keep(&pending[..end], &mut lines);
            pending.drain(..=end);
        }
    }
    keep(&pending, &mut lines);
    Vec::from(lines).join("\n")
}
