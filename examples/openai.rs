//! The stock agent against an OpenAI-compatible endpoint, streamed.
//!
//!     OPENAI_API_KEY=sk-... cargo run --example openai -- "What is 17 * 23?"
//!     OPENAI_BASE_URL=http://127.0.0.1:8080/v1 cargo run --example openai -- "What is 17 * 23?" --model local
//!
//! `--model` takes a model id for the endpoint (default `$OPENAI_MODEL`, else
//! `gpt-4o-mini`) or any model string (`anthropic:claude-sonnet-4-5`).
//! `--verbose` also shows the reasoning tokens and the tool calls.

use std::io::IsTerminal;
use std::process::ExitCode;

use statewise::console::Console;
use statewise::model::from_spec;
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::Env;
use statewise_states::tools::Calculator;

struct Args {
    question: String,
    model: String,
    verbose: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut question = None;
    let mut model = std::env::var("OPENAI_MODEL").unwrap_or_else(|_| "gpt-4o-mini".to_owned());
    let mut verbose = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--model" => model = args.next().ok_or("--model needs a value")?,
            "--verbose" | "-v" => verbose = true,
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            _ if question.is_none() => question = Some(arg),
            _ => return Err("give the question as one argument (quote it)".to_owned()),
        }
    }
    let question = question.ok_or("usage: openai \"QUESTION\" [--model NAME] [--verbose]")?;
    // A bare model id names a model of the OpenAI-compatible endpoint.
    if !model.contains(':') {
        model = format!("openai:{model}");
    }
    Ok(Args {
        question,
        model,
        verbose,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
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
    let tools = Toolbox::new(ToolRegistry::new().with(Calculator));
    let machine = statewise_states::agent(model, tools);

    let stdout = std::io::stdout();
    let console = Console::answers_from([statewise_states::ANSWER])
        .verbose(args.verbose)
        .ansi(stdout.is_terminal());
    match console
        .print(machine.stream(Env::from_user(args.question)), stdout.lock())
        .await
    {
        Ok(_) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("openai: run failed ({}): {failure}", failure.error.kind());
            ExitCode::FAILURE
        }
    }
}
