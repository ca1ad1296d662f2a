//! The agent's guard (`agent-service agent-guard`), run as the real binary with shell scripts in
//! the agent's place: it ends as its agent did, survives the SIGTERM a stop sends the group,
//! and kills everything the agent started, even what left the group, when the agent ends, when
//! the service asks, and when the service dies.

use std::{
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use agent_service::{
    agent::{
        guard::{self as agent_guard, Guard},
        AgentCommand,
    },
    process_group::spawn_group,
};
use nix::{
    sys::signal::{kill, killpg, Signal},
    unistd::Pid,
};
use tokio::io::{AsyncBufReadExt, BufReader};

fn guard() -> Guard {
    Guard { exe: PathBuf::from(env!("CARGO_BIN_EXE_agent-service")) }
}

/// `sh -c script` as the agent, in `dir`.
fn shell(script: &str, dir: &Path) -> AgentCommand {
    AgentCommand {
        program: "sh".into(),
        args: vec!["-c".into(), script.into()],
        cwd: dir.to_path_buf(),
        env: vec![("PATH".into(), std::env::var("PATH").unwrap())],
    }
}

/// Whether `pid` still runs (a zombie does not).
fn running(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().is_empty() && !rest.trim_start().starts_with('Z'))
}

/// Waits until `file` holds a pid, and gives it.
async fn pid_in(file: &Path) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pid) = std::fs::read_to_string(file).ok().and_then(|s| s.trim().parse().ok()) {
            return pid;
        }
        assert!(Instant::now() < deadline, "{} was never written", file.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (at most `limit`) until none of `pids` runs.
async fn all_gone(pids: &[i32], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if !pids.iter().any(|pid| running(*pid)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// A shell script line that starts `sleep 300` in a session of its own (as Claude Code runs its
/// shell commands) and writes its pid to `file`.
fn escape_to(file: &Path) -> String {
    format!("setsid sh -c 'echo $$ > {}; exec sleep 300' &", file.display())
}

#[tokio::test]
async fn the_guard_ends_as_its_agent_did() {
    let dir = tempfile::tempdir().unwrap();
    for (script, code, signal) in [
        ("exit 0", Some(0), None),
        ("exit 3", Some(3), None),
        ("kill -TERM $$", None, Some(15)),
        ("kill -KILL $$", None, Some(9)),
    ] {
        let mut command = guard().command(&shell(script, dir.path()), "t");
        let status = spawn_group(command.stdin(Stdio::null())).unwrap().wait().await.unwrap();
        assert_eq!((status.code(), status.signal()), (code, signal), "{script}");
    }
    // An agent that cannot be started: the guard says so on stderr, as the service reports it.
    let missing = AgentCommand { program: "/no/such/claude".into(), ..shell("", dir.path()) };
    let output = guard().command(&missing, "t").stdin(Stdio::null()).output().await.unwrap();
    assert_eq!(output.status.code(), Some(126));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("could not start the agent /no/such/claude"), "{stderr}");
}

#[tokio::test]
async fn what_the_agent_left_running_is_killed_when_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let escaped = dir.path().join("escaped");
    let script = format!("{} while [ ! -s {} ]; do sleep 0.01; done; exit 0", escape_to(&escaped), escaped.display());
    let status = spawn_group(guard().command(&shell(&script, dir.path()), "t").stdin(Stdio::null()))
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let escaped = pid_in(&escaped).await;
    assert!(all_gone(&[escaped], Duration::from_secs(1)).await, "the escaped process survived the agent");
}

#[tokio::test]
async fn a_stop_reaches_the_agent_and_the_guard_outlasts_it() {
    let dir = tempfile::tempdir().unwrap();
    let script = "trap 'exit 7' TERM; echo ready; while :; do sleep 0.05; done";
    let mut child =
        spawn_group(guard().command(&shell(script, dir.path()), "t").stdin(Stdio::null()).stdout(Stdio::piped()))
            .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("ready"));
    killpg(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(7), "the guard waited for the agent and ended as it did");
}

#[tokio::test]
async fn an_agent_deaf_to_sigterm_is_killed_with_all_it_started_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let escaped = dir.path().join("escaped");
    let script = format!("trap '' TERM; {} echo ready; while :; do sleep 0.05; done", escape_to(&escaped));
    let mut child =
        spawn_group(guard().command(&shell(&script, dir.path()), "t").stdin(Stdio::null()).stdout(Stdio::piped()))
            .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("ready"));
    let escaped = pid_in(&escaped).await;
    let started = Instant::now();
    let status = agent_guard::stop(&mut child, Duration::from_millis(300)).await.unwrap();
    assert_eq!(status.signal(), Some(9), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "the guard killed at once: {:?}", started.elapsed());
    assert!(all_gone(&[escaped], Duration::from_secs(1)).await, "the escaped process survived the stop");
}

#[tokio::test]
async fn when_the_service_dies_the_guard_kills_everything_below_it() {
    let dir = tempfile::tempdir().unwrap();
    let (agent_pid, escaped) = (dir.path().join("agent"), dir.path().join("escaped"));
    let agent = format!("echo $$ > {}; {} while :; do sleep 0.05; done", agent_pid.display(), escape_to(&escaped));
    // A stand-in service: a shell that runs the guard and waits for it.
    let service_script = format!(
        "\"{}\" {} --parent-pid $$ -- sh -c \"$0\"; echo the guard ended",
        env!("CARGO_BIN_EXE_agent-service"),
        agent_guard::SUBCOMMAND
    );
    let mut service = std::process::Command::new("sh")
        .args(["-c", &service_script, &agent])
        .env(agent_guard::TASK_MARKER_VAR, "t")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let (agent_pid, escaped) = (pid_in(&agent_pid).await, pid_in(&escaped).await);
    assert!(running(agent_pid) && running(escaped));
    kill(Pid::from_raw(service.id() as i32), Signal::SIGKILL).unwrap();
    service.wait().unwrap();
    assert!(all_gone(&[agent_pid, escaped], Duration::from_secs(3)).await, "the agent outlived its service");
}

#[tokio::test]
async fn a_guard_whose_service_is_already_gone_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_agent-service"))
        .args([agent_guard::SUBCOMMAND, "--parent-pid", "1", "--", "touch"])
        .arg(&marker)
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(!marker.exists(), "the agent ran without a service");
}
