//! The form of a task id from outside the service: a request's `task_id` or `parent_task_id`, a
//! page token's, a restore's. The service's own ids are UUIDs; one that comes back names a
//! directory (`tasks/<id>`) and a snapshot, so it is held to letters, digits and `-` first. Its
//! own module because validation ([`crate::validate`]) and a snapshot's rules
//! ([`crate::workspace_snapshot`]) both hold ids to it, and neither depends on the other for it.
//! Pure.

/// Longest task id accepted (ids are UUIDs, 36 characters).
pub const MAX_TASK_ID_LEN: usize = 64;

/// Whether `id` can be a task id: not empty, at most [`MAX_TASK_ID_LEN`] characters from
/// `A-Z a-z 0-9 -`.
pub fn is_task_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_TASK_ID_LEN && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}
