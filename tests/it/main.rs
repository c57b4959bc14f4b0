//! The integration tests, one binary (as ripgrep does): each test file
//! used to link reqwest, rusqlite and tokio into a binary of its own, which
//! cost minutes of linking on a 2-core machine. `tests/spans.rs` keeps its
//! own process because `tracing`'s callsite interest is process-wide.

#[cfg(any(feature = "redis", feature = "postgres"))]
mod services;
mod support;

mod agent_loop;
#[cfg(feature = "server")]
mod agui;
mod anthropic_provider;
mod batch_lane;
mod batch_mock;
mod batch_vendors;
mod cache;
mod context_fit;
mod dataset;
mod eval;
mod examples_doc;
mod fault_injection;
mod fixtures;
#[cfg(feature = "redis")]
mod fleet_limit;
mod fork;
mod graph;
mod guardrails;
mod interrupt;
mod llama_server;
#[cfg(feature = "local")]
mod local_model;
#[cfg(feature = "mcp")]
mod mcp;
mod memory;
mod models;
mod native_answer;
mod openai_provider;
#[cfg(feature = "otel")]
mod otlp_receiver;
mod reliability;
mod repair_cli;
mod repair_conformance;
mod repair_mutations;
mod repair_regressions;
mod replay;
mod routing;
mod small_agent;
mod stock_states;
mod store;
mod tool_context;
mod tool_policy;
mod trace;
mod typed_output;
#[cfg(feature = "redis")]
mod worker;
