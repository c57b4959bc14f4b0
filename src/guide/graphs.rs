//! # Graphs: forks and pauses for a person
//!
//! A transition can do more than name the next state. `Next::fork` runs
//! branches concurrently, each from the env with its own
//! [`input`](crate::Env::input), and goes on at the join state with every
//! branch's outcome in [`env.branches`](crate::Env::branches), in branch
//! order:
//!
//! ```
//! use serde_json::json;
//! use statewise::state::FnState;
//! use statewise::{Env, Fork, Machine, Next};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let machine = Machine::new("plan")
//!     .with_state(FnState::new("plan", |_| Ok(()), |_| {
//!         // Decided at run time: one branch per city.
//!         let fork = ["Lyon", "Oslo"]
//!             .iter()
//!             .fold(Fork::join_at("write"), |f, city| f.branch("look_up", json!(city)));
//!         Next::fork(fork)
//!     }))
//!     .with_state(FnState::new(
//!         "look_up",
//!         |env| {
//!             let city = env.input.as_ref().and_then(|v| v.as_str()).unwrap_or("?").to_owned();
//!             env.answer = Some(format!("{city}: sunny"));
//!             Ok(())
//!         },
//!         |_| Next::End,
//!     ))
//!     .with_state(FnState::new(
//!         "write",
//!         |env| {
//!             let parts: Vec<String> = env.branches.iter().filter_map(|b| b.answer.clone()).collect();
//!             env.answer = Some(parts.join("; "));
//!             Ok(())
//!         },
//!         |_| Next::End,
//!     ));
//! let out = machine.run(Env::new()).await.unwrap();
//! assert_eq!(out.answer.as_deref(), Some("Lyon: sunny; Oslo: sunny"));
//! # }
//! ```
//!
//! `Next::interrupt` pauses the run for a person: the run ends as
//! interrupted with the question, a checkpoint is saved in the machine's
//! store, and [`Machine::resume_with`](crate::Machine::resume_with) goes on
//! once the answer is in ([`Env::response`](crate::Env::response)), from a
//! process started later if need be (the store can be SQLite, Redis or
//! PostgreSQL):
//!
//! ```
//! use serde_json::json;
//! use statewise::machine::finish;
//! use statewise::state::FnState;
//! use statewise::store::MemoryStore;
//! use statewise::{Env, Interrupt, Machine, Next};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let machine = Machine::new("draft")
//!     .with_state(FnState::new(
//!         "draft",
//!         |env| {
//!             env.answer = Some("draft 1".into());
//!             Ok(())
//!         },
//!         |_| Next::interrupt(Interrupt::new("review", "Publish this draft?"), Next::to("publish")),
//!     ))
//!     .with_state(FnState::new(
//!         "publish",
//!         |env| {
//!             let verdict = env.response("review").cloned().unwrap_or_default();
//!             env.answer = Some(format!("published: {verdict}"));
//!             Ok(())
//!         },
//!         |_| Next::End,
//!     ))
//!     .with_store(MemoryStore::new());
//!
//! let paused = machine.run_as("run-1", Env::new()).await.unwrap();
//! assert_eq!(paused.interrupt().map(|i| i.id.as_str()), Some("review"));
//!
//! let done = finish(machine.resume_with("run-1", json!("yes")).await.unwrap()).await.unwrap();
//! assert_eq!(done.answer.as_deref(), Some("published: \"yes\""));
//! assert_eq!(done.path, ["draft", "publish"]);
//! # }
//! ```
//!
//! A whole machine can also be one state of another
//! ([`SubMachine`](crate::SubMachine)); `examples/fork.rs` runs a stock
//! agent in every branch.
