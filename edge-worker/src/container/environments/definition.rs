//! An environment as a user defines it (`PUT /api/environments/{name}`): which repositories it
//! applies to, its scripts, variables, secrets and setup time limit, held to the contract's
//! [`autopilot_contract::environment_rules`], the very rules the agent-service holds a Start's environment to (so a
//! mistake is refused when it is saved, naming the field, not when a task starts); and which
//! repository URLs it matches. Pure.

use std::collections::BTreeMap;

use autopilot_contract::environment_rules::Refusal;
use serde::Deserialize;

/// Most repositories one environment applies to.
pub const MAX_REPOSITORIES: usize = 50;

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

impl Definition {
    /// Checks the repositories (the rest is the contract's, see [`refusal_in_json`]).
    pub fn check_repositories(&self) -> Result<(), String> {
        if self.repositories.len() > MAX_REPOSITORIES {
            return Err(format!("repositories: at most {MAX_REPOSITORIES}"));
        }
        for (i, url) in self.repositories.iter().enumerate() {
            if repository_key(url).is_none() {
                return Err(format!("repositories[{i}]: {url:?} is not a repository URL (https://host/owner/name)"));
            }
        }
        Ok(())
    }
}

/// A refusal of the contract's rules ([`autopilot_contract::environment_rules`]) in the words of this JSON body:
/// `environment.setup_script` is `setupScript` here, `environment.variables["X"]` is
/// `variables["X"]`.
pub fn refusal_in_json(refused: Refusal) -> String {
    let field = refused.field.strip_prefix("environment.").unwrap_or(&refused.field);
    let field = match field {
        "environment" => "environment".to_string(),
        "setup_timeout" => "setupTimeoutSeconds".to_string(),
        field => field.replace("setup_script", "setupScript").replace("maintenance_script", "maintenanceScript"),
    };
    format!("{field} {}", refused.message)
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
    // A local repository (file:///path, where the service allows them) has no host.
    let hostless = scheme.eq_ignore_ascii_case("file");
    if scheme.is_empty() || (host.is_empty() && !hostless) || path.is_empty() || url.chars().any(char::is_whitespace) {
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
        assert!(applies_to(&["file:///srv/repo.git/".to_string()], "file:///srv/repo"), "local repositories too");
        assert_eq!(repository_key("https:///no-host"), None);
    }

    #[test]
    fn repositories_are_checked_and_the_contracts_refusals_named_as_this_body_names_fields() {
        let definition =
            |json: serde_json::Value| serde_json::from_value::<Definition>(json).map_err(|e| e.to_string());
        let fine =
            definition(serde_json::json!({"repositories": ["https://github.com/o/r"], "secrets": {"KEPT": null}}));
        assert_eq!(fine.unwrap().secrets.get("KEPT"), Some(&None), "null keeps the stored value");
        let bad = definition(serde_json::json!({"repositories": ["nope"]})).unwrap();
        assert!(bad.check_repositories().unwrap_err().starts_with("repositories[0]"));
        assert!(definition(serde_json::json!({"setup": "typo"})).unwrap_err().contains("unknown field"));
        let named = |field: &str| refusal_in_json(Refusal { field: field.into(), message: "is wrong".into() });
        assert_eq!(named("environment.variables[\"PATH\"]"), "variables[\"PATH\"] is wrong");
        assert_eq!(named("environment.setup_script"), "setupScript is wrong");
        assert_eq!(named("environment.setup_timeout"), "setupTimeoutSeconds is wrong");
        assert_eq!(named("environment"), "environment is wrong");
    }
}
