//! Replays a trace of the stock agent (the `openai` example's `--trace`):
//! the whole run offline against its recorded model replies, or one step,
//! with the recorded replies or another model, showing what changes.
//!
//! ```sh
//! cargo run --example openai -- "What is 17 * 23?" --trace trace.jsonl
//! cargo run --example replay -- trace.jsonl                       # whole run, offline
//! cargo run --example replay -- trace.jsonl --step 1 --model openai:gpt-4o
//! cargo run --example replay -- trace.jsonl --step 1 --fixture tests/fixtures/step1.json
//! ```
//!
//! `--run ID` picks a run (default: the last one in the file). `--fixture
//! FILE` writes the step as a JSON step fixture for the test kit: a
//! recorded failure becomes a regression test. For your own agent, copy this
//! file and build your machine where `agent` is called.

use std::process::ExitCode;
use std::sync::Arc;

use statewise::model::SharedModel;
use statewise::replay::{replay_step, Recording};
use statewise::spec::from_spec;
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::Machine;
use statewise_states::tools::Calculator;

/// The machine the openai example records.
fn agent(model: SharedModel) -> Machine {
    statewise_states::agent(model, Toolbox::new(ToolRegistry::new().with(Calculator)))
}

struct Args {
    trace: String,
    run: Option<String>,
    step: Option<u32>,
    model: Option<String>,
    fixture: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut args = Args {
        trace: String::new(),
        run: None,
        step: None,
        model: None,
        fixture: None,
    };
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--run" => args.run = Some(value()?),
            "--step" => args.step = Some(value()?.parse().map_err(|_| "--step takes a number")?),
            "--model" => args.model = Some(value()?),
            "--fixture" => args.fixture = Some(value()?),
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            _ if args.trace.is_empty() => args.trace = arg,
            _ => return Err("give one trace file".into()),
        }
    }
    if args.trace.is_empty() {
        return Err(
            "usage: replay TRACE.jsonl [--run ID] [--step N [--model SPEC] [--fixture FILE]]"
                .into(),
        );
    }
    if args.step.is_none() && (args.model.is_some() || args.fixture.is_some()) {
        return Err("--model and --fixture work on one step: give --step N".into());
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("replay: {e}");
            return ExitCode::from(2);
        }
    };
    let recording = match Recording::from_jsonl(&args.trace, args.run.as_deref()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("replay: {e}");
            return ExitCode::FAILURE;
        }
    };
    let model: SharedModel = match &args.model {
        None => Arc::new(recording.model()),
        Some(spec) => match from_spec(spec) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("replay: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let machine = agent(model);

    let Some(n) = args.step else {
        let replay = recording.replay(&machine).await;
        println!("run {}: {replay}", recording.run_id());
        return if replay.matches() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    };
    let Some(step) = recording.step(n) else {
        let known: Vec<String> = recording
            .steps
            .iter()
            .map(|s| format!("{} ({})", s.step, s.state))
            .collect();
        eprintln!(
            "replay: run {} has no step {n}; steps: {}",
            recording.run_id(),
            known.join(", ")
        );
        return ExitCode::FAILURE;
    };
    if let Some(path) = &args.fixture {
        let name = format!("{} step {} ({})", recording.run_id(), step.step, step.state);
        let text = serde_json::to_string_pretty(&step.to_fixture(name)).expect("a fixture is JSON");
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("replay: cannot write {path}: {e}");
            return ExitCode::FAILURE;
        }
        println!("wrote step {n} ({}) as a fixture to {path}", step.state);
        return ExitCode::SUCCESS;
    }
    let replay = replay_step(&machine, step).await;
    print!("{replay}");
    if replay.same() {
        println!();
    }
    ExitCode::SUCCESS
}
