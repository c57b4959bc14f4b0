//! Runs the engine benchmark's scripted ReAct run (reasoning → tools →
//! reasoning → answer) N times on one thread, for an instruction counter.
//!
//! ```sh
//! cargo build --release --no-default-features --example run_count
//! valgrind --tool=callgrind target/release/examples/run_count 1
//! valgrind --tool=callgrind target/release/examples/run_count 201
//! ```
//!
//! The difference of the two totals over 200 is the instructions one run
//! costs, free of start-up; callgrind counts the same on a busy machine.

use std::sync::Arc;

use statewise::model::ScriptedModel;
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::Env;
use statewise_states::tools::Calculator;

fn main() -> std::process::ExitCode {
    let runs: u32 = match std::env::args().nth(1).map(|n| n.parse()) {
        None => 1,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            eprintln!("usage: run_count [RUNS]");
            return std::process::ExitCode::FAILURE;
        }
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        eprintln!("run_count: could not start a tokio runtime");
        return std::process::ExitCode::FAILURE;
    };
    for _ in 0..runs {
        let model = Arc::new(
            ScriptedModel::new()
                .text(r#"{"name": "calculator", "arguments": {"expression": "2+2"}}"#)
                .text(r#"{"final_answer": "2+2 is 4."}"#),
        );
        let machine =
            statewise_states::agent(model, Toolbox::new(ToolRegistry::new().with(Calculator)));
        if let Err(e) = rt.block_on(machine.run(Env::from_user("What is 2+2?"))) {
            eprintln!("run_count: the run failed: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    println!("{runs} runs");
    std::process::ExitCode::SUCCESS
}
