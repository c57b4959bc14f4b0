//! Load benchmarks of the client side, printed as a table (Linux: reads
//! /proc for CPU time and peak memory).
//!
//! ```sh
//! cargo run --release --example load            # P2, P3 and scale
//! cargo run --release --example load -- p2b     # one figure (p2a, p2b, p2c, p3)
//! ```
//!
//! - P2: ReAct runs (two streamed model calls and one tool call) against a
//!   mock OpenAI-compatible server in another process (this program,
//!   started as `load serve PORT LATENCY_MS`): (a) client CPU time per run
//!   at 1,000 concurrent runs, (b) peak RSS per run with 10,000 runs in
//!   flight (5 s latency), (c) wall time of 1,000 concurrent runs at 1 s per
//!   call against the ideal 2 s.
//! - P3: time to first token through the framework against a raw reqwest
//!   stream to the same server.
//! - Scale: scripted items through the dataset runner (`load scale N`, in a
//!   process of its own): items/s and peak RSS for 100,000 and 1,000,000
//!   items, to show memory flat as the dataset grows.

mod measure;
mod mock;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use statewise::dataset::Dataset;
use statewise::model::{FnModel, OpenAi, Reply};
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::{Env, Machine, Usage};
use statewise_states::tools::Calculator;

use measure::{cpu_time, peak_rss_kb};
use mock::start_server;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match args.first().map(String::as_str) {
        Some("serve") => {
            let port = args[1].parse().expect("port");
            let latency = Duration::from_millis(args[2].parse().expect("latency ms"));
            rt.block_on(mock::serve(port, latency));
        }
        Some("scale") => {
            let n: usize = args[1].parse().expect("item count");
            let (rate, rss) = rt.block_on(scale(n));
            println!("{rate} {rss}");
        }
        Some("p2b-child") => {
            let per_run = rt.block_on(p2b(Transport::parse(&args[1])));
            println!("{per_run}");
        }
        Some(only @ ("p2a" | "p2b" | "p2c" | "p3")) => rt.block_on(report(only)),
        _ => rt.block_on(report("all")),
    }
}

fn agent(url: &str, client: &reqwest::Client) -> Arc<Machine> {
    let model = OpenAi::builder("mock")
        .base_url(url)
        .client(client.clone())
        .build()
        .expect("model");
    Arc::new(statewise_states::agent(
        Arc::new(model),
        Toolbox::new(ToolRegistry::new().with(Calculator)),
    ))
}

/// How the client reaches the mock.
#[derive(Clone, Copy)]
enum Transport {
    /// HTTP/1.1: one connection per call in flight (local model servers).
    Http1,
    /// HTTP/2: calls multiplexed on one connection (vendor APIs, which
    /// reqwest reaches over HTTP/2 through TLS ALPN; h2c to the mock).
    Http2,
}

impl Transport {
    const BOTH: [Transport; 2] = [Transport::Http1, Transport::Http2];

    fn parse(text: &str) -> Transport {
        match text {
            "h2" => Transport::Http2,
            _ => Transport::Http1,
        }
    }

    fn arg(self) -> &'static str {
        match self {
            Transport::Http1 => "h1",
            Transport::Http2 => "h2",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Transport::Http1 => "HTTP/1.1",
            Transport::Http2 => "HTTP/2",
        }
    }
}

fn client(transport: Transport) -> reqwest::Client {
    let builder = reqwest::Client::builder().pool_max_idle_per_host(20_000);
    match transport {
        Transport::Http1 => builder.http1_only(),
        Transport::Http2 => builder.http2_prior_knowledge(),
    }
    .build()
    .expect("client")
}

/// Runs `n` ReAct runs, `concurrency` at a time, each a task of its own
/// (as a server runs its requests, so both cores work); the wall time.
async fn runs(machine: &Arc<Machine>, n: usize, concurrency: usize) -> Duration {
    let started = Instant::now();
    let mut results = futures::stream::iter(0..n)
        .map(|_| {
            let machine = Arc::clone(machine);
            tokio::spawn(async move { machine.run(Env::from_user("What is 6 * 7?")).await })
        })
        .buffer_unordered(concurrency);
    let mut failed = 0;
    while let Some(joined) = results.next().await {
        if let Err(failure) = joined.expect("a run does not panic") {
            if failed == 0 {
                eprintln!("load: a run failed: {}", failure.error);
            }
            failed += 1;
        }
    }
    assert_eq!(failed, 0, "every run succeeds against the mock");
    started.elapsed()
}

async fn p3(url: &str) -> (Duration, Duration) {
    let client = client(Transport::Http1);
    let body = serde_json::json!({"model": "mock", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let mut raw = Vec::new();
    let mut framework = Vec::new();
    let machine = agent(url, &client);
    for _ in 0..300 {
        let started = Instant::now();
        let response = client
            .post(format!("{url}/chat/completions"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let mut bytes = response.bytes_stream();
        while let Some(b) = bytes.next().await {
            if b.unwrap().windows(6).any(|w| w == b"data: ") {
                break;
            }
        }
        raw.push(started.elapsed());
        drop(bytes);

        let started = Instant::now();
        let mut events = machine.stream(Env::from_user("hi"));
        while let Some(e) = events.next().await {
            if e.token().is_some() {
                break;
            }
        }
        framework.push(started.elapsed());
    }
    raw.sort();
    framework.sort();
    (raw[raw.len() / 2], framework[framework.len() / 2])
}

/// `n` scripted items through the dataset runner; items/s and peak RSS (KB).
async fn scale(n: usize) -> (f64, u64) {
    let dir = std::env::temp_dir().join(format!("statewise-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.jsonl");
    let output = dir.join("out.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    for i in 0..n {
        writeln!(
            f,
            r#"{{"id": "{i}", "input": "What is {i} + 1?", "expected": "{}"}}"#,
            i + 1
        )
        .unwrap();
    }
    f.flush().unwrap();
    drop(f);
    let model = FnModel::new("scripted", |req| {
        let q = req
            .messages
            .last()
            .map(|m| m.content.as_str())
            .unwrap_or_default();
        let n: u64 = q
            .split_whitespace()
            .nth(2)
            .and_then(|w| w.parse().ok())
            .unwrap_or(0);
        Ok(
            Reply::text(format!(r#"{{"final_answer": "{}"}}"#, n + 1)).with_usage(Usage {
                prompt_tokens: 30,
                completion_tokens: 8,
                ..Usage::default()
            }),
        )
    });
    let machine = statewise_states::agent(Arc::new(model), Toolbox::new(ToolRegistry::new()));
    let started = Instant::now();
    let summary = Dataset::new(machine)
        .concurrency(64)
        .progress(false)
        .run(&input, &output)
        .await
        .unwrap();
    let rate = n as f64 / started.elapsed().as_secs_f64();
    assert_eq!(summary.passed, n as u64);
    let _ = std::fs::remove_dir_all(&dir);
    (rate, peak_rss_kb())
}

fn scale_in_process(n: usize) -> (f64, u64) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["scale", &n.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .expect("scale run");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace();
    (
        parts.next().and_then(|r| r.parse().ok()).unwrap_or(0.0),
        parts.next().and_then(|r| r.parse().ok()).unwrap_or(0),
    )
}

/// Prints the table rows of `which` ("all", or one of p2a, p2b, p2c, p3).
async fn report(which: &str) {
    println!("| benchmark | target | measured |");
    println!("|---|---|---|");
    let all = which == "all";
    for transport in Transport::BOTH {
        let client = client(transport);
        if all || which == "p2a" {
            p2a(&client, transport).await;
        }
        if all || which == "p2c" {
            p2c(&client, transport).await;
        }
    }
    if all || which == "p3" {
        let server = start_server(0).await;
        let (raw, framework) = p3(&server.url).await;
        let added = framework.as_secs_f64() - raw.as_secs_f64();
        println!(
            "| P3 time to first token added by the framework (median of 300) | ≤ 1 ms | {:.3} ms ({:.3} vs {:.3} ms raw) |",
            added * 1e3,
            framework.as_secs_f64() * 1e3,
            raw.as_secs_f64() * 1e3
        );
    }
    if all || which == "p2b" {
        // Peak RSS is a high-water mark: each transport in a fresh process.
        for transport in Transport::BOTH {
            let out = Command::new(std::env::current_exe().unwrap())
                .args(["p2b-child", transport.arg()])
                .stderr(Stdio::inherit())
                .output()
                .expect("p2b run");
            let per_run = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            println!(
                "| P2b peak RSS per run, 10,000 in flight (5 s per call), {} | ≤ 20 KB | {per_run} KB |",
                transport.label()
            );
        }
    }
    if all {
        // The batch runner on scripted items, each size in its own process.
        for n in [100_000, 1_000_000] {
            let (rate, rss) = scale_in_process(n);
            println!("| scale: {n} scripted items through the dataset runner | flat memory | {rate:.0} items/s, peak RSS {:.1} MB |", rss as f64 / 1024.0);
        }
    }
}

/// P2a: client CPU time per run at 1,000 concurrent runs.
async fn p2a(client: &reqwest::Client, transport: Transport) {
    let server = start_server(100).await;
    let machine = agent(&server.url, client);
    runs(&machine, 1000, 1000).await; // warm the connection pool
    let cpu = cpu_time();
    let n = 5000;
    runs(&machine, n, 1000).await;
    let per_run = (cpu_time() - cpu) / n as u32;
    println!(
        "| P2a client CPU per ReAct run, 1,000 concurrent, {} | ≤ 0.5 ms | {:.3} ms |",
        transport.label(),
        per_run.as_secs_f64() * 1e3
    );
}

/// P2c: wall time of 1,000 concurrent runs at 1 s per call (ideal 2 s).
async fn p2c(client: &reqwest::Client, transport: Transport) {
    let server = start_server(1000).await;
    let machine = agent(&server.url, client);
    // The first round also opens the connections; the second reuses them.
    let cold = runs(&machine, 1000, 1000).await;
    let warm = runs(&machine, 1000, 1000).await;
    println!(
        "| P2c wall time, 1,000 concurrent runs at 1 s per call (ideal 2 s), {} | ≤ 1.05× | {:.2} s = {:.3}× warm; {:.2} s = {:.3}× with new connections |",
        transport.label(),
        warm.as_secs_f64(),
        warm.as_secs_f64() / 2.0,
        cold.as_secs_f64(),
        cold.as_secs_f64() / 2.0
    );
}

/// P2b: peak RSS (KB) per run with 10,000 runs in flight (5 s per call).
async fn p2b(transport: Transport) -> String {
    let client = client(transport);
    let server = start_server(5000).await;
    let machine = agent(&server.url, &client);
    // One run first: the connection is open and, over HTTP/2, its settings
    // (how many streams the server takes) are known before 10,000 start.
    runs(&machine, 1, 1).await;
    let before = peak_rss_kb();
    runs(&machine, 10_000, 10_000).await;
    let per_run = (peak_rss_kb().saturating_sub(before)) as f64 / 10_000.0;
    format!("{per_run:.1}")
}
