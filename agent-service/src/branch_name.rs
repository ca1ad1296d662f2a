//! Which branch names a task may commit on and push: the rules of `git check-ref-format
//! --branch`, plus what keeps a name from being read as an option or a revision expression.
//! Pure, so the rules are unit-tested here (and compared with real git's verdicts).
//!
//! Rules (for the name `N` of `refs/heads/N`):
//! - 1..=200 bytes; not "@" and not "HEAD"; does not start with "-" (it could pass as an option);
//! - no control characters, space, `~ ^ : ? * [ \`, no "..", no "@{", no "//";
//! - no invisible Unicode format characters (general category Cf: bidi controls such as U+202E,
//!   zero-width spaces and joiners) and no other whitespace (no-break spaces, line separators):
//!   git accepts them, but they make a name show as another in every UI that shows the branch;
//! - does not start or end with "/", does not end with ".";
//! - no component starts with "." or ends with ".lock".

/// Longest branch name accepted (git allows more; remotes and UIs often do not).
pub const MAX_BRANCH_LEN: usize = 200;

/// Checks `name` as a branch name.
///
/// # Errors
/// What is wrong with it, in words for people.
pub fn check_branch_name(name: &str) -> Result<(), String> {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

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
    if let Some(c) = name.chars().find(|c| c.general_category() == GeneralCategory::Format) {
        return Err(format!(
            "contains {c:?}, an invisible formatting character (Unicode category Cf) that would disguise the name"
        ));
    }
    if let Some(c) = name.chars().find(|c| c.is_whitespace()) {
        return Err(format!("contains the whitespace {c:?}, which would disguise the name"));
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
        "功能/修复",
        "fix/🚀",
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

    /// Names git accepts but that would show as another name: invisible format characters and
    /// whitespace other than the ASCII space git refuses itself.
    const DISGUISED: &[&str] = &[
        "main\u{202e}exe.txt",  // RIGHT-TO-LEFT OVERRIDE
        "fix\u{2066}x\u{2069}", // LEFT-TO-RIGHT ISOLATE ... POP DIRECTIONAL ISOLATE
        "a\u{200b}b",           // ZERO WIDTH SPACE
        "a\u{200d}b",           // ZERO WIDTH JOINER
        "\u{feff}main",         // BYTE ORDER MARK
        "a\u{00ad}b",           // SOFT HYPHEN
        "a\u{200e}",            // LEFT-TO-RIGHT MARK
        "a\u{00a0}b",           // NO-BREAK SPACE
        "a\u{2028}b",           // LINE SEPARATOR
        "a\u{3000}b",           // IDEOGRAPHIC SPACE
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
    fn names_that_would_show_as_another_are_refused() {
        for name in DISGUISED {
            assert!(check_branch_name(name).is_err(), "{name:?} was accepted");
        }
        assert_eq!(
            check_branch_name("main\u{202e}exe.txt").unwrap_err(),
            "contains '\\u{202e}', an invisible formatting character (Unicode category Cf) that would disguise the name"
        );
        assert_eq!(
            check_branch_name("a\u{a0}b").unwrap_err(),
            "contains the whitespace '\\u{a0}', which would disguise the name"
        );
    }

    #[test]
    fn ordinary_names_pass() {
        for name in GOOD {
            assert_eq!(check_branch_name(name), Ok(()), "{name:?}");
        }
        assert_eq!(check_branch_name(&default_branch("7d3c0c1e-0000-4000-8000-000000000000")), Ok(()));
    }

    /// The rules agree with git's own syntax check of `refs/heads/<name>` (this module is stricter
    /// only where a name could pass as an option or a revision: "-x", "@", "HEAD", or as another
    /// name: [`DISGUISED`]).
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
        for name in DISGUISED {
            assert!(git_accepts(name), "git itself accepts {name:?}: refusing it is this module's job");
        }
    }
}
