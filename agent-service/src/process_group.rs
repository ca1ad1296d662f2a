//! Child processes that can be stopped whole: each is spawned as the leader of its own process
//! group, so stopping it reaches everything it started (the agent's shells, git's helpers).
//! Stopping is SIGTERM to the group, then SIGKILL after a grace period (sent as root where the
//! group may be a setup script's: [`crate::privileges::signal`]).

use std::{io, process::ExitStatus, time::Duration};

use nix::{sys::signal::Signal, unistd::Pid};
use tokio::process::{Child, Command};

use crate::privileges;

/// Spawns `command` as the leader of a new process group. The group is killed if the returned
/// child is dropped without being waited for.
pub fn spawn_group(command: &mut Command) -> io::Result<Child> {
    command.process_group(0).kill_on_drop(true).spawn()
}

/// Sends `signal` to the whole group led by `child` (a no-op once the group is gone).
pub fn signal_group(child: &Child, signal: Signal) {
    if let Some(pid) = child.id() {
        let _ = privileges::signal(Pid::from_raw(pid as i32), signal, true);
    }
}

/// Stops the group: SIGTERM, then SIGKILL if the leader has not exited after `grace`.
/// Whatever else is left of the group is killed once the leader has exited.
pub async fn terminate_group(child: &mut Child, grace: Duration) -> io::Result<ExitStatus> {
    let pgid = child.id();
    signal_group(child, Signal::SIGTERM);
    let status = match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status?,
        Err(_) => {
            signal_group(child, Signal::SIGKILL);
            child.wait().await?
        }
    };
    kill_leftovers(pgid);
    Ok(status)
}

/// Kills what remains of a group whose leader (pid `pgid`) has exited: background processes the
/// agent started must not outlive its task.
pub fn kill_leftovers(pgid: Option<u32>) {
    if let Some(pgid) = pgid {
        let _ = privileges::signal(Pid::from_raw(pgid as i32), Signal::SIGKILL, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn terminate_reaches_grandchildren() {
        // The shell ignores SIGTERM and starts a grandchild; both must be gone afterwards.
        let mut command = Command::new("sh");
        command.args(["-c", "trap '' TERM; sleep 300 & echo $!; wait"]).stdout(std::process::Stdio::piped());
        let mut child = spawn_group(&mut command).unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 32];
        while !line.ends_with('\n') {
            let n = stdout.read(&mut buf).await.unwrap();
            assert!(n > 0);
            line.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        }
        let grandchild: i32 = line.trim().parse().unwrap();
        let status = terminate_group(&mut child, Duration::from_millis(200)).await.unwrap();
        assert!(!status.success());
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Gone, or a zombie waiting for init to reap it: either way no longer running.
        let state = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
        let running = state.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z'));
        assert!(!running, "grandchild survived: {state}");
    }
}
