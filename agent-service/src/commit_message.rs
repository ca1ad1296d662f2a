//! The message of the commit a task makes: a subject from the prompt's first line, then the
//! prompt and the agent's summary (each capped), then a trailer naming the task, so a reviewer
//! sees what was asked and what the agent says it did. Pure.

/// Longest subject line, in characters (git's and forges' conventional width).
pub const SUBJECT_MAX_CHARS: usize = 72;
/// Most bytes of the prompt, and of the summary, quoted in the body.
pub const SECTION_MAX_BYTES: usize = 4000;

/// The commit message for a task asked `prompt`, whose agent answered `summary`.
pub fn commit_message(prompt: &str, summary: &str, task_id: &str) -> String {
    let first_line = prompt.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("Changes by autopilot");
    let first_line: String = first_line.chars().filter(|c| !c.is_control() || *c == '\t').collect();
    let subject = first_line.split_whitespace().collect::<Vec<_>>().join(" ");
    let subject = if subject.chars().count() > SUBJECT_MAX_CHARS {
        let cut: String = subject.chars().take(SUBJECT_MAX_CHARS - 3).collect();
        format!("{}...", cut.trim_end())
    } else {
        subject
    };
    let mut message = format!("{subject}\n\nPrompt:\n\n{}\n", section(prompt));
    let summary = section(summary);
    if !summary.is_empty() {
        message.push_str(&format!("\nSummary:\n\n{summary}\n"));
    }
    message.push_str(&format!("\nAutopilot-Task: {task_id}\n"));
    message
}

/// `text` trimmed, without NULs (git refuses them) or trailing spaces on lines, cut at
/// [`SECTION_MAX_BYTES`].
fn section(text: &str) -> String {
    let text = text.replace('\0', "");
    let text = text.trim();
    let text = if text.len() > SECTION_MAX_BYTES {
        let mut end = SECTION_MAX_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}\n[... cut at {SECTION_MAX_BYTES} bytes]", &text[..end])
    } else {
        text.to_string()
    };
    text.lines().map(str::trim_end).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_prompt_summary_and_trailer() {
        let message = commit_message("\n  Fix the   failing test\n# in src/lib.rs\n", "Fixed it.  \n", "t-1");
        assert_eq!(
            message,
            "Fix the failing test\n\nPrompt:\n\nFix the   failing test\n# in src/lib.rs\n\nSummary:\n\nFixed it.\n\n\
             Autopilot-Task: t-1\n"
        );
    }

    #[test]
    fn long_subjects_and_sections_are_cut_on_character_boundaries() {
        let message = commit_message(&"é".repeat(5000), "", "t");
        let subject = message.lines().next().unwrap();
        assert_eq!(subject.chars().count(), SUBJECT_MAX_CHARS);
        assert!(subject.ends_with("..."));
        assert!(message.contains("[... cut at 4000 bytes]"));
        assert!(!message.contains("Summary:"), "no summary section without a summary");
        assert!(!commit_message("a\0b", "", "t").contains('\0'));
    }
}
