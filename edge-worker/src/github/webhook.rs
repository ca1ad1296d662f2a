//! GitHub's webhook deliveries, read: whether one is GitHub's (`X-Hub-Signature-256`, an
//! HMAC-SHA256 of the body keyed by the App's webhook secret, compared in constant time), and
//! what it asks of autopilot. A comment, a review or a review comment on a pull request that
//! mentions the App's handle (`@autopilot`) is a [`Mention`]; everything else is acknowledged
//! and ignored, with the reason. Bots never mention autopilot into work: GitHub marks their
//! accounts (`"type": "Bot"`, a login ending in `[bot]`), autopilot's own replies included.
//! Pure; the Worker's route (`front/github_webhook.rs`) does the rest.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// Largest delivery read: GitHub caps its payloads at 25 MB, but nothing a mention needs is
/// near this.
pub const MAX_DELIVERY_BYTES: usize = 1 << 20;

/// The KV key naming the user whose task opened (or adopted) `repository`'s pull request
/// `number`: the index by which a delivery finds the user's object.
pub fn pull_request_key(repository: &str, number: u64) -> String {
    format!("github-pull:{}#{number}", repository.to_ascii_lowercase())
}

/// Whether `signature` (the `X-Hub-Signature-256` header: `sha256=<hex>`) is `body`'s with
/// `secret`.
pub fn signed_by(secret: &[u8], body: &[u8], signature: Option<&str>) -> bool {
    let Some(hex) = signature.and_then(|s| s.trim().strip_prefix("sha256=")) else { return false };
    let Some(expected) = decode_hex(hex) else { return false };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else { return false };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect()
}

/// Where on the pull request the comment was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommentKind {
    /// A comment in the pull request's conversation (`issue_comment`).
    Conversation,
    /// A review's body (`pull_request_review`).
    Review,
    /// A comment on a line of the diff (`pull_request_review_comment`).
    Line { path: String, line: Option<u64>, diff_hunk: String },
}

/// A person asking autopilot for changes on a pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mention {
    /// `owner/name`.
    pub repository: String,
    pub pull_number: u64,
    /// The comment's (or review's) id, for a reaction and a reply.
    pub comment_id: u64,
    pub kind: CommentKind,
    pub author: String,
    pub body: String,
    pub html_url: String,
}

impl Mention {
    /// The follow-up turn's prompt: the comment, and for a comment on a line, where it is.
    pub fn prompt(&self) -> String {
        match &self.kind {
            CommentKind::Line { path, line, diff_hunk } => {
                let at = line.map(|line| format!("{path}, line {line}")).unwrap_or_else(|| path.clone());
                format!(
                    "{} commented on {at} of the pull request:\n\n{}\n\nThe diff hunk it is on:\n```diff\n{}\n```",
                    self.author, self.body, diff_hunk
                )
            }
            CommentKind::Conversation | CommentKind::Review => {
                format!("{} commented on the pull request:\n\n{}", self.author, self.body)
            }
        }
    }
}

/// A check suite that failed on pull requests' head commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedChecks {
    /// `owner/name`.
    pub repository: String,
    /// The pull requests whose head the suite ran on.
    pub pull_numbers: Vec<u64>,
    pub suite_id: u64,
    pub head_sha: String,
    /// `failure` or `timed_out`.
    pub conclusion: String,
}

/// What a delivery asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Mention(Mention),
    FailedChecks(FailedChecks),
    /// Nothing for autopilot, and why (for the acknowledgement).
    Ignored(String),
}

/// Reads the delivery of `event` (the `X-GitHub-Event` header) with `payload`; `handle` is the
/// App's (`autopilot`).
///
/// # Errors
/// The payload is not the shape GitHub sends for the event (in words).
pub fn read(event: &str, payload: &Value, handle: &str) -> Result<Delivery, String> {
    let ignored = |why: &str| Ok(Delivery::Ignored(why.to_string()));
    let (action, comment, pull_number, kind) = match event {
        "ping" => return ignored("ping"),
        "check_suite" => return read_check_suite(payload),
        "issue_comment" => {
            if payload["issue"]["pull_request"].is_null() {
                return ignored("a comment on an issue, not a pull request");
            }
            let number = field_u64(payload, &["issue", "number"])?;
            ("created", &payload["comment"], number, CommentKind::Conversation)
        }
        "pull_request_review" => {
            ("submitted", &payload["review"], field_u64(payload, &["pull_request", "number"])?, CommentKind::Review)
        }
        "pull_request_review_comment" => {
            let comment = &payload["comment"];
            let kind = CommentKind::Line {
                path: field_str(comment, &["path"])?.to_string(),
                line: comment["line"].as_u64().or_else(|| comment["original_line"].as_u64()),
                diff_hunk: comment["diff_hunk"].as_str().unwrap_or_default().to_string(),
            };
            ("created", comment, field_u64(payload, &["pull_request", "number"])?, kind)
        }
        other => return Ok(Delivery::Ignored(format!("the event {other:?} asks nothing of autopilot"))),
    };
    if payload["action"].as_str() != Some(action) {
        return ignored("an action that asks nothing (only new comments and submitted reviews do)");
    }
    let author = &comment["user"];
    let login = field_str(author, &["login"])?;
    if author["type"].as_str() == Some("Bot") || login.ends_with("[bot]") {
        return ignored("a bot's comment (bots never start work)");
    }
    // Autopilot's own comments are the user's (a user-to-server token), marked as the App's.
    let by_app = comment["performed_via_github_app"]["slug"].as_str();
    if by_app.is_some_and(|slug| slug.eq_ignore_ascii_case(handle)) {
        return ignored("autopilot's own comment");
    }
    let body = comment["body"].as_str().unwrap_or_default();
    if !mentions(body, handle) {
        return Ok(Delivery::Ignored(format!("no mention of @{handle}")));
    }
    Ok(Delivery::Mention(Mention {
        repository: field_str(payload, &["repository", "full_name"])?.to_string(),
        pull_number,
        comment_id: field_u64(comment, &["id"])?,
        kind,
        author: login.to_string(),
        body: body.to_string(),
        html_url: comment["html_url"].as_str().unwrap_or_default().to_string(),
    }))
}

/// A `check_suite` delivery: a failed one on pull requests is [`FailedChecks`].
fn read_check_suite(payload: &Value) -> Result<Delivery, String> {
    let suite = &payload["check_suite"];
    if payload["action"].as_str() != Some("completed") {
        return Ok(Delivery::Ignored("a check suite that has not completed".into()));
    }
    let conclusion = suite["conclusion"].as_str().unwrap_or_default();
    if !matches!(conclusion, "failure" | "timed_out") {
        return Ok(Delivery::Ignored(format!("a check suite that ended {conclusion:?}, not failed")));
    }
    let pulls = suite["pull_requests"].as_array().ok_or("the payload has no check_suite.pull_requests")?;
    let pull_numbers: Vec<u64> = pulls.iter().filter_map(|pull| pull["number"].as_u64()).collect();
    if pull_numbers.is_empty() {
        return Ok(Delivery::Ignored("a check suite on no pull request".into()));
    }
    Ok(Delivery::FailedChecks(FailedChecks {
        repository: field_str(payload, &["repository", "full_name"])?.to_string(),
        pull_numbers,
        suite_id: field_u64(suite, &["id"])?,
        head_sha: field_str(suite, &["head_sha"])?.to_string(),
        conclusion: conclusion.to_string(),
    }))
}

/// The prompt of a turn that fixes `runs` (GitHub's `check_runs` of the suite: name,
/// conclusion, output title and summary), each summary cut to [`MAX_SUMMARY_BYTES`].
pub fn fix_prompt(head_sha: &str, runs: &[Value]) -> String {
    let mut prompt = format!(
        "The checks on this pull request's head ({}) failed. Find out why and fix it.\n",
        head_sha.get(..12).unwrap_or(head_sha)
    );
    for run in runs.iter().filter(|run| !matches!(run["conclusion"].as_str(), Some("success" | "neutral" | "skipped")))
    {
        let name = run["name"].as_str().unwrap_or("a check");
        let conclusion = run["conclusion"].as_str().unwrap_or("failed");
        prompt.push_str(&format!("\n## {name} ({conclusion})\n"));
        for part in [&run["output"]["title"], &run["output"]["summary"]] {
            if let Some(text) = part.as_str().filter(|t| !t.trim().is_empty()) {
                prompt.push_str(cut_at(text, MAX_SUMMARY_BYTES));
                prompt.push('\n');
            }
        }
    }
    prompt
}

/// Most bytes of one check's summary kept in a fix turn's prompt.
pub const MAX_SUMMARY_BYTES: usize = 4096;

fn cut_at(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Whether `body` mentions `@handle` as GitHub links it: case-insensitive, not inside a longer
/// name (`@autopilots`, `@autopilot-bot`) nor an e-mail address (`me@autopilot.dev`).
pub fn mentions(body: &str, handle: &str) -> bool {
    let body = body.to_ascii_lowercase();
    let wanted = format!("@{}", handle.to_ascii_lowercase());
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    body.match_indices(&wanted).any(|(at, _)| {
        let before = body[..at].chars().next_back();
        let after = body[at + wanted.len()..].chars().next();
        !before.is_some_and(name_char) && !after.is_some_and(name_char)
    })
}

fn field<'a>(value: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(value, |value, key| &value[*key])
}

fn field_str<'a>(value: &'a Value, path: &[&str]) -> Result<&'a str, String> {
    field(value, path).as_str().ok_or_else(|| format!("the payload has no {}", path.join(".")))
}

fn field_u64(value: &Value, path: &[&str]) -> Result<u64, String> {
    field(value, path).as_u64().ok_or_else(|| format!("the payload has no {}", path.join(".")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sign(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(body);
        let bytes = mac.finalize().into_bytes();
        format!("sha256={}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
    }

    #[test]
    fn only_the_secrets_signature_of_this_very_body_passes() {
        let body = br#"{"action":"created"}"#;
        let signature = sign(b"hook-secret", body);
        assert!(signed_by(b"hook-secret", body, Some(&signature)));
        assert!(!signed_by(b"other-secret", body, Some(&signature)));
        assert!(!signed_by(b"hook-secret", br#"{"action":"deleted"}"#, Some(&signature)));
        for bad in [None, Some(""), Some("sha1=00"), Some("sha256=zz"), Some("sha256=abc")] {
            assert!(!signed_by(b"hook-secret", body, bad), "{bad:?}");
        }
    }

    #[test]
    fn a_mention_is_the_handle_as_github_links_it() {
        for yes in ["@autopilot please fix", "thanks @AutoPilot!", "(@autopilot)", "@autopilot\nmore"] {
            assert!(mentions(yes, "autopilot"), "{yes}");
        }
        for no in ["@autopilots", "@autopilot-bot do it", "me@autopilot.dev", "autopilot", "@auto pilot"] {
            assert!(!mentions(no, "autopilot"), "{no}");
        }
    }

    fn comment_payload(body: &str, user: Value) -> Value {
        json!({
            "action": "created",
            "issue": {"number": 7, "pull_request": {"url": "https://api.github.com/repos/octo/app/pulls/7"}},
            "comment": {"id": 901, "body": body, "user": user, "html_url": "https://github.com/octo/app/pull/7#issuecomment-901"},
            "repository": {"full_name": "octo/app"},
        })
    }

    #[test]
    fn a_person_mentioning_the_app_on_a_pull_request_is_a_mention_and_nothing_else_is() {
        let person = json!({"login": "octo", "type": "User"});
        let Delivery::Mention(mention) =
            read("issue_comment", &comment_payload("@autopilot rename it", person.clone()), "autopilot").unwrap()
        else {
            panic!("a mention")
        };
        assert_eq!((mention.repository.as_str(), mention.pull_number, mention.comment_id), ("octo/app", 7, 901));
        assert_eq!(mention.prompt(), "octo commented on the pull request:\n\n@autopilot rename it");

        let bot = json!({"login": "autopilot[bot]", "type": "Bot"});
        let ignored = |delivery: Result<Delivery, String>| matches!(delivery, Ok(Delivery::Ignored(_)));
        assert!(ignored(read("issue_comment", &comment_payload("@autopilot done: abc123", bot), "autopilot")));
        assert!(ignored(read("issue_comment", &comment_payload("looks good", person.clone()), "autopilot")));
        let mut own = comment_payload("Done. Ask @autopilot again for more.", person.clone());
        own["comment"]["performed_via_github_app"] = json!({"slug": "autopilot"});
        assert!(ignored(read("issue_comment", &own, "autopilot")), "autopilot's own reply, made as the user");
        let mut on_issue = comment_payload("@autopilot", person.clone());
        on_issue["issue"]["pull_request"] = Value::Null;
        assert!(ignored(read("issue_comment", &on_issue, "autopilot")));
        let mut edited = comment_payload("@autopilot", person.clone());
        edited["action"] = json!("edited");
        assert!(ignored(read("issue_comment", &edited, "autopilot")));
        assert!(ignored(read("push", &json!({}), "autopilot")));
        assert!(
            read("issue_comment", &json!({"action": "created", "issue": {"pull_request": {}}}), "autopilot").is_err()
        );
    }

    #[test]
    fn a_failed_check_suite_on_a_pull_request_asks_for_a_fix_and_its_prompt_names_the_checks() {
        let payload = |conclusion: &str, pulls: Value| {
            json!({"action": "completed", "repository": {"full_name": "octo/app"},
                   "check_suite": {"id": 44, "head_sha": "0123456789abcdef", "conclusion": conclusion, "pull_requests": pulls}})
        };
        let Ok(Delivery::FailedChecks(failed)) =
            read("check_suite", &payload("failure", json!([{"number": 7}])), "autopilot")
        else {
            panic!("failed checks")
        };
        assert_eq!((failed.pull_numbers, failed.suite_id, failed.head_sha.as_str()), (vec![7], 44, "0123456789abcdef"));
        for (conclusion, pulls) in [("success", json!([{"number": 7}])), ("failure", json!([]))] {
            assert!(matches!(read("check_suite", &payload(conclusion, pulls), "autopilot"), Ok(Delivery::Ignored(_))));
        }
        let runs = [
            json!({"name": "test", "conclusion": "failure", "output": {"title": "2 tests failed", "summary": "x".repeat(5000)}}),
            json!({"name": "lint", "conclusion": "success", "output": {"title": "ok"}}),
        ];
        let prompt = fix_prompt("0123456789abcdef", &runs);
        assert!(prompt.starts_with("The checks on this pull request's head (0123456789ab) failed."), "{prompt}");
        assert!(prompt.contains("## test (failure)\n2 tests failed\n") && !prompt.contains("lint"), "{prompt}");
        assert!(prompt.len() < 4096 + 200, "summaries are cut");
    }

    #[test]
    fn a_comment_on_a_line_carries_its_file_line_and_hunk_into_the_prompt() {
        let payload = json!({
            "action": "created",
            "pull_request": {"number": 3},
            "comment": {"id": 55, "body": "@autopilot use a constant here", "path": "src/lib.rs", "line": 12,
                        "diff_hunk": "@@ -10,3 +10,3 @@\n-let x = 3;\n+let x = 4;", "user": {"login": "rev", "type": "User"}},
            "repository": {"full_name": "octo/app"},
        });
        let Ok(Delivery::Mention(mention)) = read("pull_request_review_comment", &payload, "autopilot") else {
            panic!()
        };
        let prompt = mention.prompt();
        assert!(prompt.starts_with("rev commented on src/lib.rs, line 12 of the pull request:\n\n@autopilot use"));
        assert!(prompt.contains("```diff\n@@ -10,3 +10,3 @@"), "{prompt}");
    }
}
