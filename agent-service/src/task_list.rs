//! The task list of ListTasks, as pure rules: what a task's summary shows (its title is the
//! prompt's first line), the order tasks are listed in (newest first by create time, ties by task
//! id), which tasks a page holds, and the page token that continues a list. It exists so that
//! paging is decided (and unit-tested) in one place, apart from the task manager that owns the
//! tasks, the validation that reads a client's page token ([`crate::validate`]), and the
//! transports that serve it. Pure: no I/O.
//!
//! A page token names the last task a page showed (its create time and id), not an offset, so the
//! next page starts right after that task even when tasks were started or evicted in between.
//! Its text is the URL-safe base64 of `v1:<seconds>:<nanos>:<task id>`: opaque to clients, and
//! [`Position::from_token`] takes back only what [`Position::token`] makes.

use std::cmp::Reverse;

use autopilot_contract::v1::{ListTasksResponse, Task as TaskSnapshot, TaskSummary};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};

pub use autopilot_contract::task_list::{title, MAX_TITLE_CHARS};

/// What a page token encodes before base64, ahead of its fields: the version of its form.
const TOKEN_VERSION: &str = "v1";

/// Where a task stands in the list: tasks are listed by descending position.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    seconds: i64,
    nanos: i32,
    task_id: String,
}

impl Position {
    /// The position of the task `summary` describes (a task without a create time sorts oldest).
    pub fn of(summary: &TaskSummary) -> Position {
        let (seconds, nanos) = summary.create_time.map_or((0, 0), |t| (t.seconds, t.nanos));
        Position { seconds, nanos, task_id: summary.task_id.clone() }
    }

    /// The task id this position names.
    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// The page token that continues a list after this position.
    pub fn token(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{TOKEN_VERSION}:{}:{}:{}", self.seconds, self.nanos, self.task_id))
    }

    /// The position a token made by [`Position::token`] names; `None` for any other text
    /// (garbage, another form, another encoding of the same fields). The task id is not checked
    /// here: [`crate::validate`] holds it to the rule every task id follows.
    pub fn from_token(token: &str) -> Option<Position> {
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
        let mut fields = text.splitn(4, ':');
        if fields.next()? != TOKEN_VERSION {
            return None;
        }
        let seconds = fields.next()?.parse().ok()?;
        let nanos = fields.next()?.parse().ok()?;
        let position = Position { seconds, nanos, task_id: fields.next()?.to_string() };
        // Only the service's own spelling: no "+1", "01", padding or other base64 alphabet.
        if !(0..1_000_000_000).contains(&nanos) || position.token() != token {
            return None;
        }
        Some(position)
    }
}

/// Which page to list: at most `size` tasks, after `after` (from the newest when `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub size: usize,
    pub after: Option<Position>,
}

/// The page `request` asks for out of every task's summary (in any order): newest first, and a
/// next page token when more tasks follow it.
pub fn page(summaries: impl IntoIterator<Item = TaskSummary>, request: &PageRequest) -> ListTasksResponse {
    let mut listed: Vec<(Position, TaskSummary)> = summaries
        .into_iter()
        .map(|summary| (Position::of(&summary), summary))
        .filter(|(position, _)| request.after.as_ref().is_none_or(|after| position < after))
        .collect();
    listed.sort_by(|a, b| Reverse(&a.0).cmp(&Reverse(&b.0)));
    let more = listed.len() > request.size;
    listed.truncate(request.size);
    let next_page_token = match listed.last() {
        Some((position, _)) if more => position.token(),
        _ => String::new(),
    };
    ListTasksResponse { tasks: listed.into_iter().map(|(_, summary)| summary).collect(), next_page_token }
}

/// The summary of a task, from its snapshot and its title ([`title`]).
pub fn summary(task: &TaskSnapshot, title: &str) -> TaskSummary {
    let delivery = task.delivery.as_ref();
    TaskSummary {
        task_id: task.task_id.clone(),
        state: task.state,
        repository_url: task.repository_url.clone(),
        git_ref: task.git_ref.clone(),
        title: title.to_string(),
        create_time: task.create_time,
        end_time: task.end_time,
        usage: task.usage,
        branch: delivery.map(|d| d.branch.clone()).unwrap_or_default(),
        commit: delivery.map(|d| d.commit.clone()).unwrap_or_default(),
        parent_task_id: task.parent_task_id.clone(),
        pull_request: delivery.and_then(|d| d.pull_request.clone()),
    }
}

#[cfg(test)]
mod tests {
    use autopilot_contract::v1::Delivery;
    use pbjson_types::Timestamp;

    use super::*;

    fn task(id: &str, seconds: i64) -> TaskSummary {
        TaskSummary { task_id: id.into(), create_time: Some(Timestamp { seconds, nanos: 0 }), ..Default::default() }
    }

    fn ids(response: &ListTasksResponse) -> Vec<&str> {
        response.tasks.iter().map(|t| t.task_id.as_str()).collect()
    }

    fn all_pages(tasks: &[TaskSummary], size: usize) -> Vec<Vec<String>> {
        let mut pages = Vec::new();
        let mut after = None;
        loop {
            let response = page(tasks.to_vec(), &PageRequest { size, after });
            pages.push(ids(&response).iter().map(|id| id.to_string()).collect());
            if response.next_page_token.is_empty() {
                return pages;
            }
            after = Some(Position::from_token(&response.next_page_token).expect("the service's own token"));
        }
    }

    #[test]
    fn newest_first_ties_by_task_id_and_pages_continue_after_the_last_shown() {
        let tasks = [task("a", 10), task("c", 30), task("b", 20), task("e", 20), task("d", 20)];
        let first = page(tasks.to_vec(), &PageRequest { size: 2, after: None });
        assert_eq!(ids(&first), ["c", "e"]);
        assert!(!first.next_page_token.is_empty());
        assert_eq!(all_pages(&tasks, 2), [vec!["c", "e"], vec!["d", "b"], vec!["a"]]);
        assert_eq!(all_pages(&tasks, 100), [vec!["c", "e", "d", "b", "a"]]);
    }

    #[test]
    fn the_last_page_has_no_token_even_when_it_is_full() {
        let tasks = [task("a", 1), task("b", 2)];
        assert_eq!(all_pages(&tasks, 2), [vec!["b", "a"]]);
        assert_eq!(all_pages(&tasks, 1), [vec!["b"], vec!["a"]]);
        assert_eq!(all_pages(&[], 20), [Vec::<String>::new()]);
    }

    #[test]
    fn a_token_survives_tasks_added_and_evicted_since() {
        let tasks = vec![task("a", 1), task("b", 2), task("c", 3)];
        let first = page(tasks.clone(), &PageRequest { size: 2, after: None });
        assert_eq!(ids(&first), ["c", "b"]);
        // A newer task started, and "b" (the last one shown) was evicted: the list goes on at "a".
        let now = vec![task("a", 1), task("c", 3), task("d", 4)];
        let after = Position::from_token(&first.next_page_token);
        let next = page(now, &PageRequest { size: 2, after });
        assert_eq!(ids(&next), ["a"]);
        assert!(next.next_page_token.is_empty());
    }

    #[test]
    fn only_tokens_the_service_made_are_taken_back() {
        let position = Position::of(&TaskSummary {
            task_id: "3f2c8a4e-9b1d-4e6f-8a2b-1c3d5e7f9a0b".into(),
            create_time: Some(Timestamp { seconds: 1_760_000_000, nanos: 123_456_789 }),
            ..Default::default()
        });
        let token = position.token();
        assert!(token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{token}");
        assert_eq!(Position::from_token(&token), Some(position));
        let forged = |text: &str| URL_SAFE_NO_PAD.encode(text);
        for bad in [
            String::new(),
            "xyz".into(),
            "a".repeat(10_000),
            format!("{token}="),
            token.to_lowercase(),
            forged("v2:1:2:id"),
            forged("v1:1:2"),
            forged("v1:x:2:id"),
            forged("v1:+1:2:id"),
            forged("v1:01:2:id"),
            forged("v1:1:1000000000:id"),
            forged("v1:1:-1:id"),
            base64::engine::general_purpose::STANDARD.encode("v1:1:2:id?>>"),
        ] {
            assert_eq!(Position::from_token(&bad), None, "{bad:?}");
        }
        assert!(Position::from_token(&forged("v1:-5:0:x")).is_some(), "the shape is the service's own");
    }

    #[test]
    fn a_summary_shows_the_task_and_what_it_delivered() {
        let snapshot = TaskSnapshot {
            task_id: "t1".into(),
            state: 4,
            repository_url: "https://***@example.com/r.git".into(),
            git_ref: "main".into(),
            commit: "base".into(),
            create_time: Some(Timestamp { seconds: 5, nanos: 0 }),
            end_time: Some(Timestamp { seconds: 9, nanos: 0 }),
            delivery: Some(Delivery {
                base_commit: "base".into(),
                branch: "autopilot/t1".into(),
                commit: "head".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let summary = summary(&snapshot, "Fix the bug");
        assert_eq!((summary.task_id.as_str(), summary.state, summary.title.as_str()), ("t1", 4, "Fix the bug"));
        assert_eq!(
            (summary.repository_url.as_str(), summary.git_ref.as_str()),
            (snapshot.repository_url.as_str(), "main")
        );
        assert_eq!((summary.branch.as_str(), summary.commit.as_str()), ("autopilot/t1", "head"));
        assert_eq!((summary.create_time, summary.end_time), (snapshot.create_time, snapshot.end_time));
        let undelivered = super::summary(&TaskSnapshot { delivery: None, ..snapshot }, "");
        assert_eq!((undelivered.branch.as_str(), undelivered.commit.as_str()), ("", ""));
    }

    #[test]
    fn a_title_is_the_first_line_trimmed_and_cut_at_a_character() {
        assert_eq!(title("  Fix the bug  \nthen test it"), "Fix the bug");
        assert_eq!(title("\n\n  \r\nAfter blank lines\r\nmore"), "After blank lines");
        assert_eq!(title("tab\there\u{1b}[31m"), "tab here [31m");
        assert_eq!(title(""), "");
        let long = "é".repeat(MAX_TITLE_CHARS + 50);
        assert_eq!(title(&long), "é".repeat(MAX_TITLE_CHARS));
        assert_eq!(title(&format!("{}  tail", "x".repeat(MAX_TITLE_CHARS - 1))).len(), MAX_TITLE_CHARS - 1);
    }
}
