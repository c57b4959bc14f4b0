//! The SQLite trace sink (feature `sqlite`): one row per record, in the
//! database a checkpoint store may share.

use std::path::Path;

use futures::future::BoxFuture;
use rusqlite::params;

use super::{Line, TraceError, TraceRecord, TraceSink};
use crate::backend::sqlite::Db;
use crate::backend::BackendError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS trace (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id  TEXT NOT NULL,
    step    INTEGER,
    kind    TEXT NOT NULL,
    record  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS trace_run ON trace (run_id, id);";

/// Writes records to a `trace` table of an SQLite database (one row each:
/// run id, step, kind, the record's JSON), which may be the checkpoint
/// store's file.
#[derive(Debug, Clone)]
pub struct SqliteSink {
    db: Db,
}

impl SqliteSink {
    /// Opens the database at `path`, creating it and its folder.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, TraceError> {
        Ok(SqliteSink {
            db: Db::open(path.as_ref(), SCHEMA)?,
        })
    }

    /// The records of `run_id` (every run's for `None`), in write order.
    pub async fn read(&self, run_id: Option<&str>) -> Result<Vec<TraceRecord>, TraceError> {
        let run = run_id.map(str::to_owned);
        let rows: Vec<String> = self
            .db
            .call(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT record FROM trace WHERE ?1 IS NULL OR run_id = ?1 ORDER BY id",
                    )
                    .map_err(BackendError::new)?;
                let rows = stmt
                    .query_map(params![run], |r| r.get(0))
                    .map_err(BackendError::new)?;
                rows.collect::<Result<_, _>>().map_err(BackendError::new)
            })
            .await?;
        rows.iter()
            .enumerate()
            .map(|(i, r)| {
                serde_json::from_str(r).map_err(|source| TraceError::Format {
                    path: "trace table".to_owned(),
                    line: i + 1,
                    source,
                })
            })
            .collect()
    }
}

impl TraceSink for SqliteSink {
    fn write<'a>(&'a self, line: &'a Line) -> BoxFuture<'a, Result<(), TraceError>> {
        let (run_id, step, kind, json) =
            (line.run_id.clone(), line.step, line.kind, line.json.clone());
        Box::pin(async move {
            self.db
                .call(move |conn| {
                    conn.execute(
                        "INSERT INTO trace (run_id, step, kind, record) VALUES (?1, ?2, ?3, ?4)",
                        params![run_id, step, kind, json],
                    )
                    .map_err(BackendError::new)?;
                    Ok::<_, BackendError>(())
                })
                .await?;
            Ok(())
        })
    }
}
