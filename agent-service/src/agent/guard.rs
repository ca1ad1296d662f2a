//! The agent's guard: a tiny mode of this very binary (`agent-service agent-guard`, hidden) that
//! the service runs in the agent's place, and that runs the agent. It exists so that the agent
//! dies with the service: killed with `kill -9`, or crashed, the service cannot stop its task,
//! and the agent (with the shells and commands it started) would go on working in a dead task's
//! workspace, calling the paid model API, for minutes.
//!
//! The guard leads the agent's process group (the service starts it so) and:
//! - asks the kernel for a signal when its parent dies (`PR_SET_PDEATHSIG`), having checked that
//!   its parent is still the service that started it (`--parent-pid`), so none is missed;
//! - is a child subreaper (`PR_SET_CHILD_SUBREAPER`): what the agent starts stays below the
//!   guard even when its parent ends. Claude Code runs each shell command in a session of its
//!   own, out of the agent's process group, so the group alone does not reach them;
//! - when the service dies, or asks (`SIGUSR1`, once a stop's grace period is over), SIGKILLs
//!   everything below it, then ends;
//! - when the agent ends, kills what it left running, then ends as the agent did: the same exit
//!   code, or the same signal re-raised, so the service sees the status it saw before the guard;
//! - ignores the SIGTERM (and SIGINT) a stop sends the whole group: the agent gets it too and
//!   shuts down by itself; the guard stays to clean up after it.
//!
//! `PR_SET_PDEATHSIG` fires when the parent *thread* ends, not the process. The service starts
//! the guard from async code polled by the runtime's worker threads (or the main thread), which
//! live as long as the service; nothing here spawns it from a blocking-pool thread, which could
//! end after a few idle seconds, nor uses `block_in_place`. Keep it so.
//!
//! Every process of a task's agent also carries [`TASK_MARKER_VAR`] in its environment, so a
//! restarted service can recognise what a previous run left (see [`crate::agent::leftover`]).

use std::{
    ffi::OsString,
    io::{self, Write},
    os::unix::process::CommandExt,
    path::PathBuf,
    process::ExitStatus,
    time::{Duration, Instant},
};

use nix::{
    sys::{
        prctl,
        signal::{kill, raise, SigHandler, SigSet, Signal},
        wait::{waitpid, WaitPidFlag, WaitStatus},
    },
    unistd::{getpid, getppid, Pid},
};
use tokio::process::{Child, Command};

use crate::{agent::AgentCommand, privileges, proc_table};

/// The hidden subcommand.
pub const SUBCOMMAND: &str = "agent-guard";
/// Set in the environment of the guard, the agent and everything it starts: the task's id.
pub const TASK_MARKER_VAR: &str = "AUTOPILOT_TASK_ID";
/// What the kernel sends the guard when the service dies.
const PARENT_DIED: Signal = Signal::SIGHUP;
/// What the service sends the guard when a stop's grace period is over: kill everything now.
const KILL_ALL: Signal = Signal::SIGUSR1;
/// The guard's exit code when it could not run the agent (as a shell's for "cannot execute").
const CANNOT_RUN: i32 = 126;
/// How long the guard goes on killing what is below it, should processes resist (e.g. stuck in
/// the kernel), before it gives up.
const KILL_PATIENCE: Duration = Duration::from_secs(3);

/// Flags of `agent-service agent-guard`.
#[derive(clap::Args, Debug, Clone)]
pub struct GuardArgs {
    /// The process that starts the guard (the service): the guard stops at once if its parent
    /// is not, or no longer, this one.
    #[arg(long)]
    pub parent_pid: i32,
    /// The agent's program and arguments, after `--`.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "AGENT")]
    pub command: Vec<OsString>,
}

// ---- The service's side ----

/// How the service runs an agent under its guard.
#[derive(Debug, Clone)]
pub struct Guard {
    /// This binary, which has the guard mode.
    pub exe: PathBuf,
}

impl Guard {
    /// The guard of the running binary.
    ///
    /// # Errors
    /// The binary's own path cannot be found.
    pub fn this_program() -> io::Result<Guard> {
        Ok(Guard { exe: std::env::current_exe()? })
    }

    /// The command running `agent` under the guard, with its working directory and environment
    /// (the guard passes both on), the process marked as task `task_id`'s. Spawn it as a
    /// process group leader ([`crate::process_group::spawn_group`]).
    pub fn command(&self, agent: &AgentCommand, task_id: &str) -> Command {
        let mut command = Command::new(&self.exe);
        command
            .arg(SUBCOMMAND)
            .arg("--parent-pid")
            .arg(std::process::id().to_string())
            .arg("--")
            .arg(&agent.program)
            .args(&agent.args)
            .current_dir(&agent.cwd)
            .env_clear()
            .envs(agent.env.iter().cloned())
            .env(TASK_MARKER_VAR, task_id);
        command
    }
}

/// Stops a guarded agent whose guard is `child`: SIGTERM to the whole group (the agent shuts
/// down; the guard waits); after `grace`, the guard is told to kill everything below it; should
/// it not have ended a second later, SIGKILL to the group.
pub async fn stop(child: &mut Child, grace: Duration) -> io::Result<ExitStatus> {
    let Some(pgid) = child.id().map(|id| Pid::from_raw(id as i32)) else {
        return child.wait().await; // already reaped
    };
    // As root where the guard runs a setup script as root (see `crate::privileges`).
    let _ = privileges::signal(pgid, Signal::SIGTERM, true);
    if let Ok(status) = tokio::time::timeout(grace, child.wait()).await {
        return status;
    }
    let _ = privileges::signal(pgid, KILL_ALL, false);
    if let Ok(status) = tokio::time::timeout(Duration::from_secs(1), child.wait()).await {
        return status;
    }
    let _ = privileges::signal(pgid, Signal::SIGKILL, true);
    child.wait().await
}

// ---- The guard's side ----

/// How the guard ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// As the agent: with its exit code.
    Code(i32),
    /// As the agent: killed by this signal.
    Signal(Signal),
    /// The service is gone; nobody waits for a status.
    ParentGone,
}

/// Runs the guard; never returns.
pub fn run(args: &GuardArgs) -> ! {
    match guard(args) {
        Ok(Ending::Code(code)) => std::process::exit(code),
        Ok(Ending::Signal(signal)) => die_by(signal),
        Ok(Ending::ParentGone) => std::process::exit(1),
        Err(message) => {
            // stderr is the service's pipe: the tail it keeps for the task's error.
            let _ = writeln!(io::stderr(), "agent-service {SUBCOMMAND}: {message}");
            std::process::exit(CANNOT_RUN)
        }
    }
}

/// The signals the guard waits for. Blocked, so they queue until [`SigSet::wait`] takes them;
/// the agent starts with none blocked.
fn awaited_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, PARENT_DIED, KILL_ALL] {
        set.add(signal);
    }
    set
}

fn guard(args: &GuardArgs) -> Result<Ending, String> {
    let signals = awaited_signals();
    signals.thread_block().map_err(|e| format!("cannot block signals: {e}"))?;
    prctl::set_child_subreaper(true).map_err(|e| format!("cannot become a subreaper: {e}"))?;
    prctl::set_pdeathsig(PARENT_DIED).map_err(|e| format!("cannot ask for the parent-death signal: {e}"))?;
    // The service may have died before the request above: then no signal will come.
    if getppid().as_raw() != args.parent_pid {
        return Ok(Ending::ParentGone);
    }
    let (program, agent_args) = args.command.split_first().ok_or("no agent to run")?;
    let mut agent = std::process::Command::new(program);
    agent.args(agent_args);
    // SAFETY: runs in the forked child before exec, and only calls pthread_sigmask, which is
    // async-signal-safe. A spawned child inherits the signal mask (std does not reset it), and
    // the agent must not start with SIGTERM and the others blocked, as the guard has them.
    unsafe {
        agent.pre_exec(|| SigSet::empty().thread_set_mask().map_err(io::Error::from));
    }
    let agent = agent.spawn().map_err(|e| format!("could not start the agent {}: {e}", program.to_string_lossy()))?;
    let agent = Pid::from_raw(agent.id() as i32);
    // The agent holds the service's pipes now; once it and what it started close them, the
    // service sees their end, whatever the guard still has to do.
    let _ = release_stdio();

    let mut agent_status = None;
    loop {
        let signal = signals.wait().map_err(|e| format!("cannot wait for signals: {e}"))?;
        match signal {
            Signal::SIGCHLD => {
                reap(agent, &mut agent_status);
                if let Some(ending) = agent_status {
                    kill_everything_below(agent, &mut agent_status);
                    return Ok(ending);
                }
            }
            KILL_ALL => {
                kill_everything_below(agent, &mut agent_status);
                return Ok(agent_status.unwrap_or(Ending::Signal(Signal::SIGKILL)));
            }
            PARENT_DIED if getppid().as_raw() != args.parent_pid => {
                kill_everything_below(agent, &mut agent_status);
                return Ok(Ending::ParentGone);
            }
            // SIGTERM and SIGINT: the agent got its own; a stray SIGHUP: the service lives.
            _ => {}
        }
    }
}

/// Points stdin, stdout and stderr at /dev/null.
fn release_stdio() -> io::Result<()> {
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null")?;
    nix::unistd::dup2_stdin(&null)?;
    nix::unistd::dup2_stdout(&null)?;
    nix::unistd::dup2_stderr(&null)?;
    Ok(())
}

/// Reaps every ended child (orphans of the agent come to the guard, as their subreaper), noting
/// how the agent itself ended.
fn reap(agent: Pid, agent_status: &mut Option<Ending>) {
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        match status {
            WaitStatus::Exited(pid, code) if pid == agent => *agent_status = Some(Ending::Code(code)),
            WaitStatus::Signaled(pid, signal, _) if pid == agent => *agent_status = Some(Ending::Signal(signal)),
            WaitStatus::StillAlive => break,
            _ => {}
        }
    }
}

/// SIGKILLs every process below the guard, again and again until none runs (a process may fork
/// while the others are killed), reaping them.
fn kill_everything_below(agent: Pid, agent_status: &mut Option<Ending>) {
    let me = getpid().as_raw();
    let deadline = Instant::now() + KILL_PATIENCE;
    loop {
        let below = proc_table::descendants(&proc_table::snapshot(), me);
        if below.is_empty() || Instant::now() > deadline {
            break;
        }
        for pid in below {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(5));
        reap(agent, agent_status);
    }
    reap(agent, agent_status);
}

/// Ends this process by `signal`, as the agent ended, without leaving a core file in the
/// workspace.
fn die_by(signal: Signal) -> ! {
    use nix::sys::resource::{setrlimit, Resource};
    let _ = setrlimit(Resource::RLIMIT_CORE, 0, 0);
    // SAFETY: the guard is single-threaded and installs no handler; default action only.
    let _ = unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) };
    let _ = SigSet::from(signal).thread_unblock();
    let _ = raise(signal);
    std::process::exit(128 + signal as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    use crate::config::{Command as Mode, Config};

    #[test]
    fn the_agents_command_line_passes_through_untouched() {
        let config = Config::parse_from([
            "agent-service",
            SUBCOMMAND,
            "--parent-pid",
            "42",
            "--",
            "/opt/claude",
            "-p",
            "--output-format",
            "stream-json",
        ]);
        let Some(Mode::AgentGuard(args)) = config.command else { panic!("not the guard mode") };
        assert_eq!(args.parent_pid, 42);
        assert_eq!(args.command, ["/opt/claude", "-p", "--output-format", "stream-json"]);
    }

    #[test]
    fn the_service_runs_the_agent_through_the_guard_marked_with_the_task() {
        let agent = AgentCommand {
            program: "claude".into(),
            args: vec!["-p".into(), "--verbose".into()],
            cwd: "/w/tasks/t1/repo".into(),
            env: vec![("PATH".into(), "/bin".into())],
        };
        let guard = Guard { exe: "/usr/local/bin/agent-service".into() };
        let command = guard.command(&agent, "t1");
        let command = command.as_std();
        assert_eq!(command.get_program(), "/usr/local/bin/agent-service");
        let args: Vec<_> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        let me = std::process::id().to_string();
        assert_eq!(args, [SUBCOMMAND, "--parent-pid", &me, "--", "claude", "-p", "--verbose"]);
        assert_eq!(command.get_current_dir(), Some(std::path::Path::new("/w/tasks/t1/repo")));
        let env: Vec<_> = command.get_envs().map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned()))).collect();
        assert!(env.contains(&("PATH".into(), Some("/bin".into()))));
        assert!(env.contains(&(TASK_MARKER_VAR.into(), Some("t1".into()))));
    }
}
