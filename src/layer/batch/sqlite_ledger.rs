//! [`SqliteLedger`] (feature `sqlite`): the batch ledger in an SQLite file,
//! the default for one machine.

use std::path::Path;

use futures::future::BoxFuture;
use rusqlite::{params, OptionalExtension};

use super::ledger::{BatchLedger, LedgerEntry};
use super::vendor::ItemOutcome;
use crate::backend::sqlite::Db;
use crate::backend::BackendError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS batch_calls (
    custom_id TEXT PRIMARY KEY,
    batch_id  TEXT NOT NULL,
    outcome   TEXT
);
CREATE TABLE IF NOT EXISTS batches_in_flight (batch_id TEXT PRIMARY KEY);";

/// The batch ledger in an SQLite file: which batch each call went out in,
/// its outcome once back, and the batches in flight. Survives the process;
/// several processes may share the file.
#[derive(Debug, Clone)]
pub struct SqliteLedger {
    db: Db,
}

impl SqliteLedger {
    /// Opens the ledger at `path`, creating the file and its folder.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, BackendError> {
        Ok(SqliteLedger {
            db: Db::open(path.as_ref(), SCHEMA)?,
        })
    }
}

fn corrupt(custom_id: &str, source: serde_json::Error) -> BackendError {
    BackendError::corrupt(format!("batch call {custom_id}"), source)
}

impl BatchLedger for SqliteLedger {
    fn lookup<'a>(
        &'a self,
        custom_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<LedgerEntry>, BackendError>> {
        let id = custom_id.to_owned();
        Box::pin(async move {
            let row: Option<(String, Option<String>)> = self
                .db
                .call(move |conn| {
                    conn.query_row(
                        "SELECT batch_id, outcome FROM batch_calls WHERE custom_id = ?1",
                        params![id],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(BackendError::new)
                })
                .await?;
            match row {
                None => Ok(None),
                Some((batch_id, None)) => Ok(Some(LedgerEntry::Submitted { batch_id })),
                Some((_, Some(outcome))) => serde_json::from_str(&outcome)
                    .map(|o| Some(LedgerEntry::Done(o)))
                    .map_err(|e| corrupt(custom_id, e)),
            }
        })
    }

    fn submitted<'a>(
        &'a self,
        batch_id: &'a str,
        custom_ids: &'a [String],
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        let (batch, ids) = (batch_id.to_owned(), custom_ids.to_vec());
        Box::pin(self.db.call(move |conn| {
            let tx = conn.transaction().map_err(BackendError::new)?;
            tx.execute("INSERT OR IGNORE INTO batches_in_flight (batch_id) VALUES (?1)", params![batch])
                .map_err(BackendError::new)?;
            for id in &ids {
                tx.execute(
                    "INSERT OR REPLACE INTO batch_calls (custom_id, batch_id, outcome) VALUES (?1, ?2, NULL)",
                    params![id, batch],
                )
                .map_err(BackendError::new)?;
            }
            tx.commit().map_err(BackendError::new)
        }))
    }

    fn finished<'a>(
        &'a self,
        batch_id: &'a str,
        outcomes: &'a [(String, ItemOutcome)],
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        let batch = batch_id.to_owned();
        let rows: Result<Vec<(String, String)>, BackendError> = outcomes
            .iter()
            .map(|(id, o)| {
                serde_json::to_string(o)
                    .map(|t| (id.clone(), t))
                    .map_err(|e| corrupt(id, e))
            })
            .collect();
        Box::pin(async move {
            let rows = rows?;
            self.db
                .call(move |conn| {
                    let tx = conn.transaction().map_err(BackendError::new)?;
                    for (id, outcome) in &rows {
                        tx.execute(
                            "INSERT OR REPLACE INTO batch_calls (custom_id, batch_id, outcome) VALUES (?1, ?2, ?3)",
                            params![id, batch, outcome],
                        )
                        .map_err(BackendError::new)?;
                    }
                    tx.execute("DELETE FROM batches_in_flight WHERE batch_id = ?1", params![batch])
                        .map_err(BackendError::new)?;
                    tx.commit().map_err(BackendError::new)
                })
                .await
        })
    }

    fn forget<'a>(&'a self, custom_id: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        let id = custom_id.to_owned();
        Box::pin(self.db.call(move |conn| {
            conn.execute("DELETE FROM batch_calls WHERE custom_id = ?1", params![id])
                .map_err(BackendError::new)?;
            Ok(())
        }))
    }

    fn in_flight(&self) -> BoxFuture<'_, Result<Vec<String>, BackendError>> {
        Box::pin(self.db.call(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT batch_id FROM batches_in_flight ORDER BY batch_id")
                .map_err(BackendError::new)?;
            let rows = stmt
                .query_map([], |r| r.get(0))
                .map_err(BackendError::new)?;
            rows.collect::<Result<_, _>>().map_err(BackendError::new)
        }))
    }
}
