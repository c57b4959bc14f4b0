//! The batch lane against an in-process vendor: runs' calls go out
//! together, one batch per step, at the batch price; a restarted process
//! re-attaches instead of submitting again; expired and failed requests.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::json;
use statewise::layer::batch::BatchLedger;
use statewise::layer::batch::{
    BatchConfig, BatchLimits, BatchRequest, BatchState, BatchVendor, ItemOutcome, MemoryLedger,
    OnExpired, SqliteLedger, ViaBatch,
};
use statewise::layer::ModelExt;
use statewise::layer::Priced;
use statewise::model::{ChatModel, ChatRequest, FnModel, ModelError, Price, Reply};
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::{Env, Message, Usage};
use statewise_states::tools::Calculator;

/// Calls the calculator once, then answers with what it returned.
fn planner(request: &ChatRequest) -> Reply {
    let seen = request
        .messages
        .iter()
        .find_map(|m| m.content.strip_prefix("Observation from `calculator`"))
        .and_then(|r| r.split_once('\n'))
        .map(|(_, v)| v.trim().to_owned());
    let text = match seen {
        None => json!({"name": "calculator", "arguments": {"expression": "6*7"}}).to_string(),
        Some(v) => json!({"final_answer": format!("it is {v}")}).to_string(),
    };
    Reply {
        usage: Usage {
            prompt_tokens: 1000,
            completion_tokens: 100,
            ..Usage::default()
        },
        ..Reply::text(text)
    }
}

/// A vendor in memory: a batch ends once `ready` says so; its results are
/// the planner's replies, less the ids told to expire (once) or fail.
#[derive(Default)]
struct Vendor {
    batches: Mutex<Vec<(String, Vec<BatchRequest>)>>,
    ready: std::sync::atomic::AtomicBool,
    expire: Mutex<HashSet<String>>,
    fail: Mutex<HashSet<String>>,
    polls: AtomicUsize,
}

impl Vendor {
    fn ready() -> Arc<Self> {
        let v = Vendor::default();
        v.ready.store(true, Ordering::SeqCst);
        Arc::new(v)
    }
    fn submitted(&self) -> Vec<Vec<String>> {
        self.batches
            .lock()
            .unwrap()
            .iter()
            .map(|(_, r)| r.iter().map(|r| r.custom_id.clone()).collect())
            .collect()
    }
}

impl BatchVendor for Vendor {
    fn name(&self) -> &str {
        "mock"
    }
    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_requests: 50_000,
            max_bytes: 200 << 20,
        }
    }
    fn submit<'a>(
        &'a self,
        requests: &'a [BatchRequest],
    ) -> BoxFuture<'a, Result<String, ModelError>> {
        let mut batches = self.batches.lock().unwrap();
        let id = format!("batch_{}", batches.len());
        batches.push((id.clone(), requests.to_vec()));
        Box::pin(async move { Ok(id) })
    }
    fn state<'a>(&'a self, _batch_id: &'a str) -> BoxFuture<'a, Result<BatchState, ModelError>> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        let state = if self.ready.load(Ordering::SeqCst) {
            BatchState::Ended
        } else {
            BatchState::Running
        };
        Box::pin(async move { Ok(state) })
    }
    fn results<'a>(
        &'a self,
        batch_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, ItemOutcome)>, ModelError>> {
        let batches = self.batches.lock().unwrap();
        let (mut expire, fail) = (self.expire.lock().unwrap(), self.fail.lock().unwrap());
        let requests = &batches.iter().find(|(id, _)| id == batch_id).unwrap().1;
        // In reverse: results come back in any order.
        let out = requests
            .iter()
            .rev()
            .filter(|r| !expire.remove(&r.custom_id))
            .map(|r| {
                let outcome = if fail.contains(&r.custom_id) {
                    ItemOutcome::Errored {
                        status: Some(400),
                        message: "invalid request".into(),
                    }
                } else {
                    ItemOutcome::Succeeded {
                        reply: planner(&r.request),
                    }
                };
                (r.custom_id.clone(), outcome)
            })
            .collect();
        Box::pin(async move { Ok(out) })
    }
}

fn config(on_expired: OnExpired) -> BatchConfig {
    BatchConfig {
        max_requests: 1000,
        max_wait: Duration::from_millis(300),
        quiet: Duration::from_millis(300),
        poll_min: Duration::from_millis(10),
        poll_max: Duration::from_millis(50),
        on_expired,
    }
}

/// The realtime model, counting its calls.
fn realtime(calls: &Arc<AtomicUsize>) -> FnModel {
    let calls = Arc::clone(calls);
    FnModel::new("model", move |r: &ChatRequest| {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok(planner(r))
    })
}

const PRICE: Price = Price {
    prompt: 2.0,
    completion: 8.0,
    cached: None,
    cache_write: None,
    batch_factor: 0.5,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_of_every_run_goes_out_in_one_batch_at_half_price() {
    let vendor = Vendor::ready();
    let calls = Arc::new(AtomicUsize::new(0));
    let model = Arc::new(Priced::new(
        ViaBatch::new(
            realtime(&calls),
            vendor.clone(),
            Arc::new(MemoryLedger::new()),
            // Long enough for every run's call of a step to arrive, on a
            // loaded machine too.
            BatchConfig {
                max_wait: Duration::from_secs(5),
                quiet: Duration::from_secs(1),
                ..config(OnExpired::Resubmit)
            },
        ),
        PRICE,
    ));
    let agent = statewise_states::agent(model, Toolbox::new(ToolRegistry::new().with(Calculator)));
    let runs = (0..100).map(|i| {
        let agent = agent.clone();
        tokio::spawn(async move {
            agent
                .run_as(format!("run-{i}"), Env::from_user(format!("question {i}")))
                .await
        })
    });
    let outs: Vec<_> = futures::future::join_all(runs)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    let batches = vendor.submitted();
    assert_eq!(
        batches.iter().map(Vec::len).collect::<Vec<_>>(),
        [100, 100],
        "one batch per step"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0, "nothing in real time");
    for out in &outs {
        assert_eq!(out.answer.as_deref(), Some("it is 42"));
        let usage = out.usage();
        assert_eq!((usage.prompt_tokens, usage.batched_requests), (2000, 2));
        // Realtime: 2 calls × (1000 × $2 + 100 × $8) per million = $0.0056.
        assert!((usage.cost - 0.0028).abs() < 1e-9, "cost {}", usage.cost);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_process_waits_for_the_batch_in_flight() {
    let vendor = Arc::new(Vendor::default());
    let path = crate::support::temp_dir("batch-ledger-restart").join("ledger.sqlite");
    let calls = Arc::new(AtomicUsize::new(0));
    let ask = || ChatRequest::new(vec![Message::user("question")]);
    let first = realtime(&calls).via_batch(
        vendor.clone(),
        Arc::new(SqliteLedger::open(&path).unwrap()),
        config(OnExpired::Resubmit),
    );
    // The process dies with the batch out.
    let call = tokio::time::timeout(Duration::from_millis(800), first.complete(ask())).await;
    assert!(call.is_err(), "the batch is still running");
    assert_eq!(vendor.submitted().len(), 1);
    drop(first);

    let second = ViaBatch::new(
        realtime(&calls),
        vendor.clone(),
        Arc::new(SqliteLedger::open(&path).unwrap()),
        config(OnExpired::Resubmit),
    );
    assert_eq!(second.reattach().await.unwrap(), 1);
    vendor.ready.store(true, Ordering::SeqCst);
    let reply = second.complete(ask()).await.unwrap();
    assert!(reply.text.contains("calculator"));
    assert_eq!(vendor.submitted().len(), 1, "nothing submitted twice");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_requests_go_out_again_or_fall_back_to_realtime() {
    let ask = |q: &str| ChatRequest::new(vec![Message::user(q)]);
    for on_expired in [OnExpired::Resubmit, OnExpired::Realtime] {
        let vendor = Vendor::ready();
        let calls = Arc::new(AtomicUsize::new(0));
        let model = ViaBatch::new(
            realtime(&calls),
            vendor.clone(),
            Arc::new(MemoryLedger::new()),
            config(on_expired),
        );
        let key = statewise::layer::cache_key("model", &ask("late"));
        vendor.expire.lock().unwrap().insert(key.clone());
        let (late, on_time) =
            tokio::join!(model.complete(ask("late")), model.complete(ask("on time")));
        let (late, on_time) = (late.unwrap(), on_time.unwrap());
        assert_eq!(on_time.usage.batched_requests, 1);
        match on_expired {
            OnExpired::Resubmit => {
                let batches = vendor.submitted();
                assert_eq!(batches.len(), 2);
                let on_time_key = statewise::layer::cache_key("model", &ask("on time"));
                let first: HashSet<&String> = batches[0].iter().collect();
                assert_eq!(first, HashSet::from([&key, &on_time_key]));
                assert_eq!(
                    batches[1],
                    vec![key.clone()],
                    "the expired one went out again"
                );
                assert_eq!(calls.load(Ordering::SeqCst), 0);
            }
            _ => {
                assert_eq!(late.usage.batched_requests, 0, "made in real time");
                assert_eq!(calls.load(Ordering::SeqCst), 1);
                assert_eq!(vendor.submitted().len(), 1);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_vendor_failed_is_a_typed_error() {
    let vendor = Vendor::ready();
    let calls = Arc::new(AtomicUsize::new(0));
    let model = ViaBatch::new(
        realtime(&calls),
        vendor.clone(),
        Arc::new(MemoryLedger::new()),
        config(OnExpired::Resubmit),
    );
    let ask = ChatRequest::new(vec![Message::user("bad")]);
    vendor
        .fail
        .lock()
        .unwrap()
        .insert(statewise::layer::cache_key("model", &ask));
    match model.complete(ask).await {
        Err(ModelError::Http {
            status: 400,
            message,
            ..
        }) => assert_eq!(message, "invalid request"),
        other => panic!("expected the vendor's 400, got {other:?}"),
    }
}

/// What every ledger must do; the SQLite one also after reopening.
async fn check_ledger(ledger: &dyn BatchLedger) {
    use statewise::layer::batch::LedgerEntry;
    let ids = ["a".to_owned(), "b".to_owned()];
    assert_eq!(ledger.lookup("a").await.unwrap(), None);
    ledger.submitted("batch_1", &ids).await.unwrap();
    assert_eq!(ledger.in_flight().await.unwrap(), ["batch_1"]);
    assert_eq!(
        ledger.lookup("b").await.unwrap(),
        Some(LedgerEntry::Submitted {
            batch_id: "batch_1".into()
        })
    );
    let done = ItemOutcome::Succeeded {
        reply: Reply::text("4"),
    };
    ledger
        .finished(
            "batch_1",
            &[
                ("a".into(), done.clone()),
                ("b".into(), ItemOutcome::Expired),
            ],
        )
        .await
        .unwrap();
    assert!(ledger.in_flight().await.unwrap().is_empty());
    assert_eq!(
        ledger.lookup("a").await.unwrap(),
        Some(LedgerEntry::Done(done))
    );
    ledger.forget("b").await.unwrap();
    assert_eq!(ledger.lookup("b").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledgers_keep_batches_calls_and_outcomes() {
    check_ledger(&MemoryLedger::new()).await;
    let path = crate::support::temp_dir("batch-ledger").join("ledger.sqlite");
    check_ledger(&SqliteLedger::open(&path).unwrap()).await;
    #[cfg(feature = "redis")]
    {
        let redis = crate::services::Redis::shared_or_own();
        let prefix = format!("ledger{:08x}", fastrand::u32(..));
        let open = || {
            statewise::layer::batch::RedisLedger::open(&redis.url)
                .unwrap()
                .with_prefix(&prefix)
        };
        check_ledger(&open()).await;
        assert!(matches!(
            open().lookup("a").await.unwrap(),
            Some(statewise::layer::batch::LedgerEntry::Done(_))
        ));
    }
    // Reopened, as after a restart.
    let again = SqliteLedger::open(&path).unwrap();
    assert!(matches!(
        again.lookup("a").await.unwrap(),
        Some(statewise::layer::batch::LedgerEntry::Done(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cascade_escalates_to_a_tier_on_the_batch_lane() {
    use statewise::layer::{Cascade, ParsesAsAction, Tier};
    use statewise::model::Verdict;
    let vendor = Vendor::ready();
    let calls = Arc::new(AtomicUsize::new(0));
    let small = FnModel::new("small", |_: &ChatRequest| {
        Ok(Reply::text("Hmm, let me think.").with_usage(Usage {
            prompt_tokens: 1000,
            completion_tokens: 5,
            ..Usage::default()
        }))
    });
    let batched = ViaBatch::new(
        realtime(&calls),
        vendor.clone(),
        Arc::new(MemoryLedger::new()),
        config(OnExpired::Resubmit),
    );
    let cascade = Cascade::new(vec![
        Tier::new("small", small).price(Price::per_million(0.1, 0.4)),
        Tier::new("large", batched).price(PRICE),
    ])
    .unwrap()
    .check(ParsesAsAction);
    let reply = cascade
        .complete(ChatRequest::new(vec![Message::user("What is 6*7?")]))
        .await
        .unwrap();
    assert!(reply.text.contains("calculator"), "{}", reply.text);
    assert_eq!(
        vendor.submitted().len(),
        1,
        "the escalation went out in a batch"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let large = &reply.route[1];
    assert_eq!(
        (large.tier.as_str(), large.verdict),
        ("large", Verdict::Accepted)
    );
    assert_eq!(large.usage.batched_requests, 1);
    // 1,000 prompt and 100 completion tokens at half of $2/$8 per M.
    assert!(
        (large.usage.cost - 0.0014).abs() < 1e-12,
        "{}",
        large.usage.cost
    );
    assert_eq!(reply.route[0].verdict, Verdict::Rejected);
}
