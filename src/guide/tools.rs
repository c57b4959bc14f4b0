//! # Tools
//!
//! A tool from a plain async function (feature `macros`, on by default):
//! the doc comment's first paragraph is what the model reads, the
//! parameters are the arguments and their doc comments describe them.
//!
//! ```
//! use statewise::tool::{DynTool, ToolContext, ToolRegistry};
//!
//! /// Converts a temperature from Celsius to Fahrenheit.
//! #[statewise::tool]
//! async fn to_fahrenheit(
//!     /// Degrees Celsius.
//!     celsius: f64,
//! ) -> f64 {
//!     celsius * 9.0 / 5.0 + 32.0
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let tools = ToolRegistry::new().with(ToFahrenheit);
//! let spec = ToFahrenheit.spec();
//! assert_eq!(spec.description, "Converts a temperature from Celsius to Fahrenheit.");
//! assert_eq!(spec.parameters["properties"]["celsius"]["description"], "Degrees Celsius.");
//! let out = tools
//!     .get("to_fahrenheit")
//!     .unwrap()
//!     .call_json(serde_json::json!({"celsius": 100}), ToolContext::default())
//!     .await
//!     .unwrap();
//! assert_eq!(out, serde_json::json!(212.0));
//! # }
//! ```
//!
//! A `ToolContext` parameter receives the call's context (ids, an
//! idempotency key that survives retries and resumes, the deadline, a
//! cancellation signal); `Result<T, E>` makes a tool that can fail, and the
//! error reaches the model as an observation it can react to. A tool made
//! at run time is a closure ([`tool_fn`](crate::tool::tool_fn)), and any
//! type can implement [`Tool`](crate::tool::Tool) itself.
//!
//! A [`Toolbox`](crate::tool::Toolbox) is what a state may call: it checks
//! the model's arguments against the schema first (a wrong argument comes
//! back naming the field), and can ask a person before a call
//! (`require_approval`) or hold a tool to a [`ToolPolicy`](crate::tool::ToolPolicy).
//!
//! ```
//! use statewise::tool::{ToolRegistry, Toolbox};
//! use statewise_states::tools::Calculator;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let toolbox = Toolbox::new(ToolRegistry::new().with(Calculator));
//! let call = statewise::ToolCall::new("c1", "calculator", serde_json::json!({"expression": 5}));
//! let seen = toolbox.observe(&call, Default::default()).await;
//! assert!(seen.is_error);
//! assert!(seen.render().contains("expression"), "{}", seen.render());
//! # }
//! ```
//!
//! `Blocking<T>` keeps a synchronous tool off the async threads. With
//! feature `mcp`, `McpServer::stdio(command)` or `McpServer::http(url)`
//! turns an MCP server's tools into a registry (`cargo run --features mcp
//! --example mcp`, after `scripts/setup-tests`, lists the reference
//! server's tools and calls `echo`). `examples/approve.rs` asks a person
//! before a call; kill it at the question and run it again, and it resumes
//! from its checkpoint.
//!
//! While the model writes its action, the run streams it: the answer's
//! text as `Emit::AnswerToken`, and each tool call as
//! `Emit::ToolCallDraft` (its name, then its arguments' text), for native
//! tool calls and JSON actions alike.
