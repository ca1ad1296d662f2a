//! A child process a test owns: it can be sent SIGTERM, waited for with a limit, and is killed
//! when dropped, so a failing test leaves nothing running. Its stderr lines are kept as they
//! arrive (the services log there), for waiting on them and for the secret checks; once `wait`
//! has seen it exit, every line it wrote is kept.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, ExitStatus},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// The stderr lines a process wrote so far.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<String>>>);

impl Logs {
    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// Spawns `command` (its stderr must be piped) and keeps its stderr lines; `on_line` sees each
/// line as it arrives, before it is kept.
pub fn spawn_logged(command: &mut Command, mut on_line: impl FnMut(&str) + Send + 'static) -> (ChildProcess, Logs) {
    let mut child = command.spawn().unwrap_or_else(|e| panic!("spawning {:?}: {e}", command.get_program()));
    let stderr = child.stderr.take().expect("stderr piped");
    let logs = Logs::default();
    let kept = logs.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            on_line(&line);
            kept.0.lock().unwrap().push(line);
        }
    });
    (ChildProcess(child, reader), logs)
}

/// A spawned process, killed on drop, and the thread that keeps its stderr lines.
pub struct ChildProcess(pub Child, std::thread::JoinHandle<()>);

impl ChildProcess {
    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    }

    /// Waits for the process to exit (at most `limit`), then for its last stderr lines to be kept:
    /// a process's exit is seen before its reader reaches the end of the pipe.
    pub async fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.0.try_wait().unwrap() {
                while !self.1.is_finished() && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
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
