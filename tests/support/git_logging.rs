//! A `git` that logs its command line before it runs the real git: put its directory first on
//! the service's PATH and a test holds what the service's git was given, e.g. the git credential
//! a task got for the edge's git gateway, to try with it what the gateway must refuse.

use std::{path::Path, process::Command};

/// A directory holding the logging `git`, and the log it appends to.
pub fn git_logging_wrapper() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("git-calls.log");
    let real = Command::new("sh").args(["-c", "command -v git"]).output().unwrap();
    let real = String::from_utf8(real.stdout).unwrap().trim().to_string();
    let script = format!("#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{real}' \"$@\"\n", log.display());
    let wrapper = dir.path().join("git");
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    (dir, log)
}

/// The git credentials (`apgc_...`) logged so far, in the order first used.
pub fn git_credentials_used(log: &Path) -> Vec<String> {
    let log = std::fs::read_to_string(log).unwrap_or_default();
    let mut found: Vec<String> = Vec::new();
    for word in log.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("apgc_") && !found.iter().any(|f| f == word) {
            found.push(word.to_string());
        }
    }
    found
}
