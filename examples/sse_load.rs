//! The AG-UI server's memory per open stream: 1,000 (or N) clients stream
//! runs at once from one server, a separate process, whose resident memory
//! is sampled while they are open.
//!
//! ```sh
//! cargo run --release --features server --example sse_load -- [CLIENTS]
//! ```
//!
//! The model is a stand-in that streams a 40-word answer at 50 ms a word,
//! so every stream stays open about 2 s. Prints the server's resident
//! memory before and at its peak, the difference per open stream, the wall
//! time, and how many streams arrived whole (RUN_STARTED first,
//! RUN_FINISHED last, the answer's text complete).

use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use statewise::model::{FnModel, Reply};
use statewise::server::Server;
use statewise::tool::{ToolRegistry, Toolbox};
use tokio::io::{AsyncBufReadExt, BufReader};

const WORDS: usize = 40;

async fn serve() {
    let model = Arc::new(
        FnModel::new("paced", |_| {
            let answer = vec!["word"; WORDS].join(" ");
            Ok(Reply::text(json!({ "final_answer": answer }).to_string()))
        })
        .paced(Duration::from_millis(50)),
    );
    let server = Server::new(move |_| {
        statewise_states::agent(model.clone(), Toolbox::new(ToolRegistry::new()))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    println!("http://{}", listener.local_addr().expect("address"));
    let _ = server.serve(listener).await;
}

/// The resident memory of process `pid`, in KiB (Linux).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn one(http: &reqwest::Client, url: &str, i: usize) -> bool {
    let input = json!({"threadId": format!("t{i}"), "runId": format!("r{i}"),
                       "messages": [{"id": "u", "role": "user", "content": "go"}]});
    let Ok(response) = http.post(format!("{url}/agent")).json(&input).send().await else {
        return false;
    };
    let Ok(body) = response.text().await else {
        return false;
    };
    let events: Vec<serde_json::Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    let text: String = events
        .iter()
        .filter(|e| e["type"] == "TEXT_MESSAGE_CONTENT")
        .filter_map(|e| e["delta"].as_str())
        .collect();
    events.first().is_some_and(|e| e["type"] == "RUN_STARTED")
        && events.last().is_some_and(|e| e["type"] == "RUN_FINISHED")
        && text.split_whitespace().count() == WORDS
}

#[tokio::main]
async fn main() -> ExitCode {
    let arg = std::env::args().nth(1);
    if arg.as_deref() == Some("--serve") {
        serve().await;
        return ExitCode::SUCCESS;
    }
    let clients: usize = arg.and_then(|a| a.parse().ok()).unwrap_or(1000);
    let exe = std::env::current_exe().expect("own path");
    let mut child = tokio::process::Command::new(exe)
        .arg("--serve")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the server starts");
    let pid = child.id().expect("pid");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let url = lines
        .next_line()
        .await
        .ok()
        .flatten()
        .expect("the server's address");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    // Warm up: one run, so the baseline includes what the first run
    // allocates once.
    one(&http, &url, usize::MAX).await;
    let baseline = rss_kib(pid).unwrap_or(0);
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampling = tokio::spawn({
        let peak = Arc::clone(&peak);
        async move {
            loop {
                if let Some(now) = rss_kib(pid) {
                    peak.fetch_max(now, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let started = Instant::now();
    let runs = (0..clients).map(|i| {
        let (http, url) = (http.clone(), url.clone());
        tokio::spawn(async move { one(&http, &url, i).await })
    });
    let mut whole = 0;
    for run in runs.collect::<Vec<_>>() {
        whole += usize::from(run.await.unwrap_or(false));
    }
    let wall = started.elapsed();
    sampling.abort();
    let peak = peak.load(Ordering::Relaxed);
    println!("clients:            {clients}");
    println!("whole streams:      {whole}");
    println!(
        "wall time:          {:.2} s (each stream ~{:.1} s)",
        wall.as_secs_f64(),
        WORDS as f64 * 0.05
    );
    println!("server RSS before:  {:.1} MiB", baseline as f64 / 1024.0);
    println!("server RSS peak:    {:.1} MiB", peak as f64 / 1024.0);
    println!(
        "per open stream:    {:.1} KiB",
        peak.saturating_sub(baseline) as f64 / clients.max(1) as f64
    );
    if whole == clients {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
