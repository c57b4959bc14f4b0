//! # Models and layers
//!
//! Every provider implements [`ChatModel`](crate::model::ChatModel): it
//! streams [`Chunk`](crate::model::Chunk)s for a
//! [`ChatRequest`](crate::model::ChatRequest). A model string picks one
//! (`local:PATH.gguf`, `openai:gpt-4o-mini`, `anthropic:...`, any
//! OpenAI-compatible server with `openai:MODEL@URL`), and layers wrap any
//! model the way tower's do: retry, time limits, a circuit breaker, rate
//! limits, fallback, prices, a response cache, the vendors' batch lane.
//!
//! Several models of different sizes can act as one. A
//! [`Cascade`](crate::layer::Cascade) asks the cheapest first and keeps its
//! reply only when its checks pass; otherwise the next is asked. The route
//! is part of the reply, so a run reports it and pays for every model it
//! asked:
//!
//! ```
//! use statewise::layer::{Cascade, ParsesAsAction, Tier};
//! use statewise::model::{ChatModel, ChatRequest, Price, Reply, ScriptedModel, Verdict};
//! use statewise::{Message, Usage};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), statewise::model::ModelError> {
//! let used = Usage { prompt_tokens: 1_000, completion_tokens: 100, ..Usage::default() };
//! let small = ScriptedModel::new().named("small").reply(Reply::text("Hmm, maybe 41?").with_usage(used));
//! let large = ScriptedModel::new()
//!     .named("large")
//!     .reply(Reply::text(r#"{"final_answer": "42"}"#).with_usage(used));
//! let model = Cascade::new(vec![
//!     Tier::new("small", small).price(Price::per_million(0.15, 0.60)),
//!     Tier::new("large", large).price(Price::per_million(2.50, 10.00)),
//! ])?
//! .check(ParsesAsAction);
//!
//! let reply = model.complete(ChatRequest::new(vec![Message::user("6 * 7?")])).await?;
//! assert_eq!(reply.text, r#"{"final_answer": "42"}"#);
//! let verdicts: Vec<_> = reply.route.iter().map(|s| (s.tier.as_str(), s.verdict)).collect();
//! assert_eq!(verdicts, [("small", Verdict::Rejected), ("large", Verdict::Accepted)]);
//! assert!((reply.usage.cost - (0.00021 + 0.0035)).abs() < 1e-9);
//! # Ok(())
//! # }
//! ```
//!
//! A [`Router`](crate::layer::Router) picks one model per request instead,
//! by [`Rules`](crate::layer::Rules) (a tier a state asks for, the
//! prompt's size, tools, a schema), a [`Classify`](crate::layer::Classify)
//! call to a cheap model, or a [`Policy`](crate::layer::Policy) of your
//! own; with a [`Budget`](crate::layer::Budget) it moves to cheaper tiers
//! as a run nears its cap. `cargo run --release --example cascade_bench`
//! measures what a cascade saves.
