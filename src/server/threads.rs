//! [`Threads`]: which run each conversation thread is paused in, kept
//! where every server replica sees it.
//!
//! A resume names a thread, not a run, so the server must find the run the
//! thread waits in. Kept in the server's memory, that was lost on a
//! restart and unknown to the other replicas behind a load balancer; kept
//! here (in Redis for a fleet), any replica finds it, and the run's
//! checkpoint in the shared store does the rest.

use std::collections::HashMap;
use std::sync::Mutex;

use futures::future::BoxFuture;

use crate::backend::BackendError;

/// Where a server keeps the run each paused thread waits in.
pub trait Threads: Send + Sync + std::fmt::Debug {
    /// The run `thread_id` is paused in, if any.
    fn paused<'a>(
        &'a self,
        thread_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, BackendError>>;

    /// Records that `thread_id` is paused in `run_id` (`None`: in none).
    fn set_paused<'a>(
        &'a self,
        thread_id: &'a str,
        run_id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), BackendError>>;
}

/// Paused threads in this process's memory: the single-server default.
#[derive(Debug, Default)]
pub struct MemoryThreads {
    paused: Mutex<HashMap<String, String>>,
}

impl MemoryThreads {
    /// None paused.
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        // Only inserts and lookups happen under the lock; none panics.
        self.paused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Threads for MemoryThreads {
    fn paused<'a>(
        &'a self,
        thread_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, BackendError>> {
        let run = self.map().get(thread_id).cloned();
        Box::pin(async move { Ok(run) })
    }

    fn set_paused<'a>(
        &'a self,
        thread_id: &'a str,
        run_id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        match run_id {
            Some(run) => self.map().insert(thread_id.to_owned(), run.to_owned()),
            None => self.map().remove(thread_id),
        };
        Box::pin(async { Ok(()) })
    }
}

/// Paused threads in one Redis hash (`{prefix}:paused-threads`), shared by
/// every server on that Redis.
#[cfg(feature = "redis")]
#[derive(Debug, Clone)]
pub struct RedisThreads {
    conn: crate::backend::redis::RedisConn,
    key: String,
}

#[cfg(feature = "redis")]
impl RedisThreads {
    /// Paused threads on the server at `url`, under the key prefix
    /// `statewise`; connects on first use.
    pub fn open(url: &str) -> Result<Self, BackendError> {
        Ok(RedisThreads {
            conn: crate::backend::redis::RedisConn::open(url)?,
            key: "statewise:paused-threads".to_owned(),
        })
    }

    /// Starts the key with `prefix` instead of `statewise`.
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.key = format!("{prefix}:paused-threads");
        self
    }
}

#[cfg(feature = "redis")]
impl Threads for RedisThreads {
    fn paused<'a>(
        &'a self,
        thread_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, BackendError>> {
        Box::pin(self.conn.hget(&self.key, thread_id))
    }

    fn set_paused<'a>(
        &'a self,
        thread_id: &'a str,
        run_id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            self.conn
                .run(|mut conn| {
                    let cmd = match run_id {
                        Some(run) => {
                            let mut c = redis::cmd("HSET");
                            c.arg(&self.key).arg(thread_id).arg(run);
                            c
                        }
                        None => {
                            let mut c = redis::cmd("HDEL");
                            c.arg(&self.key).arg(thread_id);
                            c
                        }
                    };
                    async move { cmd.query_async::<()>(&mut conn).await }
                })
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_threads_keep_the_run_a_thread_waits_in() {
        let threads = MemoryThreads::new();
        assert_eq!(threads.paused("t").await.unwrap(), None);
        threads.set_paused("t", Some("r1")).await.unwrap();
        threads.set_paused("u", Some("r2")).await.unwrap();
        assert_eq!(threads.paused("t").await.unwrap().as_deref(), Some("r1"));
        threads.set_paused("t", None).await.unwrap();
        assert_eq!(threads.paused("t").await.unwrap(), None);
        assert_eq!(threads.paused("u").await.unwrap().as_deref(), Some("r2"));
    }
}
