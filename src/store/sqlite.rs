//! [`SqliteStore`]: checkpoints in an SQLite file.

use std::path::Path;

use futures::future::BoxFuture;
use rusqlite::{params, OptionalExtension};

use super::{to_json, Checkpoint, CheckpointMeta, Store, StoreError};
use crate::backend::sqlite::Db;
use crate::state::Next;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS checkpoints (
    run_id     TEXT    NOT NULL,
    step       INTEGER NOT NULL,
    state      TEXT,
    next       TEXT    NOT NULL,
    created_ms INTEGER NOT NULL,
    body       TEXT    NOT NULL,
    PRIMARY KEY (run_id, step)
);";

/// Checkpoints in an SQLite database file (bundled SQLite, WAL mode).
///
/// Each checkpoint is one row holding its JSON; several processes may
/// write one file. Clones share the connection.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    db: Db,
}

impl SqliteStore {
    /// Opens the store at `path`, creating the file and its folder.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Ok(SqliteStore {
            db: Db::open(path.as_ref(), SCHEMA)?,
        })
    }

    /// A store in a private in-memory database.
    pub fn in_memory() -> Result<Self, StoreError> {
        Ok(SqliteStore {
            db: Db::in_memory(SCHEMA)?,
        })
    }
}

impl Store for SqliteStore {
    fn put<'a>(&'a self, checkpoint: &'a Checkpoint) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let body = to_json(checkpoint, &checkpoint.run_id)?;
            let next = to_json(&checkpoint.next, &checkpoint.run_id)?;
            let (run_id, step, state, created) = (
                checkpoint.run_id.clone(),
                checkpoint.step,
                checkpoint.state.clone(),
                checkpoint.created_ms as i64,
            );
            self.db
                .call(move |conn| {
                    conn.execute(
                        "INSERT OR REPLACE INTO checkpoints (run_id, step, state, next, created_ms, body)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![run_id, step, state, next, created, body],
                    )
                    .map_err(StoreError::backend)?;
                    Ok(())
                })
                .await
        })
    }

    fn get<'a>(
        &'a self,
        run_id: &'a str,
        step: Option<u32>,
    ) -> BoxFuture<'a, Result<Option<Checkpoint>, StoreError>> {
        let run = run_id.to_owned();
        Box::pin(async move {
            let body: Option<String> = self
                .db
                .call(move |conn| {
                    let row = match step {
                        Some(step) => conn
                            .query_row(
                                "SELECT body FROM checkpoints WHERE run_id = ?1 AND step = ?2",
                                params![run, step],
                                |r| r.get(0),
                            )
                            .optional(),
                        None => conn
                            .query_row(
                                "SELECT body FROM checkpoints WHERE run_id = ?1 ORDER BY step DESC LIMIT 1",
                                params![run],
                                |r| r.get(0),
                            )
                            .optional(),
                    };
                    row.map_err(StoreError::backend)
                })
                .await?;
            body.map(|b| {
                serde_json::from_str(&b).map_err(|source| StoreError::Corrupt {
                    run_id: run_id.to_owned(),
                    source,
                })
            })
            .transpose()
        })
    }

    fn list<'a>(
        &'a self,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<CheckpointMeta>, StoreError>> {
        let run = run_id.to_owned();
        Box::pin(async move {
            let rows: Vec<(u32, Option<String>, String, i64)> = self
                .db
                .call(move |conn| {
                    let mut stmt = conn
                        .prepare_cached(
                            "SELECT step, state, next, created_ms FROM checkpoints
                             WHERE run_id = ?1 ORDER BY step",
                        )
                        .map_err(StoreError::backend)?;
                    let rows = stmt
                        .query_map(params![run], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                        })
                        .map_err(StoreError::backend)?;
                    rows.collect::<Result<_, _>>().map_err(StoreError::backend)
                })
                .await?;
            rows.into_iter()
                .map(|(step, state, next, created)| {
                    let next: Next =
                        serde_json::from_str(&next).map_err(|source| StoreError::Corrupt {
                            run_id: run_id.to_owned(),
                            source,
                        })?;
                    Ok(CheckpointMeta {
                        run_id: run_id.to_owned(),
                        step,
                        state,
                        next,
                        created_ms: created as u64,
                    })
                })
                .collect()
        })
    }

    fn runs(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(self.db.call(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT DISTINCT run_id FROM checkpoints ORDER BY run_id")
                .map_err(StoreError::backend)?;
            let rows = stmt
                .query_map([], |r| r.get(0))
                .map_err(StoreError::backend)?;
            rows.collect::<Result<_, _>>().map_err(StoreError::backend)
        }))
    }

    fn delete<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        let run = run_id.to_owned();
        Box::pin(self.db.call(move |conn| {
            let n = conn
                .execute("DELETE FROM checkpoints WHERE run_id = ?1", params![run])
                .map_err(StoreError::backend)?;
            Ok(n > 0)
        }))
    }

    fn put_new<'a>(
        &'a self,
        checkpoint: &'a Checkpoint,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let id = checkpoint.run_id.clone();
            let body = to_json(checkpoint, &id)?;
            let next = to_json(&checkpoint.next, &id)?;
            let (step, state, created) = (
                checkpoint.step,
                checkpoint.state.clone(),
                checkpoint.created_ms as i64,
            );
            // Check and insert in one transaction, so two reruns to one id
            // cannot both succeed.
            self.db
                .call(move |conn| {
                    let tx = conn.transaction().map_err(StoreError::backend)?;
                    let taken: bool = tx
                        .query_row(
                            "SELECT EXISTS (SELECT 1 FROM checkpoints WHERE run_id = ?1)",
                            params![id],
                            |r| r.get(0),
                        )
                        .map_err(StoreError::backend)?;
                    if taken {
                        return Ok(false);
                    }
                    tx.execute(
                        "INSERT INTO checkpoints (run_id, step, state, next, created_ms, body)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![id, step, state, next, created, body],
                    )
                    .map_err(StoreError::backend)?;
                    tx.commit().map_err(StoreError::backend)?;
                    Ok(true)
                })
                .await
        })
    }
}
