//! What a task's pull request says: its title, its description, and the comment a later turn
//! leaves on it instead of opening another, each made from the task (what was asked, the agent's
//! final answer, the files changed with their +/- counts, a link to the task's timeline), with
//! secrets masked and every part capped so GitHub's 65,536-character body limit is never hit.
//! Pure: the object opens the pull request with these (`container/pull_requests.rs`).

use autopilot_contract::v1::{Diff, FileChangeStatus};

/// Longest title GitHub shows whole, in bytes (the contract's cap on an asked-for title).
pub const TITLE_MAX_BYTES: usize = 256;
/// Most bytes of the prompt, and of the agent's answer, quoted.
const SECTION_MAX_BYTES: usize = 8_000;
/// Most files listed; the rest are counted.
const FILES_LISTED: usize = 100;

/// The task a pull request or comment speaks of.
pub struct TaskReport<'a> {
    pub task_id: &'a str,
    /// What was asked (the whole prompt, or its first line when only that was kept).
    pub prompt: &'a str,
    /// The agent's final answer.
    pub result: &'a str,
    pub diff: Option<&'a Diff>,
    /// The task's page (`PUBLIC_ORIGIN/tasks/<id>`), when the edge knows its origin.
    pub timeline_url: Option<String>,
    /// Masked wherever they appear (keys and tokens the edge holds).
    pub secrets: &'a [&'a str],
}

/// The title: the one asked for, else the prompt's first line, cut to [`TITLE_MAX_BYTES`].
pub fn title(asked: &str, prompt: &str, secrets: &[&str]) -> String {
    let line = if asked.trim().is_empty() {
        prompt.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("Changes by autopilot")
    } else {
        asked.trim()
    };
    let line: String = line.chars().filter(|c| !c.is_control()).collect();
    let line = mask(&line, secrets);
    let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.len() <= TITLE_MAX_BYTES {
        return line;
    }
    format!("{}...", cut(&line, TITLE_MAX_BYTES - 3).trim_end())
}

/// The description of the pull request a task opens.
pub fn description(report: &TaskReport) -> String {
    let mut body = format!("{}\n\n{}", section("Asked", report.prompt, report), section("Done", report.result, report));
    body.push_str(&files_changed(report.diff));
    body.push_str(&footer(report));
    body
}

/// The comment a later turn of the conversation leaves on the pull request already open.
pub fn follow_up_comment(report: &TaskReport) -> String {
    let mut body = format!(
        "A follow-up pushed to this branch.\n\n{}\n\n{}",
        section("Asked", report.prompt, report),
        section("Done", report.result, report)
    );
    body.push_str(&files_changed(report.diff));
    body.push_str(&footer(report));
    body
}

fn section(heading: &str, text: &str, report: &TaskReport) -> String {
    let text = mask(text.trim(), report.secrets);
    let text = if text.is_empty() { "(nothing)".to_string() } else { text };
    let text = match text.len() > SECTION_MAX_BYTES {
        true => format!("{}\n\n[... cut at {SECTION_MAX_BYTES} bytes]", cut(&text, SECTION_MAX_BYTES)),
        false => text,
    };
    format!("### {heading}\n\n{}", quote(&text))
}

/// `text` as a Markdown block quote, so its own headings and lists stay inside it.
fn quote(text: &str) -> String {
    text.lines()
        .map(|line| if line.is_empty() { ">".to_string() } else { format!("> {line}") })
        .collect::<Vec<_>>()
        .join("\n")
}

fn files_changed(diff: Option<&Diff>) -> String {
    let Some(diff) = diff.filter(|d| !d.files.is_empty()) else { return String::new() };
    let stats = diff.stats.unwrap_or_default();
    let mut text = format!(
        "\n\n### Files changed ({} files, +{} -{})\n\n",
        stats.files_changed, stats.insertions, stats.deletions
    );
    for file in diff.files.iter().take(FILES_LISTED) {
        let path = match file.old_path.is_empty() {
            true => code(&file.path),
            false => format!("{} → {}", code(&file.old_path), code(&file.path)),
        };
        let counts = match file.binary {
            true => "binary".to_string(),
            false => format!("+{} -{}", file.insertions, file.deletions),
        };
        let status = match FileChangeStatus::try_from(file.status) {
            Ok(FileChangeStatus::Added) => " (added)",
            Ok(FileChangeStatus::Deleted) => " (deleted)",
            _ => "",
        };
        text.push_str(&format!("- {path} {counts}{status}\n"));
    }
    let listed = diff.files.len().min(FILES_LISTED);
    let unlisted = (stats.files_changed as usize).max(diff.files.len()).saturating_sub(listed);
    if unlisted > 0 {
        text.push_str(&format!("- and {unlisted} more\n"));
    }
    text.trim_end().to_string()
}

/// A path as inline code; a backtick in it is kept by a longer fence.
fn code(path: &str) -> String {
    match path.contains('`') {
        true => format!("`` {path} ``"),
        false => format!("`{path}`"),
    }
}

fn footer(report: &TaskReport) -> String {
    let task = match &report.timeline_url {
        Some(url) => format!("[task {}]({url})", report.task_id),
        None => format!("task {}", report.task_id),
    };
    format!("\n\n---\nOpened by autopilot from {task}. Autopilot-Task: {}", report.task_id)
}

/// `text` with each secret (8 bytes or longer) replaced by `***`.
pub fn mask(text: &str, secrets: &[&str]) -> String {
    secrets.iter().filter(|s| s.len() >= 8).fold(text.to_string(), |text, secret| text.replace(secret, "***"))
}

/// At most `max` bytes of `text`, cut on a character boundary.
pub fn cut(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use autopilot_contract::v1::{DiffStats, FileDiff};

    use super::*;

    fn diff() -> Diff {
        let file = |path: &str, old_path: &str, status: FileChangeStatus, insertions, deletions| FileDiff {
            path: path.into(),
            old_path: old_path.into(),
            status: status as i32,
            insertions,
            deletions,
            ..Default::default()
        };
        Diff {
            stats: Some(DiffStats { files_changed: 3, insertions: 12, deletions: 4 }),
            files: vec![
                file("src/lib.rs", "", FileChangeStatus::Modified, 10, 4),
                file("NOTES.md", "", FileChangeStatus::Added, 2, 0),
                file("src/new.rs", "src/old.rs", FileChangeStatus::Renamed, 0, 0),
            ],
            ..Default::default()
        }
    }

    fn report<'a>(diff: Option<&'a Diff>, secrets: &'a [&'a str]) -> TaskReport<'a> {
        TaskReport {
            task_id: "t-1",
            prompt: "Fix the parser\n\nIt fails on sk-ant-secret-123 keys",
            result: "## Fixed\nThe parser now accepts them.",
            diff,
            timeline_url: Some("https://autopilot.example/tasks/t-1".into()),
            secrets,
        }
    }

    #[test]
    fn the_description_says_what_was_asked_what_was_done_and_what_changed_with_a_link_back() {
        let diff = diff();
        let body = description(&report(Some(&diff), &["sk-ant-secret-123"]));
        assert!(body.starts_with("### Asked\n\n> Fix the parser\n>\n> It fails on *** keys"), "{body}");
        assert!(body.contains("### Done\n\n> ## Fixed\n> The parser now accepts them."), "{body}");
        assert!(body.contains("### Files changed (3 files, +12 -4)"), "{body}");
        assert!(body.contains("- `src/lib.rs` +10 -4\n- `NOTES.md` +2 -0 (added)\n- `src/old.rs` → `src/new.rs` +0 -0"));
        assert!(body.ends_with(
            "Opened by autopilot from [task t-1](https://autopilot.example/tasks/t-1). Autopilot-Task: t-1"
        ));
        assert!(!body.contains("sk-ant-secret-123"));
    }

    #[test]
    fn a_follow_ups_comment_says_it_pushed_to_the_branch() {
        let comment = follow_up_comment(&TaskReport { timeline_url: None, ..report(None, &[]) });
        assert!(comment.starts_with("A follow-up pushed to this branch.\n\n### Asked"), "{comment}");
        assert!(!comment.contains("Files changed"), "no diff, no list");
        assert!(comment.ends_with("from task t-1. Autopilot-Task: t-1"), "{comment}");
    }

    #[test]
    fn titles_come_from_the_request_or_the_prompts_first_line_and_fit() {
        assert_eq!(title("", "\n  Fix   the parser \nmore", &[]), "Fix the parser");
        assert_eq!(title(" Parser fix ", "Fix the parser", &[]), "Parser fix");
        assert_eq!(title("", "   ", &[]), "Changes by autopilot");
        assert_eq!(title("", "use key sk-ant-secret-123", &["sk-ant-secret-123"]), "use key ***");
        let long = title("", &"é".repeat(400), &[]);
        assert!(long.len() <= TITLE_MAX_BYTES && long.ends_with("..."), "{long}");
    }

    #[test]
    fn long_answers_and_many_files_stay_far_below_githubs_body_limit() {
        let many = Diff {
            stats: Some(DiffStats { files_changed: 5_000, insertions: 5_000, deletions: 0 }),
            files: (0..500)
                .map(|i| FileDiff { path: format!("f/{i}.txt"), insertions: 1, ..Default::default() })
                .collect(),
            ..Default::default()
        };
        let huge = "x".repeat(200_000);
        let body = description(&TaskReport { prompt: &huge, result: &huge, ..report(Some(&many), &[]) });
        assert!(body.len() < 30_000, "{} bytes", body.len());
        assert!(body.contains("[... cut at 8000 bytes]"));
        assert!(body.contains("- and 4900 more"));
    }
}
