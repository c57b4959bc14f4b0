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
//!
//! ## Providers and the context window
//!
//! A model string picks the provider: `local:PATH.gguf` (in-process, feature
//! `local`), `openai:gpt-4o-mini`,
//! `openai:MODEL@http://127.0.0.1:8080/v1` (any OpenAI-compatible server:
//! llama.cpp, vLLM, Ollama, ...), `anthropic:claude-sonnet-4-5`. Keys come from
//! `OPENAI_API_KEY` / `ANTHROPIC_API_KEY`, base URLs from `OPENAI_BASE_URL` /
//! `ANTHROPIC_BASE_URL` ([`spec`](crate::spec)). A `ModelRegistry` names configured models so each state
//! can use its own (a large one for Reasoning, a small one for Answer), and a
//! `PriceTable` you set turns token counts into cost.
//!
//! Every request the stock states send is fitted to the model's context
//! window first ([`fit`](crate::fit)). The window comes from the local model's
//! context, from the server's `/props` or `/v1/models` (llama.cpp, vLLM), from
//! a table of OpenAI and Anthropic models, or from `.context_window(n)` on the
//! builder. Tokens are counted by the local model's tokenizer, by tiktoken for
//! OpenAI's models (feature `tiktoken`), else by a deliberately pessimistic
//! estimate. The stock policy, `Trim`, cuts long tool results down to their
//! beginning and end, then leaves out the oldest turns. It keeps the system
//! prompt, the last user turn and the latest tool round, and never splits a
//! call from its result. The event stream says what was left out
//! (`Emit::ContextFitted`). A provider's overflow error (llama.cpp's
//! `exceed_context_size_error`, OpenAI's `context_length_exceeded`, Anthropic's
//! "prompt is too long") becomes `ModelError::ContextOverflow`, and the state
//! sends the request once more, fitted tighter to the window the error
//! reports.
//!
//! ```sh
//! OPENAI_API_KEY=sk-... cargo run --example openai -- "What is 17 * 23?" --verbose
//! ```
//!
//! ## Reliability
//!
//! Network models built from model strings come wrapped in retry (full
//! jitter, Retry-After), time limits (first token, idle gap, whole call) and a
//! circuit breaker per model; `statewise::layer` has these and `Limit`
//! (concurrency, requests and tokens per minute, AIMD) and `Fallback` to
//! compose your own. A state whose reply is cut mid-stream restarts from the
//! env it started with, so no text is duplicated. Machines take a deadline, a
//! per-state timeout and token or cost budgets, and a state can route its
//! errors (`Reasoning::on_model_error("answer")` with `Answer::apology`).
//! `cargo test fault -- --nocapture` runs 1,000 agent runs, 100 at a time,
//! against local servers that return 429s and 500s, cut and stall streams and
//! send malformed chunks, and prints what happened.
//!
//! ## The vendors' batch lane
//!
//! `model.via_batch(vendor, ledger, config)` sends requests through
//! OpenAI's `/v1/batches` or Anthropic's `/v1/messages/batches` at half the
//! price, with results within their 24-hour window; the ledger (SQLite or
//! Redis) keeps which batch each request went out in, so a process killed
//! and started again waits for the batches in flight instead of paying for
//! them twice. The dataset runner and the evaluation bench use it with
//! `--lane batch` ([`evaluation`](super::evaluation)).
