//! A child process a test owns: it can be sent SIGTERM, waited for with a limit, and is killed
//! when dropped, so a failing test leaves nothing running.

use std::{
    process::{Child, ExitStatus},
    time::{Duration, Instant},
};

/// A spawned process, killed on drop.
pub struct ChildProcess(pub Child);

impl ChildProcess {
    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    }

    /// Waits for the process to exit (at most `limit`).
    pub async fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.0.try_wait().unwrap() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
