//! The few conversions between Rust values and Durable Object SQLite values that the object's
//! tables (the archive, the model credentials) share: bindings in, columns out.

use worker::SqlStorageValue;

pub fn int(value: u64) -> SqlStorageValue {
    SqlStorageValue::Integer(value as i64)
}

pub fn text(value: &str) -> SqlStorageValue {
    SqlStorageValue::String(value.to_string())
}

/// An integer column (0 for NULL or anything else).
pub fn as_u64(value: &SqlStorageValue) -> u64 {
    match value {
        SqlStorageValue::Integer(i) => (*i).max(0) as u64,
        SqlStorageValue::Float(f) => *f as u64,
        _ => 0,
    }
}

pub fn as_text(value: &SqlStorageValue) -> Option<&str> {
    match value {
        SqlStorageValue::String(text) => Some(text),
        _ => None,
    }
}

pub fn as_blob(value: &SqlStorageValue) -> Option<&[u8]> {
    match value {
        SqlStorageValue::Blob(bytes) => Some(bytes),
        _ => None,
    }
}

/// Rows of a text id and a count, as `(id, count)` (rows whose id is not text are skipped).
pub fn ids_with_counts(rows: &[Vec<SqlStorageValue>]) -> Vec<(String, u64)> {
    rows.iter()
        .filter_map(|row| match row.first()? {
            SqlStorageValue::String(id) => Some((id.clone(), row.get(1).map(as_u64).unwrap_or(0))),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_columns_read_as_storage_returns_them() {
        assert_eq!(as_u64(&int(42)), 42);
        assert_eq!(as_u64(&SqlStorageValue::Float(42.0)), 42, "JavaScript numbers come back as floats");
        assert_eq!(as_u64(&SqlStorageValue::Integer(-3)), 0, "never a huge u64 from a negative");
        assert_eq!(as_u64(&SqlStorageValue::Null), 0);
        assert_eq!(as_blob(&SqlStorageValue::Blob(vec![1, 2])), Some(&[1u8, 2][..]));
        assert_eq!(as_blob(&text("not a blob")), None);
    }

    #[test]
    fn rows_of_ids_and_counts_skip_what_has_no_id() {
        let rows = vec![
            vec![text("t1"), int(7)],
            vec![SqlStorageValue::Null, int(9)],
            vec![text("t2")],
            vec![text("t3"), SqlStorageValue::Float(3.0)],
        ];
        assert_eq!(ids_with_counts(&rows), [("t1".to_string(), 7), ("t2".to_string(), 0), ("t3".to_string(), 3)]);
    }
}
