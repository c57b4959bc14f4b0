//! What the run queue costs: the latency it adds to a run, and scripted
//! runs per second through two local workers.
//!
//! ```sh
//! cargo run --release --features redis --example queue_bench
//! ```
//!
//! Uses the Redis at `REDIS_URL` (keys under a fresh prefix), or starts a
//! `redis-server` of its own on a free port (no persistence), and stops it
//! after. The agent is the stock loop with a scripted model (no network):
//! one calculator call, then the answer, so each run writes five
//! checkpoints.
//!
//! - Added latency: runs one at a time, first in process (with the same
//!   Redis store, so checkpoint writes cost the same), then through the
//!   queue (submit until the outcome is read back); the difference is the
//!   queue's.
//! - Throughput: 2,000 runs submitted at once (64 submits in flight),
//!   served by two workers of 32 runs each.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use statewise::model::{ChatRequest, FnModel, Reply};
use statewise::store::RedisStore;
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::worker::{RunQueue, Worker};
use statewise::{Env, Machine};
use statewise_states::tools::Calculator;
use tokio_util::sync::CancellationToken;

const LATENCY_RUNS: usize = 200;
const THROUGHPUT_RUNS: usize = 2000;

fn agent() -> Machine {
    let model = Arc::new(FnModel::new("planner", |req: &ChatRequest| {
        let done = req
            .messages
            .iter()
            .any(|m| m.content.starts_with("Observation"));
        Ok(Reply::text(if done {
            r#"{"final_answer": "42"}"#.to_owned()
        } else {
            r#"{"name": "calculator", "arguments": {"expression": "6*7"}}"#.to_owned()
        }))
    }));
    statewise_states::agent(model, Toolbox::new(ToolRegistry::new().with(Calculator)))
}

/// A redis-server of our own, stopped on drop.
struct OwnRedis(Child, std::path::PathBuf);

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
        std::fs::remove_dir_all(&self.1).ok();
    }
}

fn start_redis() -> (String, OwnRedis) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let dir = std::env::temp_dir().join(format!("statewise-queue-bench-{port}"));
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (scripts/setup-tests installs it), or set REDIS_URL");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "redis-server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (format!("redis://127.0.0.1:{port}"), OwnRedis(child, dir))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(mut times: Vec<Duration>) -> (Duration, Duration, Duration) {
    times.sort();
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    (mean, percentile(&times, 0.5), percentile(&times, 0.99))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (url, _own) = match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => (url, None),
        _ => {
            let (url, own) = start_redis();
            (url, Some(own))
        }
    };
    let prefix = format!("bench{:08x}", fastrand::u32(..));

    // In process, one at a time.
    let store = RedisStore::open(&url)?.with_prefix(&prefix);
    let direct = agent().with_store(store);
    let mut in_process = Vec::with_capacity(LATENCY_RUNS);
    for i in 0..LATENCY_RUNS {
        let start = Instant::now();
        direct
            .run_as(format!("direct-{i}"), Env::from_user("6*7?"))
            .await?;
        in_process.push(start.elapsed());
    }

    // Through the queue, one at a time, with two workers waiting.
    let shutdown = CancellationToken::new();
    let mut workers = Vec::new();
    for n in 0..2 {
        let worker = Worker::new(&url)?
            .with_prefix(&prefix)
            .with_id(format!("bench-{n}"))
            .machine("agent", agent())
            .concurrency(32);
        workers.push(tokio::spawn(worker.run(shutdown.clone())));
    }
    let queue = RunQueue::open(&url)?.with_prefix(&prefix);
    let mut queued = Vec::with_capacity(LATENCY_RUNS);
    for i in 0..LATENCY_RUNS {
        let id = format!("queued-{i}");
        let start = Instant::now();
        queue.submit("agent", &id, &Env::from_user("6*7?")).await?;
        // Read back as soon as it is there (wait() backs off to 50 ms).
        while queue.outcome(&id).await?.is_none() {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        queued.push(start.elapsed());
    }

    // Throughput: all at once.
    let start = Instant::now();
    let env = Env::from_user("6*7?");
    let submits: Vec<_> = futures::stream::iter(0..THROUGHPUT_RUNS)
        .map(|i| {
            let (queue, env) = (&queue, &env);
            async move { queue.submit("agent", &format!("many-{i}"), env).await }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    for s in submits {
        s?;
    }
    let submitted = start.elapsed();
    let last = format!("many-{}", THROUGHPUT_RUNS - 1);
    loop {
        let recorded = queue.recorded().await?.len();
        if recorded >= LATENCY_RUNS + THROUGHPUT_RUNS && queue.outcome(&last).await?.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = start.elapsed();
    shutdown.cancel();
    for w in workers {
        w.await??;
    }

    let (d_mean, d_p50, d_p99) = summary(in_process);
    let (q_mean, q_p50, q_p99) = summary(queued);
    println!(
        "run queue on {}",
        if _own.is_some() {
            "a redis-server of its own"
        } else {
            "REDIS_URL"
        }
    );
    println!("  one run at a time ({LATENCY_RUNS} runs, 2 model calls and 5 checkpoints each):");
    println!("    in process     mean {d_mean:>9.2?}  p50 {d_p50:>9.2?}  p99 {d_p99:>9.2?}");
    println!("    through queue  mean {q_mean:>9.2?}  p50 {q_p50:>9.2?}  p99 {q_p99:>9.2?}");
    println!(
        "    added by the queue: mean {:.2?}, p50 {:.2?}",
        q_mean.saturating_sub(d_mean),
        q_p50.saturating_sub(d_p50)
    );
    println!(
        "  {THROUGHPUT_RUNS} runs through two workers: {:.0} runs/s ({:.2?} to submit, {:.2?} to finish all)",
        THROUGHPUT_RUNS as f64 / all.as_secs_f64(),
        submitted,
        all
    );
    Ok(())
}
