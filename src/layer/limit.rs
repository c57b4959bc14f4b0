//! Concurrency, rate limits and budgets per provider, or per principal
//! ([`PerPrincipal`](super::PerPrincipal)).
//!
//! Each limit is a token bucket refilled continuously over its period (a
//! minute or a day): a call waits for its turn, or, with a longest wait
//! ([`Limits::max_wait`]), fails with [`QuotaExceeded`] when its turn is
//! further off, as a spent daily budget is.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::model::{ChatModel, ChatRequest, Chunk, ChunkStream};

/// Limits on calls to one provider; `None` for no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// Calls under way at once (the starting value when adaptive).
    pub concurrency: Option<usize>,
    /// Calls started per minute.
    pub requests_per_minute: Option<u32>,
    /// Tokens per minute: the prompt estimated up front (4 characters a
    /// token), corrected by the reported usage.
    pub tokens_per_minute: Option<u32>,
    /// Adapt the concurrency (AIMD): one more after a window of successes,
    /// halve on a 429 or when latency doubles.
    pub adaptive: bool,
    /// Calls started per day.
    pub requests_per_day: Option<u32>,
    /// Tokens per day, counted as for `tokens_per_minute`.
    pub tokens_per_day: Option<u64>,
    /// US dollars per minute, charged after each call from its reported
    /// cost (a [`Priced`](super::Priced) model inside reports it): once
    /// spent, calls wait until the budget refills.
    pub cost_per_minute: Option<f64>,
    /// US dollars per day, charged the same way.
    pub cost_per_day: Option<f64>,
    /// The longest a call waits for its turn; a call whose turn is further
    /// off fails with [`QuotaExceeded`]. `None`: calls wait as long as it
    /// takes.
    pub max_wait: Option<Duration>,
}

/// A call a [`Limit`] refused: its turn under `budget` is further off than
/// the longest wait. [`ModelError::Refused`](crate::model::ModelError::Refused)
/// (kind `quota`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the {budget} budget is spent; it allows the next call in {retry_in:?}")]
pub struct QuotaExceeded {
    /// Which budget: `requests per day`, `tokens per minute`, ...
    pub budget: &'static str,
    /// When it would allow the call.
    pub retry_in: Duration,
}

impl From<QuotaExceeded> for crate::model::ModelError {
    fn from(refusal: QuotaExceeded) -> Self {
        crate::model::ModelError::Refused {
            kind: crate::model::ModelErrorKind::Quota,
            cause: Arc::new(refusal),
        }
    }
}

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);

/// A request's tokens, estimated up front at 4 characters a token; the
/// reported usage corrects it.
pub(super) fn estimate_tokens(request: &ChatRequest) -> f64 {
    request
        .messages
        .iter()
        .map(|m| m.content.len())
        .sum::<usize>() as f64
        / 4.0
}

/// A token bucket of `capacity` refilled continuously over `period`.
#[derive(Debug)]
struct Bucket {
    /// What it counts, for [`QuotaExceeded`].
    budget: &'static str,
    capacity: f64,
    level: f64,
    per_sec: f64,
    at: Instant,
}

impl Bucket {
    fn new(budget: &'static str, capacity: f64, period: Duration) -> Self {
        let capacity = capacity.max(f64::MIN_POSITIVE);
        Bucket {
            budget,
            capacity,
            level: capacity,
            per_sec: capacity / period.as_secs_f64(),
            at: Instant::now(),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        self.level = (self.level + (now - self.at).as_secs_f64() * self.per_sec).min(self.capacity);
        self.at = now;
    }

    /// Takes `n` after the call (a cost known only then): the level may go
    /// below zero, and later calls wait until it is back.
    fn charge(&mut self, n: f64) {
        self.refill();
        self.level -= n;
    }

    /// Takes `n` now, or says how long until it can.
    fn take(&mut self, n: f64) -> Result<(), Duration> {
        self.refill();
        // A request larger than the whole bucket waits for a full bucket.
        let need = n.min(self.capacity);
        if self.level >= need {
            self.level -= n;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((need - self.level) / self.per_sec))
        }
    }

    fn refund(&mut self, n: f64) {
        self.level = (self.level + n).min(self.capacity);
    }
}

#[derive(Debug)]
struct Gate {
    limit: f64,
    in_flight: usize,
    /// Smoothed latency of successful calls, for the adaptive mode.
    latency: Option<Duration>,
}

#[derive(Debug)]
struct Shared {
    limits: Limits,
    gate: Mutex<Gate>,
    opened: Notify,
    /// Taken before a call: one per call.
    requests: Vec<Mutex<Bucket>>,
    /// Taken before a call (the estimate), settled by the usage.
    tokens: Vec<Mutex<Bucket>>,
    /// Charged after a call, with its cost.
    cost: Vec<Mutex<Bucket>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Takes `n` from `bucket` once it holds them, or fails when that is
    /// further off than the longest wait.
    async fn wait_bucket(&self, bucket: &Mutex<Bucket>, n: f64) -> Result<(), QuotaExceeded> {
        let deadline = self.limits.max_wait.map(|w| Instant::now() + w);
        loop {
            let wait = lock(bucket).take(n);
            match (wait, deadline) {
                (Ok(()), _) => return Ok(()),
                (Err(d), Some(at)) if Instant::now() + d > at => {
                    return Err(QuotaExceeded {
                        budget: lock(bucket).budget,
                        retry_in: d,
                    })
                }
                (Err(d), _) => tokio::time::sleep(d).await,
            }
        }
    }

    /// Waits for every budget to allow a call estimated at `tokens`.
    async fn admit(&self, tokens: f64) -> Result<(), QuotaExceeded> {
        for bucket in &self.requests {
            self.wait_bucket(bucket, 1.0).await?;
        }
        for bucket in &self.tokens {
            self.wait_bucket(bucket, tokens).await?;
        }
        for bucket in &self.cost {
            self.wait_bucket(bucket, 0.0).await?;
        }
        Ok(())
    }

    async fn enter(&self) {
        loop {
            let notified = self.opened.notified();
            {
                let mut gate = lock(&self.gate);
                let cap = self
                    .limits
                    .concurrency
                    .map_or(usize::MAX, |_| gate.limit.floor().max(1.0) as usize);
                if gate.in_flight < cap {
                    gate.in_flight += 1;
                    return;
                }
            }
            notified.await;
        }
    }

    /// A call ended: `throttled` for a 429, `latency` for a success.
    fn leave(&self, throttled: bool, latency: Option<Duration>) {
        let mut gate = lock(&self.gate);
        gate.in_flight = gate.in_flight.saturating_sub(1);
        if self.limits.adaptive {
            let max = 1024.0;
            if throttled {
                gate.limit = (gate.limit / 2.0).max(1.0);
            } else if let Some(l) = latency {
                let slow = gate.latency.is_some_and(|avg| l > avg * 2);
                gate.latency = Some(gate.latency.map_or(l, |avg| (avg * 7 + l) / 8));
                if slow {
                    gate.limit = (gate.limit / 2.0).max(1.0);
                } else {
                    gate.limit = (gate.limit + 1.0 / gate.limit).min(max);
                }
            }
        }
        drop(gate);
        self.opened.notify_waiters();
    }
}

/// Streams the inner model's chunks unchanged once the call's turn comes:
/// calls wait to stay within [`Limits`] rather than failing. One `Limit`
/// (or its clones) per provider.
#[derive(Debug, Clone)]
pub struct Limit<M> {
    inner: M,
    shared: Arc<Shared>,
}

impl<M: ChatModel> Limit<M> {
    /// Limits `inner` to `limits`.
    pub fn new(inner: M, limits: Limits) -> Self {
        Limit {
            inner,
            shared: Arc::new(Shared {
                limits,
                gate: Mutex::new(Gate {
                    limit: limits.concurrency.unwrap_or(usize::MAX) as f64,
                    in_flight: 0,
                    latency: None,
                }),
                opened: Notify::new(),
                requests: buckets([
                    (
                        "requests per minute",
                        limits.requests_per_minute.map(f64::from),
                        MINUTE,
                    ),
                    (
                        "requests per day",
                        limits.requests_per_day.map(f64::from),
                        DAY,
                    ),
                ]),
                tokens: buckets([
                    (
                        "tokens per minute",
                        limits.tokens_per_minute.map(f64::from),
                        MINUTE,
                    ),
                    (
                        "tokens per day",
                        limits.tokens_per_day.map(|n| n as f64),
                        DAY,
                    ),
                ]),
                cost: buckets([
                    ("cost per minute", limits.cost_per_minute, MINUTE),
                    ("cost per day", limits.cost_per_day, DAY),
                ]),
            }),
        }
    }

    /// The concurrency allowed now (it moves when adaptive).
    pub fn current_concurrency(&self) -> usize {
        lock(&self.shared.gate).limit.floor() as usize
    }

    /// Calls under way now.
    pub fn in_flight(&self) -> usize {
        lock(&self.shared.gate).in_flight
    }
}

/// The buckets of the budgets set.
fn buckets<const N: usize>(
    budgets: [(&'static str, Option<f64>, Duration); N],
) -> Vec<Mutex<Bucket>> {
    budgets
        .into_iter()
        .filter_map(|(budget, capacity, period)| {
            capacity.map(|c| Mutex::new(Bucket::new(budget, c, period)))
        })
        .collect()
}

/// Leaves the gate when the call ends or is dropped.
struct Turn<'a> {
    shared: &'a Shared,
    throttled: bool,
    latency: Option<Duration>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.shared.leave(self.throttled, self.latency);
    }
}

wrapper!(Limit);

impl<M: ChatModel> ChatModel for Limit<M> {
    forward_model_info!();

    fn stream(&self, request: ChatRequest) -> ChunkStream<'_> {
        Box::pin(async_stream::try_stream! {
            let shared = &*self.shared;
            let estimate = estimate_tokens(&request);
            shared.admit(estimate).await.map_err(crate::model::ModelError::from)?;
            shared.enter().await;
            let mut turn = Turn { shared, throttled: false, latency: None };
            let started = Instant::now();
            let mut chunks = self.inner.stream(request);
            while let Some(chunk) = chunks.next().await {
                match chunk {
                    Ok(chunk) => {
                        if let Chunk::Usage(u) = &chunk {
                            // Settle the estimate against what was used.
                            for b in &shared.tokens {
                                lock(b).refund(estimate - u.total_tokens() as f64);
                            }
                            for b in &shared.cost {
                                lock(b).charge(u.cost);
                            }
                        }
                        yield chunk;
                    }
                    Err(e) => {
                        turn.throttled = e.status() == Some(429);
                        Err(e)?;
                    }
                }
            }
            turn.latency = Some(started.elapsed());
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::Usage;
    use crate::model::{FnModel, ModelErrorKind, Reply};

    /// A model whose every reply costs `cost` dollars.
    fn costing(cost: f64) -> FnModel {
        FnModel::new("m", move |_: &ChatRequest| {
            let mut reply = Reply::text("ok");
            reply.usage = Usage {
                prompt_tokens: 10,
                completion_tokens: 2,
                cost,
                ..Usage::default()
            };
            Ok(reply)
        })
    }

    #[tokio::test]
    async fn a_spent_cost_budget_refuses_the_next_call_when_waiting_would_be_too_long() {
        let limits = Limits {
            cost_per_minute: Some(0.05),
            max_wait: Some(Duration::from_millis(5)),
            ..Limits::default()
        };
        let model = Limit::new(costing(0.04), limits);
        model.complete(ChatRequest::default()).await.unwrap();
        model.complete(ChatRequest::default()).await.unwrap();
        // 0.08 of 0.05 spent: the next call waits for the refill, too long.
        let error = model.complete(ChatRequest::default()).await.unwrap_err();
        assert_eq!(error.kind(), ModelErrorKind::Quota);
        let quota = error.refusal::<QuotaExceeded>().unwrap();
        assert_eq!(quota.budget, "cost per minute");
        assert!(quota.retry_in > Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_longest_wait_a_call_waits_for_its_turn() {
        let limits = Limits {
            requests_per_day: Some(1),
            ..Limits::default()
        };
        let model = Limit::new(costing(0.0), limits);
        let started = Instant::now();
        model.complete(ChatRequest::default()).await.unwrap();
        model.complete(ChatRequest::default()).await.unwrap();
        assert!(started.elapsed() >= DAY - Duration::from_secs(1));
    }
}
