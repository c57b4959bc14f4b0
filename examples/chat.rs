//! Ask a question, get a streamed answer: the stock agent with a calculator
//! and a clock (for the small local model, `small_agent`: a constrained
//! choice of tool, then the answer written as free text).
//!
//! ```sh
//! cargo run --release --features local --example chat -- "What is 17 * 23?"
//! cargo run --release --features local --example chat -- "What time is it?" --show-reasoning
//! ```
//!
//! With no API settings it runs SmolLM2-135M in-process (fetching it first
//! if needed; `STATEWISE_MODEL=path.gguf` picks another file). With
//! `OPENAI_API_KEY` or `OPENAI_BASE_URL` set it uses that endpoint
//! (`OPENAI_MODEL`, default gpt-4o-mini); with `ANTHROPIC_API_KEY`, Claude
//! (`ANTHROPIC_MODEL`, default claude-sonnet-4-5).
//!
//! `--log-json` writes structured logs (JSON lines, spans included) to
//! stderr; `RUST_LOG` filters them. `--otlp` (with `--features otel`)
//! sends the spans to `OTEL_EXPORTER_OTLP_ENDPOINT`.

#[path = "common/agent.rs"]
mod agent;
#[path = "common/logs.rs"]
mod logs;
#[path = "common/model.rs"]
mod model;

use std::io::IsTerminal;
use std::process::ExitCode;

use statewise::console::Console;
use statewise::Env;

struct Args {
    question: String,
    show_reasoning: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut question = None;
    let mut show_reasoning = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--log-json" | "--otlp" => {} // logs::init_from_args
            "--show-reasoning" => show_reasoning = true,
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            _ if question.is_none() => question = Some(arg),
            _ => return Err("give the question as one argument (quote it)".to_owned()),
        }
    }
    let question = question.ok_or("usage: chat \"QUESTION\" [--show-reasoning]")?;
    Ok(Args {
        question,
        show_reasoning,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let _telemetry = logs::init_from_args("statewise-chat");
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("chat: {e}");
            return ExitCode::from(2);
        }
    };
    let (model, small) = match model::choose("chat").await {
        Ok(m) => m,
        Err(e) => {
            eprintln!("chat: {e}");
            return ExitCode::FAILURE;
        }
    };
    let machine = agent::chat_agent(model, small);

    let stdout = std::io::stdout();
    let console = Console::new()
        .verbose(args.show_reasoning)
        .usage(args.show_reasoning)
        .ansi(stdout.is_terminal());
    match console
        .print(machine.stream(Env::from_user(args.question)), stdout.lock())
        .await
    {
        Ok(_) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("chat: run failed ({}): {failure}", failure.error.code());
            ExitCode::FAILURE
        }
    }
}
