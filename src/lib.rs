//! # statewise
//!
//! LLM agents as explicit state machines: small, fast, debuggable.
//!
//! ## The shape of the engine
//!
//! - [`Env`] ([`env`](mod@env)): everything a run produces (messages, the pending
//!   [`Action`], observations, the answer, usage, a scratch map). It is
//!   `Serialize + Deserialize`, so any step can be saved and replayed.
//! - [`State`] ([`state`]): holds configuration only. [`State::run`] works
//!   on the `Env` and streams [`Emit`]s (tokens, actions, tool calls);
//!   [`State::transition`] is a pure function of the `Env` naming the
//!   [`Next`] state.
//! - [`Machine`] ([`machine`]): states by name, an entry, a step limit.
//!   [`Machine::stream`] yields [`Event`]s ([`event`]); [`Machine::run`]
//!   consumes that same stream and returns a [`RunOutput`].
//! - [`model`]: the [`ChatModel`](model::ChatModel) trait every provider
//!   implements; providers ([`OpenAi`](model::OpenAi),
//!   [`Anthropic`](model::Anthropic)); prices; test doubles
//!   ([`ScriptedModel`](model::ScriptedModel), [`FnModel`](model::FnModel)).
//! - [`layer`]: retry, timeouts, circuit breaker, limits, fallback, response
//!   cache: layers that wrap any model.
//! - [`spec`]: models chosen by string (`openai:gpt-4o-mini`) or from a
//!   [`ModelRegistry`](spec::ModelRegistry), wrapped in the default layers.
//! - [`Machine`]s as a graph: forks ([`Fork`]), sub-machines
//!   ([`SubMachine`]) and pauses for a person ([`Interrupt`],
//!   [`Machine::resume_with`]).
//! - [`tool`]: typed [`Tool`](tool::Tool)s, a registry, per-state toolboxes.
//! - [`action`]: reads a model's reply as an `Action`, repairing broken JSON.
//! - [`testkit`]: JSON step fixtures for regression tests.
//! - [`console`]: prints a run to a terminal as it streams.
//! - [`batch`]: a machine over a JSONL dataset, resumable, in flat memory.
//! - [`store`]: checkpoints after every step ([`Machine::with_store`]);
//!   resume a run after a crash, fork one from any step.
//! - [`trace`]: a record of every step, to JSONL or SQLite, secrets
//!   redacted ([`Machine::with_tracer`]); `tracing` spans.
//! - [`replay`]: rerun a recorded run offline, or one step with another
//!   model; turn a step into a fixture.
//!
//! The stock states (Reasoning, Action, Answer) live in the
//! `statewise-states` crate, written against this public API only.
//!
//! ## A custom state
//!
//! ```
//! use statewise::{Emit, EmitStream, Env, Machine, Next, State};
//!
//! struct Shout;
//!
//! impl State for Shout {
//!     fn name(&self) -> &str { "shout" }
//!
//!     fn run<'a>(&'a self, env: &'a mut Env) -> EmitStream<'a> {
//!         Box::pin(statewise::try_stream! {
//!             let text = env.last_user_message().unwrap_or_default().to_uppercase();
//!             for word in text.split_inclusive(' ') {
//!                 yield Emit::Token(word.to_owned());
//!             }
//!             env.answer = Some(text);
//!         })
//!     }
//!
//!     fn transition(&self, _env: &Env) -> Next { Next::End }
//! }
//!
//! # futures::executor::block_on(async {
//! let machine = Machine::new("shout").with_state(Shout);
//! let out = machine.run(Env::from_user("hello there")).await.unwrap();
//! assert_eq!(out.answer.as_deref(), Some("HELLO THERE"));
//! # });
//! ```

#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

pub mod action;
#[cfg(feature = "server")]
pub mod agui;
pub mod backend;
#[cfg(feature = "batch")]
pub mod batch;
#[cfg(feature = "console")]
pub mod console;
pub mod env;
pub mod fit;
pub mod layer;
pub mod machine;
pub mod metric;
pub mod model;
#[cfg(feature = "otel")]
pub mod otel;
mod panic;
pub mod redact;
pub mod replay;
pub mod semconv;
#[cfg(feature = "server")]
pub mod server;
pub mod spec;
pub mod state;
pub mod store;
pub mod testkit;
pub mod tool;
pub mod trace;
#[cfg(feature = "redis")]
pub mod worker;

pub use env::{
    Action, BranchOutcome, Env, ErrorRecord, Interrupt, Message, Observation, Role, RunSettings,
    Scratch, ScratchError, ScratchKey, ScratchName, ToolCall, ToolCallDraft, Usage,
};
pub use machine::event;
pub use machine::event::{Event, EventKind, RunFailure, RunOutput};
pub use machine::{
    EventStream, Machine, MachineError, MachineErrorKind, Resource, StepOutcome, SubMachine,
};
pub use state::{Emit, EmitStream, Fork, Next, State, StateError, StateErrorKind};

/// Builds an [`EmitStream`] body with `yield` and `?` (re-exported from
/// `async-stream`, so states need no extra dependency).
pub use async_stream::try_stream;

/// Builds a stream with `yield` (re-exported from `async-stream`).
pub use async_stream::stream;
