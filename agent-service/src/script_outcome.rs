//! How an environment's script ended, as `setup_finished` records it and as the error of a task
//! it failed says it, e.g. "the setup script of environment web exited with code 3 after 1.2 s;
//! its last lines:\n...". Pure.

use std::time::Duration;

/// Which of an environment's scripts ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptKind {
    /// On a fresh workspace.
    Setup,
    /// On a prepared workspace.
    Maintenance,
}

impl ScriptKind {
    /// As people name it: "setup" or "maintenance".
    pub fn name(self) -> &'static str {
        match self {
            ScriptKind::Setup => "setup",
            ScriptKind::Maintenance => "maintenance",
        }
    }
}

/// How a script's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptEnd {
    /// It exited by itself with this code.
    Exited(i32),
    /// It was ended by this signal, not by the service.
    Signalled(i32),
    /// It ran past its time limit and was killed.
    TimedOut,
    /// The task was told to stop (cancel, its timeout, shutdown) and the script was killed.
    Stopped,
}

impl ScriptEnd {
    /// `SetupFinished.exit_code`: its code, or -1 when it was killed.
    pub fn exit_code(self) -> i32 {
        match self {
            ScriptEnd::Exited(code) => code,
            ScriptEnd::Signalled(_) | ScriptEnd::TimedOut | ScriptEnd::Stopped => -1,
        }
    }
}

/// Why the task fails after its `kind` script of environment `environment` ended as `end`,
/// having run for `ran_for` (of at most `limit`), `last_lines` being the last it printed
/// (masked); `None` when it succeeded, or was stopped (the stop's reason then ends the task).
pub fn failure(
    kind: ScriptKind,
    environment: &str,
    end: ScriptEnd,
    ran_for: Duration,
    limit: Duration,
    last_lines: &[String],
) -> Option<String> {
    let script = format!("the {} script of environment {environment}", kind.name());
    let what = match end {
        ScriptEnd::Exited(0) | ScriptEnd::Stopped => return None,
        ScriptEnd::Exited(code) => format!("{script} exited with code {code} after {}", seconds(ran_for)),
        ScriptEnd::Signalled(signal) => format!("{script} was ended by signal {signal} after {}", seconds(ran_for)),
        ScriptEnd::TimedOut => {
            format!("{script} ran past its time limit of {} and was killed", time_limit(limit))
        }
    };
    Some(if last_lines.is_empty() {
        format!("{what}; it printed nothing")
    } else {
        format!("{what}; its last lines:\n{}", last_lines.join("\n"))
    })
}

/// A run's length for people, to a tenth of a second: "1.2 s".
pub fn seconds(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}

/// A time limit as it was likely given: "10m0s", "1h0m0s", "45s", "1.5s".
pub fn time_limit(limit: Duration) -> String {
    let total = limit.as_secs();
    let (hours, minutes, secs) = (total / 3600, total / 60 % 60, total % 60);
    let secs = match limit.subsec_millis() {
        0 => secs.to_string(),
        millis => format!("{secs}.{}", format!("{millis:03}").trim_end_matches('0')),
    };
    match (hours, minutes) {
        (0, 0) => format!("{secs}s"),
        (0, _) => format!("{minutes}m{secs}s"),
        _ => format!("{hours}h{minutes}m{secs}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_MINUTES: Duration = Duration::from_secs(600);

    #[test]
    fn a_failed_script_is_named_with_its_code_and_last_lines() {
        let lines = ["npm ERR! missing script: ci".to_string(), "npm ERR! exit 1".to_string()];
        let ran_for = Duration::from_millis(1230);
        assert_eq!(
            failure(ScriptKind::Setup, "web", ScriptEnd::Exited(3), ran_for, TEN_MINUTES, &lines).unwrap(),
            "the setup script of environment web exited with code 3 after 1.2 s; its last lines:\n\
             npm ERR! missing script: ci\nnpm ERR! exit 1"
        );
        assert_eq!(
            failure(ScriptKind::Maintenance, "web", ScriptEnd::Exited(1), ran_for, TEN_MINUTES, &[]).unwrap(),
            "the maintenance script of environment web exited with code 1 after 1.2 s; it printed nothing"
        );
        assert_eq!(
            failure(ScriptKind::Setup, "web", ScriptEnd::TimedOut, TEN_MINUTES, TEN_MINUTES, &lines[..1]).unwrap(),
            "the setup script of environment web ran past its time limit of 10m0s and was killed; its last lines:\n\
             npm ERR! missing script: ci"
        );
        assert_eq!(
            failure(ScriptKind::Setup, "web", ScriptEnd::Signalled(9), ran_for, TEN_MINUTES, &[]).unwrap(),
            "the setup script of environment web was ended by signal 9 after 1.2 s; it printed nothing"
        );
    }

    #[test]
    fn success_and_a_stop_are_no_failure_of_the_script() {
        for end in [ScriptEnd::Exited(0), ScriptEnd::Stopped] {
            assert_eq!(failure(ScriptKind::Setup, "web", end, Duration::ZERO, TEN_MINUTES, &[]), None);
        }
        assert_eq!(ScriptEnd::Exited(3).exit_code(), 3);
        for killed in [ScriptEnd::TimedOut, ScriptEnd::Stopped, ScriptEnd::Signalled(15)] {
            assert_eq!(killed.exit_code(), -1);
        }
    }

    #[test]
    fn time_limits_read_as_they_are_given() {
        assert_eq!(time_limit(TEN_MINUTES), "10m0s");
        assert_eq!(time_limit(Duration::from_secs(1)), "1s");
        assert_eq!(time_limit(Duration::from_secs(90)), "1m30s");
        assert_eq!(time_limit(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(time_limit(Duration::from_millis(1500)), "1.5s");
        assert_eq!(time_limit(Duration::from_millis(61_250)), "1m1.25s");
        assert_eq!(seconds(Duration::from_millis(40)), "0.0 s");
        assert_eq!(seconds(Duration::from_secs(75)), "75.0 s");
    }
}
