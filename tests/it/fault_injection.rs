//! Fault injection: agent runs against local OpenAI-compatible servers
//! that, from a seed, answer 429 with Retry-After, 500, cut streams after
//! some tokens, stall past the idle timeout and send malformed chunks. The
//! primary one also has an outage that must trip its circuit breaker, while
//! a fallback to the second server keeps the runs going.
//!
//!     cargo test fault -- --nocapture     (prints the figures)

use crate::support;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{MockServer, Response};
use futures::StreamExt;
use statewise::layer::{
    BreakerConfig, BreakerHandle, BreakerState, CircuitBreaker, Fallback, ModelExt, RetryPolicy,
    Timeouts,
};
use statewise::model::OpenAi;
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::{Env, Usage};
use statewise_states::tools::Calculator;

const SEED: u64 = 0x5eed_2026;

/// What the server did with each request.
#[derive(Default)]
struct Ledger {
    by_fault: BTreeMap<&'static str, u64>,
    /// Usage sent in complete replies, the only ones that carry usage.
    usage: Usage,
}

/// A stream of `pieces`, each after a short pause, as a real server paces tokens.
fn stream_of(pieces: Vec<String>) -> Response {
    support::stream_pieces(pieces, Duration::from_millis(2))
}

/// Fault rates in percent.
#[derive(Clone, Copy)]
struct Faults {
    rate_limited: f64,
    server_error: f64,
    cut: f64,
    stall: f64,
    malformed: f64,
    /// Every request between these times after the server starts gets 500.
    outage: Option<(Duration, Duration)>,
    /// The answer comes in plain prose instead of a JSON action.
    prose_answer: bool,
}

async fn fault_server(faults: Faults) -> (MockServer, Arc<Mutex<Ledger>>) {
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let count = AtomicU64::new(0);
    let book = Arc::clone(&ledger);
    let started = Instant::now();
    let server = MockServer::start(move |request| {
        let n = count.fetch_add(1, Ordering::SeqCst);
        let mut rng = fastrand::Rng::with_seed(SEED ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let text = support::react_reply_with(request, faults.prose_answer);
        let mut ledger = book.lock().unwrap();
        let mut note = |fault| *ledger.by_fault.entry(fault).or_default() += 1;
        if faults
            .outage
            .is_some_and(|(from, to)| (from..to).contains(&started.elapsed()))
        {
            note("outage 500");
            return Response::json(500, r#"{"error": {"message": "burst"}}"#);
        }
        let roll = rng.f64() * 100.0;
        let mut edge = faults.rate_limited;
        if roll < edge {
            note("429");
            return Response::json(429, r#"{"error": {"message": "slow down"}}"#)
                .header("retry-after-ms", "20");
        }
        edge += faults.server_error;
        if roll < edge {
            note("500");
            return Response::json(500, r#"{"error": {"message": "internal"}}"#);
        }
        edge += faults.cut;
        if roll < edge {
            note("cut mid-stream");
            return stream_of(support::sse_events(&text, None)).cut_after(rng.usize(2..5));
        }
        edge += faults.stall;
        if roll < edge {
            note("stall");
            return stream_of(support::sse_events(&text, None))
                .stall_at(2, Duration::from_millis(1500))
                .cut_after(3);
        }
        edge += faults.malformed;
        if roll < edge {
            note("malformed chunk");
            let mut pieces = support::sse_events(&text, None);
            pieces.insert(1, "data: {\"choices\": [{\"delta\": \n\n".into());
            return stream_of(pieces);
        }
        note("ok");
        let usage = Usage {
            prompt_tokens: 100 + n % 7,
            completion_tokens: 20 + n % 3,
            ..Usage::default()
        };
        ledger.usage.add(&usage);
        stream_of(support::sse_events(&text, Some(usage)))
    })
    .await;
    (server, ledger)
}

/// 1,000 agent runs, 100 at a time: each succeeds or ends with a typed
/// error, none hangs, usage adds up exactly, the breaker opens and closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_injection_1000_runs_at_concurrency_100() {
    let faults = Faults {
        rate_limited: 8.0,
        server_error: 8.0,
        cut: 5.0,
        stall: 3.0,
        malformed: 3.0,
        outage: Some((Duration::from_millis(1500), Duration::from_millis(2100))),
        prose_answer: false,
    };
    let (server, ledger) = fault_server(faults).await;
    let (spare, spare_ledger) = fault_server(Faults {
        outage: None,
        ..faults
    })
    .await;
    let breaker = BreakerHandle::new(BreakerConfig {
        failures: 10,
        ratio: 0.5,
        min_calls: 40,
        window: Duration::from_millis(500),
        cooldown: Duration::from_millis(100),
    });
    let timeouts = Timeouts {
        first_token: Some(Duration::from_secs(5)),
        idle: Some(Duration::from_secs(1)),
        call: Some(Duration::from_secs(20)),
    };
    let retry = RetryPolicy {
        max_retries: 6,
        base: Duration::from_millis(10),
        max_delay: Duration::from_millis(200),
        max_retry_after: Duration::from_secs(1),
    };
    let primary = OpenAi::builder("primary")
        .base_url(server.url("/v1"))
        .build()
        .unwrap();
    let primary = CircuitBreaker::with_handle(primary, breaker.clone())
        .timeouts(timeouts)
        .retry(retry);
    let secondary = OpenAi::builder("secondary")
        .base_url(spare.url("/v1"))
        .build()
        .unwrap();
    let secondary = secondary.timeouts(timeouts).retry(retry);
    let model = Fallback::new(vec![primary.shared(), secondary.shared()])
        .unwrap()
        .shared();
    let machine =
        statewise_states::agent(model, Toolbox::new(ToolRegistry::new().with(Calculator)))
            .deadline(Duration::from_secs(60));

    let started = Instant::now();
    let results: Vec<_> = tokio::time::timeout(
        Duration::from_secs(300),
        futures::stream::iter(0..1000)
            .map(|_| machine.run(Env::from_user("What is 6 * 7?")))
            .buffer_unordered(100)
            .collect::<Vec<_>>(),
    )
    .await
    .expect("no run hangs: all 1,000 finished within the outer bound");
    let elapsed = started.elapsed();

    let mut ok = 0;
    let mut failed: BTreeMap<String, u64> = BTreeMap::new();
    let mut client_usage = Usage::default();
    for result in &results {
        match result {
            Ok(out) => {
                assert_eq!(out.answer.as_deref(), Some("6 * 7 = 42"));
                assert_eq!(out.env.observations.len(), 1, "no duplicated work");
                client_usage.add(&out.env.usage);
                ok += 1;
            }
            Err(f) => {
                let kind = f.error.code();
                client_usage.add(&f.env.usage);
                *failed.entry(kind).or_default() += 1;
            }
        }
    }
    let mut ledger = ledger.lock().unwrap();
    let spare_ledger = spare_ledger.lock().unwrap();
    let stats = breaker.stats();
    println!(
        "fault injection: {} runs, concurrency 100, {elapsed:.1?}",
        results.len()
    );
    println!("  succeeded: {ok}");
    for (kind, n) in &failed {
        println!("  failed ({kind}): {n}");
    }
    for (name, l) in [("primary", &*ledger), ("fallback", &*spare_ledger)] {
        println!(
            "  {name} server replies: {}",
            l.by_fault.values().sum::<u64>()
        );
        for (fault, n) in &l.by_fault {
            println!("    {fault}: {n}");
        }
    }
    ledger.usage.add(&spare_ledger.usage);
    println!(
        "  usage: client {} tokens, servers {} tokens",
        client_usage.total_tokens(),
        ledger.usage.total_tokens()
    );
    println!(
        "  breaker: opened {}, closed {}, rejected {}, now {:?}",
        stats.opened,
        stats.closed,
        stats.rejected,
        breaker.state()
    );

    assert_eq!(results.len(), 1000);
    assert!(ok >= 950, "the fallback keeps runs going: {ok} succeeded");
    // Failures are typed: model errors that outlived retries and restarts.
    for kind in failed.keys() {
        assert!(kind.starts_with("model:"), "unexpected failure kind {kind}");
    }
    assert!(
        ledger.by_fault.get("outage 500").is_some_and(|n| *n >= 10),
        "the outage happened"
    );
    assert!(
        spare_ledger.by_fault.get("ok").is_some_and(|n| *n >= 20),
        "the fallback served while the circuit was open"
    );
    assert_eq!(client_usage.prompt_tokens, ledger.usage.prompt_tokens);
    assert_eq!(
        client_usage.completion_tokens,
        ledger.usage.completion_tokens
    );
    assert!(
        stats.opened >= 1 && stats.closed >= 1,
        "the burst opened the breaker and a probe closed it: {stats:?}"
    );
    assert_eq!(breaker.state(), BreakerState::Closed);
}

/// `examples/openai.rs`, with no extra code, completes every run against a
/// server failing 20% of requests (429, 500) and cutting 10% of streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_injection_openai_example_completes_every_run() {
    openai_example_answers_every_run(false).await;
}

/// The same with a model that answers in plain prose after the tool's
/// observation: the prose is the answer, not a parse error to loop on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_injection_openai_example_takes_a_prose_answer() {
    openai_example_answers_every_run(true).await;
}

async fn openai_example_answers_every_run(prose_answer: bool) {
    let faults = Faults {
        rate_limited: 10.0,
        server_error: 10.0,
        cut: 10.0,
        stall: 0.0,
        malformed: 0.0,
        outage: None,
        prose_answer,
    };
    let (server, ledger) = fault_server(faults).await;
    let exe = support::example("openai");
    let base = server.url("/v1");
    let runs = 20;
    for run in 0..runs {
        let out = tokio::task::spawn_blocking({
            let (exe, base) = (exe.clone(), base.clone());
            move || {
                Command::new(exe)
                    .arg("What is 6 * 7?")
                    .env("OPENAI_BASE_URL", base)
                    .env_remove("OPENAI_API_KEY")
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("6 * 7 = 42"),
            "run {run} failed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ledger = ledger.lock().unwrap();
    println!(
        "openai example (answer in prose: {prose_answer}): {runs}/{runs} runs completed; server replies: {:?}",
        ledger.by_fault
    );
    let faulted: u64 = ledger
        .by_fault
        .iter()
        .filter(|(k, _)| **k != "ok")
        .map(|(_, n)| n)
        .sum();
    assert!(
        faulted >= 5,
        "the faults were exercised: {:?}",
        ledger.by_fault
    );
}
