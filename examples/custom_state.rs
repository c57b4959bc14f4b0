//! A state of your own, added to the stock agent, using public items only.
//!
//! ```sh
//! cargo run --example custom_state
//! ```
//!
//! `Critic` sits between Reasoning and Answer: it checks the drafted answer
//! against the observations and sends Reasoning back to work when the draft
//! ignores a failed tool call. Its decision is recorded in the env, so the
//! transition stays a pure function that a test can call directly.

use std::sync::Arc;

use statewise::model::ScriptedModel;
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::{Action, Emit, EmitStream, Env, Machine, Message, Next, ScratchKey, State};
use statewise_states::tools::Calculator;
use statewise_states::{Answer, Reasoning};

/// Rejects a final answer while the last tool call failed, at most once.
struct Critic;

const VERDICT: ScratchKey<bool> = ScratchKey::new("critic.rejected");

impl State for Critic {
    fn name(&self) -> &str {
        "critic"
    }

    fn run<'a>(&'a self, env: &'a mut Env) -> EmitStream<'a> {
        Box::pin(statewise::try_stream! {
            let already = env.scratch.get(&VERDICT)?.unwrap_or(false);
            let failed = env.observations.last().is_some_and(|o| o.is_error);
            if failed && !already {
                env.scratch.set(&VERDICT, &true)?;
                env.action = None;
                env.messages.push(Message::user(
                    "Your last tool call failed. Fix the call before answering.",
                ));
                yield Emit::Token("rejected: the last tool call failed\n".into());
            } else {
                yield Emit::Token("approved\n".into());
            }
        })
    }

    fn transition(&self, env: &Env) -> Next {
        match env.action {
            Some(Action::FinalAnswer(_)) => Next::to("answer"),
            _ => Next::to("reasoning"),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = Arc::new(
        ScriptedModel::new()
            .text(r#"{"name": "calculator", "arguments": {"expression": "7 *"}}"#)
            .text(r#"{"final_answer": "I could not compute it."}"#)
            .text(r#"{"name": "calculator", "arguments": {"expression": "7 * 6"}}"#)
            .text(r#"{"final_answer": "7 * 6 = 42"}"#),
    );
    let tools = Toolbox::new(ToolRegistry::new().with(Calculator));
    let machine = Machine::new("reasoning")
        .with_state(Reasoning::new(model.clone(), tools.clone()).on_answer("critic"))
        .with_state(statewise_states::RunTools::new(tools))
        .with_state(Critic)
        .with_state(Answer::new());

    let out = machine.run(Env::from_user("What is 7 * 6?")).await?;
    println!("path:   {}", out.path.join(" → "));
    println!("answer: {}", out.answer.unwrap_or_default());
    model.assert_complete();
    Ok(())
}
