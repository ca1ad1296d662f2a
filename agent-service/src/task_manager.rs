//! The tasks of this service: up to `--max-tasks` running at once (each in its own directory,
//! with its own workspace and agent process, stopped on its own by Cancel, its timeout or
//! shutdown), and a bounded history of ended ones, kept on disk under
//! `<work_dir>/tasks/<task_id>/` and reloaded after a restart. A follow-up's parent is looked up
//! and checked here, under the same lock as the limit ([`crate::follow_up`] decides the rest);
//! a task that a running follow-up is made from is never evicted from the history under it.

use std::{
    collections::{HashSet, VecDeque},
    io,
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use autopilot_contract::v1::{ListTasksResponse, Task as TaskSnapshot, TaskState, WorkspaceSnapshot};
use tokio_util::task::TaskTracker;

use crate::{
    branch_name::default_branch,
    follow_up::{self, Refusal, Resolved},
    redact::Redactor,
    run_context::RunContext,
    spec::{Origin, ParentRequest, RunSpec, StartSpec, TaskSpec},
    task::{StopReason, Task},
    task_list::{self, PageRequest},
    task_runner::run_task,
    validate::FieldError,
    workspace::{self, ExportError},
};

/// Why Start was refused.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// As many tasks as the limit allows are running (the limit is the number).
    #[error("{}", at_limit_message(*.0))]
    AtLimit(usize),
    #[error("the service is shutting down")]
    ShuttingDown,
    /// A follow-up's parent is not a task of this service (and no restore brings it).
    #[error("no task with id {0}")]
    UnknownParent(String),
    /// A follow-up's parent has not ended.
    #[error("task {0} is still running; wait for it to end or cancel it")]
    ParentRunning(String),
    /// A follow-up's parent has nothing to continue from.
    #[error("{0}")]
    NoWorkspace(String),
    /// A follow-up disagrees with its parent (its repository or ref).
    #[error("{0}")]
    Invalid(FieldError),
    #[error("could not create the task's directory: {0}")]
    Io(#[from] io::Error),
}

/// The refusal of a Start past the limit, e.g. "3 tasks are running, the limit; wait for one to
/// end or cancel one".
fn at_limit_message(limit: usize) -> String {
    match limit {
        1 => "1 task is running, the limit; wait for it to end or cancel it".into(),
        n => format!("{n} tasks are running, the limit; wait for one to end or cancel one"),
    }
}

/// Owns every task.
pub struct TaskManager {
    tasks_dir: PathBuf,
    history_limit: usize,
    /// Most tasks running at once (at least 1).
    max_running: usize,
    ctx: Arc<RunContext>,
    redactor: Redactor,
    registry: Mutex<Registry>,
    runners: TaskTracker,
}

#[derive(Default)]
struct Registry {
    /// Oldest first; the last one is the most recent.
    tasks: VecDeque<Arc<Task>>,
    shutting_down: bool,
}

impl TaskManager {
    /// A manager keeping tasks under `work_dir/tasks`, reloading those a previous run left.
    ///
    /// # Errors
    /// The tasks directory could not be created or listed.
    pub fn new(
        work_dir: PathBuf,
        history_limit: usize,
        max_running: usize,
        ctx: RunContext,
        redactor: Redactor,
    ) -> io::Result<Arc<TaskManager>> {
        let tasks_dir = work_dir.join("tasks");
        std::fs::create_dir_all(&tasks_dir)?;
        let mut recovered = Vec::new();
        for entry in std::fs::read_dir(&tasks_dir)? {
            let dir = entry?.path();
            match Task::recover(dir.clone(), redactor.clone()) {
                Ok(task) => recovered.push(task),
                Err(error) => {
                    tracing::warn!(dir = %dir.display(), %error, "skipped a task directory that could not be read")
                }
            }
        }
        recovered.sort_by_key(|t| t.snapshot().create_time.map(|c| (c.seconds, c.nanos)));
        let manager = TaskManager {
            tasks_dir,
            history_limit: history_limit.max(1),
            max_running: max_running.max(1),
            ctx: Arc::new(ctx),
            redactor,
            registry: Mutex::new(Registry { tasks: recovered.into(), shutting_down: false }),
            runners: TaskTracker::new(),
        };
        if !manager.lock().tasks.is_empty() {
            tracing::info!(count = manager.lock().tasks.len(), "reloaded tasks from disk");
        }
        manager.trim_history(&mut manager.lock());
        Ok(Arc::new(manager))
    }

    /// Creates a task for `start` and starts running it in the background.
    ///
    /// # Errors
    /// [`StartError::AtLimit`] while `max_running` tasks run; shutting down; directory creation
    /// failed.
    pub fn start(&self, start: StartSpec) -> Result<Arc<Task>, StartError> {
        let mut registry = self.lock();
        if registry.shutting_down {
            return Err(StartError::ShuttingDown);
        }
        if registry.tasks.iter().filter(|t| !t.state().is_final()).count() >= self.max_running {
            return Err(StartError::AtLimit(self.max_running));
        }
        let StartSpec { origin, run } = start;
        let mut spec = match origin {
            Origin::Repository { repo, git_ref } => TaskSpec { repo, git_ref, run, follow_up: None },
            Origin::Parent(parent) => follow_up_spec(&registry, parent, run)?,
        };
        let id = uuid::Uuid::new_v4().to_string();
        if spec.run.delivery.branch.is_empty() {
            spec.run.delivery.branch = default_branch(&id);
        }
        let snapshot = TaskSnapshot {
            task_id: id.clone(),
            state: TaskState::Unspecified as i32,
            repository_url: spec.repo.display.clone(),
            git_ref: spec.git_ref.clone(),
            options: Some(spec.run.options()),
            delivery_options: Some(spec.run.delivery.options()),
            create_time: Some(autopilot_contract::time::timestamp(SystemTime::now())),
            parent_task_id: spec.follow_up.as_ref().map(|f| f.parent_id.clone()).unwrap_or_default(),
            environment_name: spec.run.environment.as_ref().map(|e| e.name.clone()).unwrap_or_default(),
            ..Default::default()
        };
        let redactor = self.redactor.with(spec.own_secrets());
        let title = task_list::title(&redactor.redact(&spec.run.prompt));
        let task = Task::create_with_title(self.tasks_dir.join(&id), snapshot, title, redactor)?;
        task.move_to(TaskState::Pending, "");
        registry.tasks.push_back(Arc::clone(&task));
        self.trim_history(&mut registry);
        drop(registry);
        tracing::info!(task_id = %id, repository = %spec.repo.display, git_ref = %spec.git_ref, "task started");
        self.runners.spawn(run_task(Arc::clone(&task), spec, Arc::clone(&self.ctx)));
        Ok(task)
    }

    /// The task with `id`; for an empty id, the most recent running task, or else the most recent
    /// one.
    pub fn find(&self, id: &str) -> Option<Arc<Task>> {
        let registry = self.lock();
        if id.is_empty() {
            return registry.tasks.iter().rev().find(|t| !t.state().is_final()).or(registry.tasks.back()).cloned();
        }
        registry.tasks.iter().find(|t| t.id() == id).cloned()
    }

    /// A page of the tasks this service has (running and ended), newest first.
    pub fn list(&self, request: &PageRequest) -> ListTasksResponse {
        let tasks: Vec<Arc<Task>> = self.lock().tasks.iter().cloned().collect();
        task_list::page(tasks.iter().map(|task| task.summary()), request)
    }

    /// The snapshot of `task`'s workspace and conversation (ExportWorkspace).
    ///
    /// # Errors
    /// See [`workspace::export`].
    pub async fn export(&self, task: &Task) -> Result<WorkspaceSnapshot, ExportError> {
        let ctx = &self.ctx;
        workspace::export(&task.snapshot(), task.dir(), ctx.agent.as_ref(), &ctx.agent_env, &ctx.git, task.redactor())
            .await
    }

    /// Stops a task and waits until it has ended (at most its grace period plus a margin).
    /// A task that already ended is left as it is. Returns the task's state afterwards.
    pub async fn cancel(&self, task: &Task, reason: Option<String>) -> TaskState {
        task.request_stop(StopReason::Cancelled(reason));
        let _ = tokio::time::timeout(self.ctx.grace + Duration::from_secs(5), task.ended()).await;
        task.state()
    }

    /// Refuses new tasks, stops every running one and waits until their final events are recorded.
    pub async fn shutdown(&self) {
        let running: Vec<Arc<Task>> = {
            let mut registry = self.lock();
            registry.shutting_down = true;
            registry.tasks.iter().filter(|t| !t.state().is_final()).cloned().collect()
        };
        for task in &running {
            task.request_stop(StopReason::Shutdown);
        }
        self.runners.close();
        self.runners.wait().await;
    }

    fn trim_history(&self, registry: &mut Registry) {
        // A running follow-up may still be making its workspace from its parent's.
        let parents: HashSet<String> = registry
            .tasks
            .iter()
            .filter(|t| !t.state().is_final())
            .map(|t| t.snapshot().parent_task_id)
            .filter(|id| !id.is_empty())
            .collect();
        while registry.tasks.len() > self.history_limit {
            let Some(position) = registry.tasks.iter().position(|t| t.state().is_final() && !parents.contains(t.id()))
            else {
                break;
            };
            let evicted = registry.tasks.remove(position).expect("position is in range");
            let dir = evicted.dir().to_path_buf();
            tokio::task::spawn_blocking(move || {
                if let Err(error) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), %error, "could not remove an old task's directory");
                }
            });
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The spec of a follow-up of `parent` that runs as `run` asks, the parent being a task in
/// `registry` or else the restore the request brings.
///
/// # Errors
/// The parent is running or unknown, has nothing to continue from, or is on another repository
/// or ref than the request names.
fn follow_up_spec(registry: &Registry, parent: ParentRequest, mut run: RunSpec) -> Result<TaskSpec, StartError> {
    let known = registry.tasks.iter().find(|t| t.id() == parent.task_id).cloned();
    let resolved = match (known, &parent.restore) {
        (Some(task), _) if !task.state().is_final() => {
            return Err(StartError::ParentRunning(parent.task_id));
        }
        (Some(task), _) => {
            let base = workspace::read_base(task.dir());
            follow_up::from_parent(&task.snapshot(), task.dir().to_path_buf(), base, &parent, &run.delivery.branch)
        }
        (None, Some(restore)) => follow_up::from_restore(restore, &parent, &run.delivery.branch),
        (None, None) => return Err(StartError::UnknownParent(parent.task_id)),
    };
    let Resolved { repo, git_ref, branch, follow_up } = resolved.map_err(|refusal| match refusal {
        Refusal::Invalid(error) => StartError::Invalid(error),
        Refusal::NoWorkspace(why) => StartError::NoWorkspace(why),
    })?;
    run.delivery.branch = branch;
    if run.model.is_empty() {
        // The conversation keeps its model unless the follow-up names another.
        if let Some(model) = registry
            .tasks
            .iter()
            .find(|t| t.id() == follow_up.parent_id)
            .and_then(|t| t.snapshot().options.map(|o| o.model))
        {
            run.model = model;
        }
    }
    Ok(TaskSpec { repo, git_ref, run, follow_up: Some(follow_up) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_at_the_limit_names_the_limit() {
        assert_eq!(
            StartError::AtLimit(3).to_string(),
            "3 tasks are running, the limit; wait for one to end or cancel one"
        );
        assert_eq!(StartError::AtLimit(1).to_string(), "1 task is running, the limit; wait for it to end or cancel it");
    }
}
