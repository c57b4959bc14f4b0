//! [`RunLogs`]: every run's AG-UI events and status, kept where every
//! server replica reads them.
//!
//! The server that runs a run writes its events here as it sends them,
//! each under the index it was sent with; another replica asked for the
//! run (`GET /runs/{id}`, its events with `Last-Event-ID`, a WebSocket
//! `subscribe`) reads them from here and follows the run until it ends,
//! and a cancel sent to another replica is left here for the running one,
//! which sees it when it next writes. Logs are bounded: each keeps its
//! newest `max_events` and is forgotten `max_age` after its last write.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use super::log::RunStatus;
use crate::backend::BackendError;

/// How many events a shared log keeps per run by default.
pub const DEFAULT_MAX_EVENTS: usize = 10_000;
/// How long a shared log is kept after its last write by default.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3600);

/// Events a server writes to a run's shared log.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// The AG-UI run id.
    pub run_id: &'a str,
    /// Its thread.
    pub thread_id: &'a str,
    /// The index of the first of `events`.
    pub first: usize,
    /// The events, as the JSON sent.
    pub events: &'a [Arc<str>],
    /// The run's status after them.
    pub status: RunStatus,
    /// The principal that started the run, on a server with auth.
    pub owner: Option<&'a str>,
}

/// What a shared log holds from some index on.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The run's thread.
    pub thread_id: String,
    /// The run's status.
    pub status: RunStatus,
    /// The principal that started the run, on a server with auth.
    pub owner: Option<String>,
    /// Events, each with its index, in order (a bounded number).
    pub events: Vec<(usize, Arc<str>)>,
}

/// Where servers keep runs' event logs for each other.
pub trait RunLogs: Send + Sync + std::fmt::Debug {
    /// Writes `entry` (events already there are skipped, so a write sent
    /// again does no harm); answers whether a cancel of the run was asked.
    fn append<'a>(&'a self, entry: Entry<'a>) -> BoxFuture<'a, Result<bool, BackendError>>;

    /// The run's events from index `from` on (or from the oldest kept),
    /// or `None` if no log of it is kept.
    fn read<'a>(
        &'a self,
        run_id: &'a str,
        from: usize,
    ) -> BoxFuture<'a, Result<Option<Page>, BackendError>>;

    /// Asks the server running the run to cancel it; answers whether a
    /// log of the run is kept.
    fn cancel<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<bool, BackendError>>;

    /// Opens run `run_id`'s log (running, on `thread_id`) unless one is
    /// kept already, and makes it the thread's latest run: true if this
    /// call opened it. A schedule's firing starts where the claim is won,
    /// so on one replica only.
    fn claim<'a>(
        &'a self,
        run_id: &'a str,
        thread_id: &'a str,
    ) -> BoxFuture<'a, Result<bool, BackendError>>;

    /// The latest run claimed on `thread_id`, while its log is kept.
    fn latest<'a>(
        &'a self,
        thread_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, BackendError>>;
}

/// One set of logs shared by several servers in a process.
impl<T: RunLogs + ?Sized> RunLogs for Arc<T> {
    fn append<'a>(&'a self, entry: Entry<'a>) -> BoxFuture<'a, Result<bool, BackendError>> {
        (**self).append(entry)
    }

    fn read<'a>(
        &'a self,
        run_id: &'a str,
        from: usize,
    ) -> BoxFuture<'a, Result<Option<Page>, BackendError>> {
        (**self).read(run_id, from)
    }

    fn cancel<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<bool, BackendError>> {
        (**self).cancel(run_id)
    }

    fn claim<'a>(
        &'a self,
        run_id: &'a str,
        thread_id: &'a str,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        (**self).claim(run_id, thread_id)
    }

    fn latest<'a>(
        &'a self,
        thread_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, BackendError>> {
        (**self).latest(thread_id)
    }
}

/// Shared logs in this process's memory: for several servers in one
/// process, and for tests.
#[derive(Debug)]
pub struct MemoryRunLogs {
    runs: Mutex<HashMap<String, Kept>>,
    /// Thread → its latest claimed run.
    latest: Mutex<HashMap<String, String>>,
    max_events: usize,
    max_age: Duration,
}

#[derive(Debug)]
struct Kept {
    thread_id: String,
    owner: Option<String>,
    status: RunStatus,
    cancel: bool,
    first: usize,
    events: VecDeque<Arc<str>>,
    written: Instant,
}

impl Default for MemoryRunLogs {
    fn default() -> Self {
        MemoryRunLogs {
            runs: Mutex::default(),
            latest: Mutex::default(),
            max_events: DEFAULT_MAX_EVENTS,
            max_age: DEFAULT_MAX_AGE,
        }
    }
}

impl MemoryRunLogs {
    /// Empty, with the default bounds.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps at most `max_events` per run (at least one) and each log
    /// for `max_age` after its last write.
    pub fn with_bounds(mut self, max_events: usize, max_age: Duration) -> Self {
        self.max_events = max_events.max(1);
        self.max_age = max_age;
        self
    }

    fn latest_runs(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        // Only inserts and lookups happen under the lock.
        self.latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Kept>> {
        // Only map updates happen under the lock; none panics halfway.
        let mut runs = self
            .runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let max_age = self.max_age;
        runs.retain(|_, kept| kept.written.elapsed() < max_age);
        runs
    }
}

impl RunLogs for MemoryRunLogs {
    fn append<'a>(&'a self, entry: Entry<'a>) -> BoxFuture<'a, Result<bool, BackendError>> {
        let mut runs = self.runs();
        let kept = runs.entry(entry.run_id.to_owned()).or_insert_with(|| Kept {
            thread_id: entry.thread_id.to_owned(),
            owner: None,
            status: entry.status,
            cancel: false,
            first: entry.first,
            events: VecDeque::new(),
            written: Instant::now(),
        });
        if let Some(owner) = entry.owner {
            kept.owner = Some(owner.to_owned());
        }
        for (i, event) in entry.events.iter().enumerate() {
            if entry.first + i >= kept.first + kept.events.len() {
                kept.events.push_back(Arc::clone(event));
                if kept.events.len() > self.max_events {
                    kept.events.pop_front();
                    kept.first += 1;
                }
            }
        }
        kept.status = entry.status;
        kept.written = Instant::now();
        let cancel = kept.cancel;
        Box::pin(async move { Ok(cancel) })
    }

    fn read<'a>(
        &'a self,
        run_id: &'a str,
        from: usize,
    ) -> BoxFuture<'a, Result<Option<Page>, BackendError>> {
        let page = self.runs().get(run_id).map(|kept| Page {
            thread_id: kept.thread_id.clone(),
            status: kept.status,
            owner: kept.owner.clone(),
            events: (kept.first..)
                .zip(kept.events.iter().cloned())
                .skip(from.saturating_sub(kept.first))
                .collect(),
        });
        Box::pin(async move { Ok(page) })
    }

    fn cancel<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<bool, BackendError>> {
        let known = self.runs().get_mut(run_id).map(|kept| kept.cancel = true);
        Box::pin(async move { Ok(known.is_some()) })
    }

    fn claim<'a>(
        &'a self,
        run_id: &'a str,
        thread_id: &'a str,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        let mut runs = self.runs();
        let won = !runs.contains_key(run_id);
        if won {
            runs.insert(
                run_id.to_owned(),
                Kept {
                    thread_id: thread_id.to_owned(),
                    owner: None,
                    status: RunStatus::Running,
                    cancel: false,
                    first: 0,
                    events: VecDeque::new(),
                    written: Instant::now(),
                },
            );
            self.latest_runs()
                .insert(thread_id.to_owned(), run_id.to_owned());
        }
        Box::pin(async move { Ok(won) })
    }

    fn latest<'a>(
        &'a self,
        thread_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, BackendError>> {
        let runs = self.runs();
        let latest = self
            .latest_runs()
            .get(thread_id)
            .filter(|run| runs.contains_key(*run))
            .cloned();
        Box::pin(async move { Ok(latest) })
    }
}

#[cfg(feature = "redis")]
pub use redis_logs::RedisRunLogs;

#[cfg(feature = "redis")]
mod redis_logs {
    use super::*;
    use crate::backend::redis::RedisConn;
    use redis::streams::StreamRangeReply;

    /// Appends the events a log lacks, with ids `0-{index + 1}` so a
    /// stream id names the event's index; sets the status; renews the
    /// expiry; answers the cancel flag.
    const APPEND: &str = r"
local last = 0
local tail = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #tail > 0 then last = tonumber(string.match(tail[1][1], '-(%d+)$')) end
local first = tonumber(ARGV[5])
for i = 7, #ARGV do
  local seq = first + (i - 7) + 1
  if seq > last then
    redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '0-' .. seq, 'event', ARGV[i])
  end
end
redis.call('HSET', KEYS[2], 'thread', ARGV[3], 'status', ARGV[4])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[2], 'owner', ARGV[6]) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return redis.call('HGET', KEYS[2], 'cancel')
";

    /// Opens a run's log unless kept, and makes it its thread's latest.
    /// KEYS: the run's hash, the thread's latest. ARGV: thread, ttl, run.
    const CLAIM: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'thread', ARGV[1], 'status', 'running')
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[2])
return 1
";

    /// Flags a kept run for cancelling.
    const CANCEL: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'cancel', '1')
  return 1
end
return 0
";

    /// A run hash's thread, status and owner.
    type RunFields = (Option<String>, Option<String>, Option<String>);

    /// Shared logs on Redis: per run a stream of events
    /// (`{prefix}:run-log:{id}`) and a hash of its thread, status and
    /// cancel flag (`{prefix}:run:{id}`).
    #[derive(Debug, Clone)]
    pub struct RedisRunLogs {
        conn: RedisConn,
        prefix: String,
        max_events: usize,
        max_age: Duration,
        append: redis::Script,
        cancel: redis::Script,
        claim: redis::Script,
    }

    impl RedisRunLogs {
        /// Logs on the server at `url`, under the key prefix `statewise`,
        /// with the default bounds; connects on first use.
        pub fn open(url: &str) -> Result<Self, BackendError> {
            Ok(RedisRunLogs {
                conn: RedisConn::open(url)?,
                prefix: "statewise".to_owned(),
                max_events: DEFAULT_MAX_EVENTS,
                max_age: DEFAULT_MAX_AGE,
                append: redis::Script::new(APPEND),
                cancel: redis::Script::new(CANCEL),
                claim: redis::Script::new(CLAIM),
            })
        }

        /// Starts the keys with `prefix` instead of `statewise`.
        pub fn with_prefix(mut self, prefix: &str) -> Self {
            self.prefix = prefix.to_owned();
            self
        }

        /// Keeps at most `max_events` per run (at least one) and each log
        /// for `max_age` (whole seconds, at least one) after its last
        /// write.
        pub fn with_bounds(mut self, max_events: usize, max_age: Duration) -> Self {
            self.max_events = max_events.max(1);
            self.max_age = max_age;
            self
        }

        fn keys(&self, run_id: &str) -> (String, String) {
            (
                format!("{}:run-log:{run_id}", self.prefix),
                format!("{}:run:{run_id}", self.prefix),
            )
        }
    }

    impl RunLogs for RedisRunLogs {
        fn append<'a>(&'a self, entry: Entry<'a>) -> BoxFuture<'a, Result<bool, BackendError>> {
            let (events, run) = self.keys(entry.run_id);
            let ttl = self.max_age.as_secs().max(1);
            Box::pin(async move {
                let flag: Option<String> = self
                    .conn
                    .run(|mut conn| {
                        let mut call = self.append.key(&events);
                        call.key(&run)
                            .arg(self.max_events)
                            .arg(ttl)
                            .arg(entry.thread_id)
                            .arg(entry.status.as_str())
                            .arg(entry.first)
                            .arg(entry.owner.unwrap_or(""));
                        for event in entry.events {
                            call.arg(&**event);
                        }
                        async move { call.invoke_async(&mut conn).await }
                    })
                    .await?;
                Ok(flag.is_some())
            })
        }

        fn read<'a>(
            &'a self,
            run_id: &'a str,
            from: usize,
        ) -> BoxFuture<'a, Result<Option<Page>, BackendError>> {
            let (events, run) = self.keys(run_id);
            Box::pin(async move {
                let ((thread, status, owner), reply): (RunFields, StreamRangeReply) = self
                    .conn
                    .run(|mut conn| {
                        let mut pipe = redis::pipe();
                        pipe.cmd("HMGET")
                            .arg(&run)
                            .arg("thread")
                            .arg("status")
                            .arg("owner");
                        pipe.cmd("XRANGE")
                            .arg(&events)
                            .arg(format!("0-{}", from + 1))
                            .arg("+")
                            .arg("COUNT")
                            .arg(500);
                        async move { pipe.query_async(&mut conn).await }
                    })
                    .await?;
                let Some(thread_id) = thread else {
                    return Ok(None);
                };
                let status = status
                    .as_deref()
                    .and_then(RunStatus::from_name)
                    .ok_or_else(|| {
                        BackendError::new(std::io::Error::other(format!(
                            "run {run_id}'s shared log has no status a server writes ({status:?})"
                        )))
                    })?;
                let events = reply
                    .ids
                    .iter()
                    .filter_map(|e| {
                        let seq: usize = e.id.rsplit('-').next()?.parse().ok()?;
                        let event: String = e.get("event")?;
                        Some((seq.checked_sub(1)?, Arc::from(event)))
                    })
                    .collect();
                Ok(Some(Page {
                    thread_id,
                    status,
                    owner,
                    events,
                }))
            })
        }

        fn claim<'a>(
            &'a self,
            run_id: &'a str,
            thread_id: &'a str,
        ) -> BoxFuture<'a, Result<bool, BackendError>> {
            let (_, run) = self.keys(run_id);
            let latest = format!("{}:thread-latest:{thread_id}", self.prefix);
            let ttl = self.max_age.as_secs().max(1);
            Box::pin(async move {
                let won: i64 = self
                    .conn
                    .run(|mut conn| {
                        let mut call = self.claim.key(&run);
                        call.key(&latest).arg(thread_id).arg(ttl).arg(run_id);
                        async move { call.invoke_async(&mut conn).await }
                    })
                    .await?;
                Ok(won == 1)
            })
        }

        fn latest<'a>(
            &'a self,
            thread_id: &'a str,
        ) -> BoxFuture<'a, Result<Option<String>, BackendError>> {
            let latest = format!("{}:thread-latest:{thread_id}", self.prefix);
            Box::pin(async move {
                self.conn
                    .run(|mut conn| {
                        let latest = &latest;
                        async move { redis::cmd("GET").arg(latest).query_async(&mut conn).await }
                    })
                    .await
            })
        }

        fn cancel<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<bool, BackendError>> {
            let (_, run) = self.keys(run_id);
            Box::pin(async move {
                let known: i64 = self
                    .conn
                    .run(|mut conn| {
                        let call = self.cancel.key(&run);
                        async move { call.invoke_async(&mut conn).await }
                    })
                    .await?;
                Ok(known == 1)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(texts: &[&str]) -> Vec<Arc<str>> {
        texts.iter().map(|t| Arc::from(*t)).collect()
    }

    #[tokio::test]
    async fn memory_logs_keep_indexes_skip_repeats_and_drop_the_oldest() {
        let logs = MemoryRunLogs::new().with_bounds(3, Duration::from_secs(60));
        let entry = |first, evs: &'static [&'static str], status| (first, events(evs), status);
        for (first, evs, status) in [
            entry(0, &["a", "b"], RunStatus::Running),
            entry(1, &["b", "c"], RunStatus::Running),
            entry(3, &["d"], RunStatus::Finished),
        ] {
            let cancel = logs
                .append(Entry {
                    run_id: "r",
                    thread_id: "t",
                    first,
                    events: &evs,
                    status,
                    owner: None,
                })
                .await
                .unwrap();
            assert!(!cancel);
        }
        let page = logs.read("r", 0).await.unwrap().unwrap();
        assert_eq!(page.status, RunStatus::Finished);
        assert_eq!(page.thread_id, "t");
        let got: Vec<(usize, &str)> = page.events.iter().map(|(i, e)| (*i, &**e)).collect();
        assert_eq!(got, [(1, "b"), (2, "c"), (3, "d")]);
        let later = logs.read("r", 3).await.unwrap().unwrap();
        assert_eq!(later.events.len(), 1);
        assert_eq!(logs.read("other", 0).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_cancel_reaches_the_next_write_and_needs_a_kept_run() {
        let logs = MemoryRunLogs::new();
        assert!(!logs.cancel("r").await.unwrap());
        let none: Vec<Arc<str>> = Vec::new();
        let write = Entry {
            run_id: "r",
            thread_id: "t",
            first: 0,
            events: &none,
            status: RunStatus::Running,
            owner: None,
        };
        assert!(!logs.append(write).await.unwrap());
        assert!(logs.cancel("r").await.unwrap());
        assert!(logs.append(write).await.unwrap());
    }

    #[tokio::test]
    async fn memory_logs_forget_a_run_after_its_age() {
        let logs = MemoryRunLogs::new().with_bounds(10, Duration::ZERO);
        let one = events(&["a"]);
        logs.append(Entry {
            run_id: "r",
            thread_id: "t",
            first: 0,
            events: &one,
            status: RunStatus::Running,
            owner: None,
        })
        .await
        .unwrap();
        assert_eq!(logs.read("r", 0).await.unwrap(), None);
    }
}
