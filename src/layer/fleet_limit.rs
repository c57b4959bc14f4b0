//! [`FleetLimit`] (feature `redis`): a provider's concurrency and rate
//! limits shared by every process that calls it, through Redis.
//!
//! Each limit is one small Lua script on Redis's own clock (`TIME`), so
//! machines with skewed clocks share one bucket fairly. A concurrency slot is
//! a member of a sorted set scored by when it expires: a worker that dies
//! holding slots gives them back after `slot_ttl`, not never.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures::StreamExt;
use redis::Script;

use super::Limits;
use crate::backend::redis::RedisConn;
use crate::backend::BackendError;
use crate::model::{ChatModel, ChatRequest, Chunk, ChunkStream, ModelError};

/// Takes a concurrency slot if fewer than the current limit are held (1),
/// else 0. KEYS: holders, limit. ARGV: holder, slot ttl ms, starting limit.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local limit = tonumber(redis.call('GET', KEYS[2]) or ARGV[3])
if redis.call('ZCARD', KEYS[1]) < math.max(1, math.floor(limit)) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  return 1
end
return 0
",
    )
});

/// Gives a slot back, and with `adaptive` adjusts the fleet's limit: halved
/// on a 429 (at most once per cooldown, however many workers saw it), else
/// raised by 1/limit. KEYS: holders, limit, last cut. ARGV: holder,
/// `throttled`/`ok`/`none`, starting limit, ceiling, cooldown ms.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[2] == 'none' then return 0 end
local limit = tonumber(redis.call('GET', KEYS[2]) or ARGV[3])
if ARGV[2] == 'throttled' then
  local t = redis.call('TIME')
  local now = t[1] * 1000 + math.floor(t[2] / 1000)
  local last = tonumber(redis.call('GET', KEYS[3]) or '0')
  if now - last < tonumber(ARGV[5]) then return 0 end
  limit = math.max(1, limit / 2)
  redis.call('SET', KEYS[3], now)
else
  limit = math.min(tonumber(ARGV[4]), limit + 1 / limit)
end
redis.call('SET', KEYS[2], tostring(limit))
return 1
",
    )
});

/// Takes `n` from a token bucket refilled `per minute` a minute: 0, or the
/// milliseconds to wait. A take larger than the bucket waits for a full
/// one. KEYS: bucket. ARGV: n, per minute.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local cap = tonumber(ARGV[2])
local rate = cap / 60000
local b = redis.call('HMGET', KEYS[1], 'level', 'at')
local level = tonumber(b[1]) or cap
local at = tonumber(b[2]) or now
level = math.min(cap, level + (now - at) * rate)
local n = tonumber(ARGV[1])
local need = math.min(n, cap)
if level >= need then
  redis.call('HSET', KEYS[1], 'level', tostring(level - n), 'at', now)
  return 0
end
redis.call('HSET', KEYS[1], 'level', tostring(level), 'at', now)
return math.ceil((need - level) / rate)
",
    )
});

/// Puts `n` back into a bucket (negative takes more). KEYS: bucket.
/// ARGV: n, per minute.
static REFUND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local level = tonumber(redis.call('HGET', KEYS[1], 'level') or ARGV[2])
redis.call('HSET', KEYS[1], 'level', tostring(math.min(tonumber(ARGV[2]), level + tonumber(ARGV[1]))))
return 0
",
    )
});

/// Streams the inner model's chunks unchanged once the call's turn comes:
/// calls wait to stay within [`Limits`] across every process that wraps
/// the same provider under the same `name` on one Redis (the limits are
/// the fleet's, not each process's). A call waits for its turn rather
/// than failing; if Redis cannot be reached, the call fails with
/// [`ModelError::Backend`] instead of going over the limit.
///
/// With `adaptive`, the fleet's concurrency halves on a 429 (once per
/// cooldown, however many workers saw it) and grows by one per limit's
/// worth of successes, up to `concurrency` (or 1024).
///
/// ```no_run
/// use statewise::layer::{FleetLimit, Limits};
/// use statewise::model::ScriptedModel;
///
/// let limits = Limits { concurrency: Some(20), requests_per_minute: Some(500), adaptive: true, ..Limits::default() };
/// let model = FleetLimit::new(ScriptedModel::new(), "redis://127.0.0.1:6379", "openai", limits)?;
/// # Ok::<(), statewise::backend::BackendError>(())
/// ```
#[derive(Debug, Clone)]
pub struct FleetLimit<M> {
    inner: M,
    conn: RedisConn,
    limits: Limits,
    keys: Arc<FleetKeys>,
    slot_ttl: Duration,
    cooldown: Duration,
    next_holder: Arc<AtomicU64>,
    holder_prefix: Arc<str>,
}

#[derive(Debug)]
struct FleetKeys {
    holders: String,
    limit: String,
    last_cut: String,
    requests: String,
    tokens: String,
}

impl<M: ChatModel> FleetLimit<M> {
    /// Limits `inner` to `limits`, shared with every process naming the
    /// same provider `name` on the Redis at `url` (keys under
    /// `statewise:limit:<name>`). Connects on first use.
    pub fn new(inner: M, url: &str, name: &str, limits: Limits) -> Result<Self, BackendError> {
        let base = format!("statewise:limit:{name}");
        Ok(FleetLimit {
            inner,
            conn: RedisConn::open(url)?,
            limits,
            keys: Arc::new(FleetKeys {
                holders: format!("{base}:holders"),
                limit: format!("{base}:concurrency"),
                last_cut: format!("{base}:last-cut"),
                requests: format!("{base}:requests"),
                tokens: format!("{base}:tokens"),
            }),
            slot_ttl: Duration::from_secs(600),
            cooldown: Duration::from_secs(1),
            next_holder: Arc::default(),
            holder_prefix: format!("{}-{:08x}", std::process::id(), fastrand::u32(..)).into(),
        })
    }

    /// Gives a slot held by a process that died back after `ttl` (default
    /// 10 minutes; make it longer than your slowest call).
    pub fn slot_ttl(mut self, ttl: Duration) -> Self {
        self.slot_ttl = ttl.max(Duration::from_millis(100));
        self
    }

    /// Halves the adaptive limit at most once per `cooldown` (default 1 s).
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// The fleet's concurrency limit now (it moves when adaptive); `None`
    /// without a concurrency limit.
    pub async fn current_concurrency(&self) -> Result<Option<usize>, BackendError> {
        let Some(start) = self.limits.concurrency else {
            return Ok(None);
        };
        let key = &self.keys.limit;
        let limit: Option<f64> = self
            .conn
            .run(|mut conn| async move { redis::cmd("GET").arg(key).query_async(&mut conn).await })
            .await?;
        Ok(Some(limit.map_or(start, |l| l.floor().max(1.0) as usize)))
    }

    /// Calls holding a slot now, across the fleet.
    pub async fn in_flight(&self) -> Result<usize, BackendError> {
        let key = &self.keys.holders;
        self.conn
            .run(
                |mut conn| async move { redis::cmd("ZCARD").arg(key).query_async(&mut conn).await },
            )
            .await
    }

    async fn take(&self, bucket: &str, n: f64, per_minute: u32) -> Result<(), BackendError> {
        loop {
            let wait_ms: u64 = self
                .conn
                .run(|mut conn| {
                    let mut call = TAKE.prepare_invoke();
                    call.key(bucket).arg(n).arg(per_minute);
                    async move { call.invoke_async(&mut conn).await }
                })
                .await?;
            if wait_ms == 0 {
                return Ok(());
            }
            // Spread the waiters: they all wake to one refill otherwise.
            let jitter = fastrand::u64(0..=wait_ms / 10 + 1);
            tokio::time::sleep(Duration::from_millis(wait_ms + jitter)).await;
        }
    }

    async fn acquire(&self, holder: &str, start: usize) -> Result<(), BackendError> {
        let keys = [self.keys.holders.as_str(), self.keys.limit.as_str()];
        let ttl = self.slot_ttl.as_millis() as u64;
        let mut pause = Duration::from_millis(5);
        loop {
            let got: i64 = self
                .conn
                .run(|mut conn| {
                    let mut call = ACQUIRE.prepare_invoke();
                    call.key(&keys[..]).arg(holder).arg(ttl).arg(start);
                    async move { call.invoke_async(&mut conn).await }
                })
                .await?;
            if got == 1 {
                return Ok(());
            }
            tokio::time::sleep(pause + Duration::from_millis(fastrand::u64(0..5))).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    async fn release(&self, holder: &str, outcome: &str, start: usize) {
        let keys = [
            self.keys.holders.as_str(),
            self.keys.limit.as_str(),
            self.keys.last_cut.as_str(),
        ];
        let outcome = if self.limits.adaptive {
            outcome
        } else {
            "none"
        };
        let ceiling = self.limits.concurrency.unwrap_or(1024).max(1);
        let cooldown = self.cooldown.as_millis() as u64;
        let released: Result<i64, BackendError> = self
            .conn
            .run(|mut conn| {
                let mut call = RELEASE.prepare_invoke();
                call.key(&keys[..])
                    .arg(holder)
                    .arg(outcome)
                    .arg(start)
                    .arg(ceiling)
                    .arg(cooldown);
                async move { call.invoke_async(&mut conn).await }
            })
            .await;
        if let Err(e) = released {
            tracing::warn!(error = %e, "giving back a fleet concurrency slot failed; it returns after its ttl");
        }
    }

    fn unavailable(&self, e: BackendError) -> ModelError {
        ModelError::Backend {
            provider: self.inner.name().to_owned(),
            message: format!("the fleet limit in Redis is unavailable: {e}"),
        }
    }
}

/// Gives the slot back if the call is dropped before it ends.
struct Slot<'a, M: ChatModel> {
    limit: &'a FleetLimit<M>,
    holder: String,
    start: usize,
    outcome: &'static str,
    released: bool,
}

impl<M: ChatModel> Drop for Slot<'_, M> {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        // Dropped mid-call: give the slot back from a task of its own.
        let (conn, holders, holder) = (
            self.limit.conn.clone(),
            self.limit.keys.holders.clone(),
            std::mem::take(&mut self.holder),
        );
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let removed = conn
                    .run(|mut c| {
                        let (holders, holder) = (&holders, &holder);
                        async move { redis::cmd("ZREM").arg(holders).arg(holder).query_async::<()>(&mut c).await }
                    })
                    .await;
                if let Err(e) = removed {
                    tracing::warn!(error = %e, "giving back a fleet concurrency slot failed; it returns after its ttl");
                }
            });
        }
    }
}

wrapper!(FleetLimit);

impl<M: ChatModel> ChatModel for FleetLimit<M> {
    forward_model_info!();

    fn stream(&self, request: ChatRequest) -> ChunkStream<'_> {
        Box::pin(async_stream::try_stream! {
            let estimate = super::limit::estimate_tokens(&request);
            if let Some(per_minute) = self.limits.requests_per_minute {
                self.take(&self.keys.requests, 1.0, per_minute).await.map_err(|e| self.unavailable(e))?;
            }
            if let Some(per_minute) = self.limits.tokens_per_minute {
                self.take(&self.keys.tokens, estimate, per_minute).await.map_err(|e| self.unavailable(e))?;
            }
            let mut slot = None;
            if let Some(start) = self.limits.concurrency {
                let holder = format!("{}:{}", self.holder_prefix, self.next_holder.fetch_add(1, Ordering::Relaxed));
                self.acquire(&holder, start).await.map_err(|e| self.unavailable(e))?;
                slot = Some(Slot { limit: self, holder, start, outcome: "ok", released: false });
            }
            let mut chunks = self.inner.stream(request);
            let mut failed = None;
            while let Some(chunk) = chunks.next().await {
                match chunk {
                    Ok(chunk) => {
                        if let (Chunk::Usage(u), Some(per_minute)) = (&chunk, self.limits.tokens_per_minute) {
                            // Settle the estimate against what was used.
                            let refund = estimate - u.total_tokens() as f64;
                            let key = &self.keys.tokens;
                            let settled = self.conn.run(|mut conn| {
                                let mut call = REFUND.prepare_invoke();
                                call.key(key).arg(refund).arg(per_minute);
                                async move { call.invoke_async::<()>(&mut conn).await }
                            }).await;
                            if let Err(e) = settled {
                                tracing::warn!(error = %e, "settling the fleet's token estimate failed");
                            }
                        }
                        yield chunk;
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if let Some(mut slot) = slot.take() {
                slot.outcome = match &failed {
                    Some(e) if e.status() == Some(429) => "throttled",
                    Some(_) => "none",
                    None => "ok",
                };
                self.release(&slot.holder, slot.outcome, slot.start).await;
                slot.released = true;
            }
            if let Some(e) = failed {
                Err(e)?;
            }
        })
    }
}
