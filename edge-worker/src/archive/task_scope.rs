//! Which tasks a user's requests may name. In local mode every user's object reaches the same
//! agent-service, and a container could in principle hold tasks the object did not start: so the
//! user's object forwards a task id only if it started that task itself, and answers anything else
//! exactly as the service answers a task that never existed, so ids cannot be probed. A refusal
//! the service words with another user's task id (a Start refused while that task runs) is
//! reworded before it leaves the edge.

use crate::grpc_web::{Code, GrpcStatus};

/// The task a request should reach: `requested`, or the user's latest task when it names none.
///
/// # Errors
/// NOT_FOUND, in the service's own words, when the id is not one of the user's tasks (or the user
/// has none and named none).
pub fn resolve(requested: &str, latest_own: Option<&str>, owned: bool) -> Result<String, GrpcStatus> {
    match (requested, latest_own) {
        ("", Some(latest)) => Ok(latest.to_string()),
        ("", None) => Err(GrpcStatus::new(Code::NotFound, "no task has run on this service yet")),
        (id, _) if owned => Ok(id.to_string()),
        (id, _) => Err(unknown_task(id)),
    }
}

/// What a task id that is not the user's gets: the service's answer for an id it never saw.
pub fn unknown_task(task_id: &str) -> GrpcStatus {
    // Only ids of the task id alphabet are echoed, and never more than a task id's length.
    let shown: String = task_id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(TASK_ID_LEN).collect();
    GrpcStatus::new(Code::NotFound, format!("no task with id {shown}"))
}

/// `status` with every task id in its message checked: one that is not the user's (`owns` says)
/// turns the whole message into a neutral one that names no task.
pub fn scrub_refusal(status: GrpcStatus, owns: impl Fn(&str) -> bool) -> GrpcStatus {
    if task_ids_in(&status.message).all(owns) {
        return status;
    }
    let message = if status.code == Code::FailedPrecondition as i32 {
        "another task is running on this agent-service; try again when it has ended"
    } else {
        "the request refers to a task that is not yours"
    };
    GrpcStatus { code: status.code, message: message.to_string() }
}

/// `status`, a Start's refusal, as a user should read it when `only_others_run` (local mode,
/// where every user's object reaches the one agent-service, and none of the tasks filling it is
/// this user's): the service's "3 tasks are running, the limit; wait for one to end or cancel
/// one" speaks of tasks this user can neither see nor cancel, so it says that instead.
pub fn busy_with_others(status: GrpcStatus, only_others_run: bool) -> GrpcStatus {
    if !only_others_run || status.code != Code::ResourceExhausted as i32 {
        return status;
    }
    GrpcStatus::new(
        Code::ResourceExhausted,
        "the agent-service is busy with other users' tasks (it runs a limited number at once); try again when one \
         has ended",
    )
}

/// A task id is a UUID in its text form.
const TASK_ID_LEN: usize = 36;

/// The UUID-shaped words of `text`.
fn task_ids_in(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_hexdigit() || c == '-')).filter(|word| is_uuid(word))
}

fn is_uuid(word: &str) -> bool {
    word.len() == TASK_ID_LEN
        && word.char_indices().all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINE: &str = "0f8c2a9e-4b1d-4f3e-9a77-2c5d1e6b8f01";
    const THEIRS: &str = "7d3e9b10-aa21-4c4e-8f0b-91d2c3e4f5a6";

    #[test]
    fn an_empty_id_means_the_users_latest_task_not_the_services() {
        assert_eq!(resolve("", Some(MINE), false).unwrap(), MINE);
        let none = resolve("", None, false).unwrap_err();
        assert_eq!(none.code, Code::NotFound as i32);
    }

    #[test]
    fn another_users_task_is_answered_as_one_that_never_existed() {
        let theirs = resolve(THEIRS, Some(MINE), false).unwrap_err();
        let never = unknown_task(THEIRS);
        assert_eq!((theirs.code, theirs.message.as_str()), (never.code, never.message.as_str()));
        assert_eq!(never.message, format!("no task with id {THEIRS}"));
        assert_eq!(resolve(MINE, None, true).unwrap(), MINE);
    }

    #[test]
    fn an_unknown_id_is_echoed_only_as_a_short_id() {
        let hostile = format!("{}<script>{}", "a".repeat(40), "b".repeat(1000));
        let message = unknown_task(&hostile).message;
        assert!(message.len() <= "no task with id ".len() + TASK_ID_LEN, "{message}");
        assert!(!message.contains('<'));
    }

    #[test]
    fn a_busy_refusal_naming_another_users_task_names_no_task() {
        let busy = GrpcStatus::new(
            Code::FailedPrecondition,
            format!("task {THEIRS} is still running; cancel it or wait for it to end"),
        );
        let scrubbed = scrub_refusal(busy, |id| id == MINE);
        assert_eq!(scrubbed.code, Code::FailedPrecondition as i32);
        assert!(!scrubbed.message.contains(THEIRS), "{}", scrubbed.message);
        assert!(scrubbed.message.contains("another task is running"));
    }

    #[test]
    fn a_full_service_is_explained_to_a_user_with_no_task_of_their_own() {
        let at_limit = GrpcStatus::new(
            Code::ResourceExhausted,
            "3 tasks are running, the limit; wait for one to end or cancel one",
        );
        assert_eq!(busy_with_others(at_limit.clone(), false), at_limit, "their own tasks: the service's words");
        let others = busy_with_others(at_limit, true);
        assert_eq!(others.code, Code::ResourceExhausted as i32);
        assert!(others.message.contains("busy with other users' tasks"), "{}", others.message);
        let invalid = GrpcStatus::new(Code::InvalidArgument, "prompt must not be empty");
        assert_eq!(busy_with_others(invalid.clone(), true), invalid);
    }

    #[test]
    fn a_refusal_naming_the_users_own_task_is_kept() {
        let busy = GrpcStatus::new(Code::FailedPrecondition, format!("task {MINE} is still running"));
        assert_eq!(scrub_refusal(busy.clone(), |id| id == MINE), busy);
        let plain = GrpcStatus::new(Code::InvalidArgument, "prompt must not be empty");
        assert_eq!(scrub_refusal(plain.clone(), |_| false), plain);
    }
}
