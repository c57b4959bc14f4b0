//! One Redis connection shared by a process's Redis store, cache and run
//! queue, opened on first use.
//!
//! Opening is lazy so constructors stay synchronous and cheap (a store can be
//! made in a `Machine` builder); the connection is redis-rs's
//! `ConnectionManager`, which multiplexes every caller over one socket and
//! reconnects by itself after the server restarts. The command that found
//! the connection broken still fails, so [`RedisConn::run`] sends it again
//! while the connection comes back: every command we send is idempotent.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError, RedisResult, RetryMethod};
use tokio::sync::OnceCell;

use super::BackendError;

/// A Redis server, connected on first use; clones share the connection.
#[derive(Clone)]
pub(crate) struct RedisConn {
    client: Client,
    manager: Arc<OnceCell<ConnectionManager>>,
}

// The URL can hold a password: never print it.
impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConn")
            .field(
                "db",
                &self.client.get_connection_info().redis_settings().db(),
            )
            .finish_non_exhaustive()
    }
}

impl RedisConn {
    /// Checks `url` (`redis://[:password@]host[:port][/db]`); connects later.
    pub(crate) fn open(url: &str) -> Result<Self, BackendError> {
        let client = Client::open(url).map_err(BackendError::new)?;
        Ok(RedisConn {
            client,
            manager: Arc::default(),
        })
    }

    /// The shared connection, connecting if this is the first use.
    pub(crate) async fn get(&self) -> Result<ConnectionManager, BackendError> {
        self.manager
            .get_or_try_init(|| {
                // redis-rs gives up on a reply after 500 ms by default; a
                // server fsyncing every write under load can take longer,
                // and a command sent again after a timeout may run twice.
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(Duration::from_secs(10)))
                    .set_connection_timeout(Some(Duration::from_secs(2)));
                ConnectionManager::new_with_config(self.client.clone(), config)
            })
            .await
            .cloned()
            .map_err(BackendError::new)
    }

    /// Runs `command` on the connection, sending it again (up to 8 times
    /// over about 6 s) while the failure is one a reconnect or a wait
    /// mends: a dropped connection, a refused one during a restart, a
    /// server still loading its data.
    pub(crate) async fn run<T, F, Fut>(&self, mut command: F) -> Result<T, BackendError>
    where
        F: FnMut(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let mut wait = Duration::from_millis(25);
        let mut attempt = 1;
        loop {
            let outcome = match self.get().await {
                Ok(conn) => command(conn).await.map_err(BackendError::new),
                Err(e) => Err(e),
            };
            match outcome {
                Err(e) if attempt < 8 && transient(&e) => {
                    tracing::debug!(attempt, error = %e, "Redis command failed; sending it again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// The value of `field` in hash `key` (`HGET`), sent as [`run`](Self::run) does.
    pub(crate) async fn hget(
        &self,
        key: &str,
        field: &str,
    ) -> Result<Option<String>, BackendError> {
        self.run(|mut conn| async move {
            redis::cmd("HGET")
                .arg(key)
                .arg(field)
                .query_async(&mut conn)
                .await
        })
        .await
    }
}

/// Whether sending the command again may succeed.
fn transient(e: &BackendError) -> bool {
    let BackendError::Failed(source) = e else {
        return false;
    };
    source.downcast_ref::<RedisError>().is_some_and(|e| {
        e.is_connection_refusal()
            || matches!(
                e.retry_method(),
                RetryMethod::Reconnect | RetryMethod::RetryImmediately | RetryMethod::WaitAndRetry
            )
    })
}
