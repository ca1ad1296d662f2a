//! The process table as Linux shows it in `/proc`: each process's parent, group and state, and
//! what marks a process as a task's. The agent's guard uses it to find everything the agent
//! started, even what left its process group (Claude Code runs each shell command in a session of
//! its own); a restarted service uses it to find what a previous run's agent left behind.
//!
//! Reading is best effort: a process may end between the listing and the read, and another
//! user's process may not be readable; such processes are skipped. Parsing is pure and
//! unit-tested here.

use std::path::{Path, PathBuf};

/// One process, as its `/proc/<pid>/stat` line tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: i32,
    /// Its parent.
    pub ppid: i32,
    /// Its process group.
    pub pgrp: i32,
    /// `R`, `S`, `D`, `Z` (zombie: ended, not yet reaped), `X` (dead)...
    pub state: char,
}

impl ProcessInfo {
    /// Whether it still runs (a zombie or a dead process does not, and cannot be killed).
    pub fn is_running(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses a `/proc/<pid>/stat` line: `pid (comm) state ppid pgrp ...`. The command name may hold
/// spaces and parentheses, so the fields are read after its last `)`.
pub fn parse_stat(stat: &str) -> Option<ProcessInfo> {
    let (head, rest) = stat.rsplit_once(')')?;
    let pid = head.split_once(" (")?.0.trim().parse().ok()?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(ProcessInfo { pid, ppid, pgrp, state })
}

/// Every process readable now.
pub fn snapshot() -> Vec<ProcessInfo> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let name = entry.ok()?.file_name();
            let pid: i32 = name.to_str()?.parse().ok()?;
            parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
        })
        .collect()
}

/// The running processes below `root` in the parent tree (children, their children...).
pub fn descendants(table: &[ProcessInfo], root: i32) -> Vec<i32> {
    let mut found = vec![root];
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        let children: Vec<i32> =
            table.iter().filter(|p| p.ppid == parent && !found.contains(&p.pid)).map(|p| p.pid).collect();
        found.extend(children);
        next += 1;
    }
    let running = |pid: &i32| table.iter().any(|p| p.pid == *pid && p.is_running());
    found.into_iter().skip(1).filter(running).collect()
}

/// The working directory of `pid`, if it can be read.
pub fn cwd(pid: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

/// Whether the environment of `pid` holds `name=value` (false if it cannot be read).
pub fn has_env(pid: i32, name: &str, value: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| environ_has(&environ, name, value))
}

/// Whether `environ` (`/proc/<pid>/environ`: `NAME=value` entries, each ended by NUL) holds
/// `name=value`.
pub fn environ_has(environ: &[u8], name: &str, value: &str) -> bool {
    let wanted = format!("{name}={value}");
    environ.split(|b| *b == 0).any(|entry| entry == wanted.as_bytes())
}

/// Whether `path` lies in `dir` (both as the kernel shows them: absolute, links resolved).
pub fn is_within(path: &Path, dir: &Path) -> bool {
    path.starts_with(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_are_read_after_the_command_name() {
        let plain = "4242 (claude) S 4241 4241 4241 0 -1 4194560 1 0 0 0";
        assert_eq!(parse_stat(plain), Some(ProcessInfo { pid: 4242, ppid: 4241, pgrp: 4241, state: 'S' }));
        let tricky = "77 (a) b) (c d) Z 1 70 70 0";
        assert_eq!(parse_stat(tricky), Some(ProcessInfo { pid: 77, ppid: 1, pgrp: 70, state: 'Z' }));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("12 (x) S"), None);
    }

    #[test]
    fn descendants_follow_the_parent_tree_and_skip_the_dead() {
        let p = |pid, ppid, state| ProcessInfo { pid, ppid, pgrp: 0, state };
        let table = [
            p(1, 0, 'S'),
            p(10, 1, 'S'),  // the guard
            p(11, 10, 'S'), // the agent
            p(12, 11, 'S'), // its shell, in a session of its own
            p(13, 12, 'R'),
            p(14, 11, 'Z'), // ended, not reaped
            p(15, 14, 'S'), // cannot happen for long, but is still found
            p(20, 1, 'S'),  // someone else's
        ];
        let mut found = descendants(&table, 10);
        found.sort();
        assert_eq!(found, [11, 12, 13, 15]);
        assert_eq!(descendants(&table, 13), Vec::<i32>::new());
    }

    #[test]
    fn the_task_marker_is_found_whole_in_the_environment() {
        let environ = b"PATH=/bin\0AUTOPILOT_TASK_ID=abc\0HOME=/h\0";
        assert!(environ_has(environ, "AUTOPILOT_TASK_ID", "abc"));
        assert!(!environ_has(environ, "AUTOPILOT_TASK_ID", "ab"));
        assert!(!environ_has(b"XAUTOPILOT_TASK_ID=abc\0", "AUTOPILOT_TASK_ID", "abc"));
    }

    #[test]
    fn this_process_is_in_the_table() {
        let me = std::process::id() as i32;
        let table = snapshot();
        let mine = table.iter().find(|p| p.pid == me).expect("this process");
        assert!(mine.is_running());
        assert_eq!(mine.ppid, nix::unistd::getppid().as_raw());
        assert!(is_within(&cwd(me).unwrap(), &std::env::current_dir().unwrap().canonicalize().unwrap()));
    }
}
