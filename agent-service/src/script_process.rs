//! Runs one of an environment's scripts as a process: `bash -o errexit -o nounset -o pipefail
//! <file>` in the workspace, under the agent's guard ([`crate::agent::guard`]), so that it is
//! handled as the agent is: its own process group, stopped whole by a cancel or the task's
//! timeout, killed with everything it started when the service dies, and found and killed by a
//! restarted service ([`crate::agent::leftover`]: the guard marks its processes with the task,
//! and its group is recorded in the task's directory while it runs). Thin glue over tokio.
//!
//! Its stdout and stderr are one pipe, so what it writes arrives interleaved as written; the
//! caller gets the bytes as they come ([`crate::script_output`] makes lines of them). Past its
//! time limit it is stopped as a cancel stops it. Once the script has ended, the guard kills
//! what it left running in the background: nothing a setup starts outlives it. Where the service
//! kept root for them ([`crate::privileges`]), scripts run as root.

use std::{
    ffi::OsStr,
    os::{fd::OwnedFd, unix::process::ExitStatusExt},
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use crate::{
    agent::{
        guard::{self as agent_guard, Guard},
        leftover,
        process::Owner,
        AgentCommand,
    },
    privileges,
    process_group::{kill_leftovers, spawn_group},
    script_outcome::ScriptEnd,
};

/// How long the output of a stopped script is still read, for its last lines.
const LAST_OUTPUT_WAIT: Duration = Duration::from_secs(1);

/// One run of a script.
pub struct ScriptRun<'a> {
    /// The script's file (outside the workspace, so it is in no diff).
    pub file: &'a Path,
    /// Where it runs: the workspace.
    pub workdir: &'a Path,
    /// Its whole environment ([`crate::environment_vars::script_env`]).
    pub env: Vec<(String, String)>,
    /// How long it may run.
    pub time_limit: Duration,
}

/// bash, as found on the `PATH` of `env`: scripts run with it, and a machine without it says so
/// before anything starts.
pub fn find_bash(env: &[(String, String)]) -> Option<PathBuf> {
    let path = env.iter().find(|(name, _)| name == "PATH").map(|(_, value)| value.as_str())?;
    std::env::split_paths(OsStr::new(path)).map(|dir| dir.join("bash")).find(|candidate| {
        use std::os::unix::fs::PermissionsExt;
        candidate.metadata().is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    })
}

/// Runs `script` with `bash` under `guard` until it ends, `stop` fires or its time limit
/// passes, giving `on_output` what it writes as it comes. A stop gives the script `grace` to end
/// after SIGTERM before everything of it is killed.
///
/// # Errors
/// The pipe or the guard could not be made or started, or its exit could not be waited for.
pub async fn run_script(
    script: &ScriptRun<'_>,
    bash: &Path,
    guard: &Guard,
    owner: Owner<'_>,
    stop: &CancellationToken,
    grace: Duration,
    mut on_output: impl FnMut(&[u8]),
) -> std::io::Result<ScriptEnd> {
    let program = AgentCommand {
        program: bash.to_path_buf(),
        args: ["-o", "errexit", "-o", "nounset", "-o", "pipefail"]
            .into_iter()
            .map(String::from)
            .chain([script.file.to_string_lossy().into_owned()])
            .collect(),
        cwd: script.workdir.to_path_buf(),
        env: script.env.clone(),
    };
    let mut command = guard.command(&program, owner.task_id);
    // A setup installs system packages: root, where the service kept it (the guard and the
    // script; the agent never).
    privileges::run_as_root(&mut command);
    // Close-on-exec: no other child started meanwhile (another task's agent) may hold the
    // write end, or the end of the output would never come.
    let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let writer_too: OwnedFd = writer.try_clone()?;
    command.stdin(Stdio::null()).stdout(Stdio::from(writer)).stderr(Stdio::from(writer_too));
    let spawned = spawn_group(&mut command);
    // The command holds the pipe's write end; only the script may keep it open.
    drop(command);
    let mut child = spawned?;
    let pgid = child.id();
    if let Some(pgid) = pgid {
        leftover::record(owner.task_dir, pgid);
    }
    let mut output = tokio::net::unix::pipe::Receiver::from_owned_fd(reader)?;
    let deadline = tokio::time::sleep(script.time_limit);
    tokio::pin!(deadline);
    let mut buf = vec![0u8; 16 * 1024];
    let mut output_open = true;
    let killed_for = loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break ScriptEnd::Stopped,
            () = &mut deadline => break ScriptEnd::TimedOut,
            read = output.read(&mut buf), if output_open => match read {
                Ok(0) => output_open = false,
                Ok(n) => on_output(&buf[..n]),
                Err(error) => {
                    tracing::warn!(task_id = owner.task_id, %error, "could not read a script's output");
                    output_open = false;
                }
            },
            status = child.wait(), if !output_open => {
                let status = status?;
                kill_leftovers(pgid);
                leftover::forget(owner.task_dir);
                return Ok(match (status.code(), status.signal()) {
                    (Some(code), _) => ScriptEnd::Exited(code),
                    (None, Some(signal)) => ScriptEnd::Signalled(signal),
                    (None, None) => ScriptEnd::Exited(-1),
                });
            }
        }
    };
    let stopped = agent_guard::stop(&mut child, grace).await;
    kill_leftovers(pgid);
    leftover::forget(owner.task_dir);
    // Everything of it is gone: what it wrote last is in the pipe, and its end follows.
    let rest = async {
        while output_open {
            match output.read(&mut buf).await {
                Ok(0) | Err(_) => output_open = false,
                Ok(n) => on_output(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(LAST_OUTPUT_WAIT, rest).await;
    stopped?;
    Ok(killed_for)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bash_is_found_on_the_paths_path_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let env = |path: &str| vec![("PATH".to_string(), path.to_string())];
        let empty = dir.path().to_string_lossy().into_owned();
        assert_eq!(find_bash(&env(&empty)), None);
        assert_eq!(find_bash(&[]), None, "no PATH: none");
        let not_executable = dir.path().join("bash");
        std::fs::write(&not_executable, "").unwrap();
        assert_eq!(find_bash(&env(&empty)), None, "a file that cannot run is no bash");
        let found = find_bash(&env(&format!("{empty}:/usr/bin:/bin"))).expect("this machine has bash");
        assert!(found.ends_with("bash") && found != not_executable, "{}", found.display());
    }
}
