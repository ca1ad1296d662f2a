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
