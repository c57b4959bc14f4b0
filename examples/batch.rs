//! The stock agent over a JSONL dataset, resumable.
//!
//!     cargo run --release --example batch -- INPUT.jsonl OUTPUT.jsonl [--concurrency N] [--model NAME] [--stream]
//!
//! Each input line is `{"id": ..., "input": "...", "expected": ...}`; each
//! output line the item's answer, path, usage, latency and error kind, in
//! input order. Rerunning the same command after a crash or `kill -9`
//! resumes where it stopped. The model is any model string, or a model id of
//! `OPENAI_BASE_URL`'s server (default `$OPENAI_MODEL`, else gpt-4o-mini).
//! `--stream` prints the tokens as they arrive (off by default).
//!
//! `--queue redis://…` (built with `--features redis`) runs no model here:
//! it feeds the items through the run queue to the workers serving
//! `agent` (`cargo run --example worker --features redis`), keeping the same
//! resumable output file.

use std::process::ExitCode;

use statewise::batch::Batch;
use statewise::spec::from_spec;
use statewise::tool::{ToolRegistry, Toolbox};
use statewise_states::tools::Calculator;

struct Args {
    input: String,
    output: String,
    concurrency: usize,
    model: String,
    stream: bool,
    queue: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let usage = "usage: batch INPUT.jsonl OUTPUT.jsonl [--concurrency N] [--model NAME] [--stream] [--queue redis://HOST]";
    let mut queue = None;
    let mut files = Vec::new();
    let mut concurrency = 8;
    let mut stream = false;
    let mut model = std::env::var("OPENAI_MODEL").unwrap_or_else(|_| "gpt-4o-mini".to_owned());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--concurrency" => {
                let n = args.next().ok_or(usage)?;
                concurrency = n
                    .parse()
                    .map_err(|_| format!("--concurrency takes a number, not {n:?}"))?;
            }
            "--model" => model = args.next().ok_or(usage)?,
            "--stream" => stream = true,
            "--queue" => queue = Some(args.next().ok_or(usage)?),
            flag if flag.starts_with("--") => {
                return Err(format!("unknown option {flag}; {usage}"))
            }
            _ => files.push(arg),
        }
    }
    let [input, output] = <[String; 2]>::try_from(files).map_err(|_| usage.to_owned())?;
    if !model.contains(':') {
        model = format!("openai:{model}");
    }
    Ok(Args {
        input,
        output,
        concurrency,
        model,
        stream,
        queue,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("batch: {e}");
            return ExitCode::from(2);
        }
    };
    let batch = match &args.queue {
        Some(url) => match on_queue(url) {
            Ok(batch) => batch,
            Err(e) => {
                eprintln!("batch: {e}");
                return ExitCode::from(2);
            }
        },
        None => match from_spec(&args.model) {
            Ok(model) => Batch::new(statewise_states::agent(
                model,
                Toolbox::new(ToolRegistry::new().with(Calculator)),
            )),
            Err(e) => {
                eprintln!("batch: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let batch = batch
        .concurrency(args.concurrency)
        .stream_tokens(args.stream);
    match batch.run(&args.input, &args.output).await {
        Ok(summary) => {
            print!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("batch: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The batch fed through the run queue at `url` to the workers of `agent`.
#[cfg(feature = "redis")]
fn on_queue(url: &str) -> Result<Batch, String> {
    let queue = statewise::worker::RunQueue::open(url).map_err(|e| e.to_string())?;
    Ok(Batch::on_queue(queue, "agent"))
}

#[cfg(not(feature = "redis"))]
fn on_queue(_url: &str) -> Result<Batch, String> {
    Err("--queue needs the run queue: build with --features redis".into())
}
