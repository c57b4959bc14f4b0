//! # Concepts: env, states, machine, events
//!
//! A run is one [`Env`](crate::Env): the conversation, the action the
//! model chose, tool results, the answer, usage and a scratch space. A
//! [`State`](crate::State) holds no data of its own: it reads the env,
//! changes it, and streams what it does as it does it
//! ([`Emit`](crate::Emit)s: tokens, tool calls, the answer). Then its
//! `transition`, a plain function of the env, names the next state. A
//! [`Machine`](crate::Machine) is the states by name and an entry; it runs
//! them one after another, and everything they emit reaches you as
//! [`Event`](crate::Event)s, tagged with the step and the state.
//!
//! Two states and no model:
//!
//! ```
//! use futures::StreamExt;
//! use statewise::{Emit, EmitStream, Env, EventKind, Machine, Next, State};
//!
//! /// Writes a greeting, then hands over to `sign`.
//! struct Greet;
//!
//! impl State for Greet {
//!     fn name(&self) -> &str {
//!         "greet"
//!     }
//!     fn run<'a>(&'a self, env: &'a mut Env) -> EmitStream<'a> {
//!         Box::pin(statewise::try_stream! {
//!             let who = env.messages.last().map(|m| m.content.clone()).unwrap_or_default();
//!             for word in ["Hello, ", &who, ". "] {
//!                 yield Emit::AnswerToken(word.to_owned());
//!             }
//!             env.answer = Some(format!("Hello, {who}. "));
//!         })
//!     }
//!     fn transition(&self, _env: &Env) -> Next {
//!         Next::to("sign")
//!     }
//! }
//!
//! /// Signs the answer and ends the run.
//! struct Sign;
//!
//! impl State for Sign {
//!     fn name(&self) -> &str {
//!         "sign"
//!     }
//!     fn run<'a>(&'a self, env: &'a mut Env) -> EmitStream<'a> {
//!         Box::pin(statewise::try_stream! {
//!             yield Emit::AnswerToken("Bye.".to_owned());
//!             env.answer.get_or_insert_with(String::new).push_str("Bye.");
//!         })
//!     }
//!     fn transition(&self, _env: &Env) -> Next {
//!         Next::End
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let machine = Machine::new("greet").with_state(Greet).with_state(Sign);
//!
//! // Streamed: each token as it is written, with the state that wrote it.
//! let mut events = machine.stream(Env::from_user("Ada"));
//! let mut written = String::new();
//! while let Some(event) = events.next().await {
//!     if let EventKind::Emitted(Emit::AnswerToken(t)) = &event.kind {
//!         written.push_str(t);
//!     }
//! }
//! assert_eq!(written, "Hello, Ada. Bye.");
//!
//! // Or just the outcome: the answer, the path, the env as it ended.
//! let out = machine.run(Env::from_user("Ada")).await.unwrap();
//! assert_eq!(out.path, ["greet", "sign"]);
//! assert_eq!(out.answer.as_deref(), Some("Hello, Ada. Bye."));
//! # }
//! ```
//!
//! The stock states are states like these, written against the same public
//! API: `Reasoning` asks the model for a JSON action (repaired and parsed),
//! the tool-running state calls the tools, `Answer` writes the answer.
//! `statewise_states::agent` wires them:
//!
//! ```
//! use std::sync::Arc;
//! use statewise::model::ScriptedModel;
//! use statewise::tool::{ToolRegistry, Toolbox};
//! use statewise::Env;
//! use statewise_states::tools::Calculator;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let model = Arc::new(
//!     ScriptedModel::new()
//!         .text(r#"{"name": "calculator", "arguments": {"expression": "17 * 23"}}"#)
//!         .text(r#"{"final_answer": "17 * 23 = 391"}"#),
//! );
//! let agent = statewise_states::agent(model, Toolbox::new(ToolRegistry::new().with(Calculator)));
//! let out = agent.run(Env::from_user("What is 17 * 23?")).await.unwrap();
//! assert_eq!(out.path, ["reasoning", "tools", "reasoning", "answer"]);
//! assert_eq!(out.env.observations[0].content, serde_json::json!(391));
//! # }
//! ```
