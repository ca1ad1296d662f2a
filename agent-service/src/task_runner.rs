//! Runs one task from PENDING to its final state: clone, then the agent, then the delivery of
//! its work ([`crate::delivery`]: diff, commit, push), each step recorded as events. A stop
//! (cancel, timeout, shutdown) reaches whichever step is running, which stops its process group;
//! the task then ends in the state its stop reason names.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use autopilot_contract::v1::{
    event::Payload, AgentStarted, AgentText, RepositoryReady, TaskState, ToolFinished, ToolStarted, UsageUpdate,
};

use crate::{
    agent::{
        outcome::decide,
        process::{run_agent, Owner, RunEnd},
        AgentCli, AgentInvocation, AgentMessage,
    },
    agent_guard::Guard,
    delivery::{deliver, save_clean_git_config, DeliveryContext},
    git_clone::{clone_repo, GitSettings},
    git_command::GitError,
    git_credentials::GitCredentials,
    task::{StopReason, Task},
    validate::TaskSpec,
};

/// What every task run shares: the agent CLI, git settings and the agent's environment.
pub struct RunContext {
    pub agent: Arc<dyn AgentCli>,
    /// What the agent runs under, so that it dies with the service.
    pub guard: Guard,
    pub git: GitSettings,
    /// How git authenticates to push (also in `git.credentials_env`); used for error hints.
    pub git_credentials: GitCredentials,
    /// How long the agent gets to exit after SIGTERM.
    pub grace: Duration,
    /// Environment for the agent CLI, API key included.
    pub agent_env: Vec<(String, String)>,
    /// Whether a model API key is configured; without one every task fails with that reason.
    pub has_api_key: bool,
    /// Set when the agent CLI cannot be used (e.g. not the pinned version); tasks fail with it.
    pub agent_problem: Arc<std::sync::OnceLock<String>>,
}

/// Why a step did not succeed.
enum StepError {
    Stopped,
    Failed(String),
}

/// How the agent finished.
struct Finished {
    result: String,
    num_turns: u32,
}

/// Runs `task` to its end. Never fails: every outcome becomes the task's final state.
pub async fn run_task(task: Arc<Task>, spec: TaskSpec, ctx: Arc<RunContext>) {
    let started = Instant::now();
    let timer = {
        let task = Arc::clone(&task);
        let limit = spec.timeout;
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            task.request_stop(StopReason::TimedOut(limit));
        })
    };
    let outcome = run_steps(&task, &spec, &ctx).await;
    timer.abort();
    let (state, result, error, num_turns) = match outcome {
        Ok(finished) => (TaskState::Succeeded, finished.result, String::new(), finished.num_turns),
        Err(StepError::Failed(error)) => (TaskState::Failed, String::new(), error, 0),
        Err(StepError::Stopped) => {
            let (state, why) = task.stop_reason().unwrap_or(StopReason::Cancelled(None)).outcome();
            (state, String::new(), why, 0)
        }
    };
    task.finish(state, result, error, num_turns, started.elapsed());
    tracing::info!(task_id = task.id(), state = ?task.state(), elapsed_ms = started.elapsed().as_millis() as u64, "task ended");
}

async fn run_steps(task: &Task, spec: &TaskSpec, ctx: &RunContext) -> Result<Finished, StepError> {
    if !ctx.has_api_key {
        return Err(StepError::Failed(
            "ANTHROPIC_API_KEY is not set on the agent-service, so the agent cannot call the model; \
             restart the service with ANTHROPIC_API_KEY in its environment"
                .into(),
        ));
    }
    if let Some(problem) = ctx.agent_problem.get() {
        return Err(StepError::Failed(problem.clone()));
    }
    if task.stop_token().is_cancelled() {
        return Err(StepError::Stopped);
    }
    task.move_to(TaskState::Cloning, "");
    let repo_dir = task.dir().join("repo");
    let commit =
        clone_repo(&spec.repo, &spec.git_ref, &repo_dir, &ctx.git, task.redactor(), task.stop_token(), |progress| {
            task.record(Payload::GitProgress(progress));
        })
        .await
        .map_err(step_error)?;
    let clean_git_config = save_clean_git_config(task.dir())
        .map_err(|e| StepError::Failed(format!("could not keep a copy of the clone's git config: {e}")))?;
    task.record(Payload::RepositoryReady(RepositoryReady { commit: commit.clone() }));

    task.move_to(TaskState::Running, "");
    let invocation = AgentInvocation {
        workdir: repo_dir,
        prompt: spec.prompt.clone(),
        model: spec.model.clone(),
        max_turns: spec.max_turns,
        max_budget_usd: spec.max_budget_usd,
        env: ctx.agent_env.clone(),
    };
    let mut num_turns = 0;
    let owner = Owner { task_id: task.id(), task_dir: task.dir() };
    let end = run_agent(ctx.agent.as_ref(), &invocation, &ctx.guard, owner, task.stop_token(), ctx.grace, |message| {
        if let AgentMessage::Finished(result) = &message {
            num_turns = result.num_turns;
        }
        if let Some(payload) = payload_of(message) {
            task.record(payload);
        }
    })
    .await
    .map_err(|e| StepError::Failed(format!("could not run the agent ({}): {e}", ctx.agent.name())))?;
    let result = match end {
        RunEnd::Stopped => return Err(StepError::Stopped),
        RunEnd::Exited(exit) => decide(&exit).map_err(|e| StepError::Failed(task.redactor().redact(&e)))?,
    };
    let delivery =
        DeliveryContext { git: &ctx.git, credentials: &ctx.git_credentials, clean_git_config: &clean_git_config };
    deliver(task, spec, &commit, &result, &delivery).await.map_err(step_error)?;
    Ok(Finished { result, num_turns })
}

fn step_error(error: GitError) -> StepError {
    match error {
        GitError::Stopped => StepError::Stopped,
        GitError::Failed(message) => StepError::Failed(message),
    }
}

/// The event an agent message is recorded as (the final report becomes `task_finished` later).
fn payload_of(message: AgentMessage) -> Option<Payload> {
    Some(match message {
        AgentMessage::Started { session_id, model, version } => {
            Payload::AgentStarted(AgentStarted { session_id, model, agent_version: version })
        }
        AgentMessage::Text(text) => Payload::AgentText(AgentText { text }),
        AgentMessage::ToolStarted { tool_id, name, input_json } => {
            Payload::ToolStarted(ToolStarted { tool_id, name, input_json })
        }
        AgentMessage::ToolFinished { tool_id, output, is_error } => {
            Payload::ToolFinished(ToolFinished { tool_id, output, is_error })
        }
        AgentMessage::Usage(usage) => Payload::UsageUpdate(UsageUpdate { usage: Some(usage) }),
        AgentMessage::Finished(_) => return None,
    })
}
