//! Whether an agent run succeeded, decided from its final report and how its process ended.
//!
//! Neither signal is enough alone: an API error arrives as a result with subtype "success" but
//! `is_error: true` (and exit code 1), and a crash leaves no result at all.

use super::AgentResult;

/// How the agent's process ended, as far as the decision needs it.
#[derive(Debug, Clone, Default)]
pub struct AgentExit {
    /// The CLI's final report, if it wrote one.
    pub result: Option<AgentResult>,
    /// e.g. "exit status: 1" or "signal: 9 (SIGKILL)".
    pub status: String,
    pub success: bool,
    /// The last lines the CLI wrote to stderr.
    pub stderr_tail: String,
    /// The first stdout line that was not JSON, if any.
    pub first_non_json_line: Option<String>,
}

/// `Ok(final answer)` or `Err(why it failed)`, in words for people.
pub fn decide(exit: &AgentExit) -> Result<String, String> {
    match &exit.result {
        Some(result) if !result.is_error && exit.success => Ok(result.result.clone()),
        Some(result) if result.is_error => Err(describe_error(result)),
        Some(_) => {
            Err(with_details(format!("the agent reported success but its process ended with {}", exit.status), exit))
        }
        None => Err(with_details(format!("the agent ended ({}) without a final result", exit.status), exit)),
    }
}

fn describe_error(result: &AgentResult) -> String {
    let limit = match result.subtype.as_str() {
        "error_max_turns" => Some("the agent reached its turn limit (max_turns)"),
        "error_max_budget_usd" => Some("the agent reached its budget limit (max_budget_usd)"),
        "error_during_execution" => Some("the agent failed during execution"),
        _ => None,
    };
    match (limit, result.result.trim()) {
        (Some(limit), "") => limit.to_string(),
        (Some(limit), text) => format!("{limit}: {text}"),
        (None, "") => format!("the agent reported an error ({})", result.subtype),
        (None, text) => text.to_string(),
    }
}

fn with_details(mut message: String, exit: &AgentExit) -> String {
    if let Some(line) = &exit.first_non_json_line {
        message.push_str(&format!("; its output was not stream-json (first line: {line:?})"));
    }
    let tail = exit.stderr_tail.trim();
    if !tail.is_empty() {
        message.push_str(&format!("; stderr: {tail}"));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(is_error: bool, subtype: &str, text: &str) -> Option<AgentResult> {
        Some(AgentResult { is_error, subtype: subtype.into(), result: text.into(), ..Default::default() })
    }

    #[test]
    fn success_needs_a_clean_result_and_a_clean_exit() {
        let ok = AgentExit {
            result: result(false, "success", "done"),
            status: "exit status: 0".into(),
            success: true,
            ..Default::default()
        };
        assert_eq!(decide(&ok), Ok("done".into()));
        let bad_exit = AgentExit { success: false, status: "exit status: 3".into(), ..ok };
        assert!(decide(&bad_exit).unwrap_err().contains("exit status: 3"));
    }

    #[test]
    fn an_api_error_with_subtype_success_is_a_failure() {
        let exit = AgentExit {
            result: result(true, "success", "API Error: 400 nope"),
            status: "exit status: 1".into(),
            ..Default::default()
        };
        assert_eq!(decide(&exit), Err("API Error: 400 nope".into()));
    }

    #[test]
    fn limits_are_named() {
        let exit = AgentExit { result: result(true, "error_max_turns", ""), ..Default::default() };
        assert!(decide(&exit).unwrap_err().contains("max_turns"));
    }

    #[test]
    fn a_crash_reports_status_stderr_and_garbage() {
        let exit = AgentExit {
            result: None,
            status: "signal: 11 (SIGSEGV)".into(),
            success: false,
            stderr_tail: "boom\n".into(),
            first_non_json_line: Some("Segmentation fault".into()),
        };
        let message = decide(&exit).unwrap_err();
        assert!(
            message.contains("SIGSEGV") && message.contains("boom") && message.contains("Segmentation fault"),
            "{message}"
        );
    }
}
