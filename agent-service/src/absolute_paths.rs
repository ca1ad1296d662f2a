//! Every path the service is given, made absolute once, at start, against the directory it was
//! started from.
//!
//! The service hands paths to child processes that run elsewhere: git runs inside the clone,
//! the agent inside it too. A relative path (`--work-dir .dev/work`, as `make dev` passes) would
//! then name a file under the clone instead of the one meant, so git could not read the commit
//! message the delivery wrote, and a relative `--claude-path` would not be found. Resolving
//! them here, before anything starts, means no other module needs to care.
//!
//! What is resolved: the configured work directory, the agent CLI and git when given as paths
//! (a bare name such as `claude` is looked up on `PATH`, as before), and the path-valued
//! variables of the service's environment that children inherit or are given (`PATH` entries,
//! `HOME`, `TMPDIR`, `SSH_AUTH_SOCK`, `CLAUDE_CONFIG_DIR`, `AUTOPILOT_GIT_SSH_KEY_FILE`).
//! Pure but for [`current_dir`] and [`resolve_environment`], so the rules are unit-tested here.

use std::{
    ffi::{OsStr, OsString},
    path::{Component, Path, PathBuf},
};

use crate::{config::Config, git_credentials::SSH_KEY_VAR};

/// Environment variables that hold one path each.
const PATH_VARIABLES: [&str; 5] = ["HOME", "TMPDIR", "SSH_AUTH_SOCK", "CLAUDE_CONFIG_DIR", SSH_KEY_VAR];

/// The directory the service was started from, which relative paths are relative to.
///
/// # Errors
/// It cannot be read (e.g. it was deleted), so no relative path can be resolved.
pub fn current_dir() -> Result<PathBuf, String> {
    std::env::current_dir().map_err(|e| {
        format!(
            "cannot read the current directory, which relative paths are taken from ({e}); \
             start the service from an existing directory"
        )
    })
}

/// `config` with its paths absolute against `cwd`.
///
/// # Errors
/// A path that is empty, so it names nothing.
pub fn resolve_config(mut config: Config, cwd: &Path) -> Result<Config, String> {
    config.work_dir = absolute(cwd, &config.work_dir).ok_or("--work-dir (AUTOPILOT_WORK_DIR) is empty")?;
    config.claude_path = program(cwd, &config.claude_path).ok_or("--claude-path (CLAUDE_CODE_PATH) is empty")?;
    config.git_path = program(cwd, &config.git_path).ok_or("--git-path (GIT_PATH) is empty")?;
    Ok(config)
}

/// The service's environment variables that name paths, each with its absolute value, for
/// those whose value changes.
pub fn environment_changes(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
    cwd: &Path,
) -> Vec<(String, OsString)> {
    let mut changes = Vec::new();
    for (name, value) in vars {
        let Some(name) = name.to_str() else { continue };
        let resolved = if name == "PATH" {
            search_path(cwd, &value)
        } else if PATH_VARIABLES.contains(&name) && !value.is_empty() {
            absolute(cwd, Path::new(&value)).map(PathBuf::into_os_string).unwrap_or_else(|| value.clone())
        } else {
            continue;
        };
        if resolved != value {
            changes.push((name.to_string(), resolved));
        }
    }
    changes
}

/// Rewrites the path-valued variables of this process's environment as absolute paths, so that
/// every child inherits them so.
///
/// Must run before any other thread starts: the environment is process-wide and not
/// synchronised ([`std::env::set_var`]).
pub fn resolve_environment(cwd: &Path) {
    for (name, value) in environment_changes(std::env::vars_os(), cwd) {
        std::env::set_var(name, value);
    }
}

/// `path` made absolute against `cwd`, with `.` components dropped; `None` for an empty path.
/// `..` is kept as written: resolving it lexically would be wrong across symbolic links.
pub fn absolute(cwd: &Path, path: &Path) -> Option<PathBuf> {
    if path.as_os_str().is_empty() {
        return None;
    }
    let joined = cwd.join(path);
    Some(joined.components().filter(|c| *c != Component::CurDir).collect())
}

/// A program to run: a bare name (no `/`) stays as it is, to be looked up on `PATH`; a path is
/// made absolute. `None` for an empty one.
pub fn program(cwd: &Path, program: &Path) -> Option<PathBuf> {
    if program.components().count() == 1 && !program.has_root() {
        return Some(program.to_path_buf());
    }
    absolute(cwd, program)
}

/// A `PATH` value with every relative entry made absolute; an empty entry means the current
/// directory, so it becomes `cwd`. Were they left relative, a program looked up from inside the
/// clone could be one the repository carries.
pub fn search_path(cwd: &Path, value: &OsStr) -> OsString {
    let entries: Vec<PathBuf> = std::env::split_paths(value)
        .map(|entry| {
            if entry.as_os_str().is_empty() {
                cwd.to_path_buf()
            } else {
                absolute(cwd, &entry).expect("the entry is not empty")
            }
        })
        .collect();
    std::env::join_paths(entries).unwrap_or_else(|_| value.to_os_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn relative_paths_become_absolute_against_the_start_directory() {
        let cwd = Path::new("/srv/autopilot");
        assert_eq!(absolute(cwd, Path::new(".dev/work")), Some("/srv/autopilot/.dev/work".into()));
        assert_eq!(absolute(cwd, Path::new("./a/./b/")), Some("/srv/autopilot/a/b".into()));
        assert_eq!(absolute(cwd, Path::new("../x")), Some("/srv/autopilot/../x".into()), "'..' is kept");
        assert_eq!(absolute(cwd, Path::new("/var/w")), Some("/var/w".into()));
        assert_eq!(absolute(cwd, Path::new("")), None);
    }

    #[test]
    fn programs_given_by_name_stay_names_and_paths_become_absolute() {
        let cwd = Path::new("/home/dev/autopilot");
        assert_eq!(program(cwd, Path::new("claude")), Some("claude".into()));
        assert_eq!(program(cwd, Path::new("git")), Some("git".into()));
        assert_eq!(
            program(cwd, Path::new("tools/node_modules/.bin/claude")),
            Some("/home/dev/autopilot/tools/node_modules/.bin/claude".into())
        );
        assert_eq!(program(cwd, Path::new("./claude")), Some("/home/dev/autopilot/claude".into()));
        assert_eq!(program(cwd, Path::new("/usr/bin/git")), Some("/usr/bin/git".into()));
        assert_eq!(program(cwd, Path::new("")), None);
    }

    #[test]
    fn the_config_is_resolved_as_a_whole() {
        let config = Config::parse_from([
            "agent-service",
            "--work-dir",
            ".dev/work",
            "--claude-path",
            "tools/node_modules/.bin/claude",
        ]);
        let resolved = resolve_config(config, Path::new("/repo")).unwrap();
        assert_eq!(resolved.work_dir, PathBuf::from("/repo/.dev/work"));
        assert_eq!(resolved.claude_path, PathBuf::from("/repo/tools/node_modules/.bin/claude"));
        assert_eq!(resolved.git_path, PathBuf::from("git"));
        let mut empty = Config::parse_from(["agent-service"]);
        empty.work_dir = PathBuf::new(); // clap itself refuses an empty path; a library caller may not
        assert_eq!(resolve_config(empty, Path::new("/repo")).unwrap_err(), "--work-dir (AUTOPILOT_WORK_DIR) is empty");
    }

    #[test]
    fn path_valued_variables_are_resolved_and_others_left_alone() {
        let vars = [
            ("PATH", "/usr/bin::bin:./tools"),
            ("HOME", "home"),
            ("TMPDIR", "/tmp"),
            (SSH_KEY_VAR, "keys/deploy"),
            ("CLAUDE_CONFIG_DIR", ""),
            ("ANTHROPIC_BASE_URL", "relative/looking"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let changes = environment_changes(vars, Path::new("/start"));
        assert_eq!(
            changes,
            [
                ("PATH".to_string(), OsString::from("/usr/bin:/start:/start/bin:/start/tools")),
                ("HOME".to_string(), OsString::from("/start/home")),
                (SSH_KEY_VAR.to_string(), OsString::from("/start/keys/deploy")),
            ]
        );
    }
}
