//! Limits shared by a fleet through Redis: two `FleetLimit`s on one
//! provider name (as two worker processes would have) stay within one
//! concurrency limit and one request budget, and a 429 seen by one lowers
//! the adaptive limit for both.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use statewise::layer::{FleetLimit, Limits};
use statewise::model::{ChatModel, ChatRequest, Chunk, ChunkStream, ModelError};
use statewise::Message;

use crate::services::Redis;

/// Counts the calls under way (shared by its clones), each taking `delay`;
/// answers 429 while `throttle` is set.
#[derive(Clone, Default)]
struct Gauge {
    now: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
    throttle: Arc<AtomicBool>,
    delay: Duration,
}

impl ChatModel for Gauge {
    fn name(&self) -> &str {
        "gauge"
    }
    fn stream(&self, _request: ChatRequest) -> ChunkStream<'_> {
        Box::pin(statewise::try_stream! {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.max.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            self.now.fetch_sub(1, Ordering::SeqCst);
            if self.throttle.load(Ordering::SeqCst) {
                Err(ModelError::Http { provider: "gauge".into(), status: 429, message: "slow down".into(), retry_after: None })?;
            }
            yield Chunk::Text("ok".into());
        })
    }
}

fn ask() -> ChatRequest {
    ChatRequest::new(vec![Message::user("hi")])
}

fn name() -> String {
    format!("provider{:08x}", fastrand::u32(..))
}

/// Runs `n` calls on each of the two limits at once.
async fn call_both(a: &Arc<FleetLimit<Gauge>>, b: &Arc<FleetLimit<Gauge>>, n: usize) {
    let calls = (0..2 * n).map(|i| {
        let model = Arc::clone(if i % 2 == 0 { a } else { b });
        tokio::spawn(async move { model.complete(ask()).await })
    });
    for r in futures::future::join_all(calls).await {
        r.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_concurrency_limit() {
    let redis = Redis::shared_or_own();
    let gauge = Gauge {
        delay: Duration::from_millis(40),
        ..Gauge::default()
    };
    let limits = Limits {
        concurrency: Some(3),
        ..Limits::default()
    };
    let provider = name();
    let a = Arc::new(FleetLimit::new(gauge.clone(), &redis.url, &provider, limits).unwrap());
    let b = Arc::new(FleetLimit::new(gauge.clone(), &redis.url, &provider, limits).unwrap());
    call_both(&a, &b, 12).await;
    // Each alone would allow 3, so 6 together if the limit were not shared.
    assert_eq!(gauge.max.load(Ordering::SeqCst), 3);
    assert_eq!(gauge.calls.load(Ordering::SeqCst), 24);
    assert_eq!(a.in_flight().await.unwrap(), 0, "every slot given back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_request_budget() {
    let redis = Redis::shared_or_own();
    let gauge = Gauge::default();
    let limits = Limits {
        requests_per_minute: Some(60),
        ..Limits::default()
    };
    let provider = name();
    let a = Arc::new(FleetLimit::new(gauge.clone(), &redis.url, &provider, limits).unwrap());
    let b = Arc::new(FleetLimit::new(gauge.clone(), &redis.url, &provider, limits).unwrap());
    let start = Instant::now();
    // 62 calls on a budget of 60 a minute (one a second after the first
    // 60): the last two wait for the bucket to refill, whichever process
    // makes them.
    call_both(&a, &b, 31).await;
    assert!(
        start.elapsed() >= Duration::from_millis(1800),
        "62 calls took only {:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_lowers_the_adaptive_limit_for_the_whole_fleet() {
    let redis = Redis::shared_or_own();
    let gauge = Gauge::default();
    let limits = Limits {
        concurrency: Some(8),
        adaptive: true,
        ..Limits::default()
    };
    let provider = name();
    // A long cooldown: several 429s of one overload halve the limit once.
    let a = FleetLimit::new(gauge.clone(), &redis.url, &provider, limits)
        .unwrap()
        .cooldown(Duration::from_secs(60));
    let b = FleetLimit::new(gauge.clone(), &redis.url, &provider, limits).unwrap();
    assert_eq!(b.current_concurrency().await.unwrap(), Some(8));
    gauge.throttle.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        let e = a.complete(ask()).await.unwrap_err();
        assert_eq!(e.status(), Some(429));
    }
    assert_eq!(
        b.current_concurrency().await.unwrap(),
        Some(4),
        "seen by the other process"
    );
    gauge.throttle.store(false, Ordering::SeqCst);
    for _ in 0..6 {
        b.complete(ask()).await.unwrap();
    }
    // Additive increase: a step of 1/limit per success.
    assert_eq!(a.current_concurrency().await.unwrap(), Some(5));
}
