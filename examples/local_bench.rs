//! Generation speed of the in-process model versus llama.cpp's own server
//! (the `xllamacpp` wheel) on the same GGUF and machine, plus what the
//! action grammar costs.
//!
//! ```sh
//! scripts/setup-tests && cargo run --release --features local --example local_bench
//! ```
//!
//! Both sides are timed the same way, from the client: from the first
//! streamed token to the end, divided into the tokens generated after the
//! first. Each figure is the median of five runs of 128 greedy tokens.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use statewise::action::action_schema;
use statewise::model::{
    default_model_path, ChatModel, ChatRequest, Chunk, LocalModel, OpenAi, Params,
};
use statewise::tool::{DynTool, ToolSpec};
use statewise::Message;
use statewise_states::tools::{Calculator, Clock};

const RUNS: usize = 5;
const TOKENS: u32 = 128;

fn request(schema: Option<serde_json::Value>) -> ChatRequest {
    ChatRequest {
        params: Params {
            max_tokens: Some(TOKENS),
            ..Params::default()
        },
        response_schema: schema,
        ..ChatRequest::new(vec![Message::user(
            "Write a long, detailed story about a lighthouse keeper and a storm.",
        )])
    }
}

/// Tokens per second after the first token, for one streamed reply.
async fn decode_rate(model: &dyn ChatModel, schema: Option<serde_json::Value>) -> (f64, u64) {
    let mut stream = model.stream(request(schema));
    let mut first = None;
    let mut tokens = 0;
    while let Some(chunk) = stream.next().await {
        match chunk.expect("generation succeeds") {
            Chunk::Text(_) if first.is_none() => first = Some(Instant::now()),
            Chunk::Usage(u) => tokens = u.completion_tokens,
            _ => {}
        }
    }
    let elapsed = first.map_or(Duration::ZERO, |f| f.elapsed());
    (
        (tokens.saturating_sub(1)) as f64 / elapsed.as_secs_f64(),
        tokens,
    )
}

async fn median_rate(model: &dyn ChatModel, schema: Option<serde_json::Value>) -> (f64, u64) {
    decode_rate(model, schema.clone()).await; // warm up
    let mut rates = Vec::new();
    let mut tokens = 0;
    for _ in 0..RUNS {
        let (rate, n) = decode_rate(model, schema.clone()).await;
        rates.push(rate);
        tokens = n;
    }
    rates.sort_by(f64::total_cmp);
    (rates[RUNS / 2], tokens)
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_server(model: &str, threads: usize) -> (Server, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/llama-server");
    let child = Command::new("python3")
        .args([
            script,
            model,
            &port.to_string(),
            "--threads",
            &threads.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 runs scripts/llama-server (scripts/setup-tests installs xllamacpp)");
    let server = Server(child);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120) {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/health")).await {
            if r.status().is_success() {
                return (server, port);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("llama.cpp server did not start");
}

#[tokio::main]
async fn main() {
    let path = default_model_path();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!(
        "model {} · {threads} threads · {TOKENS} greedy tokens · median of {RUNS}\n",
        path.display()
    );

    let local = Arc::new(LocalModel::load(&path).expect("model loads (scripts/fetch-model)"));
    let (in_process, n1) = median_rate(local.as_ref(), None).await;
    let tools: Vec<ToolSpec> = vec![DynTool::spec(&Calculator), DynTool::spec(&Clock)];
    let (grammar, n3) = median_rate(local.as_ref(), Some(action_schema(&tools, 8))).await;
    drop(local);

    let (_server, port) = start_server(&path.to_string_lossy(), threads).await;
    let remote = OpenAi::builder("local")
        .base_url(format!("http://127.0.0.1:{port}/v1"))
        .build()
        .unwrap();
    let (server, n2) = median_rate(&remote, None).await;

    println!("| generation | tokens/s | tokens |");
    println!("|---|---|---|");
    println!("| in-process (llama-cpp-2) | {in_process:.1} | {n1} |");
    println!("| llama.cpp server (xllamacpp) | {server:.1} | {n2} |");
    println!("| in-process, action grammar | {grammar:.1} | {n3} |");
    let ratio = in_process / server;
    let verdict = if ratio >= 0.95 { "meets" } else { "misses" };
    println!("\nin-process / server = {ratio:.2}× ({verdict} the ≥ 0.95× target)");
    println!(
        "action grammar / unconstrained = {:.2}×",
        grammar / in_process
    );
}
