//! The setup phase of a task with an environment: once its workspace is ready (a clone, a
//! follow-up's workspace, or a prepared copy) and before its agent starts, the task moves to
//! SETTING_UP and runs the environment's script in the workspace: the setup script on a fresh
//! workspace, the maintenance script on a prepared one.
//!
//! Recorded, in order: `setup_started` (the environment, which script, where the workspace came
//! from), a `setup_output` for each line the script writes (masked with the task's redactor,
//! which knows the environment's secrets, then cut to 4 KiB: [`crate::script_output`]), and
//! `setup_finished` (its exit code, -1 when killed; how long it ran; whether its time limit
//! killed it). A script that fails (a non-zero exit, a signal, its time limit) fails the task
//! with words naming the environment, the code or the limit, and its last lines
//! ([`crate::script_outcome`]); a stop (cancel, the task's timeout, shutdown) kills it and ends
//! the task as the stop says. An empty script runs nothing: `setup_started` and a
//! `setup_finished` with code 0 say so.
//!
//! The script runs as [`crate::script_process`] says (bash, under the agent's guard), with the
//! environment [`crate::environment_vars::script_env`] gives it: the agent's, model credentials
//! aside, with the variables and the secrets. Its text is written beside the task (`setup.sh`
//! or `maintenance.sh` in the task's directory), not in the workspace, so it is in no diff.

use std::{path::Path, time::Instant};

use autopilot_contract::v1::{
    event::Payload, GitProgress, SetupFinished, SetupOutput, SetupStarted, TaskState, WorkspaceOrigin,
};

use crate::{
    agent::{guard::Guard, process::Owner},
    environment_vars::script_env,
    privileges,
    script_outcome::{failure, ScriptEnd, ScriptKind},
    script_output::{cut, OutputBook, OutputLines, MAX_LINE_BYTES},
    script_process::{find_bash, run_script, ScriptRun},
    spec::EnvironmentSpec,
    system_packages,
    task::Task,
};

/// Why the setup phase did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupError {
    /// The task was told to stop; the script was killed.
    Stopped,
    /// The script failed, or could not run; the words end the task.
    Failed(String),
}

/// What the phase runs with besides the task and its environment.
pub struct SetupContext<'a> {
    /// What the script runs under, as the agent does.
    pub guard: &'a Guard,
    /// How long a stopped script gets between SIGTERM and SIGKILL.
    pub grace: std::time::Duration,
    /// The agent's environment for this task before the environment's variables.
    pub agent_base_env: &'a [(String, String)],
}

/// Runs `environment`'s script for `task`, whose workspace at `workdir` came from `origin`.
///
/// # Errors
/// [`SetupError::Stopped`] when the task was told to stop; [`SetupError::Failed`] with the words
/// that end the task otherwise.
pub async fn set_up(
    task: &Task,
    environment: &EnvironmentSpec,
    origin: WorkspaceOrigin,
    workdir: &Path,
    ctx: &SetupContext<'_>,
) -> Result<(), SetupError> {
    let packages_before = system_packages::fingerprint();
    let kind = match origin {
        WorkspaceOrigin::Prepared | WorkspaceOrigin::Restored
            if system_packages::missing(workdir, packages_before.as_deref()) =>
        {
            task.record(Payload::GitProgress(GitProgress {
                phase: "Prepared workspace".into(),
                message: format!(
                    "the system packages the setup of environment {} installed are not on this machine: running \
                     the setup script again",
                    environment.name
                ),
                ..Default::default()
            }));
            ScriptKind::Setup
        }
        WorkspaceOrigin::Prepared | WorkspaceOrigin::Restored => ScriptKind::Maintenance,
        WorkspaceOrigin::Fresh | WorkspaceOrigin::Unspecified => ScriptKind::Setup,
    };
    task.move_to(TaskState::SettingUp, "");
    task.record(Payload::SetupStarted(SetupStarted {
        environment_name: environment.name.clone(),
        maintenance: kind == ScriptKind::Maintenance,
        workspace_origin: origin as i32,
    }));
    let script = match kind {
        ScriptKind::Setup => &environment.setup_script,
        ScriptKind::Maintenance => &environment.maintenance_script,
    };
    if script.is_empty() {
        record_finished(task, ScriptEnd::Exited(0), std::time::Duration::ZERO);
        return Ok(());
    }
    let cannot_run = |why: String| {
        let message = format!("could not run the {} script of environment {}: {why}", kind.name(), environment.name);
        SetupError::Failed(message)
    };
    let env = script_env(ctx.agent_base_env, environment);
    let Some(bash) = find_bash(&env) else {
        record_finished(task, ScriptEnd::Exited(127), std::time::Duration::ZERO);
        return Err(cannot_run("bash, which runs it, is not on this machine's PATH".into()));
    };
    let file = task.dir().join(format!("{}.sh", kind.name()));
    if let Err(error) = std::fs::write(&file, script) {
        record_finished(task, ScriptEnd::Exited(-1), std::time::Duration::ZERO);
        return Err(cannot_run(format!("its file could not be written: {error}")));
    }
    let run = ScriptRun { file: &file, workdir, env, time_limit: environment.setup_timeout };
    let owner = Owner { task_id: task.id(), task_dir: task.dir() };
    let started = Instant::now();
    let mut book = OutputBook::default();
    let mut record_line = |line: String| {
        // Masked whole before the cut, so no part of a secret is left to show.
        if let Some(line) = book.take(cut(task.redactor().redact(&line), MAX_LINE_BYTES)) {
            task.record(Payload::SetupOutput(SetupOutput { line }));
        }
    };
    let mut lines = OutputLines::default();
    let end = run_script(&run, &bash, ctx.guard, owner, task.stop_token(), ctx.grace, |chunk| {
        lines.feed(chunk, &mut record_line)
    })
    .await;
    // A script run as root leaves what it made in the workspace and the home root's: the agent's
    // user gets it back, whatever the script's end.
    let given_back = privileges::give_back(workdir).await;
    if let Some(last) = lines.finish() {
        record_line(last);
    }
    for line in book.closing_lines() {
        task.record(Payload::SetupOutput(SetupOutput { line }));
    }
    let ran_for = started.elapsed();
    let end = match end {
        Ok(end) => end,
        Err(error) => {
            record_finished(task, ScriptEnd::Exited(-1), ran_for);
            return Err(cannot_run(error.to_string()));
        }
    };
    record_finished(task, end, ran_for);
    tracing::info!(
        task_id = task.id(),
        environment = %environment.name,
        script = kind.name(),
        exit_code = end.exit_code(),
        elapsed_ms = ran_for.as_millis() as u64,
        "an environment's script ended"
    );
    if end == ScriptEnd::Stopped {
        return Err(SetupError::Stopped);
    }
    if let Some(message) = failure(kind, &environment.name, end, ran_for, environment.setup_timeout, &book.tail()) {
        return Err(SetupError::Failed(message));
    }
    given_back
        .map_err(|why| SetupError::Failed(format!("could not give the workspace back to the agent's user: {why}")))?;
    if kind == ScriptKind::Setup {
        system_packages::note_change(workdir, packages_before.as_deref(), system_packages::fingerprint().as_deref());
    }
    Ok(())
}

fn record_finished(task: &Task, end: ScriptEnd, ran_for: std::time::Duration) {
    task.record(Payload::SetupFinished(SetupFinished {
        exit_code: end.exit_code(),
        duration: Some(autopilot_contract::time::duration(ran_for)),
        timed_out: end == ScriptEnd::TimedOut,
    }));
}
