//! Real git repositories for the tests: a bare repository served over file://, with a `main`
//! branch, a `feature` branch and a `v1` tag, built with the real git CLI.

use std::{path::Path, process::Command};

use tempfile::TempDir;

/// A bare repository in a temporary directory.
pub struct GitFixture {
    dir: TempDir,
}

/// Runs git in `cwd` and returns its trimmed stdout; panics (with git's message) if it fails.
pub fn git(cwd: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=Fixture", "-c", "user.email=fixture@example.invalid", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("running git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl GitFixture {
    pub fn new() -> GitFixture {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        git(&work, &["init", "-q"]);
        std::fs::write(work.join("README.md"), "# Demo\n").unwrap();
        std::fs::write(work.join("main.rs"), "fn main() {}\n").unwrap();
        git(&work, &["add", "."]);
        git(&work, &["commit", "-qm", "first"]);
        git(&work, &["tag", "v1"]);
        git(&work, &["checkout", "-qb", "feature"]);
        std::fs::write(work.join("FEATURE.md"), "feature work\n").unwrap();
        git(&work, &["add", "."]);
        git(&work, &["commit", "-qm", "feature"]);
        git(&work, &["checkout", "-q", "main"]);
        git(dir.path(), &["clone", "-q", "--bare", "work", "repo.git"]);
        GitFixture { dir }
    }

    /// The file:// URL of the bare repository.
    pub fn url(&self) -> String {
        format!("file://{}", self.dir.path().join("repo.git").display())
    }

    /// The commit id `rev` names in the repository.
    pub fn rev_parse(&self, rev: &str) -> String {
        git(&self.dir.path().join("repo.git"), &["rev-parse", rev])
    }

    /// The bare repository's directory.
    pub fn bare_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("repo.git")
    }

    /// Whether the repository has the branch `name`.
    pub fn has_branch(&self, name: &str) -> bool {
        Command::new("git")
            .args(["show-ref", "--verify", "--quiet", &format!("refs/heads/{name}")])
            .current_dir(self.bare_dir())
            .status()
            .expect("running git")
            .success()
    }

    /// Installs an executable hook (e.g. `pre-receive`) running the shell `script`.
    pub fn install_hook(&self, name: &str, script: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.bare_dir().join("hooks").join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

impl Default for GitFixture {
    fn default() -> Self {
        Self::new()
    }
}
