//! Which prepared workspace a task may start from, and where prepared workspaces live. Pure.
//!
//! A prepared workspace is a copy of a workspace right after its environment's setup script
//! succeeded on a fresh clone ([`crate::prepared_workspaces`] keeps and hands them out). A task
//! may start from one only if nothing that shaped it differs, so its key is the SHA-256 of: the
//! repository as people read it ([`crate::repo_url::normalized`]: credentials, a trailing `/` or
//! `.git`, the case of scheme and host aside), the setup script, the maintenance script, the
//! variables, the secrets and the environment's revision (the edge's count of edits and
//! resets). The ref is not in it: a task fetches and checks out its own ref on the copy. Each
//! part is length-prefixed, so no two different environments give the same bytes to hash. The
//! key is a directory name; nothing of a secret can be read back from it.
//!
//! Under `<work_dir>/prepared/`: `<key>/` is a prepared workspace; `.incoming-<id>` (one being
//! written) and `.outgoing-<id>` (one being removed) are the others, left only by a service that
//! stopped halfway, and removed at start ([`is_leftover`]).

use std::{
    path::{Path, PathBuf},
    time::SystemTime,
};

use sha2::{Digest, Sha256};

use crate::{repo_url::normalized, spec::EnvironmentSpec};

/// The directory under the work directory holding the prepared workspaces.
pub const PREPARED_DIR: &str = "prepared";
/// Most prepared workspaces kept; the least recently used go first. Each holds a clone and what
/// its setup installed (often hundreds of MiB), for one repository and environment.
pub const MAX_PREPARED: usize = 5;
/// What a key is made of, and in which version of this scheme.
const KEY_DOMAIN: &[u8] = b"autopilot prepared workspace v1";

const INCOMING_PREFIX: &str = ".incoming-";
const OUTGOING_PREFIX: &str = ".outgoing-";

/// The key of the workspace `environment` prepares for the repository at `repository_url`: 64
/// lowercase hex digits.
pub fn key(repository_url: &str, environment: &EnvironmentSpec) -> String {
    let mut hash = Sha256::new();
    let mut part = |bytes: &[u8]| {
        hash.update((bytes.len() as u64).to_be_bytes());
        hash.update(bytes);
    };
    part(KEY_DOMAIN);
    part(normalized(repository_url).as_bytes());
    part(environment.setup_script.as_bytes());
    part(environment.maintenance_script.as_bytes());
    part(&environment.revision.to_be_bytes());
    for map in [&environment.variables, &environment.secrets] {
        part(&(map.len() as u64).to_be_bytes());
        for (name, value) in map {
            part(name.as_bytes());
            part(value.as_bytes());
        }
    }
    hash.finalize().iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Whether `name` is a key (and so a prepared workspace's directory name).
pub fn is_key(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The prepared workspace of `key` under `root` (`<work_dir>/prepared`).
pub fn workspace_dir(root: &Path, key: &str) -> PathBuf {
    root.join(key)
}

/// Where a new prepared workspace is written before it takes its key's place; `id` is unique.
pub fn incoming_dir(root: &Path, id: &str) -> PathBuf {
    root.join(format!("{INCOMING_PREFIX}{id}"))
}

/// Where a replaced or evicted prepared workspace goes to be removed; `id` is unique.
pub fn outgoing_dir(root: &Path, id: &str) -> PathBuf {
    root.join(format!("{OUTGOING_PREFIX}{id}"))
}

/// Whether `name`, under the prepared root, is what a service that stopped halfway left.
pub fn is_leftover(name: &str) -> bool {
    name.starts_with(INCOMING_PREFIX) || name.starts_with(OUTGOING_PREFIX)
}

/// The keys to evict among `kept` (each with when it was last used), so that at most `max`
/// stay: the least recently used.
pub fn to_evict(mut kept: Vec<(String, SystemTime)>, max: usize) -> Vec<String> {
    kept.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    kept.into_iter().skip(max).map(|(key, _)| key).collect()
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, time::Duration};

    use super::*;

    fn environment() -> EnvironmentSpec {
        EnvironmentSpec {
            name: "web".into(),
            setup_script: "npm ci".into(),
            maintenance_script: "npm install".into(),
            variables: [("NODE_ENV".to_string(), "test".to_string())].into(),
            secrets: [("NPM_TOKEN".to_string(), "npm_0123456789".to_string())].into(),
            setup_timeout: Duration::from_secs(600),
            revision: 1,
            prepared_store: None,
        }
    }

    const URL: &str = "https://github.com/acme/web.git";

    #[test]
    fn the_key_is_the_same_for_the_same_repository_as_people_read_it() {
        let base = key(URL, &environment());
        assert!(is_key(&base), "{base}");
        for same in ["https://GitHub.com/acme/web", "https://x-access-token:t0ken@github.com/acme/web/", URL] {
            assert_eq!(key(same, &environment()), base, "{same}");
        }
        let other_name = EnvironmentSpec { name: "renamed".into(), ..environment() };
        let other_timeout = EnvironmentSpec { setup_timeout: Duration::from_secs(5), ..environment() };
        assert_eq!(key(URL, &other_name), base, "the name and time limit shape no workspace");
        assert_eq!(key(URL, &other_timeout), base);
    }

    #[test]
    fn whatever_shapes_the_workspace_changes_the_key() {
        let base = key(URL, &environment());
        let variables = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let changed = [
            key("https://github.com/acme/api.git", &environment()),
            key(URL, &EnvironmentSpec { setup_script: "npm ci ".into(), ..environment() }),
            key(URL, &EnvironmentSpec { maintenance_script: String::new(), ..environment() }),
            key(URL, &EnvironmentSpec { revision: 2, ..environment() }),
            key(URL, &EnvironmentSpec { variables: variables(&[("NODE_ENV", "prod")]), ..environment() }),
            key(URL, &EnvironmentSpec { secrets: variables(&[("NPM_TOKEN", "npm_other_token")]), ..environment() }),
            // The same texts in other places: a variable moved to the secrets, a script's end
            // moved to the next script.
            key(
                URL,
                &EnvironmentSpec {
                    variables: BTreeMap::new(),
                    secrets: variables(&[("NODE_ENV", "test"), ("NPM_TOKEN", "npm_0123456789")]),
                    ..environment()
                },
            ),
            key(
                URL,
                &EnvironmentSpec {
                    setup_script: "npm".into(),
                    maintenance_script: " cinpm install".into(),
                    ..environment()
                },
            ),
        ];
        for (i, other) in changed.iter().enumerate() {
            assert_ne!(other, &base, "change {i}");
        }
        assert!(!base.contains("npm_0123456789"));
    }

    #[test]
    fn names_under_the_prepared_root() {
        let root = Path::new("/w/prepared");
        let key = "a".repeat(64);
        assert_eq!(workspace_dir(root, &key), Path::new("/w/prepared").join(&key));
        let incoming = incoming_dir(root, "1234");
        let outgoing = outgoing_dir(root, "1234");
        for leftover in [&incoming, &outgoing] {
            let name = leftover.file_name().unwrap().to_str().unwrap();
            assert!(is_leftover(name) && !is_key(name), "{name}");
        }
        assert!(!is_leftover(&key));
        for not_a_key in ["A".repeat(64), "a".repeat(63), "g".repeat(64), String::new()] {
            assert!(!is_key(&not_a_key), "{not_a_key}");
        }
    }

    #[test]
    fn the_least_recently_used_are_evicted() {
        let at = |secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        let kept = vec![("old".to_string(), at(10)), ("new".to_string(), at(30)), ("mid".to_string(), at(20))];
        assert_eq!(to_evict(kept.clone(), 2), ["old"]);
        assert_eq!(to_evict(kept.clone(), 1), ["mid", "old"]);
        assert!(to_evict(kept, 3).is_empty());
    }
}
