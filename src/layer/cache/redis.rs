//! [`RedisCache`] (feature `redis`): replies shared by every process of a
//! fleet, with an optional time to live.

use std::sync::LazyLock;
use std::time::Duration;

use futures::future::BoxFuture;
use redis::Script;

use super::chunks_from_json;
use super::CacheStore;
use crate::backend::redis::RedisConn;
use crate::backend::BackendError;
use crate::model::Chunk;

/// Replies in Redis, one string key each (`<prefix>:cache:<key>`, the
/// prefix `statewise` unless [`with_prefix`](Self::with_prefix) says
/// otherwise), kept until they expire ([`with_ttl`](Self::with_ttl)) or
/// Redis evicts them under its `maxmemory` policy.
///
/// Clones share one connection, made on first use, which reconnects by
/// itself; a failed read or write is a miss to the [`Cache`](super::Cache)
/// layer, never a failed call.
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use statewise::layer::{ModelExt, RedisCache};
/// use statewise::model::ScriptedModel;
///
/// let cache = RedisCache::open("redis://127.0.0.1:6379")?.with_ttl(Duration::from_secs(86_400));
/// let model = ScriptedModel::new().text("4").cache(Arc::new(cache));
/// # Ok::<(), statewise::backend::BackendError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RedisCache {
    conn: RedisConn,
    prefix: String,
    ttl: Option<Duration>,
}

impl RedisCache {
    /// A cache on the server at `url` (`redis://[:password@]host[:port][/db]`);
    /// connects on first use.
    pub fn open(url: &str) -> Result<Self, BackendError> {
        Ok(RedisCache {
            conn: RedisConn::open(url)?,
            prefix: "statewise".to_owned(),
            ttl: None,
        })
    }

    /// Starts every key with `prefix` instead of `statewise`.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Lets each reply expire `ttl` after it was stored (at least 1 ms).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl.max(Duration::from_millis(1)));
        self
    }

    fn key(&self, key: &str) -> String {
        format!("{}:cache:{key}", self.prefix)
    }

    fn claim_key(&self, key: &str) -> String {
        format!("{}:cache-claim:{key}", self.prefix)
    }
}

/// Claims a request for an owner: 1 if it holds the claim (now or
/// already), 0 if another does. KEYS: claim. ARGV: owner, ttl ms.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then return 1 end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
",
    )
});

/// Deletes a claim if the owner still holds it. KEYS: claim. ARGV: owner.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
",
    )
});

impl CacheStore for RedisCache {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<Chunk>>, BackendError>> {
        Box::pin(async move {
            let k = self.key(key);
            let text: Option<String> = self
                .conn
                .run(|mut conn| {
                    let k = &k;
                    async move { redis::cmd("GET").arg(k).query_async(&mut conn).await }
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
        Box::pin(async move {
            let text = serde_json::to_string(chunks)
                .map_err(|source| BackendError::corrupt(format!("cache entry {key}"), source))?;
            let k = self.key(key);
            self.conn
                .run(|mut conn| {
                    let mut set = redis::cmd("SET");
                    set.arg(&k).arg(&text);
                    if let Some(ttl) = self.ttl {
                        set.arg("PX").arg(ttl.as_millis() as u64);
                    }
                    async move { set.query_async::<()>(&mut conn).await }
                })
                .await
        })
    }

    fn claim<'a>(
        &'a self,
        key: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        Box::pin(async move {
            let k = self.claim_key(key);
            let ttl = ttl.as_millis().max(1) as u64;
            let held: i64 = self
                .conn
                .run(|mut conn| {
                    let mut call = CLAIM.prepare_invoke();
                    call.key(&k).arg(owner).arg(ttl);
                    async move { call.invoke_async(&mut conn).await }
                })
                .await?;
            Ok(held == 1)
        })
    }

    fn release<'a>(
        &'a self,
        key: &'a str,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let k = self.claim_key(key);
            self.conn
                .run(|mut conn| {
                    let mut call = RELEASE.prepare_invoke();
                    call.key(&k).arg(owner);
                    async move { call.invoke_async::<()>(&mut conn).await }
                })
                .await
        })
    }
}
