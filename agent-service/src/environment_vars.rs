//! Where an environment's variables and secrets go, and which names they may not take. Pure.
//!
//! - The agent's environment ([`agent_env`]): the service's (the allowed list of
//!   [`crate::config::agent_env`], the task's model access) plus the variables; never the
//!   secrets.
//! - The scripts' environment ([`script_env`]): the same, without the model credentials, plus
//!   the secrets. A setup script runs code of the repository's dependencies (an `npm install`'s
//!   install scripts), which have no business with the model key; the agent, which does, gets
//!   no secret.
//! - Names the service relies on ([`shadows_the_service`]) are refused at validation, so a
//!   variable can never redirect the agent's model calls, its home and configuration (where the
//!   service finds its transcripts), git's behaviour, the marker that finds a dead service's
//!   processes, or what is loaded into the guard that kills them.

use std::collections::BTreeMap;

use crate::spec::EnvironmentSpec;

/// The agent's variables that reach the model; the scripts do without them.
const MODEL_CREDENTIALS: [&str; 2] = ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"];

pub use autopilot_contract::environment_rules::shadows_the_service;

/// The agent's environment: `base` (the service's for this task) plus the environment's
/// variables, if it has one.
pub fn agent_env(base: Vec<(String, String)>, environment: Option<&EnvironmentSpec>) -> Vec<(String, String)> {
    match environment {
        None => base,
        Some(environment) => overlaid(base, &environment.variables),
    }
}

/// The environment of `environment`'s scripts: `agent_base` (what the agent's would be before
/// the variables) without the model credentials, plus the variables and the secrets.
pub fn script_env(agent_base: &[(String, String)], environment: &EnvironmentSpec) -> Vec<(String, String)> {
    let base: Vec<(String, String)> =
        agent_base.iter().filter(|(name, _)| !MODEL_CREDENTIALS.contains(&name.as_str())).cloned().collect();
    overlaid(overlaid(base, &environment.variables), &environment.secrets)
}

/// `base` with `more` set on top: a name already there takes its new value.
fn overlaid(mut base: Vec<(String, String)>, more: &BTreeMap<String, String>) -> Vec<(String, String)> {
    base.retain(|(name, _)| !more.contains_key(name));
    base.extend(more.iter().map(|(name, value)| (name.clone(), value.clone())));
    base
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
    }

    fn environment() -> EnvironmentSpec {
        EnvironmentSpec {
            name: "web".into(),
            setup_script: "npm ci".into(),
            maintenance_script: String::new(),
            variables: [("NODE_ENV", "test"), ("LANG", "C.UTF-8")].map(|(k, v)| (k.into(), v.into())).into(),
            secrets: [("NPM_TOKEN", "npm_secret_123")].map(|(k, v)| (k.into(), v.into())).into(),
            setup_timeout: Duration::from_secs(600),
            revision: 1,
            prepared_store: None,
        }
    }

    #[test]
    fn what_the_service_relies_on_is_reserved() {
        for name in ["PATH", "HOME", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "AUTOPILOT_TASK_ID", "GIT_DIR"] {
            assert!(shadows_the_service(name), "{name}");
        }
        for name in ["CLAUDE_CONFIG_DIR", "CLAUDE_CODE_USE_BEDROCK", "LD_PRELOAD", "TMPDIR", "SSH_AUTH_SOCK", "SHELL"] {
            assert!(shadows_the_service(name), "{name}");
        }
        for name in ["NODE_ENV", "DATABASE_URL", "path", "GITHUB_TOKEN", "MY_PATH", "LANG", "CLAUDE"] {
            assert!(!shadows_the_service(name), "{name}");
        }
    }

    #[test]
    fn the_agent_gets_the_variables_and_never_a_secret() {
        let base = pairs(&[("ANTHROPIC_API_KEY", "sk-service"), ("LANG", "C"), ("PATH", "/bin")]);
        let env = agent_env(base.clone(), Some(&environment()));
        assert_eq!(
            env,
            pairs(&[("ANTHROPIC_API_KEY", "sk-service"), ("PATH", "/bin"), ("LANG", "C.UTF-8"), ("NODE_ENV", "test")])
        );
        assert_eq!(agent_env(base.clone(), None), base, "no environment: the service's alone");
    }

    #[test]
    fn the_scripts_get_variables_and_secrets_but_no_model_credential() {
        let base = pairs(&[
            ("ANTHROPIC_API_KEY", "sk-service"),
            ("ANTHROPIC_AUTH_TOKEN", "tok"),
            ("ANTHROPIC_BASE_URL", "http://gw"),
            ("PATH", "/bin"),
        ]);
        let env = script_env(&base, &environment());
        assert_eq!(
            env,
            pairs(&[
                ("ANTHROPIC_BASE_URL", "http://gw"),
                ("PATH", "/bin"),
                ("LANG", "C.UTF-8"),
                ("NODE_ENV", "test"),
                ("NPM_TOKEN", "npm_secret_123"),
            ])
        );
    }
}
