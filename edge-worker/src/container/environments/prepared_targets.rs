//! What each prepared-store credential reaches and how far its upload got, in the object's
//! SQLite beside the credentials' grants (`model_grants` holds them all: minted, bound to a
//! task, revoked when it ends). A credential reaches one R2 object: the prepared workspace of
//! one repository in one revision of one environment of this user ([`object_key`]). An upload
//! is R2's multipart upload, one part per `PUT`, each part checked here before it is sent on
//! ([`check_part`]); the object is replaced only when the upload completes, so a reader never
//! sees half of one.

use std::rc::Rc;

use sha2::{Digest, Sha256};
use worker::SqlStorageValue;

use crate::archive::{
    sql::Sql,
    sql_values::{as_text, as_u64, int, text},
};

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS prepared_targets (
  hash TEXT PRIMARY KEY,
  object_key TEXT NOT NULL,
  upload_id TEXT NOT NULL DEFAULT '',
  parts TEXT NOT NULL DEFAULT '[]',
  bytes INTEGER NOT NULL DEFAULT 0
)";

/// Where the prepared workspaces of `environment` (by name) live for the object `object_id`:
/// every revision's, so an edit or a reset removes them all.
pub fn environment_prefix(object_id: &str, environment: &str) -> String {
    format!("prepared/{object_id}/{environment}/")
}

/// The R2 key of the workspace `environment` in `revision` prepares for the repository
/// `repository_key` ([`super::definition::repository_key`]); the repository is hashed, so no
/// URL's characters end up in a key.
pub fn object_key(object_id: &str, environment: &str, revision: u64, repository_key: &str) -> String {
    let repository: String = Sha256::digest(repository_key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    format!("{}{revision}/{repository}", environment_prefix(object_id, environment))
}

/// A credential's object and its upload in progress.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Target {
    pub object_key: String,
    /// R2's id of the upload in progress; empty when none.
    pub upload_id: String,
    /// The parts sent so far: their numbers (1, 2, ...) and R2's etags.
    pub parts: Vec<(u16, String)>,
    /// The bytes of those parts together.
    pub bytes: u64,
}

/// Why a part or a completion is refused: an HTTP status and words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub status: u16,
    pub message: String,
}

fn refused(status: u16, message: impl Into<String>) -> Refused {
    Refused { status, message: message.into() }
}

/// Whether part `number` of `length` bytes may be sent after what `target` has, with parts of
/// `part_bytes` and a cap of `max_bytes` on the whole workspace. Part 1 starts the upload anew.
pub fn check_part(target: &Target, number: u16, length: u64, part_bytes: u64, max_bytes: u64) -> Result<(), Refused> {
    let (expected, so_far) = match number {
        1 => (1, 0),
        _ => (target.parts.len() as u64 + 1, target.bytes),
    };
    if u64::from(number) != expected || (number > 1 && target.upload_id.is_empty()) {
        return Err(refused(409, format!("part {number} is out of order: the next part of this upload is {expected}")));
    }
    if number > 1 && target.bytes != (expected - 1) * part_bytes {
        return Err(refused(409, "the upload already had its last part (a part shorter than the others)"));
    }
    if length > part_bytes {
        return Err(refused(413, format!("a part is at most {part_bytes} bytes; this one has {length}")));
    }
    if so_far + length > max_bytes {
        return Err(refused(
            413,
            format!(
                "the prepared workspace is over this deployment's cap of {} MB (ENVIRONMENT_CACHE_MAX_MB); it is not \
                 kept",
                max_bytes / 1_000_000
            ),
        ));
    }
    Ok(())
}

/// Whether `target`'s upload may complete with `parts` parts.
pub fn check_complete(target: &Target, parts: u64) -> Result<(), Refused> {
    if target.upload_id.is_empty() || target.parts.is_empty() {
        return Err(refused(409, "no upload is in progress: send its parts first"));
    }
    if parts != target.parts.len() as u64 {
        return Err(refused(409, format!("the store has {} parts of this upload, not {parts}", target.parts.len())));
    }
    Ok(())
}

/// Whether a workspace kept at `uploaded_ms` is past `max_age_ms` at `now_ms`.
pub fn expired(uploaded_ms: u64, now_ms: u64, max_age_ms: u64) -> bool {
    now_ms.saturating_sub(uploaded_ms) > max_age_ms
}

#[derive(Clone)]
pub struct PreparedTargets {
    sql: Rc<dyn Sql>,
}

impl PreparedTargets {
    /// The table in `sql`, made if need be.
    ///
    /// # Errors
    /// The storage refused the schema.
    pub fn open(sql: Rc<dyn Sql>) -> worker::Result<PreparedTargets> {
        sql.query(SCHEMA, vec![])?;
        Ok(PreparedTargets { sql })
    }

    /// Records that the credential `hash` reaches `object_key`.
    pub fn add(&self, hash: &str, object_key: &str) -> worker::Result<()> {
        self.sql.query(
            "INSERT INTO prepared_targets (hash, object_key) VALUES (?, ?)",
            vec![text(hash), text(object_key)],
        )?;
        Ok(())
    }

    pub fn get(&self, hash: &str) -> worker::Result<Option<Target>> {
        let rows = self.sql.query(
            "SELECT object_key, upload_id, parts, bytes FROM prepared_targets WHERE hash = ?",
            vec![text(hash)],
        )?;
        Ok(rows.first().map(|row| {
            let column = |i: usize| row.get(i).and_then(as_text).unwrap_or_default();
            Target {
                object_key: column(0).to_string(),
                upload_id: column(1).to_string(),
                parts: serde_json::from_str(column(2)).unwrap_or_default(),
                bytes: row.get(3).map(as_u64).unwrap_or_default(),
            }
        }))
    }

    /// Records `hash`'s upload as it now stands (an empty `upload_id`: none in progress).
    pub fn set_upload(&self, hash: &str, upload_id: &str, parts: &[(u16, String)], bytes: u64) -> worker::Result<()> {
        let parts = serde_json::to_string(parts).unwrap_or_else(|_| "[]".into());
        let bindings: Vec<SqlStorageValue> = vec![text(upload_id), text(&parts), int(bytes), text(hash)];
        self.sql.query("UPDATE prepared_targets SET upload_id = ?, parts = ?, bytes = ? WHERE hash = ?", bindings)?;
        Ok(())
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::archive::sql::in_memory::Memory;

    const MB: u64 = 1 << 20;

    #[test]
    fn parts_come_in_order_of_the_agreed_size_within_the_cap() {
        let none = Target::default();
        assert_eq!(check_part(&none, 1, 5 * MB, 5 * MB, 100 * MB), Ok(()));
        assert_eq!(check_part(&none, 2, 5 * MB, 5 * MB, 100 * MB).unwrap_err().status, 409, "no upload yet");
        let one = Target { upload_id: "u".into(), parts: vec![(1, "e1".into())], bytes: 5 * MB, ..none.clone() };
        assert_eq!(check_part(&one, 2, MB, 5 * MB, 100 * MB), Ok(()));
        assert_eq!(check_part(&one, 3, MB, 5 * MB, 100 * MB).unwrap_err().status, 409);
        assert_eq!(check_part(&one, 1, MB, 5 * MB, 100 * MB), Ok(()), "part 1 starts over");
        assert_eq!(check_part(&one, 2, 6 * MB, 5 * MB, 100 * MB).unwrap_err().status, 413);
        let over = check_part(&one, 2, 5 * MB, 5 * MB, 8 * MB).unwrap_err();
        assert_eq!(over.status, 413);
        assert!(over.message.contains("ENVIRONMENT_CACHE_MAX_MB"), "{}", over.message);
        let ended = Target { upload_id: "u".into(), parts: vec![(1, "e1".into())], bytes: MB, ..none };
        assert_eq!(check_part(&ended, 2, MB, 5 * MB, 100 * MB).unwrap_err().status, 409, "after a short last part");
    }

    #[test]
    fn an_upload_completes_with_the_parts_it_has_and_old_workspaces_expire() {
        assert_eq!(check_complete(&Target::default(), 1).unwrap_err().status, 409);
        let two = Target { upload_id: "u".into(), parts: vec![(1, "a".into()), (2, "b".into())], ..Target::default() };
        assert_eq!(check_complete(&two, 2), Ok(()));
        assert_eq!(check_complete(&two, 3).unwrap_err().status, 409);
        assert!(!expired(1_000, 2_000, 1_000) && expired(1_000, 2_001, 1_000));
    }

    #[test]
    fn a_key_is_per_object_environment_revision_and_repository_and_its_upload_is_kept() {
        let key = object_key("ab", "web", 3, "https://github.com/o/r");
        assert!(key.starts_with(&environment_prefix("ab", "web")) && key.contains("/3/"), "{key}");
        assert!(!key.contains("github"), "the repository is hashed");
        assert_ne!(key, object_key("ab", "web", 4, "https://github.com/o/r"));
        assert_ne!(key, object_key("ab", "web", 3, "https://github.com/o/s"));

        let targets = PreparedTargets::open(Rc::new(Memory::default())).unwrap();
        targets.add("h", &key).unwrap();
        assert_eq!(targets.get("h").unwrap(), Some(Target { object_key: key.clone(), ..Target::default() }));
        targets.set_upload("h", "up-1", &[(1, "etag-1".into())], 7).unwrap();
        let got = targets.get("h").unwrap().unwrap();
        assert_eq!((got.upload_id.as_str(), got.parts, got.bytes), ("up-1", vec![(1, "etag-1".to_string())], 7));
        assert_eq!(targets.get("other").unwrap(), None);
    }
}
