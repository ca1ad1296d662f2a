//! Runs one task from PENDING to its final state: its workspace (a clone, a copy of a prepared
//! workspace brought to its ref ([`crate::prepared_workspaces`]), or for a follow-up one made
//! from its parent's, [`crate::workspace`], in CLONING), then its environment's setup
//! ([`crate::setup`], in SETTING_UP), then the agent (resuming the parent's session for a
//! follow-up), then the delivery of its work ([`crate::delivery`]: diff, commit, push), each
//! step recorded as events. A fresh workspace whose setup succeeded is kept as prepared for the
//! next task of the same repository and environment, before the agent changes it; a prepared
//! workspace that cannot be used is no failure: the task clones afresh, and says so. Once its
//! agent has run, the task keeps a masked copy of the agent's session transcript, for
//! follow-ups and exports. A stop (cancel, timeout, shutdown) reaches whichever step is running,
//! which stops its process group; the task then ends in the state its stop reason names.

use std::{sync::Arc, time::Instant};

use autopilot_contract::v1::{
    event::Payload, AgentStarted, AgentText, RepositoryReady, TaskState, ToolFinished, ToolStarted, UsageUpdate,
    WorkspaceOrigin,
};

use crate::{
    agent::{
        outcome::decide,
        process::{run_agent, Owner, RunEnd},
        AgentInvocation, AgentMessage,
    },
    delivery::{deliver, save_clean_git_config, DeliveryContext},
    environment_vars,
    git_clone::clone_repo,
    git_command::GitError,
    model_access, prepared_key,
    prepared_steps::{from_prepared, keep_prepared, restore_from_store, send_to_store},
    run_context::{RunContext, StepError},
    setup::{set_up, SetupContext, SetupError},
    spec::{EnvironmentSpec, FollowUp, TaskSpec, WorkspaceSource},
    task::{StopReason, Task},
    workspace,
};

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
        let limit = spec.run.timeout;
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            task.request_stop(StopReason::TimedOut(limit));
        })
    };
    let mut upload = None;
    let outcome = run_steps(&task, &spec, &ctx, &mut upload).await;
    // The edge's credential for its store ends with the task: a workspace still being sent is
    // sent first (a stop ends the sending too).
    if let Some(upload) = upload {
        let _ = upload.await;
    }
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

async fn run_steps(
    task: &Arc<Task>,
    spec: &TaskSpec,
    ctx: &RunContext,
    upload: &mut Option<tokio::task::JoinHandle<()>>,
) -> Result<Finished, StepError> {
    if !ctx.has_api_key && spec.run.model_access.is_none() {
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
    let environment = spec.run.environment.as_ref();
    // Only a first turn with a setup to keep starts from, and keeps, a prepared workspace.
    let prepared = environment
        .filter(|env| spec.follow_up.is_none() && !env.setup_script.is_empty())
        .map(|env| (env, prepared_key::key(&spec.repo.url, env)));
    let (commit, origin) = match &spec.follow_up {
        None => first_workspace(task, spec, prepared.as_ref(), ctx).await?,
        Some(follow_up) => (continue_workspace(task, spec, follow_up, ctx).await?, WorkspaceOrigin::Fresh),
    };
    let clean_git_config = save_clean_git_config(task.dir())
        .map_err(|e| StepError::Failed(format!("could not keep a copy of the clone's git config: {e}")))?;
    task.record(Payload::RepositoryReady(RepositoryReady { commit: commit.clone() }));

    if !spec.own_secrets().is_empty() {
        workspace::mark_own_secrets(task.dir())
            .map_err(|e| StepError::Failed(format!("could not record that the task has secrets of its own: {e}")))?;
    }
    let agent_base_env = model_access::agent_env(&ctx.agent_env, spec.run.model_access.as_ref());
    if let Some(environment) = environment {
        let setup = SetupContext { guard: &ctx.guard, grace: ctx.grace, agent_base_env: &agent_base_env };
        set_up(task, environment, origin, &repo_dir, &setup).await.map_err(|e| match e {
            SetupError::Stopped => StepError::Stopped,
            SetupError::Failed(why) => StepError::Failed(why),
        })?;
        if let (Some((_, key)), WorkspaceOrigin::Fresh) = (&prepared, origin) {
            if keep_prepared(task, environment, key, &repo_dir, &clean_git_config, ctx).await? {
                *upload = send_to_store(task, environment, key, ctx).await;
            }
        }
    }
    task.move_to(TaskState::Running, "");
    let invocation = AgentInvocation {
        workdir: repo_dir,
        prompt: spec.run.prompt.clone(),
        model: spec.run.model.clone(),
        max_turns: spec.run.max_turns,
        max_budget_usd: spec.run.max_budget_usd,
        env: environment_vars::agent_env(agent_base_env, environment),
        resume_session: spec.follow_up.as_ref().and_then(|f| f.resume_session.clone()),
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
    .map_err(|e| StepError::Failed(format!("could not run the agent ({}): {e}", ctx.agent.name())));
    keep_transcript(task, &invocation, ctx);
    let end = end?;
    let result = match end {
        RunEnd::Stopped => return Err(StepError::Stopped),
        RunEnd::Exited(exit) => decide(&exit).map_err(|e| StepError::Failed(task.redactor().redact(&e)))?,
    };
    let delivery =
        DeliveryContext { git: &ctx.git, credentials: &ctx.git_credentials, clean_git_config: &clean_git_config };
    deliver(task, spec, &commit, &result, &delivery).await.map_err(StepError::from)?;
    Ok(Finished { result, num_turns })
}

/// A first turn's workspace: a copy of the prepared workspace of `prepared` (an environment
/// and its key) when there is one that can be used, or else a clone. Answers the commit checked
/// out and where the workspace came from.
async fn first_workspace(
    task: &Task,
    spec: &TaskSpec,
    prepared: Option<&(&EnvironmentSpec, String)>,
    ctx: &RunContext,
) -> Result<(String, WorkspaceOrigin), StepError> {
    let mut made = None;
    if let Some((environment, key)) = prepared {
        let mut origin = WorkspaceOrigin::Prepared;
        if let (false, Some(store)) = (ctx.prepared.has(key), &environment.prepared_store) {
            if restore_from_store(task, environment, store, key, ctx).await? {
                origin = WorkspaceOrigin::Restored;
            }
        }
        made = from_prepared(task, spec, environment, key, ctx).await?.map(|commit| (commit, origin));
    }
    let (commit, origin) = match made {
        Some(made) => made,
        None => {
            let commit = clone_repo(
                &spec.repo,
                &spec.git_ref,
                &task.dir().join("repo"),
                &ctx.git,
                task.redactor(),
                task.stop_token(),
                |progress| task.record(Payload::GitProgress(progress)),
            )
            .await
            .map_err(StepError::from)?;
            (commit, WorkspaceOrigin::Fresh)
        }
    };
    write_base(task, &commit)?;
    Ok((commit, origin))
}

/// Makes a follow-up's workspace from its parent's (or from the snapshot it brought), and puts
/// the parent's session transcript where the agent resumes it; answers the commit it starts from.
async fn continue_workspace(
    task: &Task,
    spec: &TaskSpec,
    follow_up: &FollowUp,
    ctx: &RunContext,
) -> Result<String, StepError> {
    let repo_dir = task.dir().join("repo");
    let parent = &follow_up.parent_id;
    let branch = &spec.run.delivery.branch;
    let (base, transcript) = match &follow_up.source {
        WorkspaceSource::Parent { task_dir, commit, base_commit } => {
            workspace::from_parent(task_dir, commit, branch, &repo_dir, &ctx.git, task.redactor(), task.stop_token())
                .await
                .map_err(|e| match e {
                    GitError::Stopped => StepError::Stopped,
                    GitError::Failed(why) => {
                        StepError::Failed(format!("could not make the workspace from task {parent}'s: {why}"))
                    }
                })?;
            let transcript = match &follow_up.resume_session {
                None => None,
                Some(session) => Some(
                    workspace::read_transcript(ctx.agent.as_ref(), task_dir, session, &ctx.agent_env).map_err(|e| {
                        StepError::Failed(format!(
                            "task {parent}'s conversation (session {session}) is no longer on this machine: {e}"
                        ))
                    })?,
                ),
            };
            (base_commit.clone(), transcript)
        }
        WorkspaceSource::Restore(snapshot) => {
            let restored = workspace::from_snapshot(
                snapshot,
                &spec.repo,
                &repo_dir,
                task.dir(),
                &ctx.git,
                task.redactor(),
                task.stop_token(),
                |progress| task.record(Payload::GitProgress(progress)),
            )
            .await;
            restored.map_err(|e| match e {
                GitError::Stopped => StepError::Stopped,
                GitError::Failed(why) => {
                    StepError::Failed(format!("could not restore the workspace of task {parent}: {why}"))
                }
            })?;
            let transcript = Some(snapshot.session_transcript.clone()).filter(|t| !t.is_empty());
            (snapshot.base_commit.clone(), transcript)
        }
    };
    if let (Some(session), Some(transcript)) = (&follow_up.resume_session, transcript) {
        workspace::install_transcript(ctx.agent.as_ref(), &repo_dir, session, &ctx.agent_env, &transcript)
            .map_err(|e| StepError::Failed(format!("could not hand task {parent}'s conversation to the agent: {e}")))?;
    }
    write_base(task, &base)?;
    Ok(follow_up.start_commit().to_string())
}

/// Records where the task's workspace history starts (what ExportWorkspace bundles from).
fn write_base(task: &Task, commit: &str) -> Result<(), StepError> {
    workspace::write_base(task.dir(), commit)
        .map_err(|e| StepError::Failed(format!("could not record the workspace's base commit: {e}")))
}

/// Keeps a copy of the agent's session transcript with the task, for follow-ups and exports,
/// masked now, while the task's own secrets are known (a restarted service does not know them).
/// Best effort: a task whose transcript is missing only cannot be followed up.
fn keep_transcript(task: &Task, invocation: &AgentInvocation, ctx: &RunContext) {
    let session = task.snapshot().session_id;
    if session.is_empty() {
        return;
    }
    let kept = workspace::keep_transcript(
        ctx.agent.as_ref(),
        &invocation.workdir,
        &session,
        &ctx.agent_env,
        task.dir(),
        task.redactor(),
    );
    if let Err(error) = kept {
        tracing::warn!(task_id = task.id(), %session, %error, "could not keep the agent's session transcript");
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
