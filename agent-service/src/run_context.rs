//! What every task run shares (the agent CLI and its guard, git's settings, the agent's
//! environment, the prepared workspaces), and how a step of a run can fail; the steps
//! ([`crate::task_runner`], [`crate::prepared_steps`]) take both from here.

use std::{sync::Arc, time::Duration};

use crate::{
    agent::{guard::Guard, AgentCli},
    git_clone::GitSettings,
    git_command::GitError,
    git_credentials::GitCredentials,
    prepared_store::PreparedStoreClient,
    prepared_workspaces::PreparedWorkspaces,
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
    /// The workspaces environments' setups prepared, for the next task of the same kind.
    pub prepared: PreparedWorkspaces,
    /// Reaches the edge's store of prepared workspaces (`Environment.prepared_store`).
    pub store_client: PreparedStoreClient,
}

/// Why a step did not succeed.
pub enum StepError {
    /// The task was told to stop (cancel, timeout, shutdown).
    Stopped,
    /// The words that end the task FAILED.
    Failed(String),
}

impl From<GitError> for StepError {
    fn from(error: GitError) -> StepError {
        match error {
            GitError::Stopped => StepError::Stopped,
            GitError::Failed(message) => StepError::Failed(message),
        }
    }
}
