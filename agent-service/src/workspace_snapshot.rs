//! The rules a `WorkspaceSnapshot` keeps, whichever way it travels: ExportWorkspace makes one
//! ([`crate::workspace`]), and a follow-up's `StartRequest.restore` brings one back from the edge,
//! which keeps it (R2) while the container that made it is gone. A restore is checked here before
//! the service acts on it, so a bad one is INVALID_ARGUMENT naming the field; that its bundle
//! holds what it claims is only known once git reads it (the task then fails, saying why).
//!
//! The size cap, [`MAX_SNAPSHOT_BYTES`] (16 MiB of bundle and transcript together), keeps a
//! snapshot within one gRPC message and one R2 object the edge can hold in memory; it is far
//! above what a conversation's commits and transcript take, and a task over it cannot be
//! continued elsewhere (ExportWorkspace says so). Pure.

use autopilot_contract::v1::WorkspaceSnapshot;

use crate::{branch_name::check_branch_name, task_id::is_task_id};

/// Most bytes of bundle and transcript together in one snapshot.
pub const MAX_SNAPSHOT_BYTES: usize = 16 * 1024 * 1024;
/// Longest session id accepted (Claude Code's are UUIDs); it names a file.
pub const MAX_SESSION_ID_LEN: usize = 64;
/// The ref the bundle carries its tip under.
pub const BUNDLE_REF: &str = "refs/autopilot/snapshot";

/// The bytes a snapshot carries (what the cap counts).
pub fn payload_bytes(snapshot: &WorkspaceSnapshot) -> usize {
    snapshot.bundle.len() + snapshot.session_transcript.len()
}

/// Whether `id` is a full git commit id (SHA-1 or SHA-256, lower-case hex).
pub fn is_commit_id(id: &str) -> bool {
    matches!(id.len(), 40 | 64) && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `id` can be a session id: it becomes a file name, so letters, digits and `-` only.
pub fn is_session_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_SESSION_ID_LEN && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Checks a snapshot's form.
///
/// # Errors
/// The field (as `restore.<field>`) and what is wrong with it.
pub fn check(snapshot: &WorkspaceSnapshot) -> Result<(), (&'static str, String)> {
    let size = payload_bytes(snapshot);
    if size > MAX_SNAPSHOT_BYTES {
        return Err((
            "restore",
            format!("holds {size} bytes of bundle and transcript; at most {MAX_SNAPSHOT_BYTES} (16 MiB) are accepted"),
        ));
    }
    if !is_task_id(&snapshot.task_id) {
        return Err(("restore.task_id", "is not a task id".into()));
    }
    if !is_commit_id(&snapshot.base_commit) {
        return Err(("restore.base_commit", "is not a full commit id".into()));
    }
    if !is_commit_id(&snapshot.commit) {
        return Err(("restore.commit", "is not a full commit id".into()));
    }
    check_branch_name(&snapshot.branch)
        .map_err(|why| ("restore.branch", format!("{:?} is not a usable branch name: it {why}", snapshot.branch)))?;
    if snapshot.bundle.is_empty() != (snapshot.commit == snapshot.base_commit) {
        return Err((
            "restore.bundle",
            "must hold the commits from base_commit to commit, and be empty when they are the same".into(),
        ));
    }
    if !snapshot.session_id.is_empty() && !is_session_id(&snapshot.session_id) {
        return Err(("restore.session_id", "is not a session id".into()));
    }
    if snapshot.session_id.is_empty() != snapshot.session_transcript.is_empty() {
        return Err(("restore.session_transcript", "must be given with session_id, and only with it".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> WorkspaceSnapshot {
        WorkspaceSnapshot {
            task_id: "3f2a9c1e-0000-4000-8000-000000000001".into(),
            repository_url: "https://example.com/r.git".into(),
            git_ref: String::new(),
            base_commit: "a".repeat(40),
            branch: "autopilot/3f2a9c1e".into(),
            commit: "b".repeat(40),
            bundle: b"# v2 git bundle\n".to_vec(),
            session_id: "0af0cfd0-15f0-4fb8-a17e-9bd7f68541d4".into(),
            session_transcript: b"{}\n".to_vec(),
        }
    }

    #[test]
    fn a_well_formed_snapshot_passes() {
        assert_eq!(check(&snapshot()), Ok(()));
        let unchanged = WorkspaceSnapshot { commit: "a".repeat(40), bundle: vec![], ..snapshot() };
        assert_eq!(check(&unchanged), Ok(()));
        let no_agent = WorkspaceSnapshot { session_id: String::new(), session_transcript: vec![], ..snapshot() };
        assert_eq!(check(&no_agent), Ok(()));
    }

    #[test]
    fn each_broken_field_is_named() {
        let field = |s: WorkspaceSnapshot| check(&s).unwrap_err().0;
        assert_eq!(field(WorkspaceSnapshot { bundle: vec![0; MAX_SNAPSHOT_BYTES], ..snapshot() }), "restore");
        assert_eq!(field(WorkspaceSnapshot { task_id: "../x".into(), ..snapshot() }), "restore.task_id");
        assert_eq!(field(WorkspaceSnapshot { base_commit: "HEAD".into(), ..snapshot() }), "restore.base_commit");
        assert_eq!(field(WorkspaceSnapshot { commit: "B".repeat(40), ..snapshot() }), "restore.commit");
        assert_eq!(field(WorkspaceSnapshot { branch: "-x".into(), ..snapshot() }), "restore.branch");
        assert_eq!(field(WorkspaceSnapshot { bundle: vec![], ..snapshot() }), "restore.bundle");
        assert_eq!(field(WorkspaceSnapshot { session_id: "../../x".into(), ..snapshot() }), "restore.session_id");
        assert_eq!(field(WorkspaceSnapshot { session_transcript: vec![], ..snapshot() }), "restore.session_transcript");
    }

    #[test]
    fn commit_ids_are_full_lower_case_hex() {
        assert!(is_commit_id(&"0123456789abcdef".repeat(4)[..40]));
        assert!(is_commit_id(&"f".repeat(64)));
        assert!(!is_commit_id(&"f".repeat(39)));
        assert!(!is_commit_id(&"g".repeat(40)));
    }
}
