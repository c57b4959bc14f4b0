//! Engine overhead: one transition, and a whole scripted ReAct run.
//!
//!     cargo bench --bench engine
//!
//! Target: ≤ 2 µs per transition (median).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::json;
use statewise::model::ScriptedModel;
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::{Action, Env, Message, State, ToolCall};
use statewise_states::tools::Calculator;
use statewise_states::Reasoning;

fn tools() -> Toolbox {
    Toolbox::new(ToolRegistry::new().with(Calculator))
}

fn transition(c: &mut Criterion) {
    let state = Reasoning::new(Arc::new(ScriptedModel::new()), tools());
    // A mid-run env: a conversation, observations and a pending call.
    let mut env = Env::from_user("What is 2+2, and then 3+3?");
    for i in 0..4 {
        env.messages.push(Message::assistant(format!(
            "{{\"name\": \"calculator\", \"n\": {i}}}"
        )));
        env.messages.push(Message::tool(format!("call_{i}"), "4.0"));
    }
    env.action = Some(Action::ToolCalls(vec![ToolCall::new(
        "call_9",
        "calculator",
        json!({"expression": "3+3"}),
    )]));
    c.bench_function("transition/reasoning", |b| {
        b.iter(|| black_box(&state).transition(black_box(&env)))
    });
}

fn scripted_run(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    c.bench_function("run/react: reasoning, action, reasoning, answer", |b| {
        b.to_async(&rt).iter_batched(
            || {
                let model = Arc::new(
                    ScriptedModel::new()
                        .text(r#"{"name": "calculator", "arguments": {"expression": "2+2"}}"#)
                        .text(r#"{"final_answer": "2+2 is 4."}"#),
                );
                statewise_states::agent(model, tools())
            },
            |machine| async move {
                let out = machine.run(Env::from_user("What is 2+2?")).await;
                assert!(out.is_ok());
                out
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, transition, scripted_run);
criterion_main!(benches);
