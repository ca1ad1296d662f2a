//! What the user's container object remembers across evictions and restarts beside its archive:
//! who the user is and the container's lifecycle. Everything about tasks (which ran last, how they
//! stand, why they ended) is the archive's ([`crate::archive`]), booked once there. The record is
//! changed only through [`Stored`](super::stored::Stored), which writes it when it changed.

use serde::{Deserialize, Serialize};

use crate::container::lifecycle::Lifecycle;

/// Storage key of the record.
pub const RECORD_KEY: &str = "state";

/// The object's record. Stored under [`RECORD_KEY`]; records stored by older versions (which
/// also booked the current task) still load, their task fields ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub user_id: Option<String>,
    pub lifecycle: Lifecycle,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_stored_with_the_current_tasks_fields_still_loads() {
        let mut stored = serde_json::to_value(Record { user_id: Some("alice".into()), ..Default::default() }).unwrap();
        let fields = stored.as_object_mut().unwrap();
        fields.insert("current_task_id".into(), "t".into());
        fields.insert("current_task_state".into(), 3.into());
        fields.insert("last_seen_seq".into(), 12.into());
        let loaded: Record = serde_json::from_value(stored).unwrap();
        assert_eq!(loaded.user_id.as_deref(), Some("alice"));
    }
}
