//! The SQL the archive runs, behind one small trait: Durable Object SQLite in the Worker, and an
//! in-process SQLite (the same dialect) in host tests, so the archive's queries, paging, pruning
//! and ends are tested on the host, not only through `wrangler dev`.

use worker::{SqlStorage, SqlStorageValue};

/// Runs one SQL statement.
pub trait Sql {
    /// Runs `query` with `bindings`; its rows, as the storage returns them (none for a statement
    /// that returns none).
    ///
    /// # Errors
    /// The storage refused the statement.
    fn query(&self, query: &str, bindings: Vec<SqlStorageValue>) -> worker::Result<Vec<Vec<SqlStorageValue>>>;
}

impl Sql for SqlStorage {
    fn query(&self, query: &str, bindings: Vec<SqlStorageValue>) -> worker::Result<Vec<Vec<SqlStorageValue>>> {
        self.exec(query, bindings)?.raw().collect()
    }
}

/// Runs each statement of `schema` (statements separated by `;`), e.g. a store's tables.
///
/// # Errors
/// The storage refused a statement.
pub fn apply_schema(sql: &dyn Sql, schema: &str) -> worker::Result<()> {
    for statement in schema.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        sql.query(statement, vec![])?;
    }
    Ok(())
}

/// A storage that refused the archive's schema: every statement is refused with its reason.
pub struct Refusing(pub String);

impl Sql for Refusing {
    fn query(&self, _query: &str, _bindings: Vec<SqlStorageValue>) -> worker::Result<Vec<Vec<SqlStorageValue>>> {
        Err(worker::Error::RustError(self.0.clone()))
    }
}

/// An in-process SQLite for host tests.
#[cfg(all(test, not(target_arch = "wasm32")))]
pub mod in_memory {
    use rusqlite::types::{Value, ValueRef};
    use worker::SqlStorageValue;

    use super::Sql;

    /// A fresh database in memory.
    pub struct Memory(pub rusqlite::Connection);

    impl Default for Memory {
        fn default() -> Memory {
            Memory(rusqlite::Connection::open_in_memory().expect("an in-memory SQLite"))
        }
    }

    impl Sql for Memory {
        fn query(&self, query: &str, bindings: Vec<SqlStorageValue>) -> worker::Result<Vec<Vec<SqlStorageValue>>> {
            let refused = |e: rusqlite::Error| worker::Error::RustError(format!("{e}: {query}"));
            let mut statement = self.0.prepare(query).map_err(refused)?;
            let values: Vec<Value> = bindings
                .into_iter()
                .map(|value| match value {
                    SqlStorageValue::Null => Value::Null,
                    SqlStorageValue::Boolean(b) => Value::Integer(b.into()),
                    SqlStorageValue::Integer(i) => Value::Integer(i),
                    SqlStorageValue::Float(f) => Value::Real(f),
                    SqlStorageValue::String(s) => Value::Text(s),
                    SqlStorageValue::Blob(b) => Value::Blob(b),
                })
                .collect();
            let columns = statement.column_count();
            let mut rows = statement.query(rusqlite::params_from_iter(values)).map_err(refused)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(refused)? {
                let read = (0..columns).map(|i| match row.get_ref(i) {
                    Ok(ValueRef::Null) | Err(_) => SqlStorageValue::Null,
                    Ok(ValueRef::Integer(i)) => SqlStorageValue::Integer(i),
                    Ok(ValueRef::Real(f)) => SqlStorageValue::Float(f),
                    Ok(ValueRef::Text(t)) => SqlStorageValue::String(String::from_utf8_lossy(t).into_owned()),
                    Ok(ValueRef::Blob(b)) => SqlStorageValue::Blob(b.to_vec()),
                });
                out.push(read.collect());
            }
            Ok(out)
        }
    }
}
