//! Which branch names a task may commit on and push: the rules of `git check-ref-format
//! --branch`, plus what keeps a name from being read as an option or a revision expression.
//! Pure, so the rules are unit-tested here (and compared with real git's verdicts).
//!
//! Rules (for the name `N` of `refs/heads/N`):
//! - 1..=200 bytes; not "@" and not "HEAD"; does not start with "-" (it could pass as an option);
//! - no control characters, space, `~ ^ : ? * [ \`, no "..", no "@{", no "//";
//! - does not start or end with "/", does not end with ".";
//! - no component starts with "." or ends with ".lock".

/// Longest branch name accepted (git allows more; remotes and UIs often do not).
pub const MAX_BRANCH_LEN: usize = 200;

/// Checks `name` as a branch name.
///
/// # Errors
/// What is wrong with it, in words for people.
pub fn check_branch_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.len() > MAX_BRANCH_LEN {
        return Err(format!("is longer than {MAX_BRANCH_LEN} bytes"));
    }
    if name.starts_with('-') {
        return Err("starts with '-', so git could read it as an option".into());
    }
    if name == "@" || name == "HEAD" {
        return Err("names a revision, not a branch".into());
    }
    if let Some(c) = name.chars().find(|c| c.is_control() || " ~^:?*[\\".contains(*c)) {
        return Err(format!("contains {c:?}, which git does not allow in branch names"));
    }
    for (pattern, what) in [("..", "\"..\""), ("@{", "\"@{\""), ("//", "\"//\"")] {
        if name.contains(pattern) {
            return Err(format!("contains {what}, which git does not allow in branch names"));
        }
    }
    if name.starts_with('/') || name.ends_with('/') {
        return Err("starts or ends with '/'".into());
    }
    if name.ends_with('.') {
        return Err("ends with '.'".into());
    }
    if name.split('/').any(|part| part.starts_with('.') || part.ends_with(".lock")) {
        return Err("has a component starting with '.' or ending with \".lock\"".into());
    }
    Ok(())
}

/// The branch a task commits on when the request names none.
pub fn default_branch(task_id: &str) -> String {
    format!("autopilot/{task_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &[&str] = &[
        "main",
        "autopilot/7d3c0c1e-0000-4000-8000-000000000000",
        "feature/x-1",
        "fix_#12",
        "v1.2.3",
        "release+1",
        "a.b/c.d",
        "ünïcode",
        "a@b",
        "x.lockx",
    ];

    const BAD: &[&str] = &[
        "",
        "-x",
        "--force",
        "a..b",
        "refs/../x",
        "..",
        ".hidden",
        "a/.b",
        "x.lock",
        "a/b.lock/c",
        "a b",
        "a~1",
        "a^",
        "a:b",
        "a?",
        "a*",
        "a[1]",
        "a\\b",
        "a\nb",
        "a\tb",
        "a\u{7f}",
        "@",
        "a@{1}",
        "/x",
        "x/",
        "a//b",
        "x.",
        "HEAD",
    ];

    #[test]
    fn hostile_and_malformed_names_are_refused() {
        for name in BAD {
            assert!(check_branch_name(name).is_err(), "{name:?} was accepted");
        }
        assert!(check_branch_name(&"a".repeat(MAX_BRANCH_LEN + 1)).is_err());
        assert_eq!(check_branch_name("-x").unwrap_err(), "starts with '-', so git could read it as an option");
    }

    #[test]
    fn ordinary_names_pass() {
        for name in GOOD {
            assert_eq!(check_branch_name(name), Ok(()), "{name:?}");
        }
        assert_eq!(check_branch_name(&default_branch("7d3c0c1e-0000-4000-8000-000000000000")), Ok(()));
    }

    /// The rules agree with git's own syntax check of `refs/heads/<name>` (this module is stricter
    /// only where a name could pass as an option or a revision: "-x", "@", "HEAD").
    #[test]
    fn verdicts_agree_with_git_check_ref_format() {
        let git_accepts = |name: &str| {
            std::process::Command::new("git")
                .args(["check-ref-format", &format!("refs/heads/{name}")])
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .output()
                .expect("git is installed")
                .status
                .success()
        };
        for name in GOOD.iter().chain(BAD) {
            if name.is_empty() || name.starts_with('-') || *name == "HEAD" || *name == "@" {
                continue;
            }
            assert_eq!(git_accepts(name), check_branch_name(name).is_ok(), "verdicts differ on {name:?}");
        }
    }
}
