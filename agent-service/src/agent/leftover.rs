//! What a previous run's agent may have left running, found and killed when the service starts
//! again, before the unfinished task is marked FAILED.
//!
//! The agent's guard ([`crate::agent::guard`]) takes the agent down when the service dies; this is
//! the backstop for when it could not (killed at the same moment, say). While an agent (or an
//! environment's script, [`crate::script_process`], run under the same guard) runs, the
//! service records its process group in the task's directory ([`GROUP_FILE`]); on start, for a
//! task that did not finish, it SIGKILLs:
//! - every process whose environment carries the task's marker
//!   ([`crate::agent::guard::TASK_MARKER_VAR`]): the agent and all it started inherit it,
//!   whichever group or session they moved to;
//! - the recorded group, if one of its processes is still that task's (marked, or working in
//!   the task's directory): a pid the system has since given to someone else is left alone.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use nix::{sys::signal::Signal, unistd::Pid};

use super::guard::TASK_MARKER_VAR;
use crate::{privileges, proc_table};

/// The file in a task's directory holding the process group id of its running agent.
pub const GROUP_FILE: &str = "agent.pgid";

/// Notes that the agent of the task in `task_dir` runs as process group `pgid`.
pub fn record(task_dir: &Path, pgid: u32) {
    if let Err(error) = std::fs::write(task_dir.join(GROUP_FILE), pgid.to_string()) {
        tracing::warn!(dir = %task_dir.display(), %error, "could not record the agent's process group");
    }
}

/// Notes that the agent of the task in `task_dir` has ended.
pub fn forget(task_dir: &Path) {
    let _ = std::fs::remove_file(task_dir.join(GROUP_FILE));
}

/// One process, as far as the decision needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub pid: i32,
    pub pgrp: i32,
    /// Its environment carries the task's marker.
    pub marked: bool,
    /// It works inside the task's directory.
    pub in_task_dir: bool,
}

/// The pids to kill among `candidates`, given the group recorded for the task (if any).
pub fn targets(candidates: &[Candidate], recorded_group: Option<i32>) -> Vec<i32> {
    let in_group = |c: &Candidate| recorded_group == Some(c.pgrp);
    let group_is_the_tasks = candidates.iter().any(|c| in_group(c) && (c.marked || c.in_task_dir));
    candidates.iter().filter(|c| c.marked || (group_is_the_tasks && in_group(c))).map(|c| c.pid).collect()
}

/// Kills whatever is left of the agent of task `task_id`, whose directory is `task_dir`, and
/// forgets its group. Returns how many processes were killed.
pub fn kill_leftovers(task_id: &str, task_dir: &Path) -> usize {
    let recorded_group = std::fs::read_to_string(task_dir.join(GROUP_FILE)).ok().and_then(|s| s.trim().parse().ok());
    // The kernel shows working directories with links resolved.
    let task_dir: PathBuf = task_dir.canonicalize().unwrap_or_else(|_| task_dir.to_path_buf());
    let me = std::process::id() as i32;
    let mut killed = 0;
    // Again until none is left: one may fork while the others are being killed.
    for _ in 0..50 {
        let candidates: Vec<Candidate> = proc_table::snapshot()
            .into_iter()
            .filter(|p| p.is_running() && p.pid != me)
            .map(|p| Candidate {
                pid: p.pid,
                pgrp: p.pgrp,
                marked: proc_table::has_env(p.pid, TASK_MARKER_VAR, task_id),
                in_task_dir: proc_table::cwd(p.pid).is_some_and(|cwd| proc_table::is_within(&cwd, &task_dir)),
            })
            .collect();
        let pids = targets(&candidates, recorded_group);
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            if privileges::signal(Pid::from_raw(pid), Signal::SIGKILL, false).is_ok() {
                killed += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    forget(&task_dir);
    if killed > 0 {
        tracing::warn!(task_id, killed, ?recorded_group, "killed what a previous run's agent left running");
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(pid: i32, pgrp: i32, marked: bool, in_task_dir: bool) -> Candidate {
        Candidate { pid, pgrp, marked, in_task_dir }
    }

    #[test]
    fn marked_processes_go_wherever_they_are() {
        let candidates =
            [candidate(10, 10, true, true), candidate(20, 20, true, false), candidate(30, 30, false, false)];
        assert_eq!(targets(&candidates, None), [10, 20]);
    }

    #[test]
    fn the_recorded_group_goes_only_while_it_is_still_the_tasks() {
        // The agent lost its marker (it cleared its environment) but works in the task's directory.
        let agent = [candidate(10, 10, false, true), candidate(11, 10, false, false), candidate(40, 40, false, true)];
        assert_eq!(targets(&agent, Some(10)), [10, 11]);
        // The group id now belongs to someone else's processes: left alone.
        let reused = [candidate(10, 10, false, false), candidate(11, 10, false, false)];
        assert_eq!(targets(&reused, Some(10)), Vec::<i32>::new());
        // Working in the task's directory is not enough outside the recorded group (a person's
        // shell looking at the agent's work).
        assert_eq!(targets(&[candidate(40, 40, false, true)], None), Vec::<i32>::new());
    }

    #[test]
    fn the_record_is_written_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        record(dir.path(), 4242);
        assert_eq!(std::fs::read_to_string(dir.path().join(GROUP_FILE)).unwrap(), "4242");
        forget(dir.path());
        assert!(!dir.path().join(GROUP_FILE).exists());
    }
}
