//! A circuit breaker per model: stop calling a model that keeps failing.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use crate::metric;
use crate::model::{ChatModel, ChatRequest, ChunkStream, ModelError, ModelErrorKind};
use crate::semconv::provider_and_model;

/// When a breaker opens and how long it stays open: when, within `window`,
/// at least `min_calls` calls ended, at least `failures` of them failed, and
/// they are at least `ratio` of the calls (so a busy model with a few
/// failures, or a burst of fast errors before the first slow successes,
/// does not trip it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// The fewest failures within `window` that open the breaker.
    pub failures: u32,
    /// The share of failed calls within `window` that opens it.
    pub ratio: f64,
    /// The fewest calls within `window` to judge the ratio on.
    pub min_calls: u32,
    /// The window calls are counted in.
    pub window: Duration,
    /// How long it stays open before letting one probe through.
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            ratio: 0.5,
            min_calls: 10,
            window: Duration::from_secs(30),
            cooldown: Duration::from_secs(15),
        }
    }
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; failures are counted.
    Closed,
    /// Calls are refused with [`CircuitOpen`].
    Open,
    /// One probe call is under way; its outcome closes or reopens it.
    HalfOpen,
}

/// What a breaker has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BreakerStats {
    /// Times it opened.
    pub opened: u64,
    /// Times a probe succeeded and it closed again.
    pub closed: u64,
    /// Calls it refused.
    pub rejected: u64,
}

#[derive(Debug)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

#[derive(Debug)]
struct Inner {
    config: BreakerConfig,
    phase: Phase,
    /// Outcomes within the window: when, and whether it failed.
    outcomes: VecDeque<(Instant, bool)>,
    stats: BreakerStats,
}

/// A breaker's shared state; every model wrapped with the same handle
/// shares one breaker.
#[derive(Debug, Clone)]
pub struct BreakerHandle(Arc<Mutex<Inner>>);

impl BreakerHandle {
    /// A new closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        BreakerHandle(Arc::new(Mutex::new(Inner {
            config,
            phase: Phase::Closed,
            outcomes: VecDeque::new(),
            stats: BreakerStats::default(),
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where it stands now.
    pub fn state(&self) -> BreakerState {
        let mut inner = self.lock();
        inner.expire(Instant::now());
        match inner.phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// What it has done so far.
    pub fn stats(&self) -> BreakerStats {
        self.lock().stats
    }

    /// Lets a call through (`Ok(is_probe)`), or says how long until a probe.
    fn admit(&self) -> Result<bool, Duration> {
        let mut inner = self.lock();
        let now = Instant::now();
        inner.expire(now);
        match inner.phase {
            Phase::Closed => Ok(false),
            Phase::HalfOpen { probing: false } => {
                inner.phase = Phase::HalfOpen { probing: true };
                Ok(true)
            }
            Phase::HalfOpen { probing: true } => {
                inner.stats.rejected += 1;
                Err(Duration::ZERO)
            }
            Phase::Open { until } => {
                inner.stats.rejected += 1;
                Err(until - now)
            }
        }
    }

    fn record(&self, failed: bool, probe: bool) {
        let mut inner = self.lock();
        let now = Instant::now();
        let cooldown = inner.config.cooldown;
        match (failed, probe) {
            (false, true) => {
                inner.phase = Phase::Closed;
                inner.outcomes.clear();
                inner.stats.closed += 1;
            }
            (true, true) => {
                inner.phase = Phase::Open {
                    until: now + cooldown,
                };
                inner.stats.opened += 1;
            }
            (failed, false) => {
                let window = inner.config.window;
                inner.outcomes.push_back((now, failed));
                while inner
                    .outcomes
                    .front()
                    .is_some_and(|(t, _)| now - *t > window)
                {
                    inner.outcomes.pop_front();
                }
                let failures = inner.outcomes.iter().filter(|(_, f)| *f).count();
                let share = failures as f64 / inner.outcomes.len() as f64;
                let trips = failures >= inner.config.failures as usize
                    && inner.outcomes.len() >= inner.config.min_calls as usize
                    && share >= inner.config.ratio;
                if failed && trips && matches!(inner.phase, Phase::Closed) {
                    inner.phase = Phase::Open {
                        until: now + cooldown,
                    };
                    inner.outcomes.clear();
                    inner.stats.opened += 1;
                }
            }
        }
    }

    /// A probe that ended without an outcome (the caller went away).
    fn release_probe(&self) {
        let mut inner = self.lock();
        if let Phase::HalfOpen { probing: true } = inner.phase {
            inner.phase = Phase::HalfOpen { probing: false };
        }
    }
}

impl Inner {
    fn expire(&mut self, now: Instant) {
        if let Phase::Open { until } = self.phase {
            if now >= until {
                self.phase = Phase::HalfOpen { probing: false };
            }
        }
    }
}

/// The circuit breakers of a fleet of models, one per model name, all
/// made with one configuration: a value passed to whatever builds models
/// ([`default_stack`](super::default_stack),
/// [`ModelRegistry`](crate::spec::ModelRegistry)), so models built for the
/// same provider and model share a breaker while they share this value.
#[derive(Debug, Clone, Default)]
pub struct Breakers {
    config: BreakerConfig,
    all: Arc<Mutex<HashMap<String, BreakerHandle>>>,
}

impl Breakers {
    /// No breakers yet; each is made with `config` on first use.
    pub fn new(config: BreakerConfig) -> Self {
        Breakers {
            config,
            all: Arc::default(),
        }
    }

    /// The breaker of the model named `name` (made on first use).
    pub fn for_model(&self, name: &str) -> BreakerHandle {
        let mut all = self.all.lock().unwrap_or_else(PoisonError::into_inner);
        all.entry(name.to_owned())
            .or_insert_with(|| BreakerHandle::new(self.config))
            .clone()
    }
}

/// A breaker refused a call without sending it: the model failed
/// repeatedly and the breaker is open. Reaches callers as
/// [`ModelError::Refused`] (kind `circuit_open`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{model}: circuit open after repeated failures; next probe in {retry_in:?}")]
pub struct CircuitOpen {
    /// The model.
    pub model: String,
    /// When the breaker lets a probe through.
    pub retry_in: Duration,
}

impl From<CircuitOpen> for ModelError {
    fn from(refusal: CircuitOpen) -> Self {
        ModelError::Refused {
            kind: ModelErrorKind::CircuitOpen,
            cause: Arc::new(refusal),
        }
    }
}

/// Streams the inner model's chunks unchanged while the model seems up,
/// and fails at once with [`CircuitOpen`], sending nothing, while it seems
/// down, so a fallback can act without waiting. It counts the model's
/// transient failures (except 429: rate limits are not outages).
#[derive(Debug, Clone)]
pub struct CircuitBreaker<M> {
    inner: M,
    handle: BreakerHandle,
}

impl<M: ChatModel> CircuitBreaker<M> {
    /// A breaker of its own around `inner`.
    pub fn new(inner: M, config: BreakerConfig) -> Self {
        CircuitBreaker {
            inner,
            handle: BreakerHandle::new(config),
        }
    }

    /// `inner` behind an existing breaker.
    pub fn with_handle(inner: M, handle: BreakerHandle) -> Self {
        CircuitBreaker { inner, handle }
    }

    /// Sets the breaker's state gauge ([`crate::metric::CIRCUIT_BREAKER_STATE`]).
    fn publish_state(&self) {
        let state = match self.handle.state() {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        };
        metric::breaker_state(provider_and_model(self.inner.name()), state);
    }

    /// The breaker, to watch its state.
    pub fn handle(&self) -> &BreakerHandle {
        &self.handle
    }
}

/// Settles a probe that is dropped before its outcome is known.
struct ProbeGuard<'a> {
    handle: &'a BreakerHandle,
    probe: bool,
    settled: bool,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if self.probe && !self.settled {
            self.handle.release_probe();
        }
    }
}

fn counts_as_failure(e: &ModelError) -> bool {
    e.is_transient() && e.status() != Some(429)
}

wrapper!(CircuitBreaker);

impl<M: ChatModel> ChatModel for CircuitBreaker<M> {
    forward_model_info!();

    fn stream(&self, request: ChatRequest) -> ChunkStream<'_> {
        Box::pin(async_stream::try_stream! {
            let admitted = self.handle.admit();
            self.publish_state();
            let probe = match admitted {
                Ok(probe) => probe,
                Err(retry_in) => Err(ModelError::from(CircuitOpen {
                    model: self.inner.name().to_owned(),
                    retry_in,
                }))?,
            };
            let mut guard = ProbeGuard { handle: &self.handle, probe, settled: false };
            let mut chunks = self.inner.stream(request);
            while let Some(chunk) = chunks.next().await {
                match chunk {
                    Ok(c) => yield c,
                    Err(e) => {
                        guard.settled = true;
                        self.handle.record(counts_as_failure(&e), probe);
                        self.publish_state();
                        Err(e)?;
                    }
                }
            }
            guard.settled = true;
            self.handle.record(false, probe);
            self.publish_state();
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FnModel, Reply};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    fn flaky(down: Arc<AtomicBool>) -> FnModel {
        FnModel::new("flaky", move |_| {
            if down.load(Ordering::SeqCst) {
                Err(ModelError::Http {
                    provider: "p".into(),
                    status: 503,
                    message: "down".into(),
                    retry_after: None,
                })
            } else {
                Ok(Reply::text("ok"))
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_failures_probes_after_cooldown_and_closes() {
        let down = Arc::new(AtomicBool::new(true));
        let config = BreakerConfig {
            failures: 3,
            ratio: 0.5,
            min_calls: 1,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(5),
        };
        let model = CircuitBreaker::new(flaky(down.clone()), config);
        let call = || model.complete(ChatRequest::default());
        for _ in 0..3 {
            assert!(matches!(
                call().await,
                Err(ModelError::Http { status: 503, .. })
            ));
        }
        assert_eq!(model.handle().state(), BreakerState::Open);
        let e = call().await.unwrap_err();
        assert!(
            e.refusal::<CircuitOpen>().map(|c| c.retry_in) == Some(Duration::from_secs(5)),
            "{e:?}"
        );

        // After the cooldown one probe goes through; it fails, so it reopens.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(model.handle().state(), BreakerState::HalfOpen);
        assert!(matches!(call().await, Err(ModelError::Http { .. })));
        assert_eq!(model.handle().state(), BreakerState::Open);

        // The model recovers: the next probe closes it.
        down.store(false, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(call().await.unwrap().text, "ok");
        assert_eq!(model.handle().state(), BreakerState::Closed);
        assert_eq!(
            model.handle().stats(),
            BreakerStats {
                opened: 2,
                closed: 1,
                rejected: 1
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn old_failures_leave_the_window_and_429_does_not_count() {
        let config = BreakerConfig {
            failures: 2,
            ratio: 0.5,
            min_calls: 1,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(5),
        };
        let status = Arc::new(std::sync::atomic::AtomicU16::new(500));
        let s = status.clone();
        let model = CircuitBreaker::new(
            FnModel::new("m", move |_| {
                Err(ModelError::Http {
                    provider: "p".into(),
                    status: s.load(Ordering::SeqCst),
                    message: String::new(),
                    retry_after: None,
                })
            }),
            config,
        );
        let _ = model.complete(ChatRequest::default()).await;
        tokio::time::advance(Duration::from_secs(11)).await;
        let _ = model.complete(ChatRequest::default()).await;
        assert_eq!(
            model.handle().state(),
            BreakerState::Closed,
            "the first failure left the window"
        );
        status.store(429, Ordering::SeqCst);
        for _ in 0..5 {
            let _ = model.complete(ChatRequest::default()).await;
        }
        assert_eq!(
            model.handle().state(),
            BreakerState::Closed,
            "rate limits are not outages"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_model_with_some_failures_stays_closed() {
        let config = BreakerConfig {
            failures: 3,
            ratio: 0.5,
            min_calls: 1,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(5),
        };
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        // Every third call fails: a third of the calls, under the ratio.
        let model = CircuitBreaker::new(
            FnModel::new("m", move |_| {
                if c.fetch_add(1, Ordering::SeqCst) % 3 == 2 {
                    Err(ModelError::Http {
                        provider: "p".into(),
                        status: 500,
                        message: String::new(),
                        retry_after: None,
                    })
                } else {
                    Ok(Reply::text("ok"))
                }
            }),
            config,
        );
        for _ in 0..30 {
            let _ = model.complete(ChatRequest::default()).await;
        }
        assert_eq!(model.handle().state(), BreakerState::Closed);
        assert_eq!(model.handle().stats().opened, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_probe_frees_the_half_open_slot() {
        let config = BreakerConfig {
            failures: 1,
            ratio: 0.5,
            min_calls: 1,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(1),
        };
        let down = Arc::new(AtomicBool::new(true));
        let model = CircuitBreaker::new(flaky(down.clone()), config);
        let _ = model.complete(ChatRequest::default()).await;
        tokio::time::advance(Duration::from_secs(1)).await;
        down.store(false, Ordering::SeqCst);
        drop(model.stream(ChatRequest::default()).next().await); // probe admitted, then dropped mid-way
        assert_eq!(model.handle().state(), BreakerState::HalfOpen);
        assert_eq!(
            model.complete(ChatRequest::default()).await.unwrap().text,
            "ok"
        );
        assert_eq!(model.handle().state(), BreakerState::Closed);
    }

    #[test]
    fn breakers_are_shared_by_name_within_one_value_only() {
        let breakers = Breakers::new(BreakerConfig::default());
        let a = breakers.for_model("openai:gpt-4o");
        a.record(true, false);
        // The same name in the same value is the same breaker...
        let again = breakers.clone().for_model("openai:gpt-4o");
        assert_eq!(again.stats(), a.stats());
        assert!(Arc::ptr_eq(&again.0, &a.0));
        // ...another name, or another value, is not.
        assert!(!Arc::ptr_eq(
            &breakers.for_model("anthropic:claude").0,
            &a.0
        ));
        let other = Breakers::new(BreakerConfig::default()).for_model("openai:gpt-4o");
        assert!(!Arc::ptr_eq(&other.0, &a.0));
    }

    #[test]
    fn a_layer_gives_its_model_back() {
        let layered = CircuitBreaker::new(
            FnModel::new("m", |_| Ok(Reply::text("ok"))),
            BreakerConfig::default(),
        );
        assert_eq!(layered.get_ref().name(), "m");
        assert_eq!(layered.into_inner().name(), "m");
    }
}
