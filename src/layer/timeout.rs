//! Time limits on a model call.

use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use crate::model::{ChatModel, ChatRequest, ChunkStream, ModelError, TimeoutStage};

/// Time limits for one call; `None` for no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Until the first chunk (connecting and the request included).
    pub first_token: Option<Duration>,
    /// Between two chunks.
    pub idle: Option<Duration>,
    /// The whole call.
    pub call: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            first_token: Some(Duration::from_secs(60)),
            idle: Some(Duration::from_secs(30)),
            call: Some(Duration::from_secs(600)),
        }
    }
}

/// Streams the inner model's chunks unchanged until a limit of
/// [`Timeouts`] passes, then ends the stream with [`ModelError::Timeout`];
/// the stage says which limit. Connection timeouts are the provider's
/// (`OpenAiBuilder::connect_timeout`).
#[derive(Debug, Clone)]
pub struct Timeout<M> {
    inner: M,
    limits: Timeouts,
}

impl<M: ChatModel> Timeout<M> {
    /// Limits `inner`'s calls to `limits`.
    pub fn new(inner: M, limits: Timeouts) -> Self {
        Timeout { inner, limits }
    }
}

wrapper!(Timeout);

impl<M: ChatModel> ChatModel for Timeout<M> {
    forward_model_info!();

    fn stream(&self, request: ChatRequest) -> ChunkStream<'_> {
        Box::pin(async_stream::try_stream! {
            let started = Instant::now();
            let call_deadline = self.limits.call.map(|d| started + d);
            let mut chunks = self.inner.stream(request);
            let mut sent = 0usize;
            loop {
                let (stage, limit) = if sent == 0 {
                    (TimeoutStage::FirstToken, self.limits.first_token)
                } else {
                    (TimeoutStage::Idle, self.limits.idle)
                };
                // Whichever deadline comes first applies.
                let mut deadline = limit.map(|d| (Instant::now() + d, stage, d));
                if let (Some(end), Some(total)) = (call_deadline, self.limits.call) {
                    if deadline.is_none_or(|(at, ..)| end < at) {
                        deadline = Some((end, TimeoutStage::Call, total));
                    }
                }
                let next = match deadline {
                    Some((at, stage, after)) => match tokio::time::timeout_at(at, chunks.next()).await {
                        Ok(next) => next,
                        Err(_) => Err(ModelError::Timeout {
                            model: self.inner.name().to_owned(),
                            stage,
                            after,
                            chunks: sent,
                        })?,
                    },
                    None => chunks.next().await,
                };
                match next {
                    Some(chunk) => {
                        let chunk = chunk?;
                        sent += 1;
                        yield chunk;
                    }
                    None => break,
                }
            }
        })
    }
}
