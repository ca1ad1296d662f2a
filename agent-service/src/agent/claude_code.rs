//! The Claude Code CLI, run headless: `claude -p --output-format stream-json --verbose` with the
//! prompt on stdin, permissions bypassed (the container is the sandbox), and the task's model,
//! turn and budget limits as flags. A follow-up turn adds `--resume <session> --fork-session`.
//!
//! Where Claude Code keeps a session (checked on the pinned 2.1.332): the transcript is
//! `<config>/projects/<project>/<session id>.jsonl`, where `<config>` is `$CLAUDE_CONFIG_DIR`
//! or `$HOME/.claude`, and `<project>` is the run's working directory with every character but
//! ASCII letters and digits replaced by `-` (longer than 200 characters, the CLI shortens it
//! with a hash the service does not reproduce: such workspaces cannot be resumed, and say so).
//! `--resume` finds a session only under the current directory's project, so a follow-up in a
//! new workspace gets a copy of its parent's transcript there first; `--fork-session` then
//! writes the continued conversation under a new session id.

use std::path::{Path, PathBuf};

use super::{stream_json::StreamJsonParser, AgentCli, AgentCommand, AgentInvocation, OutputParser};

/// Runs the Claude Code CLI found at `program`.
#[derive(Debug, Clone)]
pub struct ClaudeCode {
    pub program: PathBuf,
}

impl AgentCli for ClaudeCode {
    fn name(&self) -> &str {
        "claude-code"
    }

    fn command(&self, invocation: &AgentInvocation) -> AgentCommand {
        let mut env = invocation.env.clone();
        // Claude Code refuses to bypass permissions as root unless told it runs in a sandbox;
        // the container (or the developer's own checkout, in tunnel mode) is that sandbox.
        env.retain(|(name, _)| name != "IS_SANDBOX");
        env.push(("IS_SANDBOX".into(), "1".into()));
        AgentCommand {
            program: self.program.clone(),
            args: claude_args(invocation),
            cwd: invocation.workdir.clone(),
            env,
        }
    }

    fn parser(&self) -> Box<dyn OutputParser> {
        Box::new(StreamJsonParser::default())
    }

    fn transcript_path(&self, workdir: &Path, session_id: &str, env: &[(String, String)]) -> Option<PathBuf> {
        let var = |name: &str| env.iter().find(|(n, v)| n == name && !v.is_empty()).map(|(_, v)| PathBuf::from(v));
        let config = var("CLAUDE_CONFIG_DIR").or_else(|| var("HOME").map(|home| home.join(".claude")))?;
        let project = project_dir_name(workdir)?;
        Some(config.join("projects").join(project).join(format!("{session_id}.jsonl")))
    }
}

/// Longest project directory name Claude Code uses as it is (longer ones get a hash suffix).
const MAX_PROJECT_NAME: usize = 200;

/// The directory name under `<config>/projects` of the sessions run in `workdir`; `None` when
/// the CLI would shorten it.
pub fn project_dir_name(workdir: &Path) -> Option<String> {
    let name: String =
        workdir.to_string_lossy().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    (name.len() <= MAX_PROJECT_NAME).then_some(name)
}

/// The CLI's arguments for a run. The prompt is not among them: it goes to stdin, so it is neither
/// limited by the argument size limit nor visible in the process list.
pub fn claude_args(invocation: &AgentInvocation) -> Vec<String> {
    let mut args: Vec<String> =
        ["-p", "--output-format", "stream-json", "--verbose", "--permission-mode", "bypassPermissions"]
            .map(String::from)
            .to_vec();
    if !invocation.model.is_empty() {
        args.extend(["--model".into(), invocation.model.clone()]);
    }
    if invocation.max_turns > 0 {
        args.extend(["--max-turns".into(), invocation.max_turns.to_string()]);
    }
    if invocation.max_budget_usd > 0.0 {
        args.extend(["--max-budget-usd".into(), invocation.max_budget_usd.to_string()]);
    }
    if let Some(session) = &invocation.resume_session {
        args.extend(["--resume".into(), session.clone(), "--fork-session".into()]);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_become_flags_and_the_prompt_stays_off_the_command_line() {
        let invocation = AgentInvocation {
            workdir: "/w".into(),
            prompt: "secret plans".into(),
            model: "sonnet".into(),
            max_turns: 5,
            max_budget_usd: 0.25,
            env: vec![],
            resume_session: None,
        };
        let args = claude_args(&invocation);
        assert_eq!(
            args,
            [
                "-p",
                "--output-format",
                "stream-json",
                "--verbose",
                "--permission-mode",
                "bypassPermissions",
                "--model",
                "sonnet",
                "--max-turns",
                "5",
                "--max-budget-usd",
                "0.25"
            ]
        );
        assert!(!args.iter().any(|a| a.contains("secret")));
        let defaults = AgentInvocation { model: String::new(), max_turns: 0, max_budget_usd: 0.0, ..invocation };
        assert_eq!(claude_args(&defaults).len(), 6);
        let follow_up = AgentInvocation { resume_session: Some("0af0cfd0-15f0".into()), ..defaults };
        assert_eq!(claude_args(&follow_up)[6..], ["--resume", "0af0cfd0-15f0", "--fork-session"]);
    }

    #[test]
    fn transcripts_live_under_the_config_dir_by_working_directory() {
        let env =
            |pairs: &[(&str, &str)]| pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        let cli = ClaudeCode { program: "claude".into() };
        let workdir = Path::new("/tmp/work/tasks/3f2a-b1/repo");
        assert_eq!(
            cli.transcript_path(workdir, "s-1", &env(&[("HOME", "/home/agent")])).unwrap(),
            Path::new("/home/agent/.claude/projects/-tmp-work-tasks-3f2a-b1-repo/s-1.jsonl")
        );
        let configured = env(&[("HOME", "/home/agent"), ("CLAUDE_CONFIG_DIR", "/etc/claude")]);
        assert_eq!(
            cli.transcript_path(workdir, "s-1", &configured).unwrap(),
            Path::new("/etc/claude/projects/-tmp-work-tasks-3f2a-b1-repo/s-1.jsonl")
        );
        assert_eq!(cli.transcript_path(workdir, "s-1", &[]), None, "no HOME, no transcript");
        assert_eq!(project_dir_name(Path::new("/a_b.c/d é")).unwrap(), "-a-b-c-d--");
        assert_eq!(project_dir_name(&Path::new("/").join("x".repeat(200))), None);
    }
}
