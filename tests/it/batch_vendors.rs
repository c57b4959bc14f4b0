//! The batch lane against mock OpenAI and Anthropic Batch APIs: a two-step
//! agent over 500 items takes one batch per step at half the price; the
//! runner killed with a batch in flight resumes without submitting it
//! again; expired requests fall back to real time; a failed request is the
//! vendor's error.

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use statewise::dataset::{Dataset, ItemResult};
use statewise::layer::batch::{
    AnthropicBatch, BatchConfig, BatchVendor, MemoryLedger, OnExpired, OpenAiBatch, SqliteLedger,
    ViaBatch,
};
use statewise::layer::Priced;
use statewise::model::{Anthropic, ChatModel, ChatRequest, ModelError, OpenAi, Price};
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::Message;
use statewise_states::tools::Calculator;

use crate::batch_mock::{self, Mock, KEY, RESULT};
use crate::support::temp_dir;

const MINUTE: Duration = Duration::from_secs(60);

/// Realtime: $2 and $8 per million tokens; a call is 1,000 in, 100 out.
const PRICE: Price = Price {
    prompt: 2.0,
    completion: 8.0,
    cached: None,
    cache_write: None,
    batch_factor: 0.5,
};

fn config(on_expired: OnExpired) -> BatchConfig {
    BatchConfig {
        max_requests: 10_000,
        max_wait: Duration::from_secs(120),
        // Long enough that a step's calls, on a loaded 2-core machine,
        // never pause this long between two of them.
        quiet: Duration::from_secs(2),
        poll_min: Duration::from_millis(20),
        poll_max: Duration::from_millis(100),
        on_expired,
    }
}

fn openai(mock: &Mock) -> OpenAi {
    OpenAi::builder("gpt-mock")
        .base_url(&mock.url)
        .api_key(KEY)
        .streaming(false)
        .build()
        .unwrap()
}

/// `model` on OpenAI's batch lane with a ledger in memory, sending each
/// batch once calls have stopped arriving for 100 ms.
fn openai_lane(model: &OpenAi, on_expired: OnExpired) -> ViaBatch<OpenAi> {
    ViaBatch::new(
        model.clone(),
        Arc::new(OpenAiBatch::new(model)),
        Arc::new(MemoryLedger::new()),
        BatchConfig {
            quiet: Duration::from_millis(100),
            ..config(on_expired)
        },
    )
}

fn anthropic(mock: &Mock) -> Anthropic {
    Anthropic::builder("claude-mock")
        .base_url(&mock.url)
        .api_key(KEY)
        .streaming(false)
        .build()
        .unwrap()
}

fn dataset(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    let path = dir.join("input.jsonl");
    let lines: Vec<String> = (0..n)
        .map(|i| serde_json::json!({"id": format!("item-{i}"), "input": format!("What is six times seven plus a half, case {i}?")}).to_string())
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn results(path: &std::path::Path) -> Vec<ItemResult> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// 500 items of the two-step agent (calculator, then answer) through the
/// batch runner on `vendor`'s lane.
async fn five_hundred_items(
    mock: Arc<Mock>,
    realtime: impl ChatModel + 'static,
    vendor: Arc<dyn BatchVendor>,
) {
    let n = 500;
    let model = Arc::new(Priced::new(
        ViaBatch::new(
            realtime,
            vendor,
            Arc::new(MemoryLedger::new()),
            config(OnExpired::Resubmit),
        ),
        PRICE,
    ));
    let agent = statewise_states::agent(model, Toolbox::new(ToolRegistry::new().with(Calculator)));
    let dir = temp_dir("batch-vendor");
    let output = dir.join("output.jsonl");
    let _clock = mock.run_clock(MINUTE);
    let summary = Dataset::new(agent)
        .concurrency(n)
        .run(dataset(&dir, n), &output)
        .await
        .unwrap();

    let books = mock.books();
    let sizes: Vec<usize> = books.batches.iter().map(|b| b.requests.len()).collect();
    assert_eq!(sizes, [n, n], "one batch per step, every item's call in it");
    let unique: HashSet<&String> = books.submitted.iter().collect();
    assert_eq!(unique.len(), 2 * n, "no request submitted twice");
    assert_eq!(books.realtime, 0);
    assert_eq!((summary.total, summary.succeeded), (n as u64, n as u64));
    for r in results(&output) {
        assert_eq!(
            r.answer.as_deref(),
            Some(format!("it is {RESULT}").as_str()),
            "{r:?}"
        );
        assert_eq!(r.usage.batched_requests, 2);
    }
    // Realtime: 2 calls × (1,000 × $2 + 100 × $8) / 1M = $0.0056 an item.
    let realtime_cost = n as f64 * 0.0056;
    assert!(
        (summary.usage.cost - realtime_cost / 2.0).abs() < 1e-6,
        "cost ${} is not half of ${realtime_cost}",
        summary.usage.cost
    );
    assert!(summary
        .to_string()
        .contains("1000 calls through a vendor's batch API"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_items_through_openai_take_one_batch_per_step_at_half_price() {
    let mock = Arc::new(batch_mock::openai::start().await);
    let model = openai(&mock);
    let vendor = Arc::new(OpenAiBatch::new(&model));
    five_hundred_items(mock, model, vendor).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_items_through_anthropic_take_one_batch_per_step_at_half_price() {
    let mock = Arc::new(batch_mock::anthropic::start().await);
    let model = anthropic(&mock);
    let vendor = Arc::new(AnthropicBatch::new(&model));
    five_hundred_items(mock, model, vendor).await;
}

/// The batch example on the batch lane, killed with SIGKILL while its
/// first batch is in progress, then run again: it waits for that batch
/// instead of submitting it again, and answers every item once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_killed_mid_batch_resumes_without_paying_twice() {
    for vendor in ["openai", "anthropic"] {
        let mock = Arc::new(match vendor {
            "openai" => batch_mock::openai::start().await,
            _ => batch_mock::anthropic::start().await,
        });
        let dir = temp_dir("batch-lane-kill");
        let n = 60;
        let input = dataset(&dir, n);
        let output = dir.join("output.jsonl");
        let exe = crate::support::example("dataset");
        let run = || {
            Command::new(&exe)
                .args([input.to_str().unwrap(), output.to_str().unwrap()])
                .args([
                    "--lane",
                    "batch",
                    "--model",
                    &format!("{vendor}:mock-model"),
                ])
                .args(["--poll-ms", "20", "--price", "2,8"])
                .env("OPENAI_BASE_URL", &mock.url)
                .env("OPENAI_API_KEY", KEY)
                .env("ANTHROPIC_BASE_URL", &mock.url)
                .env("ANTHROPIC_API_KEY", KEY)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("the batch example starts")
        };

        // The clock stands still: the first batch stays in progress.
        let mut first = run();
        mock.until_batches(1, Duration::from_secs(60)).await;
        // Polled: the layer recorded the batch before it began polling.
        while mock.books().polls == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        first.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix
        first.wait().unwrap();
        assert!(
            !output.exists() || results(&output).is_empty(),
            "{vendor}: nothing answered yet"
        );

        let _clock = mock.run_clock(MINUTE);
        let second = run();
        let finished = tokio::task::spawn_blocking(move || second.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let stdout = String::from_utf8_lossy(&finished.stdout);
        assert!(
            finished.status.success(),
            "{vendor}: {}",
            String::from_utf8_lossy(&finished.stderr)
        );

        let books = mock.books();
        let unique: HashSet<&String> = books.submitted.iter().collect();
        assert_eq!(
            unique.len(),
            books.submitted.len(),
            "{vendor}: a request was submitted twice"
        );
        assert_eq!(books.batches.len(), 2, "{vendor}: one batch per step");
        let got = results(&output);
        let ids: Vec<&str> = got.iter().map(|r| r.id.as_str()).collect();
        let want: Vec<String> = (0..n).map(|i| format!("item-{i}")).collect();
        assert_eq!(ids, want, "{vendor}: every item answered once, in order");
        assert!(got
            .iter()
            .all(|r| r.answer.as_deref() == Some(&*format!("it is {RESULT}"))));
        // Half of 60 × $0.0056.
        assert!(stdout.contains("cost $0.1680"), "{vendor}: {stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_request_falls_back_to_realtime_and_a_rejected_one_is_the_vendors_error() {
    let mock = Arc::new(batch_mock::openai::start().await);
    let model = openai(&mock);
    let lane = openai_lane(&model, OnExpired::Realtime);
    let ask = |q: &str| ChatRequest::new(vec![Message::user(q)]);
    let key = |q: &str| statewise::layer::cache_key(model.name(), &ask(q));
    mock.books().stall.insert(key("late"));
    mock.books().reject.insert(key("bad"));
    // An hour a tick: the window of 24 hours closes within a second.
    let _clock = mock.run_clock(60 * MINUTE);
    let (late, on_time, bad) = tokio::join!(
        lane.complete(ask("late")),
        lane.complete(ask("on time")),
        lane.complete(ask("bad")),
    );

    let books = mock.books();
    assert_eq!(books.batches.len(), 1);
    assert_eq!(books.batches[0].requests.len(), 3);
    assert_eq!(
        books.realtime, 1,
        "the expired request was made in real time"
    );
    let (late, on_time) = (late.unwrap(), on_time.unwrap());
    assert_eq!(
        (late.usage.batched_requests, on_time.usage.batched_requests),
        (0, 1)
    );
    assert!(late.text.contains("calculator"), "{}", late.text);
    match bad {
        Err(ModelError::Http {
            status: 400,
            provider,
            message,
            ..
        }) => {
            assert_eq!(provider, "openai");
            assert!(message.contains("Invalid 'messages'"), "{message}");
        }
        other => panic!("expected the vendor's 400, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_on_disk_and_a_wrong_key_fail_cleanly() {
    // A wrong key: the submission fails with the vendor's 401, typed, and
    // the key is in no message.
    let mock = batch_mock::anthropic::start().await;
    let model = Anthropic::builder("claude-mock")
        .base_url(&mock.url)
        .api_key("sk-wrong-key-123456")
        .build()
        .unwrap();
    let path = temp_dir("batch-vendor-ledger").join("ledger.sqlite");
    let lane = ViaBatch::new(
        model.clone(),
        Arc::new(AnthropicBatch::new(&model)),
        Arc::new(SqliteLedger::open(&path).unwrap()),
        BatchConfig {
            quiet: Duration::from_millis(100),
            ..config(OnExpired::Resubmit)
        },
    );
    match lane
        .complete(ChatRequest::new(vec![Message::user("hi")]))
        .await
    {
        Err(ModelError::Backend { message, .. }) => {
            assert!(message.contains("401"), "{message}");
            assert!(!message.contains("sk-wrong-key-123456"), "{message}");
        }
        other => panic!("expected a failed submission, got {other:?}"),
    }
    assert!(mock.books().batches.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_fails_its_calls_and_a_cancelled_one_goes_out_again() {
    let mock = Arc::new(batch_mock::openai::start().await);
    let model = openai(&mock);
    let lane = openai_lane(&model, OnExpired::Resubmit);
    let ask = |q: &str| ChatRequest::new(vec![Message::user(q)]);
    let clock = mock.run_clock(MINUTE);

    // Failed at validation: the call is the vendor's error, typed.
    mock.books().fail_next = true;
    match lane.complete(ask("refused")).await {
        Err(ModelError::Backend { provider, message }) => {
            assert_eq!(provider, "openai");
            assert!(message.contains("refused at validation"), "{message}");
        }
        other => panic!("expected the failed batch's error, got {other:?}"),
    }

    // Cancelled before it ran (the clock stands still until then): its
    // call goes out in the next batch.
    drop(clock);
    let call = tokio::spawn({
        let lane = Arc::new(lane);
        async move { lane.complete(ask("cancelled once")).await }
    });
    mock.until_batches(2, Duration::from_secs(30)).await;
    {
        let mut books = mock.books();
        let now = books.now;
        books.batches[1].cancelled = Some(now);
    }
    let _clock = mock.run_clock(MINUTE);
    let reply = call.await.unwrap().unwrap();
    assert_eq!(reply.usage.batched_requests, 1);
    let books = mock.books();
    assert_eq!(books.batches.len(), 3);
    assert_eq!(
        books.batches[1].requests[0].0,
        books.batches[2].requests[0].0
    );
}
