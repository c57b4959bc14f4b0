//! The stock agent over a JSONL dataset, resumable.
//!
//! ```sh
//! cargo run --release --example dataset -- INPUT.jsonl OUTPUT.jsonl [--concurrency N] [--model NAME] [--stream] [--lane batch]
//! ```
//!
//! Each input line is `{"id": ..., "input": "...", "expected": ...}`; each
//! output line the item's answer, path, usage, latency and error kind, in
//! input order. Rerunning the same command after a crash or `kill -9`
//! resumes where it stopped. The model is any model string, or a model id of
//! `OPENAI_BASE_URL`'s server (default `$OPENAI_MODEL`, else gpt-4o-mini).
//! `--stream` prints the tokens as they arrive (off by default).
//!
//! `--schema FILE` asks every item for a typed output of the JSON Schema in
//! FILE: each answer is checked against it (the model asked again with
//! what was wrong, at most twice), and each output line carries the
//! object as `output`.
//!
//! `--lane batch` sends the calls through the vendor's Batch API (an
//! `openai:` or `anthropic:` model) at half the price: every item's first
//! call goes in one batch, the second calls in the next, and so on. What
//! is in flight is kept in `OUTPUT.jsonl.ledger.sqlite`, so a rerun after a
//! kill waits for the same batches instead of paying twice. `--poll-ms N`
//! sets the first pause between polls (default 5 s); `--price IN,OUT` the
//! realtime dollars per million tokens, for the cost line.
//!
//! `--queue redis://…` (built with `--features redis`) runs no model here:
//! it feeds the items through the run queue to the workers serving
//! `agent` (`cargo run --example worker --features redis`), keeping the same
//! resumable output file.
//!
//! `--log-json` writes structured logs (JSON lines, spans included) to
//! stderr; `RUST_LOG` filters them. `--otlp` (with `--features otel`)
//! sends the spans to `OTEL_EXPORTER_OTLP_ENDPOINT`.

#[path = "common/lane.rs"]
mod lane;
#[path = "common/logs.rs"]
mod logs;

use std::process::ExitCode;

use statewise::dataset::Dataset;
use statewise::model::{Price, SharedModel};
use statewise::output::Output;
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::Machine;
use statewise_states::tools::Calculator;

struct Args {
    input: String,
    output: String,
    concurrency: usize,
    model: String,
    stream: bool,
    queue: Option<String>,
    lane: Lane,
    poll: Option<std::time::Duration>,
    price: Option<Price>,
    schema: Option<String>,
}

#[derive(PartialEq)]
enum Lane {
    Realtime,
    Batch,
}

fn parse_args() -> Result<Args, String> {
    let usage = "usage: batch INPUT.jsonl OUTPUT.jsonl [--concurrency N] [--model NAME] [--stream] [--schema FILE] [--lane realtime|batch] [--poll-ms N] [--price IN,OUT] [--queue redis://HOST]";
    let mut queue = None;
    let mut schema = None;
    let (mut lane, mut poll, mut price) = (Lane::Realtime, None, None);
    let mut concurrency = None;
    let mut files = Vec::new();
    let mut stream = false;
    let mut model = std::env::var("OPENAI_MODEL").unwrap_or_else(|_| "gpt-4o-mini".to_owned());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--concurrency" => {
                let n = args.next().ok_or(usage)?;
                concurrency = Some(
                    n.parse()
                        .map_err(|_| format!("--concurrency takes a number, not {n:?}"))?,
                );
            }
            "--model" => model = args.next().ok_or(usage)?,
            "--log-json" | "--otlp" => {} // logs::init_from_args
            "--stream" => stream = true,
            "--schema" => schema = Some(args.next().ok_or(usage)?),
            "--queue" => queue = Some(args.next().ok_or(usage)?),
            "--lane" => {
                lane = match args.next().as_deref() {
                    Some("realtime") => Lane::Realtime,
                    Some("batch") => Lane::Batch,
                    other => return Err(format!("--lane takes realtime or batch, not {other:?}")),
                }
            }
            "--poll-ms" => {
                let n = args.next().ok_or(usage)?;
                let ms = n
                    .parse()
                    .map_err(|_| format!("--poll-ms takes a number, not {n:?}"))?;
                poll = Some(std::time::Duration::from_millis(ms));
            }
            "--price" => price = Some(lane::price(&args.next().ok_or(usage)?)?),
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
    // On the batch lane every item runs at once, so that each step's calls
    // go out together.
    let concurrency = concurrency.unwrap_or(match lane {
        Lane::Realtime => 8,
        Lane::Batch => 100_000,
    });
    Ok(Args {
        input,
        output,
        concurrency,
        lane,
        poll,
        price,
        model,
        stream,
        queue,
        schema,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let _telemetry = logs::init_from_args("statewise-dataset");
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("dataset: {e}");
            return ExitCode::from(2);
        }
    };
    let dataset = match &args.queue {
        Some(url) => match lane::on_queue(url) {
            Ok(dataset) => dataset,
            Err(e) => {
                eprintln!("dataset: {e}");
                return ExitCode::from(2);
            }
        },
        None => match model(&args).and_then(|model| machine(model, args.schema.as_deref())) {
            Ok(machine) => Dataset::new(machine),
            Err(e) => {
                eprintln!("dataset: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let dataset = dataset
        .concurrency(args.concurrency)
        .stream_tokens(args.stream);
    match dataset.run(&args.input, &args.output).await {
        Ok(summary) => {
            print!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dataset: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The stock agent with a calculator, asked for the typed output of the
/// JSON Schema in `schema` if given.
fn machine(model: SharedModel, schema: Option<&str>) -> Result<Machine, String> {
    let agent = statewise_states::agent(model, Toolbox::new(ToolRegistry::new().with(Calculator)));
    let Some(path) = schema else {
        return Ok(agent);
    };
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let schema: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{path} is not JSON: {e}"))?;
    let name = std::path::Path::new(path)
        .file_stem()
        .map_or("object".into(), |s| s.to_string_lossy().into_owned());
    let output = Output::from_schema(name, schema).map_err(|e| format!("{path}: {e}"))?;
    Ok(agent.with_output(output))
}

/// The model on the chosen lane, priced when a price was given.
fn model(args: &Args) -> Result<SharedModel, String> {
    lane::model(
        &args.model,
        args.lane == Lane::Batch,
        &args.output,
        args.poll,
        args.price,
    )
}
