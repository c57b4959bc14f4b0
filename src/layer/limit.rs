//! Concurrency and rate limits per provider.

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
}

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

/// A token bucket refilled continuously, `per_minute` a minute.
#[derive(Debug)]
struct Bucket {
    capacity: f64,
    level: f64,
    per_sec: f64,
    at: Instant,
}

impl Bucket {
    fn new(per_minute: u32) -> Self {
        let capacity = f64::from(per_minute.max(1));
        Bucket {
            capacity,
            level: capacity,
            per_sec: capacity / 60.0,
            at: Instant::now(),
        }
    }

    /// Takes `n` now, or says how long until it can.
    fn take(&mut self, n: f64) -> Result<(), Duration> {
        let now = Instant::now();
        self.level = (self.level + (now - self.at).as_secs_f64() * self.per_sec).min(self.capacity);
        self.at = now;
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
    requests: Option<Mutex<Bucket>>,
    tokens: Option<Mutex<Bucket>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    async fn wait_bucket(bucket: &Mutex<Bucket>, n: f64) {
        loop {
            let wait = lock(bucket).take(n);
            match wait {
                Ok(()) => return,
                Err(d) => tokio::time::sleep(d).await,
            }
        }
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
                requests: limits
                    .requests_per_minute
                    .map(|n| Mutex::new(Bucket::new(n))),
                tokens: limits.tokens_per_minute.map(|n| Mutex::new(Bucket::new(n))),
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
            if let Some(b) = &shared.requests {
                Shared::wait_bucket(b, 1.0).await;
            }
            if let Some(b) = &shared.tokens {
                Shared::wait_bucket(b, estimate).await;
            }
            shared.enter().await;
            let mut turn = Turn { shared, throttled: false, latency: None };
            let started = Instant::now();
            let mut chunks = self.inner.stream(request);
            while let Some(chunk) = chunks.next().await {
                match chunk {
                    Ok(chunk) => {
                        if let (Chunk::Usage(u), Some(b)) = (&chunk, &shared.tokens) {
                            // Settle the estimate against what was used.
                            lock(b).refund(estimate - u.total_tokens() as f64);
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
