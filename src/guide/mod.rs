//! The guide: statewise from the first state to a fleet, one chapter per
//! module. Every code block here is a doctest, so the guide compiles and
//! runs in CI as the library changes (the few marked `no_run` need a
//! service the tests start themselves, and compile).
//!
//! 1. [`concepts`]: the env, states, the machine and its events.
//! 2. [`custom_state`]: a state of your own beside the stock ones.
//! 3. [`testing`]: transitions as plain functions, a scripted model, no
//!    network.
//! 4. [`tools`]: a tool from a function, a closure or a type.
//! 5. [`models`]: providers, the context window, layers, several models
//!    as one, the vendors' batch lane.
//! 6. [`graphs`]: forks, and pauses for a person.
//! 7. [`typed_outputs`]: a run that ends in a value of your type,
//!    validated and asked again.
//! 8. [`guardrails`]: input, output and tool guardrails; principals and
//!    scopes; the threat model.
//! 9. [`memory`]: long-term memory, searched by words and by meaning.
//! 10. [`observability`]: traces, replays, checkpoints, spans and metrics.
//! 11. [`evaluation`]: datasets and the evaluation bench.
//! 12. `web_server` (feature `server`): an AG-UI server for web clients.
//! 13. `scaling_out` (feature `redis`): a run queue and workers.
//! 14. [`figures`]: what was measured, and how.
//!
//! Each example's first doc lines say what it shows and the command that
//! runs it; the chapters name the examples that go further.
//!
//! # Examples
//!
//! Each runs with `cargo run --example NAME` (its first doc lines give the
//! whole command, with the features it needs).
//!
//! | example | what it shows | chapter |
//! |---|---|---|
//! | `examples/chat.rs` | a question answered by the stock agent, streamed (the first command) | [`concepts`] |
//! | `examples/scripted.rs` | the whole loop against a scripted model | [`testing`] |
//! | `examples/custom_state.rs` | a state of your own in the stock agent | [`custom_state`] |
//! | `examples/openai.rs` | any OpenAI-compatible or Anthropic model, with traces and a cache | [`models`] |
//! | `examples/cascade_bench.rs` | what a cascade of two models saves | [`models`] |
//! | `examples/local_bench.rs` | the in-process model's speed against llama.cpp's server | [`models`] |
//! | `examples/mcp.rs` | an MCP server's tools in the stock agent | [`tools`] |
//! | `examples/approve.rs` | a tool call approved by a person, across a restart | [`tools`], [`graphs`] |
//! | `examples/fork.rs` | a plan, branches in parallel, a join | [`graphs`] |
//! | `examples/extract.rs` | a typed value pulled out of free text | [`typed_outputs`] |
//! | `examples/guard.rs` | guardrails, one judged by the embedded model | [`guardrails`] |
//! | `examples/memory.rs` | long-term memory from the command line | [`memory`] |
//! | `examples/documents.rs` | answers from a folder of documents kept indexed | [`memory`] |
//! | `examples/memory_bench.rs` | memory store figures | [`figures`] |
//! | `examples/resume.rs` | a run resumed after a crash | [`observability`] |
//! | `examples/replay.rs` | a trace replayed offline, a step with another model | [`observability`] |
//! | `examples/trace_view.rs` | a trace as a timeline and a flowchart | [`observability`] |
//! | `examples/repair.rs` | JSON repair on the command line | [`figures`] |
//! | `examples/dataset.rs` | the stock agent over a dataset, resumable | [`evaluation`] |
//! | `examples/eval.rs` | the evaluation bench | [`evaluation`] |
//! | `examples/eval_bench.rs` | the bench at a million cases | [`figures`] |
//! | `examples/accuracy.rs` | the chat agent against the plain model, per category | [`figures`] |
//! | `examples/serve/` | an AG-UI server and its page | `web_server` |
//! | `examples/sse_load.rs` | the server's memory per open stream | [`figures`] |
//! | `examples/worker.rs` | a worker of the run queue | `scaling_out` |
//! | `examples/submit.rs` | runs submitted to the queue | `scaling_out` |
//! | `examples/fleet.rs` | an orchestrator asking agents through the queue | `scaling_out` |
//! | `examples/queue_bench.rs` | what the run queue costs | [`figures`] |
//! | `examples/load/` | client load: CPU, memory and wall time per run | [`figures`] |
//! | `examples/run_count.rs` | the engine benchmark's run, for instruction counts | [`figures`] |
//!
//! # Features
//!
//! The engine core (`Env`, `State`, `Machine`, `ScriptedModel`, action
//! repair, the memory store and cache, JSONL traces) compiles no C:
//! `cargo build --no-default-features`. A model string whose provider is
//! not compiled in fails with `ModelSpecError::Unavailable`, naming the
//! feature to turn on.
//!
//! | feature | what | brings in |
//! |---|---|---|
//! | `http` | the OpenAI-compatible and Anthropic providers | reqwest (rustls) |
//! | `sqlite` | `SqliteStore`, `SqliteSink`, `SqliteCache` | rusqlite (bundled SQLite, C) |
//! | `console` | `statewise::console`, printing a run as it streams | — |
//! | `dataset` | `statewise::dataset`, the resumable JSONL runner | indicatif |
//! | `eval` | `statewise::eval`, the evaluation bench | regex |
//! | `macros` | `#[statewise::tool]` | statewise-macros (syn, quote) |
//! | `local` (opt-in) | the in-process llama.cpp provider, `local:PATH.gguf` | llama-cpp-2 (C++, cmake, clang) |
//! | `tiktoken` (opt-in) | exact token counts for OpenAI's models when fitting requests | tiktoken-rs (pure Rust, tokenizer tables) |
//! | `mcp` (opt-in) | `tool::mcp`: an MCP server's tools in a toolbox, over stdio or streamable HTTP | rmcp (the official SDK) |
//! | `redis` (opt-in) | `RedisStore`, `RedisCache`, `FleetLimit`, and `statewise::worker`: the run queue and its workers | redis (pure Rust) |
//! | `postgres` (opt-in) | `PostgresStore` | tokio-postgres (pure Rust) |
//! | `prometheus` (opt-in) | `metric::serve_prometheus`: the engine's metrics at `/metrics` | metrics-exporter-prometheus |
//! | `otel` (opt-in) | `statewise::otel`: spans to any OTLP/HTTP backend, trace context across the run queue | opentelemetry, opentelemetry-otlp, tracing-opentelemetry |
//! | `server` (opt-in) | `statewise::server` and `statewise::agui`: the AG-UI web server (SSE, WebSocket, background and scheduled runs, API-key auth) | axum, tower-http, json-patch, croner |
//! | `jwt` (opt-in) | `server::Jwt`: bearer JWTs (HS256, RS256) for the server's auth | jsonwebtoken (pure-Rust crypto) |
//! | `memory-local` (opt-in) | `memory::MiniLm`: all-MiniLM-L6-v2 embeddings in process | candle, tokenizers (pure Rust) |
//! | `memory-ann` (opt-in) | `InMemoryStore::approximate_above`: an HNSW index per large namespace | hnsw_rs (pure Rust) |

pub mod concepts;
pub mod custom_state;
pub mod evaluation;
pub mod figures;
pub mod graphs;
pub mod guardrails;
pub mod memory;
pub mod models;
pub mod observability;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod scaling_out;
pub mod testing;
pub mod tools;
pub mod typed_outputs;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod web_server;
