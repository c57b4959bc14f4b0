//! The stock agent against an OpenAI-compatible endpoint, streamed.
//!
//! ```sh
//! OPENAI_API_KEY=sk-... cargo run --example openai -- "What is 17 * 23?"
//! OPENAI_BASE_URL=http://127.0.0.1:8080/v1 cargo run --example openai -- "What is 17 * 23?" --model local
//! ```
//!
//! `--model` takes a model id for the endpoint (default `$OPENAI_MODEL`, else
//! `gpt-4o-mini`) or any model string (`anthropic:claude-sonnet-4-5`).
//! `--verbose` also shows the reasoning tokens and the tool calls.
//! `--trace FILE` appends a JSONL trace of every step (API keys redacted;
//! view it with the `trace_view` example). `--cache DIR` keeps replies in
//! `DIR/responses.sqlite`: asking the same again makes no request and
//! streams the same tokens.
//!
//! `--log-json` writes structured logs (JSON lines, spans included) to
//! stderr; `RUST_LOG` filters them. `--otlp` (with `--features otel`)
//! sends the spans to `OTEL_EXPORTER_OTLP_ENDPOINT`.

#[path = "common/logs.rs"]
mod logs;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use statewise::console::Console;
use statewise::layer::{ModelExt, SqliteCache};
use statewise::spec::from_spec;
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::trace::Tracer;
use statewise::Env;
use statewise_states::tools::Calculator;

struct Args {
    question: String,
    model: String,
    verbose: bool,
    trace: Option<PathBuf>,
    cache: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut question = None;
    let mut model = std::env::var("OPENAI_MODEL").unwrap_or_else(|_| "gpt-4o-mini".to_owned());
    let mut verbose = false;
    let (mut trace, mut cache) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--log-json" | "--otlp" => {} // logs::init_from_args
            "--model" => model = args.next().ok_or("--model needs a value")?,
            "--verbose" | "-v" => verbose = true,
            "--trace" => trace = Some(args.next().ok_or("--trace needs a file")?.into()),
            "--cache" => cache = Some(args.next().ok_or("--cache needs a folder")?.into()),
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            _ if question.is_none() => question = Some(arg),
            _ => return Err("give the question as one argument (quote it)".to_owned()),
        }
    }
    let question = question.ok_or(
        "usage: openai \"QUESTION\" [--model NAME] [--verbose] [--trace FILE] [--cache DIR]",
    )?;
    // A bare model id names a model of the OpenAI-compatible endpoint.
    if !model.contains(':') {
        model = format!("openai:{model}");
    }
    Ok(Args {
        question,
        model,
        verbose,
        trace,
        cache,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let _telemetry = logs::init_from_args("statewise-openai");
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("openai: {e}");
            return ExitCode::from(2);
        }
    };
    let model = match from_spec(&args.model) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("openai: {e}");
            return ExitCode::from(2);
        }
    };
    let model = match &args.cache {
        None => model,
        Some(dir) => match SqliteCache::open(dir.join("responses.sqlite")) {
            Ok(store) => model.cache(Arc::new(store)).shared(),
            Err(e) => {
                eprintln!("openai: cache: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let tools = Toolbox::new(ToolRegistry::new().with(Calculator));
    let mut machine = statewise_states::agent(model, tools);
    if let Some(path) = &args.trace {
        match Tracer::jsonl(path) {
            Ok(tracer) => machine = machine.with_tracer(tracer),
            Err(e) => {
                eprintln!("openai: {e}");
                return ExitCode::FAILURE;
            }
        }
    }

    let stdout = std::io::stdout();
    let console = Console::new()
        .verbose(args.verbose)
        .ansi(stdout.is_terminal());
    match console
        .print(machine.stream(Env::from_user(args.question)), stdout.lock())
        .await
    {
        Ok(_) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("openai: run failed ({}): {failure}", failure.error.code());
            ExitCode::FAILURE
        }
    }
}
