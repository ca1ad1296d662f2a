//! How git authenticates to the user's remote, from the service's environment only (never from
//! a request, never shown in events): an HTTPS token, or an SSH private key file.
//!
//! - `AUTOPILOT_GIT_TOKEN` (with `AUTOPILOT_GIT_USERNAME`, default `x-access-token`, which GitHub
//!   expects; GitLab takes `oauth2`): answered by a credential helper that reads the token from
//!   git's environment, so it is on no command line and in no config file. The helper is set
//!   through `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n`, after an empty value that
//!   drops any helper configured elsewhere.
//! - `AUTOPILOT_GIT_SSH_KEY_FILE`: used with `ssh -i <file> -o IdentitiesOnly=yes`.
//!
//! Both reach the clone and the push and nothing else: the agent's environment is an allow-list
//! that has neither, and delivery's other git commands run without them. Pure: [`GitCredentials::git_env`] says what git gets.

/// The variable holding an HTTPS token.
pub const TOKEN_VAR: &str = "AUTOPILOT_GIT_TOKEN";
/// The variable holding the user name sent with the token.
pub const USERNAME_VAR: &str = "AUTOPILOT_GIT_USERNAME";
/// The variable naming an SSH private key file.
pub const SSH_KEY_VAR: &str = "AUTOPILOT_GIT_SSH_KEY_FILE";
/// The user name sent with a token when none is configured (GitHub's convention).
pub const DEFAULT_USERNAME: &str = "x-access-token";

/// The credential helper: answers `get` with the user name and token from its environment.
const HELPER: &str = "!f() { test \"$1\" = get || return 0; \
    printf 'username=%s\\npassword=%s\\n' \"$AUTOPILOT_GIT_USERNAME\" \"$AUTOPILOT_GIT_TOKEN\"; }; f";

/// What the operator configured for git to authenticate with.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct GitCredentials {
    token: Option<String>,
    username: String,
    ssh_key_file: Option<String>,
}

impl std::fmt::Debug for GitCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitCredentials")
            .field("token", &self.token.as_ref().map(|_| crate::redact::MASK))
            .field("username", &self.username)
            .field("ssh_key_file", &self.ssh_key_file)
            .finish()
    }
}

impl GitCredentials {
    /// Reads the credentials from environment variables (empty values count as unset).
    pub fn from_env<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> GitCredentials {
        let mut credentials = GitCredentials { username: DEFAULT_USERNAME.into(), ..Default::default() };
        for (name, value) in vars {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            match name {
                TOKEN_VAR => credentials.token = Some(value.to_string()),
                USERNAME_VAR => credentials.username = value.to_string(),
                SSH_KEY_VAR => credentials.ssh_key_file = Some(value.to_string()),
                _ => {}
            }
        }
        credentials
    }

    /// Whether any credential is configured.
    pub fn any(&self) -> bool {
        self.token.is_some() || self.ssh_key_file.is_some()
    }

    /// The values to mask wherever they might show.
    pub fn secrets(&self) -> Vec<String> {
        self.token.iter().cloned().collect()
    }

    /// Environment for git that makes it use these credentials.
    pub fn git_env(&self) -> Vec<(String, String)> {
        let mut env = Vec::new();
        if let Some(token) = &self.token {
            env.extend([
                ("GIT_CONFIG_COUNT".into(), "2".into()),
                ("GIT_CONFIG_KEY_0".into(), "credential.helper".into()),
                ("GIT_CONFIG_VALUE_0".into(), String::new()),
                ("GIT_CONFIG_KEY_1".into(), "credential.helper".into()),
                ("GIT_CONFIG_VALUE_1".into(), HELPER.into()),
                (TOKEN_VAR.into(), token.clone()),
                (USERNAME_VAR.into(), self.username.clone()),
            ]);
        }
        if let Some(key) = &self.ssh_key_file {
            env.push((
                "GIT_SSH_COMMAND".into(),
                format!(
                    "ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
                    shell_quote(key)
                ),
            ));
        }
        env
    }

    /// A hint to add to a failed push's message when git's words point at authentication.
    pub fn auth_hint(&self, git_message: &str) -> Option<String> {
        const AUTH_SIGNS: [&str; 6] = [
            "Authentication failed",
            "could not read Username",
            "could not read Password",
            "Permission denied",
            "403",
            "terminal prompts disabled",
        ];
        if !AUTH_SIGNS.iter().any(|sign| git_message.contains(sign)) {
            return None;
        }
        Some(if self.any() {
            "the remote refused the credentials configured on the agent-service \
             (AUTOPILOT_GIT_TOKEN or AUTOPILOT_GIT_SSH_KEY_FILE); check that they may push to this repository"
                .into()
        } else {
            "the remote wants credentials: start the agent-service with AUTOPILOT_GIT_TOKEN \
             (HTTPS) or AUTOPILOT_GIT_SSH_KEY_FILE (SSH) in its environment"
                .into()
        })
    }
}

/// `text` as one single-quoted shell word.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_configured_gives_git_nothing() {
        let none = GitCredentials::from_env([("PATH", "/bin"), (TOKEN_VAR, "  ")]);
        assert!(!none.any());
        assert!(none.git_env().is_empty() && none.secrets().is_empty());
    }

    #[test]
    fn a_token_reaches_git_only_through_its_environment_and_a_helper() {
        let credentials = GitCredentials::from_env([(TOKEN_VAR, "ghp_secret_123456")]);
        let env = credentials.git_env();
        let get = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("GIT_CONFIG_COUNT"), Some("2"));
        assert_eq!(get("GIT_CONFIG_VALUE_0"), Some(""), "other helpers are dropped first");
        let helper = get("GIT_CONFIG_VALUE_1").unwrap();
        assert!(helper.starts_with("!f()") && !helper.contains("ghp_secret_123456"), "{helper}");
        assert_eq!(get(TOKEN_VAR), Some("ghp_secret_123456"));
        assert_eq!(get(USERNAME_VAR), Some(DEFAULT_USERNAME));
        assert_eq!(credentials.secrets(), ["ghp_secret_123456"]);
        assert!(!format!("{credentials:?}").contains("ghp_secret"));
    }

    /// The helper, run by a real shell as git runs it, prints what git's credential protocol wants.
    #[test]
    fn the_helper_answers_get_with_the_token() {
        let script = HELPER.strip_prefix('!').unwrap();
        let run = |action: &str| {
            let out = std::process::Command::new("sh")
                .args(["-c", &format!("{script} \"$@\""), "helper", action])
                .env(TOKEN_VAR, "tok'en $x")
                .env(USERNAME_VAR, "oauth2")
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        assert_eq!(run("get"), "username=oauth2\npassword=tok'en $x\n");
        assert_eq!(run("store"), "");
    }

    /// Real git, asked for credentials as it asks before a push, gets the token from the helper.
    #[test]
    fn git_itself_fills_in_the_token_through_the_helper() {
        use std::io::Write;
        let credentials = GitCredentials::from_env([(TOKEN_VAR, "ghp_fill_123456"), (USERNAME_VAR, "oauth2")]);
        let mut git = std::process::Command::new("git")
            .args(["credential", "fill"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .envs(credentials.git_env())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("git is installed");
        git.stdin.take().unwrap().write_all(b"protocol=https\nhost=git.example.com\n\n").unwrap();
        let out = git.wait_with_output().unwrap();
        assert!(out.status.success());
        let answer = String::from_utf8(out.stdout).unwrap();
        assert!(answer.contains("username=oauth2\npassword=ghp_fill_123456\n"), "{answer}");
    }

    #[test]
    fn an_ssh_key_file_is_quoted_into_the_ssh_command() {
        let credentials = GitCredentials::from_env([(SSH_KEY_VAR, "/keys/it's key")]);
        assert_eq!(
            credentials.git_env(),
            [(
                "GIT_SSH_COMMAND".to_string(),
                "ssh -i '/keys/it'\\''s key' -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=accept-new"
                    .to_string()
            )]
        );
    }

    #[test]
    fn authentication_failures_get_a_hint_naming_the_variables() {
        let none = GitCredentials::default();
        let hint = none.auth_hint("fatal: could not read Username for 'https://h': terminal prompts disabled");
        assert!(hint.unwrap().contains("AUTOPILOT_GIT_TOKEN"));
        assert_eq!(none.auth_hint("! [remote rejected] x -> x (pre-receive hook declined)"), None);
    }
}
