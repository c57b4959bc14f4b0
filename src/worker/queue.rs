//! [`RunQueue`]: the client side of the queue: submit runs, await their
//! outcomes, read their events and the dead letters.

use std::time::Duration;

use futures::Stream;
use redis::streams::StreamRangeReply;
use serde_json::Value;

use super::keys::Keys;
use super::protocol::{ensure_group, SUBMIT};
use super::{DeadLetter, Outcome, QueueError};
use crate::backend::redis::RedisConn;
use crate::env::Env;

/// A run put on the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The run.
    pub run_id: String,
    /// Its entry in the queue's stream.
    pub entry: String,
    /// False if the run id had been submitted before (nothing was queued).
    pub new: bool,
}

/// `XPENDING`'s summary of entries: id, consumer, idle ms, deliveries.
type Pending = Vec<(String, String, u64, u64)>;

/// Which runs hold a worker's slot, and which wait without one
/// ([`RunQueue::occupancy`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Occupancy {
    /// Runs delivered to a worker and not yet acknowledged.
    pub held: Vec<String>,
    /// Runs parked until their child runs end.
    pub parked: Vec<String>,
}

/// Puts runs on a Redis queue for [`Worker`](super::Worker)s, and reads
/// what became of them.
///
/// A run id is queued once: submitting it again returns the first entry.
/// Clones share one connection, made on first use.
#[derive(Debug, Clone)]
pub struct RunQueue {
    conn: RedisConn,
    keys: Keys,
}

impl RunQueue {
    /// The queue on the server at `url`, under the key prefix `statewise`.
    pub fn open(url: &str) -> Result<Self, QueueError> {
        Ok(RunQueue {
            conn: RedisConn::open(url)?,
            keys: Keys::new("statewise"),
        })
    }

    /// Starts every key with `prefix` (the workers' prefix) instead.
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.keys = Keys::new(prefix);
        self
    }

    /// Queues run `run_id` of the machine a worker knows as `machine`,
    /// starting from `env`. With the `otel` feature, the current span's
    /// trace goes with it, and the worker's spans of the run continue it.
    pub async fn submit(
        &self,
        machine: &str,
        run_id: &str,
        env: &Env,
    ) -> Result<Submitted, QueueError> {
        let env = serde_json::to_string(env).map_err(|source| QueueError::Corrupt {
            what: format!("the env of run `{run_id}`"),
            source,
        })?;
        ensure_group(&self.conn, &self.keys).await?;
        #[cfg(feature = "otel")]
        let trace = crate::otel::current_traceparent().unwrap_or_default();
        #[cfg(not(feature = "otel"))]
        let trace = String::new();
        let keys = [self.keys.submitted(), self.keys.queue()];
        let (new, entry): (i64, String) = self
            .conn
            .run(|mut conn| {
                let mut call = SUBMIT.prepare_invoke();
                call.key(&keys[..])
                    .arg(run_id)
                    .arg(machine)
                    .arg(&env)
                    .arg(&trace);
                async move { call.invoke_async(&mut conn).await }
            })
            .await?;
        Ok(Submitted {
            run_id: run_id.to_owned(),
            entry,
            new: new == 1,
        })
    }

    /// The outcome of run `run_id`, if it has one yet.
    pub async fn outcome(&self, run_id: &str) -> Result<Option<Outcome>, QueueError> {
        let text = self.conn.hget(&self.keys.outcomes(), run_id).await?;
        text.map(|t| parse(&t, &format!("the outcome of run `{run_id}`")))
            .transpose()
    }

    /// Waits for run `run_id`'s outcome, up to `timeout` (looking every
    /// 10 ms at first, backing off to every 50 ms).
    pub async fn wait(&self, run_id: &str, timeout: Duration) -> Result<Outcome, QueueError> {
        let start = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(10);
        loop {
            if let Some(outcome) = self.outcome(run_id).await? {
                return Ok(outcome);
            }
            if start.elapsed() >= timeout {
                return Err(QueueError::Timeout {
                    run_id: run_id.to_owned(),
                    waited: timeout,
                });
            }
            tokio::time::sleep(pause.min(timeout.saturating_sub(start.elapsed()))).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Run `run_id`'s events as its workers stream them (JSON, as
    /// [`Event`](crate::Event) serializes), from its first, until its
    /// outcome is recorded. A run resumed by another worker repeats the
    /// events of the step it was in.
    pub fn events<'a>(
        &'a self,
        run_id: &'a str,
    ) -> impl Stream<Item = Result<Value, QueueError>> + Send + 'a {
        async_stream::try_stream! {
            let key = self.keys.events(run_id);
            let mut after = "0-0".to_owned();
            let mut pause = Duration::from_millis(10);
            let mut ended = false;
            loop {
                let start = format!("({after}");
                let reply: StreamRangeReply = self
                    .conn
                    .run(|mut conn| {
                        let (key, start) = (&key, &start);
                        async move {
                            redis::cmd("XRANGE").arg(key).arg(start).arg("+").arg("COUNT").arg(500)
                                .query_async(&mut conn).await
                        }
                    })
                    .await?;
                let got = !reply.ids.is_empty();
                for entry in reply.ids {
                    after = entry.id.clone();
                    let text: Option<String> = entry.get("event");
                    if let Some(text) = text {
                        yield parse::<Value>(&text, &format!("an event of run `{run_id}`"))?;
                    }
                }
                if got {
                    pause = Duration::from_millis(10);
                    continue;
                }
                if ended {
                    return;
                }
                // The outcome is recorded after the run's last event is
                // written: once it is there, one more read gets the rest.
                if self.outcome(run_id).await?.is_some() {
                    ended = true;
                    continue;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(200));
            }
        }
    }

    /// The runs given up after too many deliveries, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, QueueError> {
        let reply = self.whole(&self.keys.dead()).await?;
        Ok(reply
            .ids
            .iter()
            .map(|e| DeadLetter {
                run_id: e.get("run").unwrap_or_default(),
                machine: e.get("machine").unwrap_or_default(),
                error: e.get("error").unwrap_or_default(),
                deliveries: e.get("deliveries").unwrap_or_default(),
            })
            .collect())
    }

    /// Every outcome in the order recorded, from the outcome log: one entry
    /// per run, however often it was delivered.
    pub async fn recorded(&self) -> Result<Vec<Outcome>, QueueError> {
        let reply = self.whole(&self.keys.outcome_log()).await?;
        reply
            .ids
            .iter()
            .map(|e| {
                let text: String = e.get("outcome").unwrap_or_default();
                parse(&text, "an entry of the outcome log")
            })
            .collect()
    }

    /// Which runs hold a worker's slot and which wait for their child
    /// runs without one, read at one instant (at most 1,000 held).
    pub async fn occupancy(&self) -> Result<Occupancy, QueueError> {
        ensure_group(&self.conn, &self.keys).await?;
        let (queue, parked) = (self.keys.queue(), self.keys.parked());
        let runs = self
            .conn
            .run(|mut conn| {
                let (queue, parked) = (&queue, &parked);
                async move {
                    // One transaction: a parent parks (its entry acknowledged)
                    // or wakes (a new entry) atomically, so the two reads
                    // agree.
                    let (parked, pending): (Vec<String>, Pending) = redis::pipe()
                        .atomic()
                        .cmd("HKEYS")
                        .arg(parked)
                        .cmd("XPENDING")
                        .arg(queue)
                        .arg(super::keys::GROUP)
                        .arg("-")
                        .arg("+")
                        .arg(1000)
                        .query_async(&mut conn)
                        .await?;
                    let mut pipe = redis::pipe();
                    for (entry, ..) in &pending {
                        pipe.cmd("XRANGE").arg(queue).arg(entry).arg(entry);
                    }
                    let entries: Vec<StreamRangeReply> = if pending.is_empty() {
                        Vec::new()
                    } else {
                        pipe.query_async(&mut conn).await?
                    };
                    let held = entries
                        .iter()
                        .filter_map(|r| r.ids.first().and_then(|e| e.get::<String>("run")))
                        .collect();
                    Ok(Occupancy { held, parked })
                }
            })
            .await?;
        Ok(runs)
    }

    /// Every entry of the stream `key`.
    async fn whole(&self, key: &str) -> Result<StreamRangeReply, QueueError> {
        let reply = self
            .conn
            .run(|mut conn| async move {
                redis::cmd("XRANGE")
                    .arg(key)
                    .arg("-")
                    .arg("+")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(reply)
    }

    /// How many runs are queued and not yet acknowledged (waiting or
    /// running).
    pub async fn backlog(&self) -> Result<u64, QueueError> {
        let key = self.keys.queue();
        self.conn
            .run(|mut conn| {
                let key = &key;
                async move { redis::cmd("XLEN").arg(key).query_async(&mut conn).await }
            })
            .await
            .map_err(QueueError::from)
    }
}

fn parse<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, QueueError> {
    serde_json::from_str(text).map_err(|source| QueueError::Corrupt {
        what: what.to_owned(),
        source,
    })
}
