//! How GitHub writes the ids and times in its answers: legacy global node IDs and UTC
//! ISO 8601 timestamps, so the fake's JSON reads as GitHub's.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::{engine::general_purpose::STANDARD as BASE64, Engine};

/// GitHub's legacy global node ID for an object: base64 of `0<len>:<Type><id>` (`04:User1`).
pub(super) fn node_id(kind: &str, id: u64) -> String {
    BASE64.encode(format!("0{}:{kind}{id}", kind.len()))
}

/// The current time as GitHub writes it: `2026-12-06T06:15:46Z`.
pub(super) fn timestamp() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_githubs_legacy_ones() {
        assert_eq!(node_id("User", 1), "MDQ6VXNlcjE=");
        assert_eq!(node_id("Repository", 1296269), "MDEwOlJlcG9zaXRvcnkxMjk2MjY5");
    }

    #[test]
    fn timestamps_are_utc_iso_8601() {
        let now = timestamp();
        assert_eq!(now.len(), "2026-12-06T06:15:46Z".len());
        assert!(now.starts_with("20") && now.ends_with('Z'), "{now}");
    }
}
