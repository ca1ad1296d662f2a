//! The agent-service: runs in the user's container (or, in tunnel mode, on their own machine),
//! clones a repository, runs a coding-agent CLI on it, records every step as a typed event, and
//! serves the `autopilot.v1` contract over native gRPC and gRPC-web on one port.
//!
//! Layout:
//! - [`service`]: the wiring: the task manager and the API built from the configuration, served
//!   by [`run`] on a listener or by [`connect`] in tunnel mode (re-exported here, for `main.rs`,
//!   tests and benches).
//! - [`config`]: flags and environment; [`absolute_paths`]: every configured path made absolute
//!   at start.
//! - [`server`]: the one listener serving gRPC, gRPC-web, reflection, health and `/ping`, for
//!   the hosts [`host_guard`] allows and the browser origins [`cors`] names.
//! - [`grpc_api`]: the `Autopilot` service, mapping requests onto the task manager.
//! - [`frame_server`]: the same service over `ClientFrame`/`ServerFrame`s; [`tunnel`]: tunnel
//!   mode, serving those frames over a WebSocket this machine opens to the edge.
//! - [`validate`]: every check a request must pass, over [`repo_url`] (which URLs git may be
//!   given, and the URL helpers: credentials removed, two URLs compared), [`task_id`] and
//!   [`branch_name`] (pure).
//! - [`spec`]: what validation makes and the task machinery runs on: a Start request's spec, its
//!   origin (a repository or a parent task), and the task's spec (pure data).
//! - [`task_manager`]: up to `--max-tasks` running at once, a bounded history, recovery after restart;
//!   [`task_list`]: the history as ListTasks pages it (order, page tokens, summaries; pure).
//! - [`task`], [`task_state`]: one task's snapshot and lifecycle; [`task_runner`]: its steps.
//! - [`setup`]: the setup phase of a task with an environment, running its script
//!   ([`script_process`], under the agent's guard) and recording its output
//!   ([`script_output`]) and end ([`script_outcome`]), in the environment
//!   [`environment_vars`] makes (pure); [`prepared_workspaces`]: the workspaces a setup
//!   prepared, kept for the next task of the same repository and environment, under the keys
//!   [`prepared_key`] makes (pure).
//! - [`follow_up`]: what a follow-up turn continues from (pure); [`workspace`]: its workspace
//!   made from its parent's or from a snapshot, and ExportWorkspace's snapshots, whose rules
//!   live in [`workspace_snapshot`] (pure).
//! - [`event_log`]: the on-disk, replayable log of a task's events, with live subscriptions.
//! - [`git_command`]: the one hardened way git runs; [`git_credentials`]: how it authenticates.
//! - [`git_clone`], [`git_progress`]: the hardened clone and its progress events.
//! - [`delivery`]: diff, commit and push of the agent's work, over [`git_diff`] (git's output
//!   parsed), [`diff_cap`], [`commit_message`] and [`branch_name`] (pure).
//! - [`agent`]: the agent CLI interface, Claude Code, and its output parser.
//! - [`process_group`]: children that can be stopped whole.
//! - [`redact`]: secrets kept out of events, diffs, errors and logs; the only place that masks.
//!   Under it, [`agent::guard`] (the agent's guard, so the agent dies with the service) and
//!   [`agent::leftover`] (what a previous run's agent left, killed on restart), over
//!   [`proc_table`] (the process table in `/proc`).

pub mod absolute_paths;
pub mod agent;
pub mod branch_name;
pub mod commit_message;
pub mod config;
pub mod cors;
pub mod delivery;
pub mod diff_cap;
pub mod environment_vars;
pub mod event_log;
pub mod follow_up;
pub mod frame_server;
pub mod git_clone;
pub mod git_command;
pub mod git_credentials;
pub mod git_diff;
pub mod git_progress;
pub mod grpc_api;
pub mod host_guard;
pub mod model_access;
pub mod prepared_key;
pub mod prepared_steps;
pub mod prepared_store;
pub mod prepared_workspaces;
pub mod privileges;
pub mod proc_table;
pub mod process_group;
pub mod redact;
pub mod repo_url;
pub mod run_context;
pub mod script_outcome;
pub mod script_output;
pub mod script_process;
pub mod server;
pub mod service;
pub mod setup;
pub mod spec;
pub mod system_packages;
pub mod task;
pub mod task_id;
pub mod task_list;
pub mod task_manager;
pub mod task_runner;
pub mod task_state;
pub mod tunnel;
pub mod validate;
pub mod workspace;
pub mod workspace_snapshot;

pub use service::{connect, run, Error};
