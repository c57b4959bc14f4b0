//! # Scaling out (feature `redis`)
//!
//! When one process is not enough, runs go to Redis: a
//! [`RunQueue`](crate::worker::RunQueue) on Redis Streams, and
//! [`Worker`](crate::worker::Worker)s in as many processes and machines as
//! you like. A worker claims a run, runs it with checkpoints in Redis,
//! records its outcome once and acknowledges it; a submitter queues a run
//! once per run id and waits for its outcome or follows its events.
//!
//! ```
//! use std::time::Duration;
//! use std::sync::Arc;
//! use statewise::model::ScriptedModel;
//! use statewise::tool::Toolbox;
//! use statewise::worker::{OutcomeStatus, RunQueue, Worker};
//! use statewise::Env;
//! use tokio_util::sync::CancellationToken;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! # // A redis-server of this example's own on a free port, unless REDIS_URL names one.
//! # let mut own = None;
//! # let url = std::env::var("REDIS_URL").unwrap_or_else(|_| {
//! #     let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
//! #     let child = std::process::Command::new("redis-server")
//! #         .args(["--port", &port.to_string(), "--save", "", "--appendonly", "no"])
//! #         .stdout(std::process::Stdio::null())
//! #         .spawn()
//! #         .expect("redis-server (scripts/setup-tests installs it)");
//! #     own = Some(child);
//! #     while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
//! #         std::thread::sleep(Duration::from_millis(20));
//! #     }
//! #     format!("redis://127.0.0.1:{port}")
//! # });
//! let model = Arc::new(ScriptedModel::new().text(r#"{"final_answer": "A table for two at eight."}"#));
//! let worker = Worker::new(&url)
//!     .unwrap()
//!     .machine("agent", statewise_states::agent(model, Toolbox::default()));
//! let shutdown = CancellationToken::new();
//! let running = tokio::spawn(worker.run(shutdown.clone()));
//!
//! // Anywhere else: the submitter.
//! let queue = RunQueue::open(&url).unwrap();
//! queue.submit("agent", "booking-1", &Env::from_user("Book a table for two")).await.unwrap();
//! let outcome = queue.wait("booking-1", Duration::from_secs(30)).await.unwrap();
//! assert_eq!(outcome.status, OutcomeStatus::Finished);
//! assert_eq!(outcome.answer.as_deref(), Some("A table for two at eight."));
//!
//! shutdown.cancel();
//! running.await.unwrap().unwrap();
//! # if let Some(mut child) = own { child.kill().ok(); child.wait().ok(); }
//! # }
//! ```
//!
//! `examples/worker.rs` and `examples/submit.rs` are the two sides as
//! programs:
//!
//! ```sh
//! cargo run --release --features redis --example worker -- --redis redis://127.0.0.1:6379
//! cargo run --release --features redis --example submit -- --redis redis://127.0.0.1:6379 "Book a table for two"
//! ```
//!
//! ## Nothing lost, nothing done twice
//!
//! A worker that dies leaves its runs to be taken over after their lease
//! (`XAUTOCLAIM`), and they resume from their last checkpoint. A worker
//! that was only paused finds its checkpoint writes refused: a fencing
//! token is checked in the same Lua script as the write. Tool calls that
//! completed before a crash are answered from the run's journal, and each
//! tool call gets an idempotency key (`run_id/step/call_id`) for effects
//! outside. What the journal leaves open, and the key closes for a tool
//! that honours it: an effect done in the instant before its journal entry
//! is written, and the effect of a worker so slow that its lease lapsed. A
//! run delivered too often goes to the dead-letter stream with its last
//! error.
//!
//! A fork's branches go on the queue as child runs of their own; the
//! forking run parks at the fork without holding a slot, and the last
//! child to record its outcome queues it again in the same Lua script, so
//! a crash cannot lose the wake-up. `examples/fleet.rs` is an orchestrator
//! that asks two agents through the queue and merges their answers.
//!
//! ## Sharing the rest
//!
//! `RedisCache` shares replies and coalesces identical requests in flight;
//! `FleetLimit` shares a provider's concurrency and rate limits, adapting
//! on 429s for the whole fleet; `dataset --queue redis://…` feeds a dataset
//! through the queue. Web servers share a fleet too:
//! `Server::with_store(RedisStore)`, `with_threads(RedisThreads)` and
//! `with_logs(RedisRunLogs)` let any replica answer, replay, cancel and
//! resume any run. `PostgresStore` keeps checkpoints in PostgreSQL instead.
//!
//! What is not on the fleet yet: a sub-machine entered from the main line
//! (it runs in its parent's slot), budgets shared across a fork's remote
//! branches, and a person's pause inside a remote branch.
