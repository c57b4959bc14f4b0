//! The chat example's agent, shared with the eval example so that the
//! bench measures what `chat` runs: the stock agent with a calculator and a
//! clock, or for the small local model `small_agent`.

use statewise::model::SharedModel;
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::Machine;
use statewise_states::tools::{Calculator, Clock};

/// The agent for `model`; `small` when it is the small local model.
pub fn chat_agent(model: SharedModel, small: bool) -> Machine {
    let tools = Toolbox::new(ToolRegistry::new().with(Calculator).with(Clock));
    if small {
        // A 135M model cannot write a JSON action well (it calls a tool for
        // nearly everything): it chooses among a few options instead, then
        // writes the answer as free text (see the accuracy example).
        let examples = Calculator::examples().into_iter().chain(Clock::examples());
        statewise_states::small_agent(model, tools, examples)
    } else {
        statewise_states::agent(model, tools)
    }
}

/// The model asked plainly: one request with the question, no tools,
/// greedy, at most 128 tokens (what the chat agent is measured against).
#[allow(dead_code)] // the chat example does not use it
pub fn plain_agent(model: SharedModel) -> Machine {
    let params = statewise::model::Params {
        temperature: Some(0.0),
        max_tokens: Some(128),
        ..Default::default()
    };
    Machine::new(statewise_states::ANSWER).with_state(
        statewise_states::Answer::with_model(model)
            .instructions("You are a helpful assistant. Answer briefly.")
            .params(params),
    )
}
