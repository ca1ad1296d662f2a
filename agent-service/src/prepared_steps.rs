//! A first turn's use of prepared workspaces ([`crate::prepared_workspaces`]): starting from
//! this service's copy (brought to the task's ref), bringing one from the edge's store when this
//! service has none ([`crate::prepared_store`]: a new container), and keeping a fresh one, here
//! and in the store, once its setup succeeded. None of it can fail a task: a prepared workspace
//! that cannot be used or kept is said in a `git_progress` note, and the task goes on as if
//! there were none (cloning and setting up afresh); only a stop ends it.

use std::{sync::Arc, time::Instant};

use autopilot_contract::v1::{event::Payload, GitProgress, PreparedStore};

use crate::{
    git_clone::{check_out_from_remote, renew_git_config},
    git_command::GitError,
    prepared_store::Fetched,
    prepared_workspaces::{remove_in_background, CopyError},
    run_context::{RunContext, StepError},
    spec::{EnvironmentSpec, TaskSpec},
    task::Task,
};

/// The phase of the `git_progress` notes about a prepared workspace.
const PREPARED_PHASE: &str = "Prepared workspace";

fn note(task: &Task, message: String) {
    task.record(Payload::GitProgress(GitProgress { phase: PREPARED_PHASE.into(), message, ..Default::default() }));
}

/// The task's workspace made from the prepared workspace of `key`, brought to the task's ref;
/// answers the commit checked out, or `None` when there is no prepared workspace, or it could
/// not be used (then the task clones afresh, and a `git_progress` note says why).
pub(crate) async fn from_prepared(
    task: &Task,
    spec: &TaskSpec,
    environment: &EnvironmentSpec,
    key: &str,
    ctx: &RunContext,
) -> Result<Option<String>, StepError> {
    let repo_dir = task.dir().join("repo");
    let note = |message: String| note(task, message);
    let copied = ctx.prepared.copy_into(key, &repo_dir, task.stop_token()).await;
    let failure = match copied {
        Ok(false) => return Ok(None),
        Err(CopyError::Stopped) => return Err(StepError::Stopped),
        Err(CopyError::Failed(why)) => format!("it could not be copied: {why}"),
        Ok(true) => {
            note(format!("started from the workspace environment {} prepared; fetching the ref", environment.name));
            let checked_out = async {
                renew_git_config(&repo_dir, &ctx.git, task.redactor(), task.stop_token()).await?;
                check_out_from_remote(
                    &spec.repo,
                    &spec.git_ref,
                    &repo_dir,
                    &ctx.git,
                    task.redactor(),
                    task.stop_token(),
                    |progress| task.record(Payload::GitProgress(progress)),
                )
                .await
            }
            .await;
            match checked_out {
                Ok(commit) => return Ok(Some(commit)),
                Err(GitError::Stopped) => return Err(StepError::Stopped),
                Err(GitError::Failed(why)) => format!("the ref could not be checked out on it: {why}"),
            }
        }
    };
    tracing::warn!(task_id = task.id(), %key, %failure, "could not use a prepared workspace; cloning afresh");
    note(format!(
        "the workspace environment {} prepared could not be used ({failure}); cloning the repository afresh",
        environment.name
    ));
    let dir = repo_dir.clone();
    let removed = tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    })
    .await;
    match removed {
        Ok(Ok(())) => Ok(None),
        Ok(Err(e)) => Err(StepError::Failed(format!("could not clear the workspace to clone afresh: {e}"))),
        Err(e) => Err(StepError::Failed(format!("could not clear the workspace to clone afresh: {e}"))),
    }
}

/// Keeps the freshly set-up workspace at `repo_dir` as prepared for `key`, before the agent
/// changes it; answers whether it was kept. A copy that fails is logged, not the task's failure;
/// a stop is.
pub(crate) async fn keep_prepared(
    task: &Task,
    environment: &EnvironmentSpec,
    key: &str,
    repo_dir: &std::path::Path,
    clean_git_config: &[u8],
    ctx: &RunContext,
) -> Result<bool, StepError> {
    match ctx.prepared.keep(key, repo_dir, clean_git_config, task.stop_token()).await {
        Ok(()) => {
            tracing::info!(task_id = task.id(), environment = %environment.name, %key, "kept a prepared workspace");
            Ok(true)
        }
        Err(CopyError::Stopped) => Err(StepError::Stopped),
        Err(CopyError::Failed(error)) => {
            let name = &environment.name;
            tracing::warn!(task_id = task.id(), environment = %name, %error, "could not keep a prepared workspace");
            Ok(false)
        }
    }
}

/// Brings the prepared workspace of `key` from the edge's `store` into this service's prepared
/// workspaces; answers whether it came. A store that keeps none, or fails, is said in a note.
pub(crate) async fn restore_from_store(
    task: &Task,
    environment: &EnvironmentSpec,
    store: &PreparedStore,
    key: &str,
    ctx: &RunContext,
) -> Result<bool, StepError> {
    let name = &environment.name;
    note(task, format!("looking for the workspace environment {name} prepared in the edge's store"));
    let incoming = ctx.prepared.incoming();
    let began = Instant::now();
    let fetched = ctx.store_client.fetch(store, &incoming, task.stop_token(), ctx.grace).await;
    let fetched = match fetched {
        Ok(Fetched::Restored(bytes)) => ctx.prepared.place(key, incoming).await.map(|()| Some(bytes)),
        other => {
            remove_in_background(incoming);
            other.map(|_| None)
        }
    };
    match fetched {
        Ok(Some(bytes)) => {
            let took = began.elapsed();
            note(task, format!("restored it from the edge's store: {} in {}", megabytes(bytes), seconds(took)));
            let elapsed_ms = took.as_millis() as u64;
            tracing::info!(task_id = task.id(), environment = %name, bytes, elapsed_ms, "restored a prepared workspace");
            Ok(true)
        }
        Ok(None) => {
            note(task, "the edge's store keeps none: cloning the repository and running the setup script".into());
            Ok(false)
        }
        Err(CopyError::Stopped) => Err(StepError::Stopped),
        Err(CopyError::Failed(why)) => {
            let why = task.redactor().redact(&why);
            tracing::warn!(task_id = task.id(), environment = %name, %why, "could not restore a prepared workspace");
            let then = "cloning the repository and running the setup script";
            note(task, format!("it could not be restored from the edge's store ({why}): {then}"));
            Ok(false)
        }
    }
}

/// Starts sending the prepared workspace of `key` to the edge's store, if the environment has
/// one, while the agent works; the task waits for it before it ends (the store's credential
/// ends with the task). How it went is said in a note.
pub(crate) async fn send_to_store(
    task: &Arc<Task>,
    environment: &EnvironmentSpec,
    key: &str,
    ctx: &RunContext,
) -> Option<tokio::task::JoinHandle<()>> {
    let store = environment.prepared_store.clone()?;
    let (held, dir) = ctx.prepared.reading(key).await?;
    let (task, client, grace, name) = (Arc::clone(task), ctx.store_client.clone(), ctx.grace, environment.name.clone());
    Some(tokio::spawn(async move {
        let began = Instant::now();
        let sent = client.keep(&store, &dir, task.stop_token(), grace).await;
        drop(held);
        match sent {
            Ok(bytes) => {
                let took = began.elapsed();
                let (size, time) = (megabytes(bytes), seconds(took));
                let kept =
                    format!("kept the workspace environment {name} prepared in the edge's store, for new containers");
                note(&task, format!("{kept}: {size} in {time}"));
                let elapsed_ms = took.as_millis() as u64;
                tracing::info!(task_id = task.id(), environment = %name, bytes, elapsed_ms, "sent a prepared workspace to the store");
            }
            Err(CopyError::Stopped) => {}
            Err(CopyError::Failed(why)) => {
                let why = task.redactor().redact(&why);
                tracing::warn!(task_id = task.id(), environment = %name, %why, "could not send a prepared workspace");
                let lost = format!("the workspace environment {name} prepared could not be kept in the edge's store");
                note(&task, format!("{lost} ({why}); a new container will run the setup script again"));
            }
        }
    }))
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn seconds(took: std::time::Duration) -> String {
    format!("{:.2} s", took.as_secs_f64())
}
