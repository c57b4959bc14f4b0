//! # The web server (feature `server`)
//!
//! [`Server`](crate::server::Server) serves any machine over
//! [AG-UI](https://docs.ag-ui.com), so any AG-UI client works with it:
//! `POST /agent` takes a `RunAgentInput` and answers with a
//! `text/event-stream` of AG-UI events. Each state is a step, the answer
//! is a text message, thinking is a reasoning message, tool calls stream
//! as the model writes them, the env is a state snapshot followed by JSON
//! Patch deltas, and a failure is `RUN_ERROR` with the error's code.
//!
//! ```
//! use std::sync::Arc;
//! use statewise::guard::Principal;
//! use statewise::model::ScriptedModel;
//! use statewise::server::{ApiKeys, Server};
//! use statewise::tool::Toolbox;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let server = Server::new(|_input| {
//!     // A machine per request; a real one holds a model built once.
//!     let model = Arc::new(ScriptedModel::new().text(r#"{"final_answer": "Hello from statewise."}"#));
//!     statewise_states::agent(model, Toolbox::default())
//! })
//! .with_auth(ApiKeys::new().key("secret-key", Principal::new("alice")));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let url = format!("http://{}", listener.local_addr().unwrap());
//! tokio::spawn(server.serve(listener));
//!
//! let input = serde_json::json!({
//!     "threadId": "t1", "runId": "r1",
//!     "messages": [{"id": "m1", "role": "user", "content": "Hi"}],
//! });
//! let http = reqwest::Client::new();
//! let denied = http.post(format!("{url}/agent")).json(&input).send().await.unwrap();
//! assert_eq!(denied.status(), 401);
//! let events = http
//!     .post(format!("{url}/agent"))
//!     .bearer_auth("secret-key")
//!     .json(&input)
//!     .send()
//!     .await
//!     .unwrap()
//!     .text()
//!     .await
//!     .unwrap();
//! assert!(events.contains("TEXT_MESSAGE_CONTENT") && events.contains("RUN_FINISHED"), "{events}");
//! # }
//! ```
//!
//! `cargo run --features server --example serve` serves a demo page (plain
//! HTML and JS, no CDN) at `http://127.0.0.1:3000`: answers stream in, tool
//! calls show their arguments and results, and a call that needs approval
//! waits for Approve or Reject.
//!
//! ## Pauses and the client's own tools
//!
//! A pause for a person ends the run with the `interrupt` outcome; the next
//! request's `resume` entries continue it from its checkpoint. The client's
//! own tools (`tools` in the input) are offered to the model through
//! `Toolbox::with_client_tools(input.client_tools())`; when the model calls
//! one, the run ends with the pending call ids and the client's tool
//! messages resume it.
//!
//! ## Runs that outlive a request
//!
//! `POST /runs` starts a background run; `GET /runs/{id}/events` replays its
//! events from the start or from `Last-Event-ID` and follows the rest;
//! `GET /runs/{id}` gives its status and `DELETE /runs/{id}` cancels it.
//! `GET /ws` carries the same over a WebSocket. `Server::schedule` starts
//! runs from cron expressions. With a Redis queue
//! (`Server::with_queue`), background runs go to the fleet's workers (see
//! the `scaling_out` chapter, feature `redis`).
//!
//! ## Who asks
//!
//! `Server::with_auth` takes [`ApiKeys`](crate::server::ApiKeys) (each key
//! a principal, kept as a SHA-256 digest and compared in constant time) or,
//! with feature `jwt`, `Jwt` (HS256 or RS256). Without valid credentials
//! every route answers 401, and a run answers only the principal that
//! started it (403 otherwise). Each principal has a request limit
//! (`Server::rate_limit`, 429), bodies are capped (`Server::max_body`, 413),
//! unknown fields are refused (400), and other origins are allowed only as
//! `Server::allow_origins` lists. A 5xx answer carries only the error's
//! code. [`guardrails`](super::guardrails) has the threat model.
//!
//! The tests drive the server with the official `@ag-ui/client`, a headless
//! Chromium on the demo page, and 1,000 concurrent SSE clients.
