//! One SQLite connection shared by the on-disk store, trace sink and cache.
//!
//! Calls run on tokio's blocking pool so a slow disk never stalls the
//! executor. WAL mode lets readers in other processes (a trace viewer, a
//! test watching checkpoints) read while a run writes.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;

use super::BackendError;

#[derive(Clone)]
pub(crate) struct Db {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Db")
    }
}

impl Db {
    /// Opens (creating) the database at `path` and runs `schema`.
    pub(crate) fn open(path: &Path, schema: &str) -> Result<Self, BackendError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(BackendError::new)?;
        }
        let conn = Connection::open(path).map_err(BackendError::new)?;
        Self::setup(conn, schema)
    }

    /// A private in-memory database.
    pub(crate) fn in_memory(schema: &str) -> Result<Self, BackendError> {
        let conn = Connection::open_in_memory().map_err(BackendError::new)?;
        Self::setup(conn, schema)
    }

    fn setup(conn: Connection, schema: &str) -> Result<Self, BackendError> {
        // Other processes may hold the write lock for a moment.
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(BackendError::new)?;
        // journal_mode answers with a row, so it is read, not executed.
        let _mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(BackendError::new)?;
        conn.execute_batch("PRAGMA synchronous=NORMAL;")
            .map_err(BackendError::new)?;
        conn.execute_batch(schema).map_err(BackendError::new)?;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on the connection, off the async executor.
    pub(crate) async fn call<R, E, F>(&self, f: F) -> Result<R, E>
    where
        F: FnOnce(&mut Connection) -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: From<BackendError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let run = move || {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn)
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle
                .spawn_blocking(run)
                .await
                .map_err(|e| E::from(BackendError::new(e)))?,
            // Outside a tokio runtime (a plain executor), block in place.
            Err(_) => run(),
        }
    }
}
