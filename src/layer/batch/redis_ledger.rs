//! [`RedisLedger`] (feature `redis`): the batch ledger in Redis, for runs
//! spread over a fleet.

use futures::future::BoxFuture;

use super::ledger::{BatchLedger, LedgerEntry};
use super::vendor::ItemOutcome;
use crate::backend::redis::RedisConn;
use crate::backend::BackendError;

/// The batch ledger in Redis: a hash of calls (`custom_id` → the batch it
/// went out in, or its outcome) and a set of batches in flight, under
/// `<prefix>:batch-ledger`. Every worker of a fleet finds the calls any of
/// them sent.
#[derive(Debug, Clone)]
pub struct RedisLedger {
    conn: RedisConn,
    prefix: String,
}

/// A call's entry as stored: its batch, and its outcome once back.
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    batch_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outcome: Option<ItemOutcome>,
}

impl RedisLedger {
    /// A ledger on the server at `url`, under the key prefix `statewise`;
    /// connects on first use.
    pub fn open(url: &str) -> Result<Self, BackendError> {
        Ok(RedisLedger {
            conn: RedisConn::open(url)?,
            prefix: "statewise".to_owned(),
        })
    }

    /// Starts every key with `prefix` instead.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    fn calls(&self) -> String {
        format!("{}:batch-ledger:calls", self.prefix)
    }

    fn in_flight_key(&self) -> String {
        format!("{}:batch-ledger:in-flight", self.prefix)
    }
}

fn to_text(custom_id: &str, stored: &Stored) -> Result<String, BackendError> {
    serde_json::to_string(stored)
        .map_err(|source| BackendError::corrupt(format!("batch call {custom_id}"), source))
}

impl BatchLedger for RedisLedger {
    fn lookup<'a>(
        &'a self,
        custom_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<LedgerEntry>, BackendError>> {
        Box::pin(async move {
            let text = self.conn.hget(&self.calls(), custom_id).await?;
            let Some(text) = text else { return Ok(None) };
            let stored: Stored = serde_json::from_str(&text).map_err(|source| {
                BackendError::corrupt(format!("batch call {custom_id}"), source)
            })?;
            Ok(Some(match stored.outcome {
                Some(outcome) => LedgerEntry::Done(outcome),
                None => LedgerEntry::Submitted {
                    batch_id: stored.batch_id,
                },
            }))
        })
    }

    fn submitted<'a>(
        &'a self,
        batch_id: &'a str,
        custom_ids: &'a [String],
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let mut fields = Vec::with_capacity(custom_ids.len());
            for id in custom_ids {
                let stored = Stored {
                    batch_id: batch_id.to_owned(),
                    outcome: None,
                };
                fields.push((id.clone(), to_text(id, &stored)?));
            }
            let (calls, in_flight) = (self.calls(), self.in_flight_key());
            self.conn
                .run(|mut conn| {
                    let (calls, in_flight, fields) = (&calls, &in_flight, &fields);
                    async move {
                        let mut pipe = redis::pipe();
                        pipe.atomic()
                            .cmd("SADD")
                            .arg(in_flight)
                            .arg(batch_id)
                            .ignore();
                        if !fields.is_empty() {
                            pipe.cmd("HSET").arg(calls).arg(fields).ignore();
                        }
                        pipe.query_async::<()>(&mut conn).await
                    }
                })
                .await
        })
    }

    fn finished<'a>(
        &'a self,
        batch_id: &'a str,
        outcomes: &'a [(String, ItemOutcome)],
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let mut fields = Vec::with_capacity(outcomes.len());
            for (id, outcome) in outcomes {
                let stored = Stored {
                    batch_id: batch_id.to_owned(),
                    outcome: Some(outcome.clone()),
                };
                fields.push((id.clone(), to_text(id, &stored)?));
            }
            let (calls, in_flight) = (self.calls(), self.in_flight_key());
            self.conn
                .run(|mut conn| {
                    let (calls, in_flight, fields) = (&calls, &in_flight, &fields);
                    async move {
                        let mut pipe = redis::pipe();
                        pipe.atomic();
                        if !fields.is_empty() {
                            pipe.cmd("HSET").arg(calls).arg(fields).ignore();
                        }
                        pipe.cmd("SREM").arg(in_flight).arg(batch_id).ignore();
                        pipe.query_async::<()>(&mut conn).await
                    }
                })
                .await
        })
    }

    fn forget<'a>(&'a self, custom_id: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let key = self.calls();
            self.conn
                .run(|mut conn| {
                    let key = &key;
                    async move {
                        redis::cmd("HDEL")
                            .arg(key)
                            .arg(custom_id)
                            .query_async::<()>(&mut conn)
                            .await
                    }
                })
                .await
        })
    }

    fn in_flight(&self) -> BoxFuture<'_, Result<Vec<String>, BackendError>> {
        Box::pin(async move {
            let key = self.in_flight_key();
            let mut batches: Vec<String> = self
                .conn
                .run(|mut conn| {
                    let key = &key;
                    async move { redis::cmd("SMEMBERS").arg(key).query_async(&mut conn).await }
                })
                .await?;
            batches.sort();
            Ok(batches)
        })
    }
}
