//! The rules an environment is held to, which both halves apply — the edge when a user saves
//! one, the agent-service when a Start carries one — so an environment the edge keeps is one the
//! service runs, and each refusal names the field (`environment.variables["PATH"]`).

use std::{collections::BTreeMap, ops::RangeInclusive, time::Duration};

use crate::v1::{Environment, PreparedStore};

/// Longest environment name, in characters.
pub const MAX_NAME_LEN: usize = 64;
/// Longest setup or maintenance script, in bytes.
pub const MAX_SCRIPT_BYTES: usize = 64 * 1024;
/// Most variables, and most secrets, an environment has.
pub const MAX_ENTRIES: usize = 100;
/// Longest variable or secret name, in bytes.
pub const MAX_VARIABLE_NAME_LEN: usize = 256;
/// Longest variable or secret value, in bytes.
pub const MAX_VARIABLE_VALUE_BYTES: usize = 32 * 1024;
/// Most bytes of names and values of all variables and secrets together: the kernel refuses
/// to start a process whose arguments and environment pass 2 MiB (a quarter of the usual
/// 8 MiB stack), and the service's own variables need their share.
pub const MAX_TOTAL_BYTES: usize = 1024 * 1024;
/// Shortest secret the service can mask (a shorter one would mask common words).
pub const MIN_SECRET_LEN: usize = 6;
/// How long a script may run when the environment does not say.
pub const DEFAULT_SETUP_TIMEOUT: Duration = Duration::from_secs(600);
/// The shortest and longest time a script may be given.
pub const SETUP_TIMEOUT_RANGE: RangeInclusive<Duration> = Duration::from_secs(1)..=Duration::from_secs(3600);

/// Longest prepared store URL, and credential.
pub const MAX_STORE_URL_LEN: usize = 2048;
pub const MAX_STORE_TOKEN_LEN: usize = 512;
/// The sizes a prepared store's parts may have: R2's multipart uploads want 5 MiB at least
/// (but the last), and a part is one request body, which Cloudflare caps at 100 MB on most plans.
pub const STORE_PART_BYTES: RangeInclusive<u64> = (5 << 20)..=(64 << 20);

/// Names a variable or secret may not have: what the service sets or passes on and relies on.
const RESERVED_NAMES: [&str; 7] =
    ["PATH", "HOME", "SHELL", "TMPDIR", "CLAUDE_CONFIG_DIR", "SSH_AUTH_SOCK", "IS_SANDBOX"];

/// Prefixes a variable or secret name may not start with: the model's variables, the
/// service's own (its task marker among them), git's (`GIT_CONFIG_GLOBAL`, `GIT_DIR`...), the
/// agent CLI's settings (`CLAUDE_CODE_USE_BEDROCK` would send the model calls elsewhere), and
/// the dynamic loader's (`LD_PRELOAD` would run code inside the guard).
const RESERVED_PREFIXES: [&str; 5] = ["ANTHROPIC_", "AUTOPILOT_", "GIT_", "CLAUDE_CODE_", "LD_"];

/// Whether `name` is one the service relies on (and so no variable or secret may set).
pub fn shadows_the_service(name: &str) -> bool {
    RESERVED_NAMES.contains(&name) || RESERVED_PREFIXES.iter().any(|prefix| name.starts_with(prefix))
}

/// A refused environment: the field (`environment.secrets["TOKEN"]`) and why, in words. A
/// secret's value is never quoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub field: String,
    pub message: String,
}

fn refuse(field: impl Into<String>, message: impl Into<String>) -> Refusal {
    Refusal { field: field.into(), message: message.into() }
}

/// Checks every rule; answers the setup time limit (the default when unset).
pub fn check(environment: &Environment) -> Result<Duration, Refusal> {
    let name = environment.name.as_str();
    if name.is_empty() {
        return Err(refuse("environment.name", "is required"));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(refuse("environment.name", format!("is longer than {MAX_NAME_LEN} characters")));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c))) {
        return Err(refuse("environment.name", format!("contains {bad:?}; use A-Z a-z 0-9 . _ -")));
    }
    for (field, script) in [
        ("environment.setup_script", &environment.setup_script),
        ("environment.maintenance_script", &environment.maintenance_script),
    ] {
        if script.len() > MAX_SCRIPT_BYTES {
            return Err(refuse(
                field,
                format!("is {} bytes long; at most {MAX_SCRIPT_BYTES} (64 KiB) are allowed", script.len()),
            ));
        }
        if script.contains('\0') {
            return Err(refuse(field, "must not contain NUL characters"));
        }
    }
    let variables = check_entries("variables", &environment.variables, false)?;
    let secrets = check_entries("secrets", &environment.secrets, true)?;
    if let Some(name) = secrets.keys().find(|name| variables.contains_key(*name)) {
        return Err(refuse(
            format!("environment.secrets[{name:?}]"),
            "is also a variable; a name is either a variable or a secret",
        ));
    }
    let total: usize = variables.iter().chain(&secrets).map(|(name, value)| name.len() + value.len()).sum();
    if total > MAX_TOTAL_BYTES {
        return Err(refuse(
            "environment",
            format!(
                "has {total} bytes of variables and secrets; at most {MAX_TOTAL_BYTES} (1 MiB) together are allowed"
            ),
        ));
    }
    if let Some(store) = &environment.prepared_store {
        check_prepared_store(store)?;
    }
    match environment.setup_timeout {
        None => Ok(DEFAULT_SETUP_TIMEOUT),
        Some(d) => {
            let in_range = d.seconds >= 0
                && (0..1_000_000_000).contains(&d.nanos)
                && SETUP_TIMEOUT_RANGE.contains(&Duration::new(d.seconds as u64, d.nanos as u32));
            match in_range {
                true => Ok(Duration::new(d.seconds as u64, d.nanos as u32)),
                false => Err(refuse("environment.setup_timeout", "must be between 1s and 1h (unset: 10 minutes)")),
            }
        }
    }
}

/// Checks where a prepared workspace is kept beyond the service. The token is never quoted.
fn check_prepared_store(store: &PreparedStore) -> Result<(), Refusal> {
    let url = store.url.as_str();
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > MAX_STORE_URL_LEN {
        return Err(refuse(
            "environment.prepared_store.url",
            format!("must be an http:// or https:// URL of at most {MAX_STORE_URL_LEN} bytes"),
        ));
    }
    let token = store.token.as_str();
    if token.is_empty() || token.len() > MAX_STORE_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(refuse(
            "environment.prepared_store.token",
            format!("must be 1 to {MAX_STORE_TOKEN_LEN} printable ASCII characters with no spaces"),
        ));
    }
    if !STORE_PART_BYTES.contains(&store.part_bytes) {
        return Err(refuse("environment.prepared_store.part_bytes", "must be between 5 MiB and 64 MiB"));
    }
    Ok(())
}

/// An environment's `variables` or `secrets` (`which`), checked, sorted by name.
fn check_entries<'a>(
    which: &str,
    entries: &'a std::collections::HashMap<String, String>,
    secret: bool,
) -> Result<BTreeMap<&'a String, &'a String>, Refusal> {
    if entries.len() > MAX_ENTRIES {
        return Err(refuse(
            format!("environment.{which}"),
            format!("has {} entries; at most {MAX_ENTRIES} are allowed", entries.len()),
        ));
    }
    let sorted: BTreeMap<&String, &String> = entries.iter().collect();
    for (name, value) in &sorted {
        let field = || format!("environment.{which}[{name:?}]");
        let well_formed = name.len() <= MAX_VARIABLE_NAME_LEN
            && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !well_formed {
            return Err(refuse(
                field(),
                format!("is not a usable name: use [A-Za-z_][A-Za-z0-9_]*, at most {MAX_VARIABLE_NAME_LEN} bytes"),
            ));
        }
        if shadows_the_service(name) {
            return Err(refuse(field(), "shadows what the service relies on"));
        }
        if value.len() > MAX_VARIABLE_VALUE_BYTES {
            return Err(refuse(
                field(),
                format!("is {} bytes long; at most {MAX_VARIABLE_VALUE_BYTES} (32 KiB) are allowed", value.len()),
            ));
        }
        if value.contains('\0') {
            return Err(refuse(field(), "must not contain NUL characters"));
        }
        if secret && !value.is_empty() && value.len() < MIN_SECRET_LEN {
            return Err(refuse(
                field(),
                format!("is shorter than {MIN_SECRET_LEN} bytes, too short to be masked in what the task shows"),
            ));
        }
    }
    Ok(sorted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environment() -> Environment {
        Environment {
            name: "web-app_1.0".into(),
            setup_script: "npm ci".into(),
            maintenance_script: "npm install".into(),
            variables: [("NODE_ENV", "test")].map(|(k, v)| (k.into(), v.into())).into(),
            secrets: [("NPM_TOKEN", "npm_0123456789")].map(|(k, v)| (k.into(), v.into())).into(),
            setup_timeout: None,
            revision: 3,
            prepared_store: None,
        }
    }

    /// The refusal of `environment` as a caller reads it: the field, then why.
    fn environment_error(environment: Environment) -> String {
        let refused = check(&environment).unwrap_err();
        format!("{} {}", refused.field, refused.message)
    }

    fn validate_environment(environment: &Environment) -> Result<Duration, Refusal> {
        check(environment)
    }

    #[test]
    fn an_environments_name_and_scripts_are_bounded() {
        let named = |name: &str| Environment { name: name.into(), ..environment() };
        assert_eq!(environment_error(named("")), "environment.name is required");
        assert_eq!(environment_error(named("my env")), "environment.name contains ' '; use A-Z a-z 0-9 . _ -");
        assert_eq!(environment_error(named("a/b")), "environment.name contains '/'; use A-Z a-z 0-9 . _ -");
        assert_eq!(environment_error(named(&"n".repeat(65))), "environment.name is longer than 64 characters");
        assert!(validate_environment(&named(&"n".repeat(64))).is_ok());
        let big = "x".repeat(MAX_SCRIPT_BYTES + 1);
        assert_eq!(
            environment_error(Environment { setup_script: big.clone(), ..environment() }),
            "environment.setup_script is 65537 bytes long; at most 65536 (64 KiB) are allowed"
        );
        assert!(environment_error(Environment { maintenance_script: big, ..environment() })
            .starts_with("environment.maintenance_script is 65537 bytes long"));
        assert_eq!(
            environment_error(Environment { setup_script: "echo \0".into(), ..environment() }),
            "environment.setup_script must not contain NUL characters"
        );
        let empty = Environment { setup_script: String::new(), maintenance_script: String::new(), ..environment() };
        assert!(validate_environment(&empty).is_ok(), "an environment may only set variables");
    }

    #[test]
    fn variables_and_secrets_are_named_well_and_shadow_nothing_the_service_relies_on() {
        let variable = |name: &str, value: &str| Environment {
            variables: [(name.to_string(), value.to_string())].into(),
            ..environment()
        };
        let secret = |name: &str, value: &str| Environment {
            secrets: [(name.to_string(), value.to_string())].into(),
            ..environment()
        };
        assert_eq!(
            environment_error(variable("PATH", "/opt/bin")),
            "environment.variables[\"PATH\"] shadows what the service relies on"
        );
        for name in
            ["HOME", "ANTHROPIC_BASE_URL", "AUTOPILOT_TASK_ID", "GIT_SSH_COMMAND", "CLAUDE_CONFIG_DIR", "LD_PRELOAD"]
        {
            assert_eq!(
                environment_error(secret(name, "value-123456")),
                format!("environment.secrets[{name:?}] shadows what the service relies on")
            );
        }
        for name in ["1ABC", "A-B", "", "É", "A B", &"N".repeat(MAX_VARIABLE_NAME_LEN + 1)] {
            assert_eq!(
                environment_error(variable(name, "v")),
                format!(
                    "environment.variables[{name:?}] is not a usable name: use [A-Za-z_][A-Za-z0-9_]*, at most 256 bytes"
                )
            );
        }
        assert!(validate_environment(&variable("_private9", "")).is_ok());
        assert_eq!(
            environment_error(variable("BIG", &"v".repeat(MAX_VARIABLE_VALUE_BYTES + 1))),
            "environment.variables[\"BIG\"] is 32769 bytes long; at most 32768 (32 KiB) are allowed"
        );
        assert_eq!(
            environment_error(secret("TOKEN", "abc\0defgh")),
            "environment.secrets[\"TOKEN\"] must not contain NUL characters"
        );
        assert_eq!(
            environment_error(secret("PIN", "12345")),
            "environment.secrets[\"PIN\"] is shorter than 6 bytes, too short to be masked in what the task shows"
        );
        assert!(validate_environment(&secret("EMPTY", "")).is_ok());
        assert_eq!(
            environment_error(secret("NODE_ENV", "production")),
            "environment.secrets[\"NODE_ENV\"] is also a variable; a name is either a variable or a secret"
        );
        // No error quotes a secret's value.
        for bad in [secret("PATH", "hunter2-secret"), secret("X", "hunter2-secret\0")] {
            assert!(!environment_error(bad).contains("hunter2"));
        }
    }

    #[test]
    fn a_prepared_store_is_an_http_url_a_printable_token_and_a_part_size_r2_takes() {
        let with = |url: &str, token: &str, part_bytes: u64| Environment {
            prepared_store: Some(PreparedStore { url: url.into(), token: token.into(), part_bytes }),
            ..environment()
        };
        assert!(validate_environment(&with("https://edge.example/cache/prepared", "apcc_1_2", 16 << 20)).is_ok());
        for (environment, field) in [
            (with("ftp://x", "t", 16 << 20), "environment.prepared_store.url"),
            (with("https://x", "", 16 << 20), "environment.prepared_store.token"),
            (with("https://x", "a secret-token", 16 << 20), "environment.prepared_store.token"),
            (with("https://x", "t", 1 << 20), "environment.prepared_store.part_bytes"),
            (with("https://x", "t", 1 << 30), "environment.prepared_store.part_bytes"),
        ] {
            let refused = validate_environment(&environment).unwrap_err();
            assert_eq!(refused.field, field);
            assert!(!refused.message.contains("secret-token"), "{}", refused.message);
        }
    }

    #[test]
    fn an_environment_has_at_most_a_hundred_of_each_and_a_mebibyte_in_all() {
        let many = |n: usize| (0..n).map(|i| (format!("V{i}"), "v".to_string())).collect();
        assert!(validate_environment(&Environment { variables: many(100), ..environment() }).is_ok());
        assert_eq!(
            environment_error(Environment { variables: many(101), ..environment() }),
            "environment.variables has 101 entries; at most 100 are allowed"
        );
        let secrets = (0..101).map(|i| (format!("S{i}"), "secret-value".to_string())).collect();
        assert_eq!(
            environment_error(Environment { secrets, ..environment() }),
            "environment.secrets has 101 entries; at most 100 are allowed"
        );
        let large = |n: usize| (0..n).map(|i| (format!("L{i}"), "v".repeat(MAX_VARIABLE_VALUE_BYTES))).collect();
        let error = environment_error(Environment { variables: large(40), ..environment() });
        assert!(
            error.starts_with("environment has 1310")
                && error.ends_with("at most 1048576 (1 MiB) together are allowed"),
            "{error}"
        );
    }
}
