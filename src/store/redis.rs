//! [`RedisStore`]: checkpoints in Redis, for runs shared by a fleet.
//!
//! Each run has a hash of checkpoint bodies, a hash of their metadata and a
//! sorted set of its steps; every write is one Lua script, so a reader never
//! sees a body without its step, and a rerun's check-then-write is atomic.

use std::sync::LazyLock;

use futures::future::BoxFuture;
use redis::Script;

use super::{from_json, to_json, Checkpoint, CheckpointMeta, Store, StoreError};
use crate::backend::redis::RedisConn;
use crate::env::{Journal, JournalError, Observation};

// The parts of the write scripts, shared so a rerun is fenced, counted and
// logged exactly as a put is. KEYS: bodies, steps, metas, runs, fence,
// writers. ARGV: step, body, meta, run id, token or "".

/// With a token: refuse (-1) unless it is the run's current one, counting
/// the refusal.
macro_rules! fence_check {
    () => {
        "
if ARGV[5] ~= '' and redis.call('GET', KEYS[5]) ~= ARGV[5] then
  redis.call('INCR', KEYS[5] .. ':rejected')
  return -1
end
"
    };
}

/// With a token: append `step:token` to the run's writes. Then the write:
/// body, metadata, step and run.
macro_rules! logged_write {
    () => {
        "
if ARGV[5] ~= '' then redis.call('RPUSH', KEYS[6], ARGV[1] .. ':' .. ARGV[5]) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[1])
redis.call('ZADD', KEYS[4], 0, ARGV[4])
return 1
"
    };
}

/// Writes one checkpoint (1), or -1 if fenced.
const PUT: &str = concat!(fence_check!(), logged_write!());

/// [`PUT`], unless the run already has a step (then 0).
const FORK: &str = concat!(
    fence_check!(),
    "if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end\n",
    logged_write!()
);

/// The body of the latest step. KEYS: bodies, steps.
const LATEST: &str = r"
local s = redis.call('ZRANGE', KEYS[2], -1, -1)
if #s == 0 then return false end
return redis.call('HGET', KEYS[1], s[1])
";

/// The metadata of every step, in order. KEYS: steps, metas.
const LIST: &str = r"
local out = {}
for _, s in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  out[#out + 1] = redis.call('HGET', KEYS[2], s)
end
return out
";

/// Removes a run and its tool journal; the number of its checkpoint keys
/// removed, or -1 if fenced. KEYS: bodies, steps, metas, runs, effects,
/// fence, writers. ARGV: run id, token or "".
const DELETE: &str = r"
if ARGV[2] ~= '' and redis.call('GET', KEYS[6]) ~= ARGV[2] then return -1 end
local n = redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('DEL', KEYS[5], KEYS[7])
redis.call('ZREM', KEYS[4], ARGV[1])
return n
";

// Built once: a script hashes its source for EVALSHA.
/// Records a tool call's observation (1), or -1 if fenced: a worker whose
/// claim was taken over must not journal an effect as the run's. KEYS:
/// effects, fence. ARGV: call key, observation, token or "".
const JOURNAL: &str = r"
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[3] then
  redis.call('INCR', KEYS[2] .. ':rejected')
  return -1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
";

static PUT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(PUT));
static JOURNAL_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(JOURNAL));
static FORK_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(FORK));
static LATEST_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(LATEST));
static LIST_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(LIST));
static DELETE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(DELETE));

/// Checkpoints in Redis: every worker of a fleet reads and writes the same
/// runs. It is also a tool [`Journal`] (give it to
/// [`Machine::with_journal`](crate::Machine::with_journal) too), keeping
/// each run's completed calls beside its checkpoints.
///
/// Keys start with a prefix (`statewise` unless
/// [`with_prefix`](Self::with_prefix) says otherwise), so several
/// applications can share a database. Each write is atomic; for durability
/// across a Redis restart, run the server with `appendonly yes`. Clones share
/// one connection, made on first use, which reconnects by itself.
///
/// ```no_run
/// use statewise::store::RedisStore;
/// use statewise::Machine;
///
/// let store = RedisStore::open("redis://127.0.0.1:6379")?;
/// let machine = Machine::new("start").with_store(store);
/// # Ok::<(), statewise::store::StoreError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RedisStore {
    conn: RedisConn,
    prefix: String,
    fence: Option<Fence>,
}

/// The claim a fenced store writes under.
#[derive(Debug, Clone)]
struct Fence {
    run_id: String,
    token: u64,
}

impl RedisStore {
    /// A store on the server at `url` (`redis://[:password@]host[:port][/db]`,
    /// or `rediss://` for TLS); connects on first use.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        Ok(RedisStore {
            conn: RedisConn::open(url)?,
            prefix: "statewise".to_owned(),
            fence: None,
        })
    }

    /// Takes a new claim on run `run_id`: its fencing token goes up by one
    /// and is returned. Writes under an older token fail from now on with
    /// [`StoreError::Fenced`].
    pub async fn claim(&self, run_id: &str) -> Result<u64, StoreError> {
        let fence = self.fence_key(run_id);
        // Not sent again after an error: a second INCR would fence this
        // very claim. A failed claim is the worker's to retry.
        let mut conn = self.conn.get().await?;
        redis::cmd("INCR")
            .arg(&fence)
            .query_async(&mut conn)
            .await
            .map_err(StoreError::backend)
    }

    /// The current fencing token of run `run_id` (0 if never claimed).
    pub async fn token(&self, run_id: &str) -> Result<u64, StoreError> {
        let fence = self.fence_key(run_id);
        let token: Option<u64> = self
            .conn
            .run(|mut conn| {
                let fence = &fence;
                async move { redis::cmd("GET").arg(fence).query_async(&mut conn).await }
            })
            .await?;
        Ok(token.unwrap_or(0))
    }

    /// This store writing under the claim `token` on run `run_id` (from
    /// [`claim`](Self::claim)): every write (put, rerun, delete) first checks,
    /// in the same atomic script, that the token is still the run's
    /// current one, and fails with [`StoreError::Fenced`] otherwise. A
    /// worker that was paused past its lease cannot overwrite the
    /// checkpoints of the worker that took the run over.
    pub fn fenced(&self, run_id: &str, token: u64) -> RedisStore {
        RedisStore {
            fence: Some(Fence {
                run_id: run_id.to_owned(),
                token,
            }),
            ..self.clone()
        }
    }

    /// Every write a fenced store made to run `run_id`, in order, as
    /// `(step, token)`: what an audit reads to see that no write came from
    /// a claim older than one that had already written.
    pub async fn writers(&self, run_id: &str) -> Result<Vec<(u32, u64)>, StoreError> {
        let key = self.key(run_id, "writers");
        let writes: Vec<String> = self
            .conn
            .run(|mut conn| {
                let key = &key;
                async move {
                    redis::cmd("LRANGE")
                        .arg(key)
                        .arg(0)
                        .arg(-1)
                        .query_async(&mut conn)
                        .await
                }
            })
            .await?;
        Ok(writes
            .iter()
            .filter_map(|w| {
                let (step, token) = w.split_once(':')?;
                Some((step.parse().ok()?, token.parse().ok()?))
            })
            .collect())
    }

    /// How many writes to run `run_id` were refused because their claim was
    /// stale.
    pub async fn rejected(&self, run_id: &str) -> Result<u64, StoreError> {
        let key = format!("{}:rejected", self.fence_key(run_id));
        let n: Option<u64> = self
            .conn
            .run(|mut conn| {
                let key = &key;
                async move { redis::cmd("GET").arg(key).query_async(&mut conn).await }
            })
            .await?;
        Ok(n.unwrap_or(0))
    }

    /// The fence key and token the scripts check ("" for none).
    fn fence_args(&self, run_id: &str) -> (String, String) {
        match &self.fence {
            Some(f) => (self.fence_key(&f.run_id), f.token.to_string()),
            None => (self.fence_key(run_id), String::new()),
        }
    }

    fn fenced_error(&self) -> StoreError {
        let (run_id, token) = self
            .fence
            .as_ref()
            .map(|f| (f.run_id.clone(), f.token))
            .unwrap_or_default();
        StoreError::Fenced { run_id, token }
    }

    /// Starts every key with `prefix` instead of `statewise`.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, run_id: &str, part: &str) -> String {
        format!("{}:run:{run_id}:{part}", self.prefix)
    }

    /// The key of run `run_id`'s fencing token, which the run queue's
    /// scripts check too.
    pub(crate) fn fence_key(&self, run_id: &str) -> String {
        self.key(run_id, "fence")
    }

    fn runs_key(&self) -> String {
        format!("{}:runs", self.prefix)
    }

    /// Runs `script` on `keys` of `run_id` (bodies, steps, metas, runs)
    /// with the checkpoint's step, body, meta and run id: whether it wrote,
    /// and whether it was sent more than once (after a dropped connection).
    async fn write(
        &self,
        script: &Script,
        checkpoint: &Checkpoint,
    ) -> Result<(bool, bool), StoreError> {
        let run_id = &checkpoint.run_id;
        let body = to_json(checkpoint, run_id)?;
        let meta = to_json(&CheckpointMeta::from(checkpoint), run_id)?;
        let (fence, token) = self.fence_args(run_id);
        let keys = [
            self.key(run_id, "bodies"),
            self.key(run_id, "steps"),
            self.key(run_id, "metas"),
            self.runs_key(),
            fence,
            self.key(run_id, "writers"),
        ];
        let mut sent = 0u32;
        let written: i64 = self
            .conn
            .run(|mut conn| {
                sent += 1;
                let mut call = script.prepare_invoke();
                call.key(&keys[..])
                    .arg(checkpoint.step)
                    .arg(&body)
                    .arg(&meta)
                    .arg(run_id)
                    .arg(&token);
                async move { call.invoke_async(&mut conn).await }
            })
            .await?;
        if written == -1 {
            return Err(self.fenced_error());
        }
        Ok((written == 1, sent > 1))
    }
}

impl Store for RedisStore {
    fn put<'a>(&'a self, checkpoint: &'a Checkpoint) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move { self.write(&PUT_SCRIPT, checkpoint).await.map(drop) })
    }

    fn get<'a>(
        &'a self,
        run_id: &'a str,
        step: Option<u32>,
    ) -> BoxFuture<'a, Result<Option<Checkpoint>, StoreError>> {
        Box::pin(async move {
            let (bodies, steps) = (self.key(run_id, "bodies"), self.key(run_id, "steps"));
            let body: Option<String> = self
                .conn
                .run(|mut conn| {
                    let (bodies, steps) = (&bodies, &steps);
                    async move {
                        match step {
                            Some(step) => {
                                redis::cmd("HGET")
                                    .arg(bodies)
                                    .arg(step)
                                    .query_async(&mut conn)
                                    .await
                            }
                            None => {
                                LATEST_SCRIPT
                                    .key(bodies)
                                    .key(steps)
                                    .invoke_async(&mut conn)
                                    .await
                            }
                        }
                    }
                })
                .await?;
            body.map(|b| from_json(&b, run_id)).transpose()
        })
    }

    fn list<'a>(
        &'a self,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<CheckpointMeta>, StoreError>> {
        Box::pin(async move {
            let keys = [self.key(run_id, "steps"), self.key(run_id, "metas")];
            let metas: Vec<String> = self
                .conn
                .run(|mut conn| {
                    let mut call = LIST_SCRIPT.prepare_invoke();
                    call.key(&keys[..]);
                    async move { call.invoke_async(&mut conn).await }
                })
                .await?;
            metas.iter().map(|m| from_json(m, run_id)).collect()
        })
    }

    fn runs(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            let key = self.runs_key();
            // One score for all: Redis orders them by their bytes, as Rust
            // orders strings.
            self.conn
                .run(|mut conn| {
                    let key = &key;
                    async move {
                        redis::cmd("ZRANGE")
                            .arg(key)
                            .arg(0)
                            .arg(-1)
                            .query_async(&mut conn)
                            .await
                    }
                })
                .await
                .map_err(StoreError::from)
        })
    }

    fn delete<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let (fence, token) = self.fence_args(run_id);
            let keys = [
                self.key(run_id, "bodies"),
                self.key(run_id, "steps"),
                self.key(run_id, "metas"),
                self.runs_key(),
                self.key(run_id, "effects"),
                fence,
                self.key(run_id, "writers"),
            ];
            let removed: i64 = self
                .conn
                .run(|mut conn| {
                    let mut call = DELETE_SCRIPT.prepare_invoke();
                    call.key(&keys[..]).arg(run_id).arg(&token);
                    async move { call.invoke_async(&mut conn).await }
                })
                .await?;
            if removed == -1 {
                return Err(self.fenced_error());
            }
            Ok(removed > 0)
        })
    }

    fn put_new<'a>(
        &'a self,
        checkpoint: &'a Checkpoint,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let (written, resent) = self.write(&FORK_SCRIPT, checkpoint).await?;
            Ok(written || (resent && super::own_first_attempt(self, checkpoint).await?))
        })
    }
}

impl Journal for RedisStore {
    fn recorded<'a>(
        &'a self,
        run_id: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Observation>, JournalError>> {
        Box::pin(async move {
            let text = self
                .conn
                .hget(&self.key(run_id, "effects"), key)
                .await
                .map_err(|e| JournalError(Box::new(e)))?;
            text.map(|t| from_json(&t, run_id).map_err(|e| JournalError(Box::new(e))))
                .transpose()
        })
    }

    fn record<'a>(
        &'a self,
        run_id: &'a str,
        key: &'a str,
        observation: &'a Observation,
    ) -> BoxFuture<'a, Result<(), JournalError>> {
        Box::pin(async move {
            let text = to_json(observation, run_id).map_err(|e| JournalError(Box::new(e)))?;
            let (fence, token) = self.fence_args(run_id);
            let keys = [self.key(run_id, "effects"), fence];
            let written: i64 = self
                .conn
                .run(|mut conn| {
                    let mut call = JOURNAL_SCRIPT.prepare_invoke();
                    call.key(&keys[..]).arg(key).arg(&text).arg(&token);
                    async move { call.invoke_async(&mut conn).await }
                })
                .await
                .map_err(|e| JournalError(Box::new(e)))?;
            match written {
                -1 => Err(JournalError(Box::new(self.fenced_error()))),
                _ => Ok(()),
            }
        })
    }
}
