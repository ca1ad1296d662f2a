//! A task's own way to the model (`StartRequest.model_access`): an edge that keeps the real
//! model key outside the machine the agent runs on hands each task a credential of its own for
//! its model gateway. That task's agent, and no other process, gets the gateway's URL and that
//! credential in place of the service's own key; the credential is masked like any secret.
//! Without it the service's own `ANTHROPIC_API_KEY` is used, as configured.

use autopilot_contract::v1::ModelAccess;

/// Longest gateway URL accepted.
pub const MAX_BASE_URL_LEN: usize = 2048;
/// Longest credential accepted.
pub const MAX_API_KEY_LEN: usize = 512;

/// The variables of the agent's environment that say how it reaches the model; a task's own
/// access replaces them all (a service key left beside the task's credential would defeat it).
const MODEL_VARIABLES: [&str; 3] = ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL"];

/// Checks a request's `model_access`.
///
/// # Errors
/// The field and why, for a URL that is not http(s) or too long, or a key that is empty, too
/// long or not printable ASCII. The key itself is never part of the message.
pub fn check(access: &ModelAccess) -> Result<(), (&'static str, String)> {
    let url = access.base_url.as_str();
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > MAX_BASE_URL_LEN {
        return Err((
            "model_access.base_url",
            format!("must be an http:// or https:// URL of at most {MAX_BASE_URL_LEN} bytes"),
        ));
    }
    let key = access.api_key.as_str();
    if key.is_empty() || key.len() > MAX_API_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err((
            "model_access.api_key",
            format!("must be 1 to {MAX_API_KEY_LEN} printable ASCII characters with no spaces"),
        ));
    }
    Ok(())
}

/// The agent's environment for a task: the service's `base`, with the task's own access in
/// place of every model variable when it has one.
pub fn agent_env(base: &[(String, String)], access: Option<&ModelAccess>) -> Vec<(String, String)> {
    let Some(access) = access else { return base.to_vec() };
    let mut env: Vec<(String, String)> =
        base.iter().filter(|(name, _)| !MODEL_VARIABLES.contains(&name.as_str())).cloned().collect();
    env.push(("ANTHROPIC_BASE_URL".into(), access.base_url.clone()));
    env.push(("ANTHROPIC_API_KEY".into(), access.api_key.clone()));
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(base_url: &str, api_key: &str) -> ModelAccess {
        ModelAccess { base_url: base_url.into(), api_key: api_key.into() }
    }

    #[test]
    fn a_gateway_url_and_credential_pass() {
        assert_eq!(check(&access("https://edge.example/model", "apmc_0123_abcd")), Ok(()));
        assert_eq!(check(&access("http://127.0.0.1:8787/model", "k")), Ok(()));
    }

    #[test]
    fn bad_fields_are_named_and_the_key_is_never_echoed() {
        for (url, key, field) in [
            ("ftp://x", "k", "model_access.base_url"),
            ("", "k", "model_access.base_url"),
            ("https://x", "", "model_access.api_key"),
            ("https://x", "has space-secret", "model_access.api_key"),
            ("https://x", "tab\tsecret", "model_access.api_key"),
        ] {
            let (named, message) = check(&access(url, key)).unwrap_err();
            assert_eq!(named, field);
            assert!(!message.contains("secret"), "{message}");
        }
        assert!(check(&access(&format!("https://{}", "x".repeat(MAX_BASE_URL_LEN)), "k")).is_err());
    }

    #[test]
    fn the_tasks_access_replaces_every_model_variable_of_the_service() {
        let base: Vec<(String, String)> = [
            ("PATH", "/usr/bin"),
            ("ANTHROPIC_API_KEY", "sk-service"),
            ("ANTHROPIC_AUTH_TOKEN", "tok"),
            ("ANTHROPIC_BASE_URL", "https://api.anthropic.com"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec();
        let env = agent_env(&base, Some(&access("http://gw/model", "apmc_task")));
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            pairs,
            [("PATH", "/usr/bin"), ("ANTHROPIC_BASE_URL", "http://gw/model"), ("ANTHROPIC_API_KEY", "apmc_task")]
        );
        assert_eq!(agent_env(&base, None), base, "without its own access the task uses the service's");
    }
}
