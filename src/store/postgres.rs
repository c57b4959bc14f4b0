//! [`PostgresStore`]: checkpoints in PostgreSQL tables.
//!
//! Every write is one SQL statement: a run's row in `statewise_runs` and its
//! checkpoint go in together, and a rerun claims its run id with that row's
//! primary key, so no transaction (and no pooled connection) is needed.

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::Mutex;
use tokio_postgres::{Client, Config, NoTls};

use super::{from_json, to_json, Checkpoint, CheckpointMeta, Store, StoreError};
use crate::state::Next;

/// Taken while the schema is created, so processes starting together do
/// not race on `CREATE TABLE IF NOT EXISTS` (which can fail on a unique
/// index of the catalog when two create one table at once).
const SCHEMA: &str = "
SELECT pg_advisory_lock(7217700001);
CREATE TABLE IF NOT EXISTS statewise_runs (run_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS statewise_checkpoints (
    run_id     TEXT   NOT NULL,
    step       BIGINT NOT NULL,
    state      TEXT,
    next       TEXT   NOT NULL,
    created_ms BIGINT NOT NULL,
    body       TEXT   NOT NULL,
    PRIMARY KEY (run_id, step)
);
SELECT pg_advisory_unlock(7217700001);";

const PUT: &str = "
WITH run AS (INSERT INTO statewise_runs (run_id) VALUES ($1) ON CONFLICT DO NOTHING)
INSERT INTO statewise_checkpoints (run_id, step, state, next, created_ms, body)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (run_id, step) DO UPDATE SET state = EXCLUDED.state, next = EXCLUDED.next,
    created_ms = EXCLUDED.created_ms, body = EXCLUDED.body";

/// Inserts nothing when the run id is taken.
const FORK: &str = "
WITH run AS (
    INSERT INTO statewise_runs (run_id)
    SELECT $1::text WHERE NOT EXISTS (SELECT 1 FROM statewise_checkpoints WHERE run_id = $1::text)
    ON CONFLICT DO NOTHING RETURNING run_id)
INSERT INTO statewise_checkpoints (run_id, step, state, next, created_ms, body)
SELECT run_id, $2::bigint, $3::text, $4::text, $5::bigint, $6::text FROM run";

/// Checkpoints in PostgreSQL: every worker of a fleet reads and writes the
/// same runs.
///
/// Creates its two tables, `statewise_runs` and `statewise_checkpoints`, on
/// first use. Bodies are kept as JSON text, exactly as written. Clones share
/// one connection (tokio-postgres pipelines concurrent queries over it),
/// made on first use; a query that finds it closed (a restart, a cut idle
/// connection) is sent again once on a new one. The connection is not
/// encrypted; for TLS, put the server behind a local proxy or socket.
///
/// ```no_run
/// use statewise::store::PostgresStore;
/// use statewise::Machine;
///
/// let store = PostgresStore::open("postgres://agent@127.0.0.1:5432/agents")?;
/// let machine = Machine::new("start").with_store(store);
/// # Ok::<(), statewise::store::StoreError>(())
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    config: Arc<Config>,
    client: Arc<Mutex<Option<Arc<Client>>>>,
}

// The config can hold a password: never print it.
impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("dbname", &self.config.get_dbname())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// A store on the database at `url` (`postgres://user[:password]@host[:port]/db`
    /// or `host=... user=... dbname=...`); connects on first use.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        Ok(PostgresStore {
            config: Arc::new(Config::from_str(url).map_err(StoreError::backend)?),
            client: Arc::default(),
        })
    }

    /// The shared connection, (re)connecting and creating the tables when
    /// there is none open.
    async fn client(&self) -> Result<Arc<Client>, StoreError> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(client));
        }
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(StoreError::backend)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "PostgreSQL connection closed");
            }
        });
        client
            .batch_execute(SCHEMA)
            .await
            .map_err(StoreError::backend)?;
        let client = Arc::new(client);
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    /// Runs `query` on the connection; if the connection turns out closed
    /// (the server restarted, an idle connection was cut), once more on a
    /// new one. Every query here can be sent twice.
    async fn query<T, F, Fut>(&self, query: F) -> Result<T, StoreError>
    where
        F: Fn(Arc<Client>) -> Fut,
        Fut: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let client = self.client().await?;
        match query(Arc::clone(&client)).await {
            Err(e) if session_ended(&e) || client.is_closed() => {
                tracing::debug!(error = %e, "PostgreSQL connection closed; reconnecting");
                // Forget it, unless another caller already has.
                {
                    let mut slot = self.client.lock().await;
                    if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, &client)) {
                        *slot = None;
                    }
                }
                query(self.client().await?)
                    .await
                    .map_err(StoreError::backend)
            }
            other => other.map_err(StoreError::backend),
        }
    }

    /// Runs `sql` with the checkpoint's columns: the rows written, and
    /// whether it was sent more than once (after a dropped connection).
    async fn write(&self, sql: &str, checkpoint: &Checkpoint) -> Result<(u64, bool), StoreError> {
        let run_id = &checkpoint.run_id;
        let body = to_json(checkpoint, run_id)?;
        let next = to_json(&checkpoint.next, run_id)?;
        let (step, created) = (i64::from(checkpoint.step), checkpoint.created_ms as i64);
        let (state, body, next) = (&checkpoint.state, &body, &next);
        let sent = std::sync::atomic::AtomicU32::new(0);
        let rows = self
            .query(|client| {
                sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                async move {
                    client
                        .execute(sql, &[run_id, &step, state, next, &created, body])
                        .await
                }
            })
            .await?;
        Ok((rows, sent.into_inner() > 1))
    }
}

/// Whether `e` ended the connection's session: it closed, or the server
/// sent a FATAL error (an administrator's termination, a shutdown), after
/// which it closes the connection.
fn session_ended(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::Severity;
    // The parsed severity is the untranslated one (`lc_messages` changes
    // the other).
    e.is_closed()
        || e.as_db_error()
            .is_some_and(|d| matches!(d.parsed_severity(), Some(Severity::Fatal | Severity::Panic)))
}

impl Store for PostgresStore {
    fn put<'a>(&'a self, checkpoint: &'a Checkpoint) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move { self.write(PUT, checkpoint).await.map(drop) })
    }

    fn get<'a>(
        &'a self,
        run_id: &'a str,
        step: Option<u32>,
    ) -> BoxFuture<'a, Result<Option<Checkpoint>, StoreError>> {
        Box::pin(async move {
            let row = self
                .query(|client| async move {
                    match step {
                        Some(step) => {
                            client
                                .query_opt(
                                    "SELECT body FROM statewise_checkpoints WHERE run_id = $1 AND step = $2",
                                    &[&run_id, &i64::from(step)],
                                )
                                .await
                        }
                        None => {
                            client
                                .query_opt(
                                    "SELECT body FROM statewise_checkpoints WHERE run_id = $1
                                     ORDER BY step DESC LIMIT 1",
                                    &[&run_id],
                                )
                                .await
                        }
                    }
                })
                .await?;
            row.map(|r| from_json(r.get::<_, &str>(0), run_id))
                .transpose()
        })
    }

    fn list<'a>(
        &'a self,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<CheckpointMeta>, StoreError>> {
        Box::pin(async move {
            let rows = self
                .query(|client| async move {
                    client
                        .query(
                            "SELECT step, state, next, created_ms FROM statewise_checkpoints
                             WHERE run_id = $1 ORDER BY step",
                            &[&run_id],
                        )
                        .await
                })
                .await?;
            rows.iter()
                .map(|r| {
                    let next: Next = from_json(r.get::<_, &str>(2), run_id)?;
                    Ok(CheckpointMeta {
                        run_id: run_id.to_owned(),
                        step: r.get::<_, i64>(0) as u32,
                        state: r.get(1),
                        next,
                        created_ms: r.get::<_, i64>(3) as u64,
                    })
                })
                .collect()
        })
    }

    fn runs(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            // Byte order, as Rust orders strings, whatever the database's
            // collation.
            let rows = self
                .query(|client| async move {
                    client
                        .query(
                            r#"SELECT run_id FROM statewise_runs ORDER BY run_id COLLATE "C""#,
                            &[],
                        )
                        .await
                })
                .await?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn delete<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let removed = self
                .query(|client| async move {
                    client
                        .execute(
                            "WITH run AS (DELETE FROM statewise_runs WHERE run_id = $1)
                             DELETE FROM statewise_checkpoints WHERE run_id = $1",
                            &[&run_id],
                        )
                        .await
                })
                .await?;
            Ok(removed > 0)
        })
    }

    fn put_new<'a>(
        &'a self,
        checkpoint: &'a Checkpoint,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let (rows, resent) = self.write(FORK, checkpoint).await?;
            Ok(rows > 0 || (resent && super::own_first_attempt(self, checkpoint).await?))
        })
    }
}
