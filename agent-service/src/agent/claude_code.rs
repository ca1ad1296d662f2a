//! The Claude Code CLI, run headless: `claude -p --output-format stream-json --verbose` with the
//! prompt on stdin, permissions bypassed (the container is the sandbox), and the task's model,
//! turn and budget limits as flags.

use std::path::PathBuf;

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
    }
}
