//! The connections statewise keeps data through, shared by stores, caches,
//! batch ledgers and the run queue: one SQLite database (`sqlite`) and
//! one Redis server (`redis`) per handle, and [`BackendError`], the one
//! error they fail with.
//!
//! Below the layers and stores that use them, and knowing neither: a
//! cache's failure is not a checkpoint's, so each user turns a
//! `BackendError` into its own error (a store's
//! [`StoreError::Backend`](crate::store::StoreError::Backend), a model
//! layer's `ModelError`).

#[cfg(feature = "redis")]
pub(crate) mod redis;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;

/// Why a database behind a store, cache, ledger or queue failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// A saved record could not be read back (or a value written).
    #[error("corrupt record {key}: {source}; delete it, or the database, to start it afresh")]
    Corrupt {
        /// What the record is (`cache entry KEY`, `batch call ID`).
        key: String,
        /// What was wrong with it.
        #[source]
        source: serde_json::Error,
    },
    /// The database failed: I/O, SQL, the connection.
    #[error("backend failed: {0}")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl BackendError {
    /// Wraps a database client's own error (for caches and ledgers written
    /// outside this crate too).
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        BackendError::Failed(Box::new(e))
    }

    /// A record named `key` that did not (de)serialize.
    pub fn corrupt(key: impl Into<String>, source: serde_json::Error) -> Self {
        BackendError::Corrupt {
            key: key.into(),
            source,
        }
    }
}

/// A check of a conformance suite (a store's, a cache's) that did not hold.
#[derive(Debug, thiserror::Error)]
#[error("conformance check `{check}` failed: {detail}")]
pub struct ConformanceFailure {
    /// The check.
    pub check: &'static str,
    /// What was wrong.
    pub detail: String,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
