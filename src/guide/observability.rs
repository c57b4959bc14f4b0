//! # Observability: traces, replays, checkpoints, spans and metrics
//!
//! A run can be seen from four sides: a trace of every step, written as it
//! happens; checkpoints it resumes from; `tracing` spans after the
//! OpenTelemetry GenAI conventions; and metrics.
//!
//! ## Traces and replays
//!
//! [`Machine::with_tracer`](crate::Machine::with_tracer) records every step
//! (the env before it, each model request and raw reply, the repaired JSON,
//! the action, tool inputs and outputs, timings, usage, errors) to JSONL or
//! SQLite, with API keys and other secrets redacted. A
//! [`Recording`](crate::replay::Recording) read back from the file answers
//! the same requests, so the whole run replays offline, and a change to a
//! prompt shows at the step it changes:
//!
//! ```
//! use std::sync::Arc;
//! use statewise::model::{ScriptedModel, SharedModel};
//! use statewise::replay::Recording;
//! use statewise::tool::{ToolRegistry, Toolbox};
//! use statewise::trace::Tracer;
//! use statewise::{Env, Machine};
//! use statewise_states::tools::Calculator;
//!
//! fn agent(model: SharedModel) -> Machine {
//!     statewise_states::agent(model, Toolbox::new(ToolRegistry::new().with(Calculator)))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let path = std::env::temp_dir().join(format!("guide-trace-{}.jsonl", std::process::id()));
//! let model = Arc::new(
//!     ScriptedModel::new()
//!         .text(r#"{"tool_calls": [{"name": "calculator", "arguments": {"expression": "17 * 23"}}]}"#)
//!         .text(r#"{"final_answer": "391"}"#),
//! );
//! agent(model).with_tracer(Tracer::jsonl(&path).unwrap()).run(Env::from_user("17 * 23?")).await.unwrap();
//!
//! // No model now: the recording answers.
//! let recording = Recording::from_jsonl(&path, None).unwrap();
//! let replay = recording.replay(&agent(Arc::new(recording.model()))).await;
//! assert!(replay.matches(), "{replay}");
//! assert_eq!(replay.outcome.unwrap().answer.as_deref(), Some("391"));
//! # std::fs::remove_file(&path).ok();
//! # }
//! ```
//!
//! [`replay_step`](crate::replay::replay_step) runs one recorded step again
//! with another model and shows the difference, and a step becomes a test
//! fixture. From the command line:
//!
//! ```sh
//! cargo run --example openai -- "What is 17 * 23?" --trace trace.jsonl --cache .cache
//! cargo run --example trace_view -- trace.jsonl   # a timeline and a Mermaid flowchart
//! cargo run --example replay -- trace.jsonl       # the whole run again, offline
//! cargo run --example replay -- trace.jsonl --step 1 --model openai:gpt-4o
//! ```
//!
//! [`ModelExt::cache`](crate::layer::ModelExt::cache) answers a repeated
//! request from memory, SQLite or Redis, replaying the same tokens at no
//! cost.
//!
//! ## Checkpoints
//!
//! [`Machine::with_store`](crate::Machine::with_store) saves the env after
//! every step (in memory, SQLite, Redis or PostgreSQL), so
//! [`Machine::resume`](crate::Machine::resume) continues a crashed run
//! without repeating a finished step and
//! [`Machine::rerun`](crate::Machine::rerun) starts a new run from any
//! step. `cargo run --example resume -- --slow 500`, killed halfway and run
//! again, resumes.
//!
//! ## Spans
//!
//! Runs, states, model calls and tool calls are `tracing` spans named after
//! the GenAI conventions: `invoke_agent {machine}`, `chat {model}`
//! (provider, model, token counts, finish reason, `error.type`) and
//! `execute_tool {name}` ([`semconv`](crate::semconv) has the names).
//! Prompts, replies and tool arguments go on them only with
//! [`Machine::span_content`](crate::Machine::span_content), and then
//! redacted. With feature `otel`, one call sends them to any OTLP/HTTP
//! backend (`OTEL_EXPORTER_OTLP_ENDPOINT`), and a run queued on Redis or
//! sent to the web server with a `traceparent` header stays in its
//! caller's trace:
//!
//! ```no_run
//! # #[cfg(feature = "otel")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let telemetry = statewise::otel::init("my-agent", statewise::otel::LogFormat::Json)?;
//! # drop(telemetry);
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "otel"))]
//! # fn main() {}
//! ```
//!
//! (That block is compiled, not run, by the doctests: it needs a collector
//! to send to. `tests/spans.rs` sends spans through `otel::otlp_provider`,
//! what `init` builds on, to an OTLP receiver of its own.)
//!
//! ## Metrics
//!
//! The engine records runs by outcome, state durations, model latency and
//! time to first token, tokens, cost, tool calls, retries, circuit breaker
//! states, guardrail trips, route steps and the queue's depth through the
//! `metrics` facade; the names are the constants in
//! [`metric`](crate::metric). With feature `prometheus`,
//! `metric::serve_prometheus(addr)` serves them on a listener of its own,
//! or `install_prometheus` gives a handle whose `render()` a web server
//! serves at `/metrics`:
//!
//! ```
//! # #[cfg(feature = "prometheus")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::sync::Arc;
//! use statewise::model::ScriptedModel;
//! use statewise::tool::Toolbox;
//! use statewise::Env;
//!
//! let handle = statewise::metric::install_prometheus().unwrap();
//! let model = Arc::new(ScriptedModel::new().text(r#"{"final_answer": "Hi."}"#));
//! statewise_states::agent(model, Toolbox::default()).run(Env::from_user("Hello")).await.unwrap();
//! let scraped = handle.render();
//! assert!(scraped.contains(statewise::metric::RUNS_TOTAL), "{scraped}");
//! # }
//! # #[cfg(not(feature = "prometheus"))]
//! # fn main() {}
//! ```
