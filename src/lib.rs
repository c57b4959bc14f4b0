//! # statewise
//!
//! LLM agents as explicit state machines: small, fast, debuggable.
//!
//! ## A tour, in reading order
//!
//! The core:
//! - [`Env`] ([`env`](mod@env)): everything a run produces (messages, the pending
//!   [`Action`], observations, the answer, usage, a scratch map). It is
//!   `Serialize + Deserialize`, so any step can be saved and replayed.
//! - [`State`] ([`state`]): holds configuration only. [`State::run`] works
//!   on the `Env` and streams [`Emit`]s (tokens, actions, tool calls);
//!   [`State::transition`] is a pure function of the `Env` naming the
//!   [`Next`] state.
//! - [`Machine`] ([`machine`]): states by name, an entry, a step limit.
//!   [`Machine::stream`] yields [`Event`]s ([`event`]); [`Machine::run`]
//!   consumes that same stream and returns a [`RunOutput`]. Machines make
//!   graphs: forks ([`Fork`]), sub-machines ([`SubMachine`]) and pauses for
//!   a person ([`Interrupt`], [`Machine::resume_with`]).
//!
//! Models and tools:
//! - [`model`]: the [`ChatModel`](model::ChatModel) trait every provider
//!   implements; providers ([`OpenAi`](model::OpenAi),
//!   [`Anthropic`](model::Anthropic), an in-process llama.cpp model with the
//!   `local` feature); prices; test doubles
//!   ([`ScriptedModel`](model::ScriptedModel), [`FnModel`](model::FnModel)).
//! - [`layer`]: retry, timeouts, circuit breaker, limits, fallback, response
//!   cache, prices, the vendors' batch lane: wrappers around any model.
//! - [`fit`]: fits a request into the model's context window.
//! - [`spec`]: models chosen by string (`openai:gpt-4o-mini`) or from a
//!   [`ModelRegistry`](spec::ModelRegistry), wrapped in the default layers.
//! - [`tool`](mod@tool): typed [`Tool`](tool::Tool)s, a registry, per-state
//!   toolboxes, approval, MCP servers (`mcp` feature).
//! - [`action`]: reads a model's reply as an `Action`, repairing broken JSON.
//!
//! Keeping and reading runs:
//! - [`store`]: checkpoints after every step ([`Machine::with_store`]);
//!   resume a run after a crash, fork one from any step. Memory, SQLite,
//!   Redis and PostgreSQL.
//! - [`trace`]: a record of every step, to JSONL or SQLite, secrets
//!   redacted ([`Machine::with_tracer`]); `tracing` spans.
//! - [`replay`]: rerun a recorded run offline, or one step with another
//!   model; turn a step into a fixture.
//! - [`testkit`]: JSON step fixtures for regression tests.
//!
//! Running them:
//! - [`console`]: prints a run to a terminal as it streams.
//! - [`dataset`]: a machine over a JSONL dataset, resumable, in flat memory.
//! - [`eval`]: the evaluation bench: cases with evaluators scored on the
//!   dataset runner, reports (terminal, JSON, HTML) and comparisons for CI.
//! - `worker` (`redis` feature): a fleet of workers sharing a Redis Streams
//!   run queue; a crashed worker's run resumes elsewhere.
//! - `server` and `agui` (`server` feature): runs over HTTP as AG-UI
//!   event streams, for web clients.
//! - `otel` (`otel` feature): exports spans to OpenTelemetry.
//!
//! Underneath everything:
//! - [`metric`]: the metrics the engine records (the `metrics` facade;
//!   Prometheus with the `prometheus` feature).
//! - [`semconv`]: the OpenTelemetry GenAI attribute names spans carry.
//! - [`redact`]: [`Secret`](redact::Secret) and the masking that keeps
//!   keys out of logs, traces and errors.
//! - [`backend`]: what stores, caches and ledgers share: [`BackendError`](backend::BackendError)
//!   and the SQLite and Redis connections.
//!
//! The stock states (Reasoning, the tool runner, Answer) live in the
//! `statewise-states` crate, written against this public API only.
//!
//! ## Dependency order
//!
//! Modules import only from those below them (`scripts/check-deps`
//! checks it in CI), bottom to top:
//!
//! 1. leaves, importing nothing from the crate: `redact`, `semconv`, `metric`
//! 2. `backend`
//! 3. `env`
//! 4. `tool`, then `action`
//! 5. `model`, then `layer` and `fit`, then `spec`
//! 6. `state`
//! 7. `store` and `trace`: below the machine, which reaches them through
//!    their traits ([`Store`](store::Store), [`TraceSink`](trace::TraceSink))
//! 8. `machine` (with `event`)
//! 9. `testkit`, `console`, `otel`
//! 10. `replay`, `worker`
//! 11. `dataset`, `agui`
//! 12. `eval`
//! 13. `server`
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
// docs.rs builds with `--cfg docsrs` on nightly: each gated item shows its feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod action;
#[cfg(feature = "server")]
pub mod agui;
pub mod backend;
#[cfg(feature = "console")]
pub mod console;
#[cfg(feature = "dataset")]
pub mod dataset;
pub mod env;
#[cfg(feature = "eval")]
pub mod eval;
pub mod fit;
pub mod guard;
pub mod guide;
pub mod layer;
pub mod machine;
pub mod memory;
pub mod metric;
pub mod model;
#[cfg(feature = "otel")]
pub mod otel;
pub mod output;
mod panic;
pub mod redact;
pub mod replay;
pub mod schema;
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

#[cfg(feature = "macros")]
pub use statewise_macros::tool;

// What `#[statewise::tool]` expands to names `::statewise`, in this crate's
// own tests too.
extern crate self as statewise;

/// What generated code needs, so a user crate need not depend on it.
#[doc(hidden)]
pub mod __private {
    pub use schemars;
    pub use serde;

    /// An arguments struct's schema as a tool shows it: without the
    /// struct's own doc (meant for rustdoc, not the model), and with
    /// `properties` even when there are none (providers expect the key).
    pub fn tool_arguments(schema: &mut schemars::Schema) {
        schema.remove("description");
        if schema.get("properties").is_none() {
            schema.insert("properties".into(), serde_json::json!({}));
        }
    }
}
