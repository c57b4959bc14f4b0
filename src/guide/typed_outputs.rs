//! # Typed outputs
//!
//! A run can end in a value of your type instead of a string.
//! [`Machine::output`](crate::Machine::output) names the type; the state
//! that writes the answer asks the model for its JSON Schema (derived by
//! `schemars`), repairs the reply, checks it against the schema and
//! deserializes it. [`RunOutput::output`](crate::RunOutput::output) gives
//! it back:
//!
//! ```
//! use std::sync::Arc;
//! use schemars::JsonSchema;
//! use serde::Deserialize;
//! use statewise::model::ScriptedModel;
//! use statewise::tool::Toolbox;
//! use statewise::Env;
//!
//! #[derive(Debug, Deserialize, JsonSchema)]
//! struct Contact {
//!     name: String,
//!     email: Option<String>,
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Reasoning decides to answer; Answer writes the object.
//! let model = Arc::new(
//!     ScriptedModel::new()
//!         .text(r#"{"final_answer": "Ada Lovelace, ada@example.com"}"#)
//!         .text(r#"{"name": "Ada Lovelace", "email": "ada@example.com"}"#),
//! );
//! let machine = statewise_states::agent(model.clone(), Toolbox::default()).output::<Contact>();
//! let out = machine.run(Env::from_user("Ada Lovelace <ada@example.com>")).await.unwrap();
//! let contact: Contact = out.output().unwrap();
//! assert_eq!(contact.email.as_deref(), Some("ada@example.com"));
//! // Without a provider constraint the schema went into the prompt.
//! assert!(model.calls()[1].messages[0].content.contains("email"));
//! # }
//! ```
//!
//! Where the provider has a constraint of its own the schema goes there
//! instead: OpenAI's strict `json_schema` response format, the in-process
//! model's grammar, llama.cpp's server's `json_schema`, a forced tool for
//! Anthropic ([`Capabilities::json_schema`](crate::model::Capabilities)).
//!
//! ## Validators and retries
//!
//! A schema cannot say everything. [`Output::validate`](crate::output::Output::validate)
//! adds a check in Rust; its error is told to the model word for word,
//! with every schema problem, and the model is asked again, up to
//! [`Output::retries`](crate::output::Output::retries) times (default 2).
//! After that the run fails with
//! [`OutputError::Invalid`](crate::output::OutputError::Invalid), which
//! keeps the problems and the last raw reply: nothing is lost.
//!
//! ```
//! # use std::sync::Arc;
//! # use schemars::JsonSchema;
//! # use serde::Deserialize;
//! # use statewise::model::ScriptedModel;
//! # use statewise::tool::Toolbox;
//! # use statewise::Env;
//! # #[derive(Debug, Deserialize, JsonSchema)]
//! # struct Contact { name: String, email: Option<String> }
//! use statewise::output::Output;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let model = Arc::new(
//!     ScriptedModel::new()
//!         .text(r#"{"final_answer": "Ada"}"#)
//!         .text(r#"{"name": "Ada", "email": "not an address"}"#)
//!         .text(r#"{"name": "Ada", "email": null}"#),
//! );
//! let output = Output::of::<Contact>().validate(|c: &Contact| match &c.email {
//!     Some(e) if !e.contains('@') => Err(format!("email {e:?} has no @: give an address or null")),
//!     _ => Ok(()),
//! });
//! let out = statewise_states::agent(model.clone(), Toolbox::default())
//!     .with_output(output)
//!     .run(Env::from_user("Ada"))
//!     .await
//!     .unwrap();
//! assert_eq!(out.output::<Contact>().unwrap().email, None);
//! // The second request told the model what was wrong.
//! let correction = model.calls()[2].messages.last().unwrap().content.clone();
//! assert!(correction.contains("has no @"));
//! # }
//! ```
//!
//! A typed output works after tool calls in the same run, in the dataset
//! runner (`--schema FILE` writes one object per line), in traces and in
//! replays. While the object is written, the answer state emits
//! [`Emit::PartialOutput`](crate::Emit::PartialOutput) with the repaired
//! prefix, so a form can fill in live (AG-UI clients get state deltas).
//!
//! `examples/extract.rs` prints one contact as JSON from the embedded
//! model, or from a provider when `OPENAI_*` / `ANTHROPIC_*` are set:
//!
//! ```sh
//! cargo run --release --features local --example extract -- "Contact: Ada Lovelace, ada@example.com"
//! # {"name":"Ada Lovelace","email":"ada@example.com","phone":null,"company":null}
//! ```
