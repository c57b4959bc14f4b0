//! The run queue's Redis Streams protocol: the scripts that submit a run,
//! record an outcome and renew a lease atomically, and a consumer's round
//! trips (read new entries, take over lapsed ones, count deliveries,
//! acknowledge, publish events, note errors).
//!
//! No policy lives here: which run to take, when to give one back and
//! what to record is the worker's (`runner.rs`, deciding through
//! `decide.rs`); what a submitter reads is the [`RunQueue`](super::RunQueue)'s.

use std::sync::LazyLock;

use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::Script;

use super::keys::{Keys, GROUP};
use crate::backend::redis::RedisConn;
use crate::backend::BackendError;

/// Queues a run once: the entry id, and 1 if it was queued now or 0 if it
/// was already. KEYS: submitted, queue. ARGV: run id, machine, env, W3C
/// traceparent (empty without one).
pub(super) static SUBMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local id = redis.call('HGET', KEYS[1], ARGV[1])
if id then return {0, id} end
id = redis.call('XADD', KEYS[2], '*', 'run', ARGV[1], 'machine', ARGV[2], 'env', ARGV[3], 'trace', ARGV[4])
redis.call('HSET', KEYS[1], ARGV[1], id)
return {1, id}
",
    )
});

/// Records an outcome once, under the current claim, and acknowledges the
/// delivery; with a machine name in ARGV[6], also writes a dead letter.
/// For a child run (its parent in ARGV[9]), the last of a parked parent's
/// children to end queues the parent's wake-up, in the same script: a
/// crash cannot record the child and lose the wake-up.
/// Returns 1 if recorded now, 0 if it already was, -1 if fenced.
/// KEYS: fence, outcomes, outcome log, queue, events, dead, the parent's
/// waiting children, parked parents.
/// ARGV: token, run, outcome, entry, group, machine or "", error,
/// deliveries, parent or "".
static FINISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local new = redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3])
if new == 1 then
  redis.call('XADD', KEYS[3], '*', 'run', ARGV[2], 'outcome', ARGV[3])
  if ARGV[6] ~= '' then
    redis.call('XADD', KEYS[6], '*', 'run', ARGV[2], 'machine', ARGV[6], 'error', ARGV[7], 'deliveries', ARGV[8])
  end
  if ARGV[9] ~= '' then
    redis.call('SREM', KEYS[7], ARGV[2])
    local machine = redis.call('HGET', KEYS[8], ARGV[9])
    if machine and redis.call('SCARD', KEYS[7]) == 0 then
      redis.call('HDEL', KEYS[8], ARGV[9])
      redis.call('XADD', KEYS[4], '*', 'run', ARGV[9], 'machine', machine, 'env', '', 'trace', '', 'wake', '1')
    end
  end
end
redis.call('XACK', KEYS[4], ARGV[5], ARGV[4])
redis.call('XDEL', KEYS[4], ARGV[4])
redis.call('EXPIRE', KEYS[5], 86400)
return new
",
    )
});

/// Parks a parent until its child runs end, under the current claim, and
/// acknowledges its delivery: its slot is free. The children already
/// recorded are not waited for; if none is left, the parent's wake-up is
/// queued at once. Returns how many it waits for, or -1 if fenced.
/// KEYS: fence, outcomes, the parent's waiting children, parked parents,
/// queue. ARGV: token, parent, machine, entry, group, trace, children...
static PARK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
for i = 7, #ARGV do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 0 then
    redis.call('SADD', KEYS[3], ARGV[i])
  else
    redis.call('SREM', KEYS[3], ARGV[i])
  end
end
redis.call('XACK', KEYS[5], ARGV[5], ARGV[4])
redis.call('XDEL', KEYS[5], ARGV[4])
local waiting = redis.call('SCARD', KEYS[3])
if waiting == 0 then
  redis.call('HDEL', KEYS[4], ARGV[2])
  redis.call('XADD', KEYS[5], '*', 'run', ARGV[2], 'machine', ARGV[3], 'env', '', 'trace', ARGV[6], 'wake', '1')
else
  redis.call('HSET', KEYS[4], ARGV[2], ARGV[3])
end
return waiting
",
    )
});

/// Queues a child run once, like [`SUBMIT`], with the child's description
/// (JSON) beside it. KEYS: submitted, queue. ARGV: run id, machine,
/// traceparent, child.
pub(super) static SUBMIT_CHILD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
local id = redis.call('XADD', KEYS[2], '*', 'run', ARGV[1], 'machine', ARGV[2], 'env', '', 'trace', ARGV[3], 'child', ARGV[4])
redis.call('HSET', KEYS[1], ARGV[1], id)
return 1
",
    )
});

/// Renews a lease: resets the entry's idle time if this worker still owns
/// it under the current token (1), else 0. KEYS: queue, fence.
/// ARGV: entry, consumer, token, group.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[2]) ~= ARGV[3] then return 0 end
local p = redis.call('XPENDING', KEYS[1], ARGV[4], ARGV[1], ARGV[1], 1)
if #p == 0 or p[1][2] ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[4], ARGV[2], 0, ARGV[1], 'JUSTID')
return 1
",
    )
});

/// Creates the queue's stream and consumer group if they are missing.
pub(super) async fn ensure_group(conn: &RedisConn, keys: &Keys) -> Result<(), BackendError> {
    let queue = keys.queue();
    conn.run(|mut conn| {
        let queue = &queue;
        async move {
            let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(queue)
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut conn)
                .await;
            match created {
                Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
                other => other,
            }
        }
    })
    .await
}

/// One consumer of the queue's group: a worker's connections and its name.
pub(super) struct Consumer {
    pub(super) conn: RedisConn,
    /// Blocking reads only, so they never hold up other commands.
    reader: RedisConn,
    pub(super) keys: Keys,
    /// The consumer's name in the group (the worker's id).
    pub(super) id: String,
}

/// A lapsed-lease scan's result: the entries taken over, where the next
/// scan goes on, and the queue's depth.
pub(super) struct TakenOver {
    pub(super) reply: StreamAutoClaimReply,
    pub(super) depth: u64,
}

/// The arguments of a dead letter written with an outcome.
pub(super) struct DeadLetterArgs<'a> {
    pub(super) machine: &'a str,
    pub(super) error: &'a str,
}

/// A run's fencing token and the key it is kept at: a write under a token
/// lower than the kept one is refused.
pub(super) struct Fence {
    pub(super) key: String,
    pub(super) token: u64,
}

impl Consumer {
    pub(super) fn new(url: &str, keys: Keys, id: String) -> Result<Self, BackendError> {
        Ok(Consumer {
            conn: RedisConn::open(url)?,
            reader: RedisConn::open(url)?,
            keys,
            id,
        })
    }

    /// Creates the queue's stream and group if they are missing.
    pub(super) async fn ensure_group(&self) -> Result<(), BackendError> {
        ensure_group(&self.conn, &self.keys).await
    }

    /// Up to `count` entries never delivered, waiting up to half a second
    /// for some (`XREADGROUP ... >`).
    pub(super) async fn read_new(&self, count: usize) -> Result<Vec<StreamId>, BackendError> {
        let queue = self.keys.queue();
        let reply: Option<StreamReadReply> = self
            .reader
            .run(|mut conn| {
                let queue = &queue;
                async move {
                    redis::cmd("XREADGROUP")
                        .arg("GROUP")
                        .arg(GROUP)
                        .arg(&self.id)
                        .arg("COUNT")
                        .arg(count)
                        .arg("BLOCK")
                        .arg(500)
                        .arg("STREAMS")
                        .arg(queue)
                        .arg(">")
                        .query_async(&mut conn)
                        .await
                }
            })
            .await?;
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .collect())
    }

    /// Takes over up to `count` entries idle for `idle_ms`, scanning from
    /// `cursor` (`XAUTOCLAIM`); the queue's depth comes back in the same
    /// round trip.
    pub(super) async fn take_over(
        &self,
        idle_ms: u64,
        cursor: &str,
        count: usize,
    ) -> Result<TakenOver, BackendError> {
        let queue = self.keys.queue();
        let (reply, depth) = self
            .conn
            .run(|mut conn| {
                let queue = &queue;
                async move {
                    redis::pipe()
                        .cmd("XAUTOCLAIM")
                        .arg(queue)
                        .arg(GROUP)
                        .arg(&self.id)
                        .arg(idle_ms)
                        .arg(cursor)
                        .arg("COUNT")
                        .arg(count)
                        .cmd("XLEN")
                        .arg(queue)
                        .query_async(&mut conn)
                        .await
                }
            })
            .await?;
        Ok(TakenOver { reply, depth })
    }

    /// How many times the entry has been delivered.
    pub(super) async fn deliveries(&self, entry: &str) -> Result<u64, BackendError> {
        let queue = self.keys.queue();
        let pending: Vec<(String, String, u64, u64)> = self
            .conn
            .run(|mut conn| {
                let queue = &queue;
                async move {
                    redis::cmd("XPENDING")
                        .arg(queue)
                        .arg(GROUP)
                        .arg(entry)
                        .arg(entry)
                        .arg(1)
                        .query_async(&mut conn)
                        .await
                }
            })
            .await?;
        Ok(pending.first().map_or(1, |p| p.3))
    }

    /// Acknowledges and deletes the entry.
    pub(super) async fn ack(&self, entry: &str) -> Result<(), BackendError> {
        let queue = self.keys.queue();
        self.conn
            .run(|mut conn| {
                let queue = &queue;
                async move {
                    redis::pipe()
                        .cmd("XACK")
                        .arg(queue)
                        .arg(GROUP)
                        .arg(entry)
                        .ignore()
                        .cmd("XDEL")
                        .arg(queue)
                        .arg(entry)
                        .ignore()
                        .query_async::<()>(&mut conn)
                        .await
                }
            })
            .await
    }

    /// Appends events (as JSON texts) to the run's event stream, in one
    /// round trip, keeping about its last 10,000.
    pub(super) async fn publish(&self, run_id: &str, texts: &[String]) -> Result<(), BackendError> {
        let key = self.keys.events(run_id);
        self.conn
            .run(|mut conn| {
                let key = &key;
                async move {
                    let mut pipe = redis::pipe();
                    for text in texts {
                        pipe.cmd("XADD")
                            .arg(key)
                            .arg("MAXLEN")
                            .arg("~")
                            .arg(10_000)
                            .arg("*")
                            .arg("event")
                            .arg(text)
                            .ignore();
                    }
                    pipe.query_async::<()>(&mut conn).await
                }
            })
            .await
    }

    /// Records `outcome` (JSON) for `run_id` once, under `fence`,
    /// acknowledges `entry`, and with `dead` also writes a dead letter. 1
    /// if recorded now, 0 if it already was, -1 if fenced.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn finish(
        &self,
        fence: &Fence,
        run_id: &str,
        entry: &str,
        outcome: &str,
        dead: Option<DeadLetterArgs<'_>>,
        deliveries: u64,
        parent: Option<&str>,
    ) -> Result<i64, BackendError> {
        let token = fence.token;
        let parent = parent.unwrap_or_default();
        let keys = [
            fence.key.clone(),
            self.keys.outcomes(),
            self.keys.outcome_log(),
            self.keys.queue(),
            self.keys.events(run_id),
            self.keys.dead(),
            self.keys.waiting(parent),
            self.keys.parked(),
        ];
        let (machine, error) = dead.map_or(("", ""), |d| (d.machine, d.error));
        self.conn
            .run(|mut conn| {
                let mut call = FINISH.prepare_invoke();
                call.key(&keys[..])
                    .arg(token)
                    .arg(run_id)
                    .arg(outcome)
                    .arg(entry)
                    .arg(GROUP)
                    .arg(machine)
                    .arg(error)
                    .arg(deliveries)
                    .arg(parent);
                async move { call.invoke_async(&mut conn).await }
            })
            .await
    }

    /// Parks `parent` (delivered as `entry`, run by `machine`) until
    /// `children` have ended, under `fence`, and acknowledges the entry:
    /// how many it waits for, 0 if its wake-up is queued already, -1 if
    /// fenced.
    pub(super) async fn park(
        &self,
        fence: &Fence,
        parent: &str,
        machine: &str,
        entry: &str,
        trace: &str,
        children: &[String],
    ) -> Result<i64, BackendError> {
        let token = fence.token;
        let keys = [
            fence.key.clone(),
            self.keys.outcomes(),
            self.keys.waiting(parent),
            self.keys.parked(),
            self.keys.queue(),
        ];
        self.conn
            .run(|mut conn| {
                let mut call = PARK.prepare_invoke();
                call.key(&keys[..])
                    .arg(token)
                    .arg(parent)
                    .arg(machine)
                    .arg(entry)
                    .arg(GROUP)
                    .arg(trace);
                for child in children {
                    call.arg(child);
                }
                async move { call.invoke_async(&mut conn).await }
            })
            .await
    }

    /// Renews this consumer's lease on `entry` if the run's fencing token
    /// at `fence` is still `token`: 1 if renewed, 0 if the lease is lost.
    pub(super) async fn renew(&self, entry: &str, fence: &Fence) -> Result<i64, BackendError> {
        let token = fence.token;
        let keys = [self.keys.queue(), fence.key.clone()];
        self.conn
            .run(|mut conn| {
                let mut call = RENEW.prepare_invoke();
                call.key(&keys[..])
                    .arg(entry)
                    .arg(&self.id)
                    .arg(token)
                    .arg(GROUP);
                async move { call.invoke_async(&mut conn).await }
            })
            .await
    }

    /// Notes why the run's last delivery was given back (kept a day).
    pub(super) async fn note_error(&self, run_id: &str, why: &str) -> Result<(), BackendError> {
        let key = self.keys.error(run_id);
        self.conn
            .run(|mut conn| {
                let key = &key;
                async move {
                    redis::cmd("SET")
                        .arg(key)
                        .arg(why)
                        .arg("EX")
                        .arg(86_400)
                        .query_async::<()>(&mut conn)
                        .await
                }
            })
            .await
    }

    /// Why the run's last delivery was given back, if noted.
    pub(super) async fn last_error(&self, run_id: &str) -> Result<Option<String>, BackendError> {
        let key = self.keys.error(run_id);
        self.conn
            .run(|mut conn| {
                let key = &key;
                async move { redis::cmd("GET").arg(key).query_async(&mut conn).await }
            })
            .await
    }
}
