//! Keeps secrets out of everything the service shows: events, errors, status and logs.
//!
//! Two kinds of secret are known: the values the service itself holds (the model API key) and
//! credentials a user embedded in a repository URL (`https://user:token@host/...`). Both are
//! replaced by `***` wherever they appear, including inside git's and the agent's own output.

/// What replaces a secret.
pub const MASK: &str = "***";

/// Shortest value treated as a secret; shorter strings would mask ordinary words.
const MIN_SECRET_LEN: usize = 6;

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
}
