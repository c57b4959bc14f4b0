//! A run that survives a crash: every step is checkpointed to SQLite, and
//! running the same command again resumes the run where it stopped.
//!
//! ```sh
//! cargo run --example resume -- --db runs.sqlite --run squares --slow 500
//! # press Ctrl-C (or kill -9) halfway, then run the same command again
//! ```
//!
//! The model is a deterministic stand-in (no network, no model file): it
//! squares 1 to 4 with the calculator, one call per step, then answers.
//! `--slow MS` makes each calculation take that long, to give you time to
//! interrupt it. `--rerun STEP --run NEW --from OLD` starts a new run from a
//! step of an old one instead.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use statewise::console::Console;
use statewise::model::{ChatRequest, FnModel, Reply};
use statewise::store::{SqliteStore, Store};
use statewise::tool::{Tool, ToolRegistry, Toolbox};
use statewise::Env;
use statewise_states::tools::{CalcError, Calculated, Calculator, CalculatorArgs};

/// The calculator, taking its time.
struct SlowCalculator(Duration);

impl Tool for SlowCalculator {
    type Args = CalculatorArgs;
    type Output = Calculated;
    type Error = CalcError;

    fn name(&self) -> &str {
        Calculator.name()
    }
    fn description(&self) -> &str {
        Calculator.description()
    }
    fn parameters(&self) -> serde_json::Value {
        Calculator.parameters()
    }
    async fn call(
        &self,
        args: CalculatorArgs,
        ctx: statewise::tool::ToolContext,
    ) -> Result<Calculated, CalcError> {
        tokio::time::sleep(self.0).await;
        Calculator.call(args, ctx).await
    }
}

/// Asks for the next square until it has four, then answers with them.
fn planner(request: &ChatRequest) -> Result<Reply, statewise::model::ModelError> {
    let squares: Vec<String> = request
        .messages
        .iter()
        .filter_map(|m| m.content.strip_prefix("Observation from `calculator`"))
        .filter_map(|rest| rest.split_once('\n'))
        .map(|(_, value)| value.trim().to_owned())
        .collect();
    let n = squares.len() + 1;
    let action = if n <= 4 {
        json!({"name": "calculator", "arguments": {"expression": format!("{n} * {n}")}})
    } else {
        json!({"final_answer": format!("The squares of 1 to 4 are {}.", squares.join(", "))})
    };
    Ok(Reply::text(action.to_string()))
}

struct Args {
    db: String,
    run: String,
    slow: Duration,
    rerun: Option<(String, u32)>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        db: "runs.sqlite".into(),
        run: "squares".into(),
        slow: Duration::ZERO,
        rerun: None,
    };
    let (mut from, mut step) = (None, None);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--db" => args.db = value()?,
            "--run" => args.run = value()?,
            "--slow" => {
                let ms = value()?.parse().map_err(|_| "--slow takes milliseconds")?;
                args.slow = Duration::from_millis(ms);
            }
            "--from" => from = Some(value()?),
            "--rerun" => {
                step = Some(
                    value()?
                        .parse()
                        .map_err(|_| "--rerun takes a step number")?,
                )
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    match (from, step) {
        (Some(from), Some(step)) => args.rerun = Some((from, step)),
        (None, None) => {}
        _ => return Err("--rerun STEP needs --from RUN (and the other way round)".into()),
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("resume: {e}");
            return ExitCode::from(2);
        }
    };
    let store = match SqliteStore::open(&args.db) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("resume: {e}");
            return ExitCode::FAILURE;
        }
    };
    let model = Arc::new(FnModel::new("planner", planner));
    let tools = Toolbox::new(ToolRegistry::new().with(SlowCalculator(args.slow)));
    let machine = statewise_states::agent(model, tools).with_store(store.clone());

    let events = match (&args.rerun, store.get(&args.run, None).await) {
        (Some((from, step)), _) => {
            println!("rerunning as run {} from step {step} of {from}", args.run);
            machine.rerun(from, *step, &args.run).await
        }
        (None, Ok(Some(last))) => {
            println!("resuming run {} after step {}", args.run, last.step);
            machine.resume(&args.run).await
        }
        (None, Ok(None)) => {
            println!("starting run {}", args.run);
            Ok(machine.stream_as(args.run.as_str(), Env::from_user("Square 1 to 4.")))
        }
        (None, Err(e)) => Err(e.into()),
    };
    let events = match events {
        Ok(events) => events,
        Err(e) => {
            eprintln!("resume: {e}");
            return ExitCode::FAILURE;
        }
    };
    let console = Console::new().verbose(true);
    match console.print(events, std::io::stdout().lock()).await {
        Ok(out) => {
            println!("\nanswer: {}", out.answer.unwrap_or_default());
            println!("path: {}", out.path.join(" → "));
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("resume: run {} failed: {failure}", failure.run_id);
            ExitCode::FAILURE
        }
    }
}
