//! The whole Reasoning → Action → Answer loop against a scripted model,
//! printing every event as it arrives. No network, no model file.
//!
//! ```sh
//! cargo run --example scripted
//! ```
//!
//! Swap the ScriptedModel for a real provider and nothing else changes.

use std::io::Write;
use std::sync::Arc;

use futures::StreamExt;
use statewise::model::{Reply, ScriptedModel};
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::{Emit, Env, EventKind, Usage};
use statewise_states::tools::Calculator;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // What a model would say: a (slightly broken) tool call, then the answer.
    let usage = |prompt, completion| Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        ..Usage::default()
    };
    let model = Arc::new(
        ScriptedModel::new()
            .reply(
                Reply::text("{'tool_calls': [{'name': 'calculator', 'arguments': {'expression': '1234 * 5678'}}]}")
                    .with_usage(usage(210, 24)),
            )
            .reply(
                Reply::text(r#"{"final_answer": "1234 times 5678 is 7,006,652."}"#).with_usage(usage(262, 15)),
            ),
    );
    let tools = Toolbox::new(ToolRegistry::new().with(Calculator));
    let machine = statewise_states::agent(model, tools);

    let mut events = machine.stream(Env::from_user("What is 1234 * 5678?"));
    let mut out = std::io::stdout().lock();
    while let Some(event) = events.next().await {
        let state = &event.state;
        let _ = match event.kind {
            EventKind::StateEntered => writeln!(out, "\n── {state} (step {})", event.step),
            EventKind::Emitted(Emit::Token(t)) => write!(out, "{t}").and_then(|()| out.flush()),
            EventKind::Emitted(Emit::ToolCallStarted(call)) => {
                writeln!(out, "\n→ {}({})", call.name, call.arguments)
            }
            EventKind::Emitted(Emit::Observation(o)) => {
                writeln!(out, "← {}: {}", o.tool, o.render())
            }
            EventKind::Finished(run) => {
                let u = run.usage();
                writeln!(
                    out,
                    "\n\npath: {}\ntokens: {} prompt + {} completion",
                    run.path.join(" → "),
                    u.prompt_tokens,
                    u.completion_tokens
                )
            }
            EventKind::Failed(failure) => {
                eprintln!("\nrun failed: {failure}");
                return std::process::ExitCode::FAILURE;
            }
            _ => Ok(()),
        };
    }
    std::process::ExitCode::SUCCESS
}
