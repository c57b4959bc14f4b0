//! Retrying calls that failed before any chunk reached the caller.

use std::time::Duration;

use futures::StreamExt;

use crate::metric;
use crate::model::{ChatModel, ChatRequest, ChunkStream, ModelError};
use crate::semconv::provider_and_model;

/// When and how long to wait before sending a failed call again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The backoff base: attempt `n` waits a random time in
    /// `[0, min(max_delay, base * 2^n)]` ("full jitter").
    pub base: Duration,
    /// The longest backoff.
    pub max_delay: Duration,
    /// The longest Retry-After honoured; a longer one fails the call at once
    /// (a fallback can act on it).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 4,
            base: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// How long to wait before retry `attempt` (0-based) after `error`, or
    /// `None` to give up.
    pub fn delay(&self, attempt: u32, error: &ModelError) -> Option<Duration> {
        if attempt >= self.max_retries || !error.is_retryable() {
            return None;
        }
        if let Some(after) = error.retry_after() {
            return (after <= self.max_retry_after).then_some(after);
        }
        let cap = self
            .base
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max_delay);
        Some(cap.mul_f64(fastrand::f64()))
    }
}

/// Streams the inner model's chunks unchanged, and sends a call again when
/// it fails transiently before any chunk was delivered (429 with its
/// Retry-After, 5xx, no answer, a stream cut or stalled before its first
/// token). A failure after chunks were delivered
/// is passed on: the machine restarts the state instead, so no text is
/// duplicated.
#[derive(Debug, Clone)]
pub struct Retry<M> {
    inner: M,
    policy: RetryPolicy,
}

impl<M: ChatModel> Retry<M> {
    /// Retries `inner` by `policy`.
    pub fn new(inner: M, policy: RetryPolicy) -> Self {
        Retry { inner, policy }
    }
}

wrapper!(Retry);

impl<M: ChatModel> ChatModel for Retry<M> {
    forward_model_info!();

    fn stream(&self, request: ChatRequest) -> ChunkStream<'_> {
        Box::pin(async_stream::try_stream! {
            let mut attempt = 0;
            'attempts: loop {
                let mut chunks = self.inner.stream(request.clone());
                let mut delivered = false;
                while let Some(chunk) = chunks.next().await {
                    match chunk {
                        Ok(c) => {
                            delivered = true;
                            yield c;
                        }
                        Err(e) => match self.policy.delay(attempt, &e).filter(|_| !delivered) {
                            Some(wait) => {
                                drop(chunks);
                                metric::retry(provider_and_model(self.inner.name()));
                                tokio::time::sleep(wait).await;
                                attempt += 1;
                                continue 'attempts;
                            }
                            None => Err(e)?,
                        },
                    }
                }
                return;
            }
        })
    }
}
