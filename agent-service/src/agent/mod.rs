//! The agent: a coding-agent CLI run headless in the clone, whose output becomes typed messages.
//!
//! The task machinery only sees the [`AgentCli`] interface: how to build the command line for a
//! run, and a parser that turns each output line into [`AgentMessage`]s. Claude Code is the one
//! implementation today ([`claude_code::ClaudeCode`]); a second CLI is a second implementation of
//! the trait, with no change to tasks, the event log or the API.
//!
//! Layout:
//! - [`claude_code`]: the Claude Code command line.
//! - [`stream_json`]: the parser for Claude Code's `--output-format stream-json`.
//! - [`outcome`]: success or failure, decided from the result message and the exit status.
//! - [`process`]: spawning (under [`guard`]), reading and stopping the CLI (the only part that
//!   touches tokio).
//! - [`guard`]: the process between the service and the agent, so the agent dies with the
//!   service; [`leftover`]: what a previous run's agent left, killed on restart.

pub mod claude_code;
pub mod guard;
pub mod leftover;
pub mod outcome;
pub mod process;
pub mod stream_json;

use std::path::PathBuf;

use autopilot_contract::v1::Usage;

/// Everything one run of the agent needs.
#[derive(Debug, Clone)]
pub struct AgentInvocation {
    /// The clone the agent works in.
    pub workdir: PathBuf,
    /// The user's instructions (written to the CLI's stdin, never put on its command line).
    pub prompt: String,
    /// Model name; empty for the CLI's default.
    pub model: String,
    /// 0 for no limit.
    pub max_turns: u32,
    /// 0 for no limit.
    pub max_budget_usd: f64,
    /// Environment given to the CLI (model API key and base URL, HOME, PATH...).
    pub env: Vec<(String, String)>,
    /// A follow-up turn: the session to resume (its transcript already where the CLI looks for
    /// it, [`AgentCli::transcript_path`]). The run continues it under a session id of its own,
    /// so sibling follow-ups of one parent never write to the same transcript.
    pub resume_session: Option<String>,
}

/// One run of an agent CLI as a process, before it is spawned (the service spawns it under its
/// guard, [`crate::agent::guard`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCommand {
    /// The CLI: a path, or a name looked up on the `PATH` of `env`.
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Where it runs: the clone.
    pub cwd: PathBuf,
    /// Its whole environment.
    pub env: Vec<(String, String)>,
}

/// A coding-agent CLI the service can run.
pub trait AgentCli: Send + Sync + 'static {
    /// A short name for logs and errors, e.g. "claude-code".
    fn name(&self) -> &str;
    /// The command for one run: program, arguments, working directory and environment.
    /// The prompt is written to its stdin.
    fn command(&self, invocation: &AgentInvocation) -> AgentCommand;
    /// A fresh parser for one run's stdout.
    fn parser(&self) -> Box<dyn OutputParser>;
    /// Where the CLI keeps the transcript of `session_id` for a run in `workdir` with `env`
    /// (it resumes a session from there); `None` when it keeps none the service can find.
    fn transcript_path(&self, workdir: &std::path::Path, session_id: &str, env: &[(String, String)])
        -> Option<PathBuf>;
}

/// Turns the CLI's stdout, line by line, into messages.
pub trait OutputParser: Send {
    /// Parses one line.
    ///
    /// # Errors
    /// [`NotJson`] when the line is not a JSON value at all. Unknown message types and fields are
    /// not errors: they yield no messages.
    fn parse_line(&mut self, line: &str) -> Result<Vec<AgentMessage>, NotJson>;
}

/// A stdout line that was not JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotJson;

/// One thing the agent did, as the task machinery records it.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentMessage {
    /// The CLI began its session.
    Started { session_id: String, model: String, version: String },
    /// The agent wrote text (markdown).
    Text(String),
    /// The agent called a tool.
    ToolStarted { tool_id: String, name: String, input_json: String },
    /// A tool call returned.
    ToolFinished { tool_id: String, output: String, is_error: bool },
    /// Cumulative usage so far.
    Usage(Usage),
    /// The CLI's final report.
    Finished(AgentResult),
}

/// The CLI's final report of a run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AgentResult {
    /// Whether the CLI considers the run failed (an API error arrives with subtype "success").
    pub is_error: bool,
    /// e.g. "success", "error_max_turns", "error_max_budget_usd", "error_during_execution".
    pub subtype: String,
    /// The final answer, or the error text.
    pub result: String,
    pub num_turns: u32,
    pub duration_ms: u64,
    /// Usage including `cost_usd` (the CLI's `total_cost_usd`).
    pub usage: Usage,
    pub session_id: String,
}
