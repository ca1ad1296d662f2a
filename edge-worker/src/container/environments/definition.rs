//! An environment as a user defines it (`PUT /api/environments/{name}`): which repositories it
//! applies to, its scripts, variables, secrets and setup time limit, checked by the rules the
//! agent-service holds a Start's environment to (so a mistake is refused when it is saved, naming
//! the field, not when a task starts); and which repository URLs it matches. Pure.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Longest script, in bytes.
pub const MAX_SCRIPT_BYTES: usize = 64 * 1024;
/// Most variables, and most secrets.
pub const MAX_NAMED_VALUES: usize = 100;
/// Longest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 32 * 1024;
/// Most repositories one environment applies to.
pub const MAX_REPOSITORIES: usize = 50;
/// The setup time limit when none is given, and the longest allowed.
pub const DEFAULT_SETUP_TIMEOUT_SECONDS: u64 = 600;
pub const MAX_SETUP_TIMEOUT_SECONDS: u64 = 3600;

/// The body of a PUT, as sent.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Definition {
    #[serde(default)]
    pub repositories: Vec<String>,
    #[serde(default)]
    pub setup_script: String,
    #[serde(default)]
    pub maintenance_script: String,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Values to set; a secret whose value is `null` keeps the value stored (so a page that
    /// never sees the values can save the rest).
    #[serde(default)]
    pub secrets: BTreeMap<String, Option<String>>,
    #[serde(default)]
    pub setup_timeout_seconds: Option<u64>,
}

/// Checks an environment's name: 1..=64 of `A-Z a-z 0-9 . _ -`.
pub fn check_name(name: &str) -> Result<(), String> {
    let fine = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    match fine {
        true => Ok(()),
        false => Err(format!("the environment name {name:?} is not 1 to 64 of A-Z a-z 0-9 . _ -")),
    }
}

impl Definition {
    /// Checks every field; the error names the field and says what is wrong.
    pub fn check(&self) -> Result<(), String> {
        if self.repositories.len() > MAX_REPOSITORIES {
            return Err(format!("repositories: at most {MAX_REPOSITORIES}"));
        }
        for (i, url) in self.repositories.iter().enumerate() {
            if repository_key(url).is_none() {
                return Err(format!("repositories[{i}]: {url:?} is not a repository URL (https://host/owner/name)"));
            }
        }
        for (field, script) in [("setupScript", &self.setup_script), ("maintenanceScript", &self.maintenance_script)] {
            if script.len() > MAX_SCRIPT_BYTES {
                return Err(format!("{field}: at most {} KiB", MAX_SCRIPT_BYTES / 1024));
            }
            if script.contains('\0') {
                return Err(format!("{field}: contains a NUL byte"));
            }
        }
        check_named("variables", self.variables.iter().map(|(name, value)| (name, Some(value))))?;
        check_named("secrets", self.secrets.iter().map(|(name, value)| (name, value.as_ref())))?;
        if let Some(seconds) = self.setup_timeout_seconds {
            if !(1..=MAX_SETUP_TIMEOUT_SECONDS).contains(&seconds) {
                return Err(format!("setupTimeoutSeconds: from 1 to {MAX_SETUP_TIMEOUT_SECONDS}"));
            }
        }
        Ok(())
    }
}

fn check_named<'a>(
    field: &str,
    values: impl ExactSizeIterator<Item = (&'a String, Option<&'a String>)>,
) -> Result<(), String> {
    if values.len() > MAX_NAMED_VALUES {
        return Err(format!("{field}: at most {MAX_NAMED_VALUES}"));
    }
    for (name, value) in values {
        check_variable_name(name).map_err(|why| format!("{field}[{name:?}]: {why}"))?;
        if let Some(value) = value {
            if value.len() > MAX_VALUE_BYTES {
                return Err(format!("{field}[{name:?}]: at most {} KiB", MAX_VALUE_BYTES / 1024));
            }
            if value.contains('\0') {
                return Err(format!("{field}[{name:?}]: contains a NUL byte"));
            }
        }
    }
    Ok(())
}

/// A variable's name: `[A-Za-z_][A-Za-z0-9_]*`, not one the service relies on.
fn check_variable_name(name: &str) -> Result<(), &'static str> {
    let mut bytes = name.bytes();
    let first_fine = bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    if !first_fine || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err("a name is [A-Za-z_][A-Za-z0-9_]*");
    }
    let reserved = ["PATH", "HOME", "TMPDIR", "SSH_AUTH_SOCK", "CLAUDE_CONFIG_DIR"].contains(&name)
        || ["ANTHROPIC_", "AUTOPILOT_", "GIT_"].iter().any(|prefix| name.starts_with(prefix));
    match reserved {
        true => Err("shadows what the service relies on"),
        false => Ok(()),
    }
}

/// A repository URL as environments compare them: scheme and host lowercased, credentials,
/// a trailing `/` and `.git` dropped; `None` for what is no URL with a host and a path.
pub fn repository_key(url: &str) -> Option<String> {
    let url = url.trim();
    let (scheme, rest) = url.split_once("://")?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path).trim_end_matches('/');
    if scheme.is_empty() || host.is_empty() || path.is_empty() || url.chars().any(char::is_whitespace) {
        return None;
    }
    Some(format!("{}://{}/{path}", scheme.to_ascii_lowercase(), host.to_ascii_lowercase()))
}

/// Whether `repositories` (an environment's) include `url`.
pub fn applies_to(repositories: &[String], url: &str) -> bool {
    let Some(wanted) = repository_key(url) else { return false };
    repositories.iter().any(|repository| repository_key(repository).as_deref() == Some(wanted.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn definition(json: serde_json::Value) -> Result<Definition, String> {
        let definition: Definition = serde_json::from_value(json).map_err(|e| e.to_string())?;
        definition.check().map(|()| definition)
    }

    #[test]
    fn a_repository_matches_whatever_its_case_credentials_slash_or_dot_git() {
        let repositories = ["https://GitHub.com/Octo/App.git".to_string()];
        for url in [
            "https://github.com/Octo/App",
            "HTTPS://x-access-token:t@github.com/Octo/App/",
            "https://github.com/Octo/App.git",
        ] {
            assert!(applies_to(&repositories, url), "{url}");
        }
        assert!(!applies_to(&repositories, "https://github.com/octo/app"), "the path's case matters");
        assert!(!applies_to(&repositories, "https://github.com/Octo/App2"));
        assert!(!applies_to(&repositories, "not a url"));
    }

    #[test]
    fn a_definition_is_checked_field_by_field() {
        let fine = json_ok(serde_json::json!({
            "repositories": ["https://github.com/o/r"], "setupScript": "make deps", "variables": {"RUST_LOG": "debug"},
            "secrets": {"NPM_TOKEN": "s3cret", "KEPT": null}, "setupTimeoutSeconds": 900
        }));
        assert_eq!(fine.secrets.get("KEPT"), Some(&None), "null keeps the stored value");
        let refused = |json: serde_json::Value| definition(json).unwrap_err();
        assert!(refused(serde_json::json!({"variables": {"PATH": "/x"}})).starts_with("variables[\"PATH\"]: shadows"));
        assert!(refused(serde_json::json!({"secrets": {"GIT_ASKPASS": "x"}})).starts_with("secrets[\"GIT_ASKPASS\"]"));
        assert!(refused(serde_json::json!({"variables": {"1X": "x"}})).contains("[A-Za-z_]"));
        assert!(refused(serde_json::json!({"variables": {"X": "a\u{0}b"}})).contains("NUL"));
        assert!(refused(serde_json::json!({"variables": {"X": "v".repeat(MAX_VALUE_BYTES + 1)}})).contains("32 KiB"));
        assert!(
            refused(serde_json::json!({"setupScript": "x".repeat(MAX_SCRIPT_BYTES + 1)})).starts_with("setupScript")
        );
        let many: serde_json::Map<String, serde_json::Value> =
            (0..=MAX_NAMED_VALUES).map(|i| (format!("V{i}"), "x".into())).collect();
        assert!(refused(serde_json::json!({"secrets": many})).starts_with("secrets: at most 100"));
        assert!(refused(serde_json::json!({"setupTimeoutSeconds": 0})).starts_with("setupTimeoutSeconds"));
        assert!(refused(serde_json::json!({"repositories": ["nope"]})).starts_with("repositories[0]"));
        assert!(refused(serde_json::json!({"setup": "typo"})).contains("unknown field"));
        assert!(check_name("web-app_1.0").is_ok() && check_name("").is_err() && check_name("a/b").is_err());
    }

    fn json_ok(json: serde_json::Value) -> Definition {
        definition(json).unwrap()
    }
}
