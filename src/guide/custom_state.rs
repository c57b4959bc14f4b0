//! # A state of your own
//!
//! A custom state calls models the way the stock ones do:
//! [`ReplyStream::call`](crate::model::ReplyStream::call) streams the reply
//! as [`Streamed`](crate::model::Streamed) items (tokens, tool-call drafts,
//! route steps, the recorded call) that become events with `Emit::from`,
//! and opens the call's tracing span. [`Reply::charge`](crate::model::Reply::charge)
//! adds the reply's usage to the run's.
//!
//! Here a `Summarize` state writes a one-line summary after the stock
//! agent has answered, streaming it as it is written:
//!
//! ```
//! use std::sync::Arc;
//! use futures::StreamExt;
//! use statewise::model::{ChatRequest, ReplyStream, ScriptedModel, SharedModel, Streamed};
//! use statewise::{Emit, EmitStream, Env, Message, Next, State};
//!
//! struct Summarize {
//!     model: SharedModel,
//! }
//!
//! impl State for Summarize {
//!     fn name(&self) -> &str {
//!         "summarize"
//!     }
//!
//!     fn run<'a>(&'a self, env: &'a mut Env) -> EmitStream<'a> {
//!         Box::pin(statewise::try_stream! {
//!             let answer = env.answer.clone().unwrap_or_default();
//!             let request = ChatRequest::new(vec![
//!                 Message::system("Summarize in one line."),
//!                 Message::user(answer),
//!             ]);
//!             let mut call = ReplyStream::call(&*self.model, request, &env.settings);
//!             while let Some(item) = call.next().await {
//!                 yield Emit::from(item?);
//!             }
//!             let reply = call.finish();
//!             reply.charge(env);
//!             env.scratch.set(&statewise::ScratchKey::<String>::new("summary"), &reply.text)?;
//!         })
//!     }
//!
//!     fn transition(&self, _env: &Env) -> Next {
//!         Next::End
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let model = Arc::new(ScriptedModel::new().text("Paris is the capital."));
//! let machine = statewise::Machine::new("summarize").with_state(Summarize { model });
//! let env = Env::from_user("?").with_answer("The capital of France is Paris.");
//! let mut events = machine.stream(env);
//! let mut tokens = Vec::new();
//! while let Some(event) = events.next().await {
//!     if let statewise::EventKind::Emitted(Emit::Token(t)) = event.kind {
//!         tokens.push(t);
//!     }
//! }
//! assert_eq!(tokens.concat(), "Paris is the capital.");
//! # }
//! ```
//!
//! To add it to the stock agent, register it and point a stock state at it
//! (`Reasoning::on_answer("critic")`, as `examples/custom_state.rs` does
//! with a state that sends the model back to work when a tool call failed).
//! Whatever hook a stock state uses is public, so your states get it too.
