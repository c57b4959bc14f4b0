//! AG-UI, the Agent-User Interaction protocol (`docs.ag-ui.com`): the
//! events a front end's agent client reads, and what it sends.
//!
//! The types follow `@ag-ui/core` 1.0 field for field, written here with
//! serde rather than taken from a young third-party crate. A run's events
//! become AG-UI events in [`Translator`], a plain function of the events
//! so far; [`server`](crate::server) streams them over HTTP.

mod event;
mod input;
mod translate;

pub use event::{AgUiEvent, Interrupt, RunFinishedOutcome, TokenUsage};
pub use input::{
    AssistantToolCall, Content, Context, FunctionCall, Message, ResumeEntry, ResumeStatus,
    RunAgentInput, Tool,
};
pub use translate::{
    interrupt_of, state_of, Translator, INPUT, OUTPUT, PROTOCOL_VERSION, TOOL_APPROVAL,
};
