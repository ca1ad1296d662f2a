//! What the service acts on once a request has passed [`crate::validate`]: a Start request as a
//! [`StartSpec`] (a new task on a repository, or a follow-up of a parent task), and the
//! [`TaskSpec`] a task runs with once its repository is known ([`crate::task_manager`] makes one,
//! with [`crate::follow_up`] for a follow-up). They live apart from the checks that make them and
//! from the rules that resolve a follow-up, so that those modules, the runner and delivery share
//! them without depending on each other. Pure data.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use autopilot_contract::v1::{
    AgentOptions, DeliveryOptions, ModelAccess, PreparedStore, PullRequestOptions, WorkspaceSnapshot,
};

use crate::repo_url::RepoUrl;

/// What the agent runs with and where its work goes: the same in a Start request as in the task
/// it becomes.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub prompt: String,
    pub model: String,
    pub max_turns: u32,
    pub max_budget_usd: f64,
    pub timeout: Duration,
    pub delivery: DeliverySpec,
    /// The task's own way to the model ([`crate::model_access`]); `None`: the service's key.
    pub model_access: Option<ModelAccess>,
    /// The environment its workspace is set up in before the agent starts ([`crate::setup`]);
    /// `None`: the agent starts on the bare clone.
    pub environment: Option<EnvironmentSpec>,
}

/// Shortest line of a secret of several lines masked on its own ([`EnvironmentSpec::secret_texts`]).
pub const MIN_SECRET_LINE_LEN: usize = 16;

/// A checked `StartRequest.environment`. Its `Debug` shows the secrets' names, never their
/// values, as a spec may be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvironmentSpec {
    pub name: String,
    pub setup_script: String,
    /// Run instead of `setup_script` on a prepared workspace; empty: nothing runs then.
    pub maintenance_script: String,
    /// In the scripts' and the agent's environment.
    pub variables: BTreeMap<String, String>,
    /// In the scripts' environment only; masked everywhere, and a diff holding one is refused.
    pub secrets: BTreeMap<String, String>,
    /// How long one script may run.
    pub setup_timeout: Duration,
    /// The edge's count of edits and resets, part of a prepared workspace's key.
    pub revision: u64,
    /// Where the prepared workspace is kept beyond this service ([`crate::prepared_store`]);
    /// its token is a secret of the task's.
    pub prepared_store: Option<PreparedStore>,
}

impl std::fmt::Debug for EnvironmentSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvironmentSpec")
            .field("name", &self.name)
            .field("setup_script_bytes", &self.setup_script.len())
            .field("maintenance_script_bytes", &self.maintenance_script.len())
            .field("variables", &self.variables.keys().collect::<Vec<_>>())
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("setup_timeout", &self.setup_timeout)
            .field("revision", &self.revision)
            .field("prepared_store", &self.prepared_store.as_ref().map(|_| "(set)"))
            .finish()
    }
}

impl EnvironmentSpec {
    /// The texts to mask for its secrets: each value, and each line of a value of several lines
    /// (a key file, say), since a script's output is recorded line by line, so a line holds a
    /// piece of such a value at most. Lines shorter than [`MIN_SECRET_LINE_LEN`] are left to the
    /// whole value: they would mask ordinary text.
    pub fn secret_texts(&self) -> Vec<String> {
        let mut texts = Vec::new();
        for value in self.secrets.values().filter(|v| !v.is_empty()) {
            texts.push(value.clone());
            if value.contains('\n') {
                let lines = value.lines().map(str::trim).filter(|line| line.len() >= MIN_SECRET_LINE_LEN);
                texts.extend(lines.map(String::from));
            }
        }
        texts
    }
}

/// A validated request: everything a task needs to run.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    pub repo: RepoUrl,
    pub git_ref: String,
    pub run: RunSpec,
    /// A follow-up turn: the parent and the workspace it continues from.
    pub follow_up: Option<FollowUp>,
}

impl TaskSpec {
    /// The secrets the task has beyond the service's own: its repository URL's credentials, its
    /// model credential and its environment's secrets. They are kept in memory only, so a
    /// restarted service no longer knows them ([`crate::workspace::OWN_SECRETS_FILE`]).
    pub fn own_secrets(&self) -> Vec<String> {
        let model_key = self.run.model_access.as_ref().map(|access| access.api_key.clone());
        let environment = self.run.environment.iter().flat_map(EnvironmentSpec::secret_texts);
        let store_token = self.run.environment.iter().flat_map(|e| &e.prepared_store).map(|store| store.token.clone());
        self.repo.secrets.iter().cloned().chain(model_key).chain(environment).chain(store_token).collect()
    }
}

/// A validated Start request. It becomes a [`TaskSpec`] once its repository is known: the
/// request's own, or for a follow-up its parent's ([`crate::follow_up`]).
#[derive(Debug, Clone)]
pub struct StartSpec {
    pub origin: Origin,
    pub run: RunSpec,
}

/// What a Start request's task starts from.
#[derive(Debug, Clone)]
pub enum Origin {
    /// A new task: a clone of `repo` at `git_ref` (empty: its default branch).
    Repository { repo: RepoUrl, git_ref: String },
    /// A follow-up of another task, on that task's repository and ref.
    Parent(ParentRequest),
}

/// The parent a follow-up names, and what the request says of where to work.
#[derive(Debug, Clone)]
pub struct ParentRequest {
    pub task_id: String,
    /// The request's repository: `None` for the parent's, or else it must be the parent's.
    pub repo: Option<RepoUrl>,
    /// The request's ref: empty for the parent's, or else it must be the parent's.
    pub git_ref: String,
    /// The parent's workspace from another service, for when this one does not know the parent.
    pub restore: Option<Restore>,
}

/// A checked `StartRequest.restore`, with the repository it names.
#[derive(Debug, Clone)]
pub struct Restore {
    pub snapshot: Box<WorkspaceSnapshot>,
    /// `snapshot.repository_url` (a display form, so without credentials), checked.
    pub repo: RepoUrl,
}

/// A follow-up's parent and the workspace it continues from.
#[derive(Debug, Clone)]
pub struct FollowUp {
    pub parent_id: String,
    /// The parent's agent session to resume; `None` when its agent never started.
    pub resume_session: Option<String>,
    pub source: WorkspaceSource,
}

/// Where a follow-up's workspace comes from.
#[derive(Debug, Clone)]
pub enum WorkspaceSource {
    /// A task of this service: its clone, at `commit`, whose history starts at `base_commit`.
    Parent { task_dir: PathBuf, commit: String, base_commit: String },
    /// A task of another service (a container that is gone): rebuilt from its snapshot.
    Restore(Box<WorkspaceSnapshot>),
}

impl FollowUp {
    /// The commit the follow-up starts from (its diff's base).
    pub fn start_commit(&self) -> &str {
        match &self.source {
            WorkspaceSource::Parent { commit, .. } => commit,
            WorkspaceSource::Restore(snapshot) => &snapshot.commit,
        }
    }
}

/// Where the task's changes go, validated; defaults filled in except the branch, whose default
/// needs the task id ([`crate::branch_name::default_branch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverySpec {
    /// Empty until the task id is known, when the request named no branch.
    pub branch: String,
    pub push: bool,
    pub author_name: String,
    pub author_email: String,
    /// Recorded for the edge, which opens it; checked, never acted on here.
    pub pull_request: Option<PullRequestOptions>,
}

impl DeliverySpec {
    /// The options as the task runs with them.
    pub fn options(&self) -> DeliveryOptions {
        DeliveryOptions {
            branch: self.branch.clone(),
            push: self.push,
            author_name: self.author_name.clone(),
            author_email: self.author_email.clone(),
            pull_request: self.pull_request.clone(),
        }
    }
}

impl RunSpec {
    /// The options as the task runs with them, defaults filled in.
    pub fn options(&self) -> AgentOptions {
        AgentOptions {
            model: self.model.clone(),
            max_turns: self.max_turns as i32,
            max_budget_usd: self.max_budget_usd,
            timeout: Some(autopilot_contract::time::duration(self.timeout)),
        }
    }
}
