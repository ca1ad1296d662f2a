//! One task: its directory, its event log and its current snapshot, kept in step.
//!
//! [`Task::record`] is the only way anything about a task changes: it masks secrets in the
//! event, appends it to the log and applies it to the snapshot under one lock, so Status never
//! shows a state the log does not have, and the log never holds a secret. A task also has a
//! title (its prompt's first line, masked: [`crate::task_list::title`]) for the task list, kept
//! in its own file since the snapshot has no field for it.

use std::{
    io::{self, Read},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use autopilot_contract::v1::{
    event::Payload, StateChanged, Task as TaskSnapshot, TaskFinished, TaskState, TaskSummary,
};
use prost::Message;
use tokio_util::sync::CancellationToken;

use crate::{event_log::EventLog, redact::Redactor, task_list, task_state};

/// The file in a task's directory holding its initial snapshot (what was asked for).
pub const SPEC_FILE: &str = "task.pb";
/// The file in a task's directory holding its event log.
pub const LOG_FILE: &str = "events.log";
/// The file in a task's directory holding its title (UTF-8, masked when written).
pub const TITLE_FILE: &str = "title.txt";
/// Most of a title file read back after a restart (a title is at most 200 characters).
const MAX_TITLE_FILE_BYTES: u64 = 4096;

/// Why a task is being stopped before it finished by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Cancel was called, with the caller's reason if it gave one.
    Cancelled(Option<String>),
    /// The wall-clock timeout passed.
    TimedOut(Duration),
    /// The service is shutting down.
    Shutdown,
}

impl StopReason {
    /// The final state a task stopped for this reason ends in, and the words saying why.
    pub fn outcome(&self) -> (TaskState, String) {
        match self {
            StopReason::Cancelled(None) => (TaskState::Cancelled, "cancelled by request".into()),
            StopReason::Cancelled(Some(reason)) => (TaskState::Cancelled, format!("cancelled: {reason}")),
            StopReason::TimedOut(limit) => {
                (TaskState::TimedOut, format!("the task ran past its timeout of {}s", limit.as_secs_f64()))
            }
            StopReason::Shutdown => (TaskState::Cancelled, "the service is shutting down".into()),
        }
    }
}

/// A task of this service.
pub struct Task {
    id: String,
    dir: PathBuf,
    log: Arc<EventLog>,
    snapshot: Mutex<TaskSnapshot>,
    /// The task list's title of the task, masked.
    title: String,
    redactor: Redactor,
    /// Fired when the task must stop early; the running step terminates its process group.
    stop: CancellationToken,
    /// The first reason the task was told to stop; later ones are ignored.
    stop_reason: Mutex<Option<StopReason>>,
}

impl Task {
    /// Creates the task's directory content: the spec file and an empty log, and no title.
    ///
    /// # Errors
    /// The files could not be written.
    pub fn create(dir: PathBuf, snapshot: TaskSnapshot, redactor: Redactor) -> io::Result<Arc<Task>> {
        Self::create_with_title(dir, snapshot, String::new(), redactor)
    }

    /// [`Task::create`] with the task's title, which must already be masked
    /// ([`task_list::title`]); it is kept in [`TITLE_FILE`].
    ///
    /// # Errors
    /// The files could not be written.
    pub fn create_with_title(
        dir: PathBuf,
        snapshot: TaskSnapshot,
        title: String,
        redactor: Redactor,
    ) -> io::Result<Arc<Task>> {
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(SPEC_FILE), snapshot.encode_to_vec())?;
        if !title.is_empty() {
            std::fs::write(dir.join(TITLE_FILE), &title)?;
        }
        let log = EventLog::create(snapshot.task_id.clone(), dir.join(LOG_FILE))?;
        Ok(Self::assemble(dir, snapshot, log, title, redactor))
    }

    /// Reloads a task from its directory after a restart. A task that had not finished is ended
    /// FAILED: whatever ran it is gone (what is left of its agent is killed first).
    ///
    /// # Errors
    /// The directory does not hold a readable task.
    pub fn recover(dir: PathBuf, redactor: Redactor) -> io::Result<Arc<Task>> {
        let spec = std::fs::read(dir.join(SPEC_FILE))?;
        let mut snapshot = TaskSnapshot::decode(spec.as_slice()).map_err(io::Error::other)?;
        let log = EventLog::open(snapshot.task_id.clone(), dir.join(LOG_FILE), |event| {
            task_state::apply(&mut snapshot, event)
        })?;
        let title = read_title(&dir, &redactor);
        let task = Self::assemble(dir, snapshot, log, title, redactor);
        if !task.state().is_final() {
            // Its agent may still be running, if its guard could not take it down.
            crate::agent::leftover::kill_leftovers(&task.id, &task.dir);
            task.finish(
                TaskState::Failed,
                String::new(),
                "the service stopped while the task was running".into(),
                0,
                Duration::ZERO,
            );
        }
        task.log.close();
        Ok(task)
    }

    fn assemble(
        dir: PathBuf,
        snapshot: TaskSnapshot,
        log: Arc<EventLog>,
        title: String,
        redactor: Redactor,
    ) -> Arc<Task> {
        Arc::new(Task {
            id: snapshot.task_id.clone(),
            dir,
            log,
            snapshot: Mutex::new(snapshot),
            title,
            redactor,
            stop: CancellationToken::new(),
            stop_reason: Mutex::new(None),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The task's working directory (the clone lives in `repo/` under it).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log(&self) -> &Arc<EventLog> {
        &self.log
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// A copy of the current snapshot.
    pub fn snapshot(&self) -> TaskSnapshot {
        self.lock_snapshot().clone()
    }

    pub fn state(&self) -> TaskState {
        self.lock_snapshot().state()
    }

    /// The task list's title of the task (masked; empty for a task recorded without one).
    pub fn title(&self) -> &str {
        &self.title
    }

    /// What the task list shows of the task now.
    pub fn summary(&self) -> TaskSummary {
        task_list::summary(&self.lock_snapshot(), &self.title)
    }

    /// Records one event: masks secrets, appends it to the log, applies it to the snapshot.
    /// A failed write is logged; the event is then not recorded anywhere.
    pub fn record(&self, mut payload: Payload) {
        self.redactor.redact_payload(&mut payload);
        let mut snapshot = self.lock_snapshot();
        match self.log.append(payload) {
            Ok(event) => task_state::apply(&mut snapshot, &event),
            Err(error) => tracing::error!(task_id = %self.id, %error, "could not record an event"),
        }
    }

    /// Moves the task to `to`, recording the change. Moves the lifecycle forbids are ignored
    /// (and logged): a final state never changes.
    pub fn move_to(&self, to: TaskState, reason: impl Into<String>) {
        let from = self.state();
        if !task_state::can_move(from, to) {
            tracing::warn!(task_id = %self.id, ?from, ?to, "ignored a state change the lifecycle forbids");
            return;
        }
        self.record(Payload::StateChanged(StateChanged { from: from as i32, to: to as i32, reason: reason.into() }));
    }

    /// Ends the task: the final state change, then `task_finished` as the last event; closes the
    /// log so every subscription ends after delivering it.
    pub fn finish(&self, state: TaskState, result: String, error: String, num_turns: u32, duration: Duration) {
        if self.state().is_final() {
            return;
        }
        self.move_to(state, error.clone());
        let usage = self.lock_snapshot().usage.unwrap_or_default();
        self.record(Payload::TaskFinished(TaskFinished {
            state: state as i32,
            result,
            error,
            usage: Some(usage),
            num_turns,
            duration: Some(autopilot_contract::time::duration(duration)),
        }));
        self.log.close();
    }

    /// Asks the task to stop; the first reason given wins, and an ended task ignores it.
    pub fn request_stop(&self, reason: StopReason) {
        let mut current = self.stop_reason.lock().unwrap_or_else(|p| p.into_inner());
        if current.is_some() || self.state().is_final() {
            return;
        }
        *current = Some(reason);
        self.stop.cancel();
    }

    /// The reason the task was told to stop, if it was.
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.stop_reason.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Fires when the task must stop early.
    pub fn stop_token(&self) -> &CancellationToken {
        &self.stop
    }

    /// Waits until the task has ended and its last event is recorded.
    pub async fn ended(&self) {
        self.log.closed().await;
    }

    fn lock_snapshot(&self) -> MutexGuard<'_, TaskSnapshot> {
        self.snapshot.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The title a task directory holds, held to the title's rules again; empty when there is none
/// (a task recorded before titles were kept) or it cannot be read. The directory is within the
/// agent's reach, so the file is read as a regular file only (not through a symlink, never
/// waiting on a FIFO), bounded, and masked anew.
fn read_title(dir: &Path, redactor: &Redactor) -> String {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(TITLE_FILE);
    let read = || -> io::Result<Vec<u8>> {
        let flags = nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK;
        let file = std::fs::OpenOptions::new().read(true).custom_flags(flags.bits()).open(&path)?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        let mut bytes = Vec::new();
        file.take(MAX_TITLE_FILE_BYTES).read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    match read() {
        Ok(bytes) => task_list::title(&redactor.redact(&String::from_utf8_lossy(&bytes))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "could not read a task's title; it is listed without one");
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_title_comes_back_after_a_restart_and_only_from_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let snapshot = TaskSnapshot { task_id: "t1".into(), ..Default::default() };
        let task = Task::create_with_title(dir.path().join("t1"), snapshot, "Fix it".into(), Redactor::default());
        assert_eq!(task.unwrap().title(), "Fix it");
        assert_eq!(Task::recover(dir.path().join("t1"), Redactor::default()).unwrap().title(), "Fix it");

        // What the agent may have put there instead: a longer text with a secret, a FIFO, a symlink.
        let redactor = Redactor::new(["sk-ant-canary-123456"]);
        let title = dir.path().join("t1").join(TITLE_FILE);
        std::fs::write(&title, format!("key sk-ant-canary-123456 {}\nsecond", "x".repeat(5000))).unwrap();
        let planted = read_title(&dir.path().join("t1"), &redactor);
        assert!(planted.starts_with("key *** x") && planted.chars().count() == task_list::MAX_TITLE_CHARS);
        std::fs::remove_file(&title).unwrap();
        nix::unistd::mkfifo(&title, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(read_title(&dir.path().join("t1"), &redactor), "", "a FIFO is not waited on");
        std::fs::remove_file(&title).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", &title).unwrap();
        assert_eq!(read_title(&dir.path().join("t1"), &redactor), "", "a symlink is not followed");
        std::fs::remove_file(&title).unwrap();
        assert_eq!(read_title(&dir.path().join("t1"), &redactor), "", "no file: no title");
    }
}
