//! # Guardrails and permissions
//!
//! Guardrails are values a machine or a toolbox holds, called at fixed
//! points of every run, so no state, stock or your own, can route around
//! them. [`Guardrails`](crate::guard::Guardrails) holds three kinds:
//!
//! - **input** guardrails judge the run's input while the first state
//!   already works; its events are held until every check passes, and when
//!   one trips the model call in flight is cancelled before any answer
//!   token reaches a consumer (`Guardrails::input_first` judges before any
//!   model call instead);
//! - **output** guardrails pass, rewrite or block answer text before it
//!   leaves, while it streams: each says how much of the text so far it can
//!   judge ([`OutputGuardrail::settled`](crate::guard::OutputGuardrail::settled));
//! - **tool** guardrails allow a call, reject it with a reason the model
//!   reads, or stop the run, and afterwards keep, mask or stop on its result.
//!
//! An answer's email address and phone number masked as it streams:
//!
//! ```
//! use std::sync::Arc;
//! use statewise::guard::{Guardrails, PersonalData};
//! use statewise::model::ScriptedModel;
//! use statewise::tool::Toolbox;
//! use statewise::Env;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let model = Arc::new(ScriptedModel::new().text(
//!     r#"{"final_answer": "Write to ann.lee@example.org or call +44 20 7946 0958."}"#,
//! ));
//! let machine = statewise_states::agent(model, Toolbox::default())
//!     .with_guardrails(Guardrails::new().output(PersonalData::redacting()));
//! let out = machine.run(Env::from_user("Who do I contact?")).await.unwrap();
//! assert_eq!(out.answer.as_deref(), Some("Write to [email] or call [phone]."));
//! # }
//! ```
//!
//! The stock guardrails are [`PersonalData`](crate::guard::PersonalData)
//! (email addresses, phone numbers, Luhn-checked card numbers, IBANs,
//! API-key shapes), [`InputSize`](crate::guard::InputSize),
//! [`DenyList`](crate::guard::DenyList), [`Domains`](crate::guard::Domains)
//! (an allow-list for the addresses a tool may reach) and
//! [`ResultsAsData`](crate::guard::ResultsAsData), which refuses a call a
//! tool result asked for and the user did not: the usual prompt injection.
//! [`FnGuardrail`](crate::guard::FnGuardrail) makes one from a function;
//! `examples/guard.rs` has one judged by the embedded model. A trip is a
//! [`Trip`](crate::guard::Trip): a `guardrail_tripped` custom event, the
//! `statewise_guardrail_trips_total` metric and, when it stops the run,
//! `MachineError::Guardrail` with the checkpoint kept.
//!
//! ## Permissions
//!
//! A run acts for a [`Principal`](crate::guard::Principal), an id and
//! scopes, kept with its checkpoint. A tool declares the scopes it needs
//! ([`Tool::scopes`](crate::tool::Tool::scopes) or
//! `Toolbox::require_scopes`); the model is shown only the tools its
//! principal holds, and a call of any other fails with a reason the model
//! reads:
//!
//! ```
//! use std::sync::Arc;
//! use statewise::guard::Principal;
//! use statewise::model::ScriptedModel;
//! use statewise::tool::{tool_fn, ToolRegistry, Toolbox};
//! use statewise::Env;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! struct Email {
//!     /// The recipient.
//!     to: String,
//! }
//!
//! let tools = || {
//!     let send = tool_fn("send_email", "Sends an email.", |e: Email, _ctx| async move {
//!         Ok::<_, std::convert::Infallible>(format!("sent to {}", e.to))
//!     });
//!     Toolbox::new(ToolRegistry::new().with(send)).require_scopes("send_email", ["email:send"])
//! };
//! let script = || {
//!     Arc::new(
//!         ScriptedModel::new()
//!             .text(r#"{"tool_calls": [{"name": "send_email", "arguments": {"to": "ann@example.org"}}]}"#)
//!             .text(r#"{"final_answer": "Done."}"#),
//!     )
//! };
//!
//! let model = script();
//! let bob = Env::from_user("Email Ann").with_principal(Principal::new("bob"));
//! let out = statewise_states::agent(model.clone(), tools()).run(bob).await.unwrap();
//! assert!(!model.calls()[0].messages[0].content.contains("send_email"), "not offered to Bob");
//! assert!(out.env.observations[0].content["error"].as_str().unwrap().contains("not allowed"));
//!
//! let model = script();
//! let alice = Env::from_user("Email Ann")
//!     .with_principal(Principal::new("alice").with_scopes(["email:send"]));
//! let out = statewise_states::agent(model, tools()).run(alice).await.unwrap();
//! assert_eq!(out.env.observations[0].content, "sent to ann@example.org");
//! # }
//! ```
//!
//! Budgets per principal are a [`Limit`](crate::layer::Limit) each
//! ([`PerPrincipal`](crate::layer::PerPrincipal)): requests, tokens and cost
//! per minute and per day. The web server authenticates callers and runs
//! each run as its principal (the `web_server` chapter, feature `server`).
//!
//! ## Threat model
//!
//! The engine trusts its own configuration, the store it is given and the
//! code of its tools and states. It does not trust request bodies, a
//! token's claims before their signature and expiry are checked, the
//! model's output (tool names and arguments are checked against the
//! toolbox, the principal's scopes and the tool guardrails) or tool
//! results, which may carry instructions planted by whoever wrote the page
//! or file. It does not defend against a harmful *answer* no output
//! guardrail recognises (guardrails are checks, not proofs), an instruction
//! planted in a tool result that uses no tool and no copied address, a
//! compromised store, or denial of service beyond the per-principal
//! limits.
