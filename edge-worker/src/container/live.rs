//! What one instance of the container object holds in memory, shared with its background tasks
//! (the start under way, the exit watch, the subscriptions it forwards). Each part belongs to its
//! concept's file and is changed through its methods: [`Stored`] (the record and account, the
//! only state kept in key-value storage), [`Activity`] (what the idle policy reads),
//! [`ContainerWatch`] (the platform's container as this instance saw it), [`Subscriptions`],
//! the [`Archive`] with the follows writing into it, and the model [`Gateway`]. An evicted
//! instance loses all of it but what storage and the archive keep.

use std::{
    cell::RefCell,
    collections::{HashMap, HashSet},
    rc::Rc,
};

use super::{
    activity::Activity, environments::Environments, fan_out::Follow, github_link::GitHubLink, model_gateway::Gateway,
    pull_requests::PullRequests, runtime::ContainerWatch, stored::Stored, subscriptions::Subscriptions,
};
use crate::archive::{Archive, Entry};

pub struct Live {
    pub stored: Stored,
    pub activity: Rc<Activity>,
    pub watch: ContainerWatch,
    pub subscriptions: Subscriptions,
    /// The user's task archive (see [`crate::archive`]): which tasks are theirs, how each
    /// stands, and the whole timeline of each.
    pub archive: Archive,
    /// Tasks this instance follows into the archive, each with the events it has received but
    /// not written yet (a loss writes them before the task's end).
    pub following: RefCell<HashMap<String, Rc<Follow>>>,
    /// Task ids known to be this user's (a cache of the archive's).
    pub own_tasks: RefCell<HashSet<String>>,
    pub gateway: Rc<Gateway>,
    /// The user's GitHub connection (for the git gateway and pull requests).
    pub github: GitHubLink,
    /// The pull requests tasks asked for (see [`super::pull_requests`]).
    pub pull_requests: PullRequests,
    /// The user's environments (see [`super::environments`]).
    pub environments: Environments,
    /// Where ended tasks' workspaces are kept for follow-ups (R2 `WORKSPACES`; see
    /// [`super::workspaces`]); `None` when the binding is absent.
    pub workspaces: Option<worker::Bucket>,
    /// This object's id (hex), which scopes what it keeps outside its own storage (R2).
    pub object_id: String,
}

impl Live {
    pub fn new(
        archive: Archive,
        gateway: Gateway,
        github: GitHubLink,
        pull_requests: PullRequests,
        environments: Environments,
        workspaces: Option<worker::Bucket>,
        object_id: String,
    ) -> Live {
        Live {
            stored: Stored::default(),
            activity: Rc::default(),
            watch: ContainerWatch::default(),
            subscriptions: Subscriptions::default(),
            archive,
            following: RefCell::default(),
            own_tasks: RefCell::default(),
            gateway: Rc::new(gateway),
            github,
            pull_requests,
            environments,
            workspaces,
            object_id,
        }
    }

    /// What the archive holds of `task_id` (see [`Archive::find`]).
    pub fn archived(&self, task_id: &str) -> Option<Entry> {
        self.archive.find(task_id)
    }

    /// The task started last, which a request naming no task means.
    pub fn latest_task(&self) -> Option<String> {
        self.archive.latest().ok().flatten()
    }

    /// The tasks this object started whose end the archive does not hold yet, oldest first:
    /// those that may still run (several run at once).
    pub fn unended_tasks(&self) -> Vec<String> {
        self.archive.unended().map(|tasks| tasks.into_iter().map(|(id, _)| id).collect()).unwrap_or_default()
    }

    /// Whether any of the user's tasks may still be running.
    pub fn task_running(&self) -> bool {
        !self.unended_tasks().is_empty()
    }

    /// Whether a metering run is open (the container is being charged for).
    pub fn run_open(&self) -> bool {
        self.stored.account.borrow().run_started_ms.is_some()
    }
}
