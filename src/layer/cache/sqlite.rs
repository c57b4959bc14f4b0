//! [`SqliteCache`] (feature `sqlite`): replies in an SQLite file that
//! several processes may share.

use std::path::Path;

use futures::future::BoxFuture;
use rusqlite::{params, OptionalExtension};

use super::chunks_from_json;
use super::CacheStore;
use crate::backend::sqlite::Db;
use crate::backend::BackendError;
use crate::model::Chunk;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS responses (
    key        TEXT PRIMARY KEY,
    chunks     TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);";

/// Replies in an SQLite file, kept until deleted; several processes may
/// share one.
#[derive(Debug, Clone)]
pub struct SqliteCache {
    db: Db,
}

impl SqliteCache {
    /// Opens the cache at `path`, creating the file and its folder.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, BackendError> {
        Ok(SqliteCache {
            db: Db::open(path.as_ref(), SCHEMA)?,
        })
    }
}

impl CacheStore for SqliteCache {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<Chunk>>, BackendError>> {
        let k = key.to_owned();
        Box::pin(async move {
            let text: Option<String> = self
                .db
                .call(move |conn| {
                    conn.query_row(
                        "SELECT chunks FROM responses WHERE key = ?1",
                        params![k],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(BackendError::new)
                })
                .await?;
            text.map(|t| chunks_from_json(&t, key)).transpose()
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        chunks: &'a [Chunk],
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        let k = key.to_owned();
        let text = serde_json::to_string(chunks);
        Box::pin(async move {
            let text =
                text.map_err(|source| BackendError::corrupt(format!("cache entry {k}"), source))?;
            let now = crate::backend::now_ms() as i64;
            self.db
                .call(move |conn| {
                    conn.execute(
                        "INSERT OR REPLACE INTO responses (key, chunks, created_ms) VALUES (?1, ?2, ?3)",
                        params![k, text, now],
                    )
                    .map_err(BackendError::new)?;
                    Ok(())
                })
                .await
        })
    }
}
