//! The stock states of statewise, written against its public API only,
//! exactly as you would write your own:
//!
//! - [`Reasoning`] asks the model for a JSON action, repairs and parses it;
//! - [`RunTools`] runs the chosen tools concurrently and records observations;
//! - [`Answer`] streams the final answer.
//!
//! [`agent`] wires them into the usual loop:
//! `reasoning → tools → reasoning → … → answer`.
//!
//! ```
//! use std::sync::Arc;
//! use statewise::{model::ScriptedModel, tool::{Toolbox, ToolRegistry}, Env};
//!
//! # futures::executor::block_on(async {
//! let model = Arc::new(ScriptedModel::new().text(r#"{"final_answer": "4"}"#));
//! let machine = statewise_states::agent(model.clone(), Toolbox::new(ToolRegistry::new()));
//! let out = machine.run(Env::from_user("2+2?")).await.unwrap();
//! assert_eq!(out.answer.as_deref(), Some("4"));
//! assert_eq!(out.path, ["reasoning", "answer"]);
//! # });
//! ```

#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

mod answer;
mod decide;
mod ground;
mod memories;
mod memory_tools;
mod output;
mod prompt;
mod reasoning;
mod run_tools;
pub mod tools;

pub use answer::Answer;
pub use decide::{Decide, Example};
pub use memories::{
    extracted_facts, within_budget, Memories, MemoriesRecalled, Memorize, MemorizeError,
    Recollected, MEMORIZE,
};
pub use memory_tools::{MemoryToolError, Recall, RecallArgs, Recalled, Remember, RememberArgs};
pub use reasoning::{Reasoning, RepeatedCall};
pub use run_tools::RunTools;

use statewise::model::SharedModel;
use statewise::tool::Toolbox;
use statewise::Machine;

/// The default name of the [`Reasoning`] state.
pub const REASONING: &str = "reasoning";
/// The default name of the [`RunTools`] state.
pub const TOOLS: &str = "tools";
/// The default name of the [`Answer`] state.
pub const ANSWER: &str = "answer";

/// The stock agent: [`Reasoning`] with `model` and `tools`, [`RunTools`] with
/// the same tools, and an [`Answer`] that ends the run with the answer
/// Reasoning gave (streamed as the model wrote it), or, for a typed output
/// (`agent(..).output::<T>()`), with the `T` it asks `model` for.
pub fn agent(model: SharedModel, tools: Toolbox) -> Machine {
    Machine::new(REASONING)
        .with_state(Reasoning::new(model.clone(), tools.clone()))
        .with_state(RunTools::new(tools))
        .with_state(Answer::new().output_model(model))
}

/// The stock [`agent`] with long-term memory: [`Reasoning`] reads the
/// principal's memories that best match each question into its prompt
/// (within `memories`' token budget), and after the answer [`Memorize`]
/// stores what the run taught, with `model`, as background work
/// (`machine.background().idle()` waits for it). Runs need a principal
/// ([`Env::with_principal`](statewise::Env::with_principal)); without one
/// they neither read nor write memories.
pub fn agent_with_memory(model: SharedModel, tools: Toolbox, memories: Memories) -> Machine {
    let memorize =
        Memorize::new(memories.store(), model.clone()).prefix(memories.namespace_prefix());
    Machine::new(REASONING)
        .with_state(Reasoning::new(model.clone(), tools.clone()).memories(memories))
        .with_state(RunTools::new(tools))
        .with_state(Answer::new().output_model(model).then(MEMORIZE))
        .with_state(memorize)
}

/// What [`small_agent`]'s answer is asked for: what asking the model
/// plainly would say, so knowledge questions do as well as without an
/// agent.
const SMALL_ANSWER_INSTRUCTIONS: &str = "You are a helpful assistant. Answer briefly.";

/// The worked exchanges [`small_agent`]'s answer is shown
/// ([`Answer::shots`]): one plain sentence each, on questions unlike
/// everyday ones.
const SMALL_ANSWER_SHOTS: [(&str, &str); 3] = [
    (
        "What is the capital of Peru?",
        "The capital of Peru is Lima.",
    ),
    (
        "What is the opposite of wet?",
        "The opposite of wet is dry.",
    ),
    (
        "What is the past tense of swim?",
        "The past tense of swim is swam.",
    ),
];

/// The stock agent for small models: [`Decide`] (a constrained choice of a
/// tool or answering, shown `examples`), [`RunTools`] with the same tools,
/// then [`Answer::with_model`] writing the answer as free text from what
/// the tool returned (held to its numbers, [`Answer::grounded`]), or from
/// the model's own knowledge. One tool call per
/// request at most; greedy decoding, answers of at most 128 tokens. The
/// stock calculator is offered as `math`, the word small models pick for
/// arithmetic ([`Decide::label`]).
pub fn small_agent(
    model: SharedModel,
    tools: Toolbox,
    examples: impl IntoIterator<Item = Example>,
) -> Machine {
    let params = statewise::model::Params {
        temperature: Some(0.0),
        max_tokens: Some(128),
        ..Default::default()
    };
    Machine::new(REASONING)
        .with_state(
            Decide::new(model.clone(), tools.clone())
                .examples(examples)
                .label("calculator", "math"),
        )
        .with_state(RunTools::new(tools).then(ANSWER))
        .with_state(
            Answer::with_model(model)
                .instructions(SMALL_ANSWER_INSTRUCTIONS)
                .compact(true)
                .grounded(true)
                .shots(SMALL_ANSWER_SHOTS)
                .params(params),
        )
}
