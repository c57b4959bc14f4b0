//! [`ViaBatch`]: each model call becomes one request of a vendor's batch
//! (OpenAI's and Anthropic's Batch APIs, at half the price), and the run
//! waits for it like for any slow call.
//!
//! A call's `custom_id` is its cache key (model and request): a process
//! restarted while a batch is out makes the same calls again, finds them in
//! the [`BatchLedger`] and waits for that batch instead of submitting them
//! again; identical calls waiting at once share one request.
//!
//! One window is left: a process killed after the vendor accepted a batch
//! and before the ledger recorded it (one local write) submits those calls
//! again when rerun, since neither Batch API can be asked which batch holds
//! a given `custom_id` before it ends.

#[cfg(feature = "http")]
mod anthropic;
mod ledger;
#[cfg(feature = "http")]
mod openai;
mod plan;
#[cfg(feature = "redis")]
mod redis_ledger;
#[cfg(feature = "sqlite")]
mod sqlite_ledger;
mod vendor;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

#[cfg(feature = "http")]
pub use anthropic::AnthropicBatch;
pub use ledger::{BatchLedger, LedgerEntry, MemoryLedger};
#[cfg(feature = "http")]
pub use openai::OpenAiBatch;
#[cfg(feature = "redis")]
pub use redis_ledger::RedisLedger;
#[cfg(feature = "sqlite")]
pub use sqlite_ledger::SqliteLedger;
pub use vendor::{BatchLimits, BatchRequest, BatchState, BatchVendor, ItemOutcome};

use super::cache_key;
use crate::model::{ChatModel, ChatRequest, Chunk, ChunkStream, ModelError, Reply, ToolCallDelta};

/// What to do with a request whose batch expired or was cancelled before
/// serving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnExpired {
    /// Send it again in the next batch.
    Resubmit,
    /// Make the call in real time, on the wrapped model, at the full price.
    Realtime,
}

/// When a [`ViaBatch`] sends a batch and how it waits for it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchConfig {
    /// Send the calls waiting once there are this many.
    pub max_requests: usize,
    /// Or once the first of them has waited this long.
    pub max_wait: Duration,
    /// Or once no call has arrived for this long: the runs that were going
    /// to call at this step all have.
    pub quiet: Duration,
    /// The first pause between polls of a batch; it doubles from there.
    pub poll_min: Duration,
    /// The longest pause between polls.
    pub poll_max: Duration,
    /// What to do with an expired or cancelled request.
    pub on_expired: OnExpired,
}

impl Default for BatchConfig {
    /// 1,000 requests, or 2 s without a new call, or 60 s; polls every
    /// 5 s to 5 min, resubmitting what expired.
    fn default() -> Self {
        BatchConfig {
            max_requests: 1000,
            max_wait: Duration::from_secs(60),
            quiet: Duration::from_secs(2),
            poll_min: Duration::from_secs(5),
            poll_max: Duration::from_secs(300),
            on_expired: OnExpired::Resubmit,
        }
    }
}

/// Sends each call as one request of a vendor batch and streams its reply
/// when the batch is back: the text as one chunk, then the exact usage
/// (marked [`batched_requests`](crate::Usage::batched_requests), so
/// [`Price`](crate::model::Price) charges the batch price). The calls of
/// every run waiting at the moment go in one batch.
///
/// A request the vendor failed is a [`ModelError::Http`] (or
/// [`ModelError::Backend`] without a status); an expired or cancelled one
/// goes out again or is made in real time on the wrapped model
/// ([`OnExpired`]).
pub struct ViaBatch<M> {
    inner: M,
    shared: Arc<Shared>,
    /// Stops the flushing and polling tasks when the layer is dropped.
    _stop: tokio_util::sync::DropGuard,
}

impl<M> std::fmt::Debug for ViaBatch<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViaBatch")
            .field("vendor", &self.shared.vendor.name())
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

struct Shared {
    vendor: Arc<dyn BatchVendor>,
    ledger: Arc<dyn BatchLedger>,
    config: BatchConfig,
    state: Mutex<State>,
    /// A call started waiting: the flusher looks again.
    arrived: Notify,
    /// Fired when the layer is dropped.
    stop: tokio_util::sync::CancellationToken,
}

#[derive(Default)]
struct State {
    /// Calls not sent yet, in arrival order, and when the first and the
    /// last arrived.
    waiting: Vec<BatchRequest>,
    since: Option<Instant>,
    last: Option<Instant>,
    /// Who waits for each call's outcome.
    waiters: HashMap<String, Vec<oneshot::Sender<ItemOutcome>>>,
    /// Batches someone is polling.
    polled: std::collections::HashSet<String>,
    /// The calls this process waits for, by the batch they went out in.
    members: HashMap<String, Vec<String>>,
    flusher: bool,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<M: ChatModel> ViaBatch<M> {
    /// Sends `inner`'s calls through `vendor`'s Batch API, keeping what
    /// went out in `ledger`. `inner` makes the calls that fall back to real
    /// time.
    pub fn new(
        inner: M,
        vendor: Arc<dyn BatchVendor>,
        ledger: Arc<dyn BatchLedger>,
        config: BatchConfig,
    ) -> Self {
        let stop = tokio_util::sync::CancellationToken::new();
        ViaBatch {
            inner,
            shared: Arc::new(Shared {
                vendor,
                ledger,
                config,
                state: Mutex::new(State::default()),
                arrived: Notify::new(),
                stop: stop.clone(),
            }),
            _stop: stop.drop_guard(),
        }
    }

    /// Starts polling every batch the ledger says is in flight (a process
    /// restarted mid-batch), so their outcomes are recorded even before
    /// the runs ask for them again.
    pub async fn reattach(&self) -> Result<usize, crate::backend::BackendError> {
        let batches = self.shared.ledger.in_flight().await?;
        for batch in &batches {
            Shared::poll(&self.shared, batch);
        }
        Ok(batches.len())
    }
}

impl Shared {
    /// Waits for call `custom_id`'s outcome, sending it in a batch unless
    /// it went out before (this process or an earlier one).
    async fn outcome(
        self: &Arc<Self>,
        custom_id: String,
        request: ChatRequest,
    ) -> Result<ItemOutcome, ModelError> {
        let entry = self
            .ledger
            .lookup(&custom_id)
            .await
            .map_err(|e| self.unavailable(e))?;
        let (tx, rx) = oneshot::channel();
        match entry {
            Some(LedgerEntry::Done(outcome)) => return Ok(outcome),
            Some(LedgerEntry::Submitted { batch_id }) => {
                {
                    let mut state = lock(&self.state);
                    state
                        .members
                        .entry(batch_id.clone())
                        .or_default()
                        .push(custom_id.clone());
                    state.waiters.entry(custom_id).or_default().push(tx);
                }
                Self::poll(self, &batch_id);
            }
            None => {
                let mut state = lock(&self.state);
                let known = state.waiters.contains_key(&custom_id);
                state.waiters.entry(custom_id.clone()).or_default().push(tx);
                if !known {
                    state.waiting.push(BatchRequest { custom_id, request });
                    state.since.get_or_insert_with(Instant::now);
                    state.last = Some(Instant::now());
                }
                if !state.flusher {
                    state.flusher = true;
                    tokio::spawn(Self::flush_loop(Arc::clone(self)));
                }
                drop(state);
                self.arrived.notify_one();
            }
        }
        rx.await.map_err(|_| ModelError::Backend {
            provider: self.vendor.name().to_owned(),
            message: "the batch layer stopped before the batch came back".to_owned(),
        })
    }

    /// Sends the waiting calls whenever [`plan::should_flush`] says so, for
    /// as long as calls keep arriving.
    async fn flush_loop(self: Arc<Self>) {
        loop {
            let arrived = self.arrived.notified();
            let (count, since, last) = {
                let mut state = lock(&self.state);
                if state.waiting.is_empty() {
                    state.flusher = false;
                    return;
                }
                let now = Instant::now();
                (
                    state.waiting.len(),
                    state.since.unwrap_or(now),
                    state.last.unwrap_or(now),
                )
            };
            let c = &self.config;
            let left = plan::flush_in(
                count,
                since.elapsed(),
                last.elapsed(),
                c.max_requests,
                c.max_wait,
                c.quiet,
            );
            if let Some(left) = left.filter(|l| !l.is_zero()) {
                // Until it is time, or more arrive.
                tokio::select! {
                    () = tokio::time::sleep(left) => {}
                    () = arrived => {}
                    () = self.stop.cancelled() => return,
                }
                continue;
            }
            let max = c.max_requests;
            let taken: Vec<BatchRequest> = {
                let mut state = lock(&self.state);
                let n = state.waiting.len().min(max.max(1));
                let taken: Vec<BatchRequest> = state.waiting.drain(..n).collect();
                state.since = if state.waiting.is_empty() {
                    None
                } else {
                    Some(Instant::now())
                };
                taken
            };
            let sizes: Vec<usize> = taken
                .iter()
                .map(|r| serde_json::to_vec(&r.request).map_or(0, |b| b.len()))
                .collect();
            for range in plan::split(&sizes, self.vendor.limits()) {
                self.send(&taken[range]).await;
            }
        }
    }

    /// Submits one batch, records it and starts polling it; a failed
    /// submission fails its calls.
    async fn send(self: &Arc<Self>, requests: &[BatchRequest]) {
        let ids: Vec<String> = requests.iter().map(|r| r.custom_id.clone()).collect();
        let submitted = match self.vendor.submit(requests).await {
            Ok(batch_id) => self
                .ledger
                .submitted(&batch_id, &ids)
                .await
                .map(|()| batch_id)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match submitted {
            Ok(batch_id) => {
                lock(&self.state)
                    .members
                    .entry(batch_id.clone())
                    .or_default()
                    .extend(ids);
                Self::poll(self, &batch_id);
            }
            Err(message) => {
                let outcome = ItemOutcome::Errored {
                    status: None,
                    message: format!("submitting the batch failed: {message}"),
                };
                for id in &ids {
                    self.complete(id, &outcome);
                }
            }
        }
    }

    /// Polls batch `batch_id` until it ends (once per batch), then records
    /// and hands out its outcomes.
    fn poll(self: &Arc<Self>, batch_id: &str) {
        if !lock(&self.state).polled.insert(batch_id.to_owned()) {
            return;
        }
        let shared = Arc::clone(self);
        let batch_id = batch_id.to_owned();
        tokio::spawn(async move {
            let mut pause = None;
            let mut outcomes = loop {
                match shared.vendor.state(&batch_id).await {
                    Ok(BatchState::Running) => {}
                    Ok(BatchState::Ended) => match shared.vendor.results(&batch_id).await {
                        Ok(outcomes) => break outcomes,
                        Err(e) => {
                            tracing::warn!(batch_id, error = %e, "reading a batch's results failed; trying again")
                        }
                    },
                    Ok(BatchState::Failed(message)) => {
                        let outcome = ItemOutcome::Errored {
                            status: None,
                            message: format!("the batch failed: {message}"),
                        };
                        break shared
                            .members_of(&batch_id)
                            .into_iter()
                            .map(|id| (id, outcome.clone()))
                            .collect();
                    }
                    Err(e) => {
                        tracing::warn!(batch_id, error = %e, "polling a batch failed; trying again")
                    }
                }
                let next = plan::next_poll(pause, shared.config.poll_min, shared.config.poll_max);
                pause = Some(next);
                tokio::select! {
                    () = tokio::time::sleep(next) => {}
                    // The ledger keeps the batch; a new layer re-attaches.
                    () = shared.stop.cancelled() => return,
                }
            };
            // A call of the batch without a result expired.
            let members = shared.members_of(&batch_id);
            let answered: std::collections::HashSet<&str> =
                outcomes.iter().map(|(id, _)| id.as_str()).collect();
            let missing: Vec<String> = members
                .into_iter()
                .filter(|id| !answered.contains(id.as_str()))
                .collect();
            outcomes.extend(missing.into_iter().map(|id| (id, ItemOutcome::Expired)));
            if let Err(e) = shared.ledger.finished(&batch_id, &outcomes).await {
                tracing::warn!(batch_id, error = %e, "recording a batch's outcomes failed");
            }
            // Under one lock with the end of polling: a call that starts
            // waiting on this batch after it either is answered here or
            // finds no poller and starts one.
            let answered: Vec<(Vec<oneshot::Sender<ItemOutcome>>, ItemOutcome)> = {
                let mut state = lock(&shared.state);
                state.polled.remove(&batch_id);
                state.members.remove(&batch_id);
                outcomes
                    .into_iter()
                    .map(|(id, outcome)| (state.waiters.remove(&id).unwrap_or_default(), outcome))
                    .collect()
            };
            for (waiters, outcome) in answered {
                for tx in waiters {
                    tx.send(outcome.clone()).ok();
                }
            }
        });
    }

    /// The calls this process waits for that went out in `batch_id`.
    fn members_of(&self, batch_id: &str) -> Vec<String> {
        lock(&self.state)
            .members
            .get(batch_id)
            .cloned()
            .unwrap_or_default()
    }

    fn complete(&self, custom_id: &str, outcome: &ItemOutcome) {
        let waiters = lock(&self.state)
            .waiters
            .remove(custom_id)
            .unwrap_or_default();
        for tx in waiters {
            tx.send(outcome.clone()).ok();
        }
    }

    fn unavailable(&self, e: crate::backend::BackendError) -> ModelError {
        ModelError::Backend {
            provider: self.vendor.name().to_owned(),
            message: format!("the batch ledger is unavailable: {e}"),
        }
    }
}

/// A reply from a batch as chunks: each part whole, then the usage marked
/// as batched.
fn batched_chunks(reply: Reply) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    if !reply.reasoning.is_empty() {
        chunks.push(Chunk::Reasoning(reply.reasoning));
    }
    if !reply.text.is_empty() {
        chunks.push(Chunk::Text(reply.text));
    }
    for (index, call) in reply.tool_calls.into_iter().enumerate() {
        chunks.push(Chunk::ToolCall(ToolCallDelta {
            index,
            id: Some(call.id),
            name: Some(call.name),
            arguments: call.arguments.to_string(),
        }));
    }
    if !reply.logprobs.is_empty() {
        chunks.push(Chunk::Logprobs(reply.logprobs));
    }
    chunks.extend(reply.route.into_iter().map(Chunk::Route));
    let mut usage = reply.usage;
    usage.batched_requests = 1;
    chunks.push(Chunk::Usage(usage));
    if let Some(finish) = reply.finish {
        chunks.push(Chunk::Finish(finish));
    }
    chunks
}

wrapper!(ViaBatch);

impl<M: ChatModel> ChatModel for ViaBatch<M> {
    forward_model_info!();

    fn stream(&self, request: ChatRequest) -> ChunkStream<'_> {
        Box::pin(async_stream::try_stream! {
            let custom_id = cache_key(self.inner.name(), &request);
            loop {
                let outcome = self.shared.outcome(custom_id.clone(), request.clone()).await?;
                match outcome {
                    ItemOutcome::Succeeded { reply } => {
                        for chunk in batched_chunks(reply) {
                            yield chunk;
                        }
                        return;
                    }
                    ItemOutcome::Errored { status: Some(status), message } => Err(ModelError::Http {
                        provider: self.shared.vendor.name().to_owned(),
                        status,
                        message,
                        retry_after: None,
                    })?,
                    ItemOutcome::Errored { status: None, message } => Err(ModelError::Backend {
                        provider: self.shared.vendor.name().to_owned(),
                        message,
                    })?,
                    ItemOutcome::Expired | ItemOutcome::Canceled => match self.shared.config.on_expired {
                        OnExpired::Resubmit => {
                            self.shared.ledger.forget(&custom_id).await.map_err(|e| self.shared.unavailable(e))?;
                            continue;
                        }
                        OnExpired::Realtime => {
                            let mut chunks = self.inner.stream(request.clone());
                            while let Some(chunk) = chunks.next().await {
                                yield chunk?;
                            }
                            return;
                        }
                    },
                }
                return;
            }
        })
    }
}
