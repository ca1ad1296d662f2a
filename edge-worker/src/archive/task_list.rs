//! The edge's side of the task list's rules, as plain Rust: the opaque page token over its
//! archive (where the next page starts: the last listed task's creation time and id, newest
//! first, signed with the archive's own key so that only tokens it handed out are taken), and
//! what a list shows of a task. Page sizes and titles follow the rules the service
//! applies too ([`autopilot_contract::task_list`]). A token the edge did not hand out, or a page
//! size out of range, is the client's mistake: INVALID_ARGUMENT, never a server fault.

use std::time::{Duration, UNIX_EPOCH};

use autopilot_contract::{
    task_list,
    v1::{ListTasksRequest, StartRequest, TaskSummary},
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::grpc_web::{Code, GrpcStatus};
/// A token longer than this was not made here (ours are under 100 bytes).
const MAX_TOKEN_LEN: usize = 160;
/// Bytes of the HMAC-SHA256 a token carries: enough that a forgery is a guess of 2^-128.
const SIGNATURE_LEN: usize = 16;

/// Where a page starts: after the task created at `created_ms` with id `task_id` (newest first,
/// ties by id descending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_ms: u64,
    pub task_id: String,
}

/// The page size to use for `requested` (0 means the default).
///
/// # Errors
/// INVALID_ARGUMENT naming `page_size` outside 0..=[`task_list::MAX_PAGE_SIZE`].
pub fn page_size(requested: i32) -> Result<usize, GrpcStatus> {
    task_list::page_size(requested).map_err(|why| GrpcStatus::new(Code::InvalidArgument, format!("page_size {why}")))
}

fn signature(key: &[u8], payload: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(payload.as_bytes());
    mac
}

/// The token that continues after `cursor`: `base64url(created.id).base64url(signature)`,
/// signed with `key`.
pub fn encode_token(cursor: &Cursor, key: &[u8]) -> String {
    let payload = URL_SAFE_NO_PAD.encode(format!("{}.{}", cursor.created_ms, cursor.task_id));
    let signed = signature(key, &payload).finalize().into_bytes();
    format!("{payload}.{}", URL_SAFE_NO_PAD.encode(&signed[..SIGNATURE_LEN]))
}

/// Where the page of `token` starts; `None` for the first page (an empty token).
///
/// # Errors
/// INVALID_ARGUMENT for a token this edge did not hand out: malformed, or not signed with `key`
/// (compared in constant time).
pub fn decode_token(token: &str, key: &[u8]) -> Result<Option<Cursor>, GrpcStatus> {
    if token.is_empty() {
        return Ok(None);
    }
    let refuse = || GrpcStatus::new(Code::InvalidArgument, "page_token is not one this service handed out");
    if token.len() > MAX_TOKEN_LEN {
        return Err(refuse());
    }
    let (payload, signed) = token.split_once('.').ok_or_else(refuse)?;
    let signed =
        URL_SAFE_NO_PAD.decode(signed).ok().filter(|signed| signed.len() == SIGNATURE_LEN).ok_or_else(refuse)?;
    signature(key, payload).verify_truncated_left(&signed).map_err(|_| refuse())?;
    let text =
        URL_SAFE_NO_PAD.decode(payload).ok().and_then(|bytes| String::from_utf8(bytes).ok()).ok_or_else(refuse)?;
    let (created, task_id) = text.split_once('.').ok_or_else(refuse)?;
    let created_ms = created.parse::<u64>().map_err(|_| refuse())?;
    let id_ok =
        !task_id.is_empty() && task_id.len() <= 64 && task_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !id_ok {
        return Err(refuse());
    }
    Ok(Some(Cursor { created_ms, task_id: task_id.to_string() }))
}

/// The list request of `GET .../tasks?pageSize=&pageToken=` (both optional).
///
/// # Errors
/// INVALID_ARGUMENT for a page size that is not a whole number (the range is checked later).
pub fn request_from_query(url: &worker::Url) -> Result<ListTasksRequest, GrpcStatus> {
    let query = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    let page_size = match query("pageSize").map(|size| size.parse::<i32>()) {
        None => 0,
        Some(Ok(size)) => size,
        Some(Err(_)) => return Err(GrpcStatus::new(Code::InvalidArgument, "pageSize must be a whole number")),
    };
    Ok(ListTasksRequest { page_size, page_token: query("pageToken").unwrap_or_default() })
}

/// What the list shows of a task just started by `request` (its title with `secrets` masked).
pub fn started_summary(
    task_id: &str,
    state: i32,
    request: &StartRequest,
    created_ms: u64,
    secrets: &[&str],
) -> TaskSummary {
    TaskSummary {
        task_id: task_id.to_string(),
        state,
        repository_url: masked_url(&request.repository_url),
        git_ref: request.git_ref.clone(),
        title: title(&request.prompt, secrets),
        parent_task_id: request.parent_task_id.clone(),
        create_time: Some(autopilot_contract::time::timestamp(UNIX_EPOCH + Duration::from_millis(created_ms))),
        ..Default::default()
    }
}

/// A task's title ([`task_list::title`]) with each of `secrets` masked first.
pub fn title(prompt: &str, secrets: &[&str]) -> String {
    let first_line = prompt.trim().lines().next().unwrap_or_default();
    let masked = secrets
        .iter()
        .filter(|s| s.len() >= 8)
        .fold(first_line.to_string(), |line, secret| line.replace(secret, "***"));
    task_list::title(&masked)
}

/// `url` with any credentials in it (`https://user:token@host/...`) replaced by `***`, as the
/// agent-service shows repository URLs.
pub fn masked_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split('/').next().and_then(|authority| authority.rsplit_once('@')) {
            Some((_, host)) => {
                let path = &rest[rest.find('/').unwrap_or(rest.len())..];
                format!("{scheme}://***@{host}{path}")
            }
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_default_and_refuse_out_of_range() {
        assert_eq!(page_size(0).unwrap(), 20);
        assert_eq!(page_size(100).unwrap(), 100);
        for bad in [-1, 101, i32::MAX] {
            let refused = page_size(bad).unwrap_err();
            assert_eq!(refused.code, Code::InvalidArgument as i32);
            assert!(refused.message.contains("page_size"), "{}", refused.message);
        }
    }

    const KEY: &[u8] = b"the archive's own key";

    #[test]
    fn a_token_round_trips_and_only_our_tokens_are_accepted() {
        let cursor = Cursor { created_ms: 1_795_000_000_123, task_id: "0f8c2a9e-4b1d-4f3e-9a77-2c5d1e6b8f01".into() };
        let token = encode_token(&cursor, KEY);
        assert!(token.len() < 100, "{token}");
        assert_eq!(decode_token(&token, KEY).unwrap(), Some(cursor.clone()));
        assert_eq!(decode_token("", KEY).unwrap(), None, "no token: the first page");
        let unsigned = |text: &str| URL_SAFE_NO_PAD.encode(text);
        let (payload, _) = token.split_once('.').unwrap();
        let forged = [
            "xyz".to_string(),
            "a".repeat(10_000),
            unsigned("notanumber.abc"),
            unsigned("12.../etc/passwd"),
            unsigned("12."),
            URL_SAFE_NO_PAD.encode([0xff, 0xfe]),
            // Well-formed, but not signed, or signed with another key, or cut short.
            unsigned(&format!("{}.{}", cursor.created_ms, cursor.task_id)),
            encode_token(&Cursor { created_ms: 1, ..cursor.clone() }, b"another key"),
            format!("{payload}.{}", &token[payload.len() + 1..payload.len() + 5]),
            format!("{payload}."),
        ];
        for token in forged {
            let refused = decode_token(&token, KEY).unwrap_err();
            assert_eq!(refused.code, Code::InvalidArgument as i32, "{token}");
            assert!(refused.message.contains("page_token"));
        }
    }

    #[test]
    fn credentials_in_a_repository_url_are_masked() {
        assert_eq!(masked_url("https://x:ghp_secret@github.com/a/b.git"), "https://***@github.com/a/b.git");
        assert_eq!(masked_url("https://github.com/a/b.git"), "https://github.com/a/b.git");
        assert_eq!(masked_url("file:///tmp/repo.git"), "file:///tmp/repo.git");
        assert_eq!(masked_url("git@github.com:a/b.git"), "git@github.com:a/b.git", "an scp-like URL has no secret");
    }

    #[test]
    fn the_title_is_the_first_line_short_and_masked() {
        assert_eq!(title("\n  Fix the tests  \nand more", &[]), "Fix the tests");
        assert_eq!(title(&"é".repeat(500), &[]).chars().count(), task_list::MAX_TITLE_CHARS);
        assert_eq!(title("use key sk-ant-canary-123 now", &["sk-ant-canary-123"]), "use key *** now");
        assert_eq!(title("", &[]), "");
    }
}
