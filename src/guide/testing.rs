//! # Testing states without a network
//!
//! A transition is a plain function of the env: build the env, call it.
//!
//! ```
//! use std::sync::Arc;
//! use statewise::model::ScriptedModel;
//! use statewise::tool::{ToolRegistry, Toolbox};
//! use statewise::{Action, Env, Next, State, ToolCall};
//! use statewise_states::Reasoning;
//!
//! let reasoning = Reasoning::new(Arc::new(ScriptedModel::new()), Toolbox::new(ToolRegistry::new()));
//! let call = ToolCall::new("c1", "calculator", serde_json::json!({"expression": "1+1"}));
//! let env = Env::from_user("1+1?").with_action(Action::ToolCalls(vec![call]));
//! assert_eq!(reasoning.transition(&env), Next::to("tools"));
//! let env = Env::from_user("1+1?").with_action(Action::FinalAnswer("2".into()));
//! assert_eq!(reasoning.transition(&env), Next::to("answer"));
//! ```
//!
//! A state's work is tested with a [`ScriptedModel`](crate::model::ScriptedModel):
//! it answers from a script and keeps every request it was sent, so a test
//! checks both what the state did and what it asked.
//! [`Machine::step`](crate::Machine::step) runs one state and returns where
//! the run would go next:
//!
//! ```
//! use std::sync::Arc;
//! use statewise::model::ScriptedModel;
//! use statewise::tool::{ToolRegistry, Toolbox};
//! use statewise::{Action, Env, Next};
//! use statewise_states::tools::Calculator;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let model = Arc::new(
//!     ScriptedModel::new().text(r#"{"name": "calculator", "arguments": {"expression": "6*7"}}"#),
//! );
//! let agent = statewise_states::agent(model.clone(), Toolbox::new(ToolRegistry::new().with(Calculator)));
//! let step = agent.step("reasoning", Env::from_user("What is 6*7?")).await.unwrap();
//! assert_eq!(step.next, Next::to("tools"));
//! assert!(matches!(&step.env.action, Some(Action::ToolCalls(calls)) if calls[0].name == "calculator"));
//! // What the model was asked: the tool list is in the system prompt.
//! let asked = &model.calls()[0];
//! assert!(asked.messages[0].content.contains("calculator"));
//! model.assert_complete();
//! # }
//! ```
//!
//! Whole steps can be kept as JSON fixtures (input env, scripted replies,
//! the expected next state and env) and checked with
//! [`StepFixture::check`](crate::testkit::StepFixture::check); a recorded
//! trace turns into fixtures and replays offline
//! ([`replay`](crate::replay)).
