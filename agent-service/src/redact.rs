//! Keeps secrets out of everything the service shows: events, errors, status and logs, and the
//! agent's session transcript that leaves the machine in a workspace snapshot.
//!
//! Two kinds of secret are known: the values the service itself holds (the model API key) and
//! credentials a user embedded in a repository URL (`https://user:token@host/...`). Both are
//! replaced by `***` wherever they appear, including inside git's and the agent's own output.
//!
//! Every masking rule lives here, including which texts of an event and of a diff are masked
//! ([`Redactor::redact_payload`], [`Redactor::redact_diff`]), so that recording an event
//! ([`crate::task`]) and delivering a diff ([`crate::delivery`]) both depend on this module and
//! not on each other. Pure: no I/O.

use autopilot_contract::v1::{event::Payload, Diff};

/// What replaces a secret.
pub const MASK: &str = "***";

/// Shortest value treated as a secret; shorter strings would mask ordinary words (so an
/// environment's secrets must be at least this long: [`crate::validate`]).
pub use autopilot_contract::environment_rules::MIN_SECRET_LEN;

/// Replaces known secret values and URL credentials in text.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// A redactor for these secret values (too-short and empty ones are ignored).
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut secrets: Vec<String> =
            secrets.into_iter().map(Into::into).filter(|s| s.len() >= MIN_SECRET_LEN).collect();
        // Longest first, so a secret that contains another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    /// A redactor that also masks `more` secrets.
    pub fn with(&self, more: impl IntoIterator<Item = String>) -> Self {
        Redactor::new(self.secrets.iter().cloned().chain(more))
    }

    /// `text` with every known secret and every URL's user information masked.
    pub fn redact(&self, text: &str) -> String {
        let mut out = redact_url_credentials(text);
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
        out
    }

    /// Redacts `text` in place, allocating only when something is masked.
    pub fn redact_in_place(&self, text: &mut String) {
        if self.needs_redaction(text) {
            *text = self.redact(text);
        }
    }

    /// Whether `text` holds one of the secret values (URL user information aside): the delivery
    /// step will not commit such changes, as a push would carry the secret off the machine.
    pub fn contains_secret(&self, text: &str) -> bool {
        self.secrets.iter().any(|s| text.contains(s.as_str()))
    }

    /// Masks secrets in every text an event carries.
    pub fn redact_payload(&self, payload: &mut Payload) {
        match payload {
            Payload::StateChanged(p) => self.redact_in_place(&mut p.reason),
            Payload::GitProgress(p) => self.redact_in_place(&mut p.message),
            Payload::AgentText(p) => self.redact_in_place(&mut p.text),
            Payload::ToolStarted(p) => self.redact_in_place(&mut p.input_json),
            Payload::ToolFinished(p) => self.redact_in_place(&mut p.output),
            Payload::TaskFinished(p) => {
                self.redact_in_place(&mut p.result);
                self.redact_in_place(&mut p.error);
            }
            Payload::Diff(diff) => self.redact_diff(diff),
            Payload::BranchPushed(p) => self.redact_in_place(&mut p.remote_url),
            Payload::SetupStarted(p) => self.redact_in_place(&mut p.environment_name),
            Payload::SetupOutput(p) => self.redact_in_place(&mut p.line),
            Payload::AgentStarted(_)
            | Payload::SetupFinished(_)
            | Payload::UsageUpdate(_)
            | Payload::RepositoryReady(_)
            | Payload::Committed(_) => {}
        }
    }

    /// Masks secrets in every text of `diff`.
    pub fn redact_diff(&self, diff: &mut Diff) {
        for file in &mut diff.files {
            self.redact_in_place(&mut file.path);
            self.redact_in_place(&mut file.old_path);
            self.redact_in_place(&mut file.patch);
        }
    }

    /// An agent's session transcript (JSON lines, as Claude Code keeps it) with every secret
    /// masked, for a copy that may leave the machine (ExportWorkspace ships it, the edge keeps
    /// it). A secret is masked as it stands and as a JSON string holds it (a `"` or `\` in a
    /// secret is escaped there), the escaped form first, being longer, so no escape is left half
    /// masked and every line stays JSON the agent can resume from. Bytes that are not UTF-8
    /// (the CLI writes none) become U+FFFD.
    pub fn redact_transcript(&self, transcript: &[u8]) -> Vec<u8> {
        let text = String::from_utf8_lossy(transcript);
        let escaped = self.secrets.iter().filter_map(|secret| {
            let quoted = serde_json::to_string(secret).ok()?;
            let inner = &quoted[1..quoted.len() - 1];
            (inner != secret).then(|| inner.to_string())
        });
        self.with(escaped).redact(&text).into_bytes()
    }

    fn needs_redaction(&self, text: &str) -> bool {
        text.contains("://") || self.secrets.iter().any(|s| text.contains(s.as_str()))
    }
}

/// Masks the user information (`user:password@`) of every `scheme://` URL in `text`.
pub fn redact_url_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        // The authority ends at the first '/', whitespace or quote; user info ends at its last '@'.
        let authority_end =
            tail.find(|c: char| c == '/' || c.is_whitespace() || c == '\'' || c == '"').unwrap_or(tail.len());
        match tail[..authority_end].rfind('@') {
            Some(at) => {
                out.push_str(MASK);
                rest = &tail[at..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_credentials_are_masked_wherever_they_appear() {
        assert_eq!(
            redact_url_credentials("fatal: repository 'https://bob:s3cret@example.com/r.git/' not found"),
            "fatal: repository 'https://***@example.com/r.git/' not found"
        );
        assert_eq!(redact_url_credentials("ssh://git@host/x and https://h/y"), "ssh://***@host/x and https://h/y");
        assert_eq!(redact_url_credentials("no urls here"), "no urls here");
        assert_eq!(redact_url_credentials("https://a:b@c"), "https://***@c");
    }

    #[test]
    fn known_secrets_are_masked_and_short_values_ignored() {
        let redactor = Redactor::new(["sk-ant-canary-123456", "abc", ""]);
        assert_eq!(redactor.redact("key=sk-ant-canary-123456;"), "key=***;");
        assert_eq!(redactor.redact("abc stays"), "abc stays");
        let mut text = String::from("ANTHROPIC_API_KEY=sk-ant-canary-123456");
        redactor.redact_in_place(&mut text);
        assert_eq!(text, "ANTHROPIC_API_KEY=***");
        assert!(redactor.contains_secret("+key=sk-ant-canary-123456"));
        assert!(!redactor.contains_secret("abc https://u:p@h/"));
    }

    #[test]
    fn a_transcript_is_masked_as_json_lines_that_stay_json() {
        let redactor = Redactor::new(["sk-ant-canary-123456"]).with(["apmc_task\"key\\42".to_string()]);
        let lines = [
            serde_json::json!({"type": "user", "message": {"content": [{"type": "tool_result",
                "content": "ANTHROPIC_API_KEY=apmc_task\"key\\42\nANTHROPIC_BASE_URL=https://u:p@gw/m"}]}}),
            serde_json::json!({"type": "assistant", "message": {"content": "key sk-ant-canary-123456, \"quoted\""}}),
        ];
        let transcript: String = lines.iter().map(|line| format!("{line}\n")).collect();
        assert!(transcript.contains(r#"apmc_task\"key\\42"#), "the key as JSON holds it: {transcript}");

        let masked = String::from_utf8(redactor.redact_transcript(transcript.as_bytes())).unwrap();
        assert!(!masked.contains("apmc_task") && !masked.contains("sk-ant-canary"), "{masked}");
        let parsed: Vec<serde_json::Value> = masked.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(
            parsed[0]["message"]["content"][0]["content"],
            "ANTHROPIC_API_KEY=***\nANTHROPIC_BASE_URL=https://***@gw/m"
        );
        assert_eq!(parsed[1]["message"]["content"], "key ***, \"quoted\"");
        assert_eq!(redactor.redact_transcript(b"{}\n"), b"{}\n", "nothing to mask: the same bytes");
        assert_eq!(redactor.redact_transcript(b"sk-ant-canary-123456\xff"), "***\u{fffd}".as_bytes());
    }

    #[test]
    fn a_setup_scripts_lines_are_masked() {
        use autopilot_contract::v1::SetupOutput;
        let redactor = Redactor::new(["npm_secret_token"]);
        let mut line = Payload::SetupOutput(SetupOutput { line: "//registry/:_authToken=npm_secret_token".into() });
        redactor.redact_payload(&mut line);
        assert_eq!(line, Payload::SetupOutput(SetupOutput { line: "//registry/:_authToken=***".into() }));
    }

    #[test]
    fn every_text_of_an_event_and_a_diff_is_masked() {
        use autopilot_contract::v1::{AgentText, FileDiff, TaskFinished};
        let redactor = Redactor::new(["sk-ant-canary-123456"]);
        let mut text = Payload::AgentText(AgentText { text: "sk-ant-canary-123456".into() });
        redactor.redact_payload(&mut text);
        assert_eq!(text, Payload::AgentText(AgentText { text: MASK.into() }));
        let mut finished = Payload::TaskFinished(TaskFinished {
            result: "key sk-ant-canary-123456".into(),
            error: "git: https://u:p@h/r.git".into(),
            ..Default::default()
        });
        redactor.redact_payload(&mut finished);
        let Payload::TaskFinished(finished) = finished else { unreachable!() };
        assert_eq!((finished.result.as_str(), finished.error.as_str()), ("key ***", "git: https://***@h/r.git"));
        let file = FileDiff {
            path: "sk-ant-canary-123456.txt".into(),
            old_path: "old/sk-ant-canary-123456".into(),
            patch: "+ANTHROPIC_API_KEY=sk-ant-canary-123456".into(),
            ..Default::default()
        };
        let mut diff = Payload::Diff(Diff { files: vec![file], ..Default::default() });
        redactor.redact_payload(&mut diff);
        let Payload::Diff(diff) = diff else { unreachable!() };
        let file = &diff.files[0];
        assert_eq!(
            (file.path.as_str(), file.old_path.as_str(), file.patch.as_str()),
            ("***.txt", "old/***", "+ANTHROPIC_API_KEY=***")
        );
    }
}
