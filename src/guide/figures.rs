//! # Figures
//!
//! What was measured, how, on which machine, and what is still short.
//! Every figure names the command that prints it, so it can be measured again.
//!
//! ## The engine and the client
//!
//! `cargo bench --bench engine` and `cargo bench --bench repair` (criterion), on the 2-core CI machine:
//!
//! | what | target | measured |
//! |---|---|---|
//! | one transition (`Reasoning::transition`) | ≤ 2 µs (≤ 100 ns since the graph) | 25–35 ns |
//! | a scripted ReAct run (reasoning → tools → reasoning → answer) | within 10% of the run before the graph | 55–80 µs; the code before forks, sub-machines and pauses measures 48–73 µs on the same machine the same hour (41 µs on a quieter day). Counted by callgrind, which does not depend on the machine's load: 325 k instructions per run against 314 k before, +3.7% |
//! | `parse_action` on a 200-byte broken action | ≤ 5 µs | 2.4 µs |
//! | `repair` on a 10 KB broken document | — | 178 µs (54 MiB/s) |
//! | local model, tokens/s in-process vs llama.cpp's server (SmolLM2-135M Q4_1, 2 threads) | ≥ 0.95× | 108.4 vs 107.1 tok/s = 1.01× |
//! | the same with the action grammar on | — | 103.2 tok/s (0.95× of unconstrained) |
//!
//! The local-model figures come from
//! `scripts/setup-tests && cargo run --release --features local --example local_bench`.
//!
//! Client-side load, `cargo run --release --example load` (`load p2b` and so
//! on for one figure). A ReAct run is two streamed model calls and one tool
//! call, each run its own tokio task, against a mock OpenAI-compatible server
//! (hyper) in another process on the same 2 cores; P2 is measured over
//! HTTP/1.1 (one connection per call in flight: local servers such as
//! llama.cpp or vLLM) and HTTP/2 (calls multiplexed on one connection: how
//! reqwest reaches OpenAI and Anthropic). The dataset runs are scripted.
//!
//! | benchmark | target | HTTP/1.1 | HTTP/2 | |
//! |---|---|---|---|---|
//! | P1 one transition | ≤ 2 µs | 22 ns | | met |
//! | P2a client CPU per ReAct run, 1,000 concurrent | ≤ 0.5 ms | 0.23–0.28 ms | 0.24–0.28 ms | met |
//! | P2b peak RSS per run, 10,000 runs in flight (5 s per call) | ≤ 20 KB | 43.3–43.6 KB | 28.9–30.0 KB | **not met** |
//! | P2c wall time, 1,000 concurrent runs at 1 s per call, vs ideal 2 s, warm | ≤ 1.05× | 1.043–1.050× | 1.048–1.069× | **not met reliably** |
//! | P2c the same, opening the connections too | ≤ 1.05× | 1.062–1.074× | 1.063–1.100× | **not met** |
//! | P3 time to first token added by the framework (median of 300) | ≤ 1 ms | 0.035 ms | | met |
//! | scale: 100,000 / 1,000,000 scripted items through the dataset runner | flat memory | 92–109 k items/s; peak RSS 4.7–5.3 MB at either size | | met |
//! | AG-UI server: memory per open SSE stream, 1,000 / 2,000 clients streaming a 40-word answer at 50 ms a word (`sse_load`) | — (printed) | 52.6–53.0 KiB; every stream whole; wall 2.7–3.8 s for 2 s streams | | |
//!
//! P2a, P2b and P2c were measured again on 2026-12-05 on the current code
//! (reqwest 0.13, context fitting, spans and metrics, the one-pass action
//! reader): eight runs of `load p2a`, three of `p2b` and of `p2c`. P2b grew
//! from 37–41 / 22–25 KB since the last figures (about 6 KB per run in flight
//! on both transports); the heap breakdown below is from before that and has
//! not been redone. The mock now answers the window lookup (`/props`,
//! `/v1/models`) at once with 404, as a server without them does: it had
//! answered after the call latency, which put two seconds on every cold
//! client's first call.
//!
//! The server's 53 KiB per open stream is not broken down yet. Within it are
//! the run's machine and env, the run's event log, and hyper's
//! per-connection buffers. The log holds each event's JSON, and it is kept
//! after the run ends, for late and reconnecting clients (`keep_ended`,
//! 10 minutes by default).
//!
//! What the heap profile (heaptrack on `load p2b-child h1|h2`) shows per run
//! in flight, and why P2b is not met:
//!
//! - Over HTTP/1.1 each call holds a connection, and hyper's per-connection
//!   state is about 25 KB of it: its dispatch channel (a tokio mpsc block of
//!   32 envelopes, 8.8 KB), an 8 KB write buffer and an 8 KB read buffer.
//!   reqwest does not let a client size them, so 20 KB is out of reach on
//!   HTTP/1.1 with reqwest whatever the framework does.
//! - Over HTTP/2 the transport costs about 9 KB (reqwest's pending request
//!   future 3.6 KB, its copy of the request 1.7 KB, h2's stream state); ours is
//!   the rest: the machine's driver future (2.8 KB), the provider's stream
//!   (2.1 KB), the request body (about 2 KB: mostly the system prompt with the
//!   tool list), Reasoning's stream (1.3 KB), and the env snapshot a state
//!   restarts from.
//! - Already taken out (from 50 KB on HTTP/1.1): the prompt and the action
//!   schema were kept for the whole call (now serialized once and dropped),
//!   the driver carried trace and checkpoint records inline (now boxed, only
//!   when a tracer or store is set: 4.4 → 2.8 KB), the scratch map's first
//!   tree node cost 1 KB twice (now a sorted vector).
//! - Next: the driver becomes a small decision core and a thin loop (the
//!   engine issue), which should take most of its 2.8 KB.
//!
//! P2c is the client's and the mock's CPU on the same two cores: the 1,000
//! calls of each step arrive together, and the time to handle them is on the
//! critical path. Building request bodies without a JSON tree and building
//! the system prompt and action schema once per state brought P2a from
//! 0.28–0.39 ms to 0.20–0.30 ms and P2c warm to 1.04–1.07× (most runs
//! within 1.05×, not all); opening 1,000 connections at once costs another
//! 0.01–0.06×.
//!
//! ## Mixing models
//!
//! `cargo run --release --example cascade_bench` answers 1,000 arithmetic
//! questions with two mock models of known accuracy, at gpt-4o-mini's and
//! gpt-4o's prices. The small one's wrong answers show the usual tells (prose
//! instead of JSON, a value of the wrong type, low token probabilities),
//! except 1.5% that are confidently wrong. The checks are the library's own:
//!
//! |         | accuracy | cost     | cost vs large |
//! |---------|---------:|---------:|--------------:|
//! | small   | 73.6%    | $0.0203  | 6%            |
//! | large   | 94.7%    | $0.3320  | 100%          |
//! | cascade | 94.3%    | $0.1176  | 35%           |
//!
//! 29% of the questions were escalated (155 for low confidence, 138 for
//! missing the schema). The cascade stays within half a point of the large
//! model at about a third of its cost. Its last line is the figures as JSON;
//! it exits 1 if the cascade falls more than a point behind or costs more than
//! 40%. A test checks that the in-process model escalates to a real llama.cpp
//! server when its confidence is below the floor, reading log-probabilities
//! from both.
//!
//! ## Memory
//!
//! The stores (`cargo run --release --features
//! memory-local,memory-ann,postgres --example memory_bench -- 10000 100000`,
//! 384-dimension vectors from `HashEmbedder` so the figures are the stores'
//! own, ten namespaces with a search covering one, sentences drawn from a
//! 40-word vocabulary, so every query matches most memories: a worst case for
//! keyword search; PostgreSQL 16 with pgvector 0.6.2 from the `pgserver`
//! wheel on the same machine; this 2-core machine, 2026-12-06):
//!
//! | store | memories | insert | keyword p50 / p95 | vector p50 / p95 | hybrid p50 / p95 |
//! |---|---|---|---|---|---|
//! | in memory | 10,000 | 114,000/s | 2.6 / 2.8 ms | 0.8 / 1.0 ms | 3.6 / 3.9 ms |
//! | SQLite | 10,000 | 19,000/s | 18 / 22 ms | 9.4 / 13 ms | 25 / 35 ms |
//! | in memory | 100,000 | 137,000/s | 19 / 22 ms | 11 / 13 ms | 30 / 31 ms |
//! | in memory, HNSW | 100,000 | same | 19 / 21 ms | 5.5 / 7.2 ms | 27 / 30 ms |
//! | SQLite | 100,000 | 23,000/s | 116 / 137 ms | 76 / 88 ms | 190 / 205 ms |
//! | PostgreSQL | 100,000 | 265/s | 153 / 184 ms | 127 / 183 ms | 233 / 313 ms |
//!
//! The HNSW index (feature `memory-ann`, `InMemoryStore::approximate_above`)
//! of a 10,000-memory namespace builds in 6.6 s on 2 threads, and its
//! recall@10 against exact search is 1.000 (ties counted) at 1,000 and at
//! 10,000. PostgreSQL writes one row per statement (pipelined), so a batch
//! cut short leaves whole memories; its HNSW index serves a search whose
//! scope is most of the table, while a narrow namespace is ranked exactly,
//! because pgvector 0.6 filters the index's nearest by the scope afterwards
//! and could return fewer than asked (the store then ranks the scope
//! exactly). SQLite ranks vectors exactly in Rust: `sqlite-vec` is not used,
//! as loading it needs unsafe code and this crate forbids it. MiniLM embeds
//! about 200–230 sentences a second in process on 2 threads (batches of 32).
//!
//! On `tests/data/retrieval_set.json` (250 questions about 50 invented
//! people, each answered by one fact, in other words; CC0) with MiniLM:
//!
//! | search | recall@1 | recall@3 |
//! |---|---|---|
//! | keyword | 47 / 250 | 146 / 250 |
//! | vector | 213 / 250 | 243 / 250 |
//! | hybrid | 217 / 250 | 249 / 250 |
//!
//! Reciprocal rank fusion, tried first, fell below vector search alone on
//! this set (167 and 237): a keyword match on a name alone ranks that
//! person's facts by their length, and rank fusion gives that order as much
//! say as the vector ranking's.
//!
//! `cargo run --release --features memory-local --example memory -- --db
//! mem.db add --ns alice "Alice's cat is called Miso."`, then `search --ns
//! alice --k 3 "QUERY"` (JSON lines, best first) or `ask --ns alice
//! "QUESTION"` (an answer from the best three, streamed by the embedded chat
//! model, naming them). On the 40 facts and questions in other words of
//! `tests/data/memory_facts.json` (CC0), recall@3 with MiniLM is 40/40 by
//! vector, 40/40 hybrid and 19/40 by keyword.
//!
//! ## Evaluation at scale
//!
//! `cargo run --release --example
//! eval_bench -- --cases 1000000` runs 1,000,000 cases of about 100 tokens
//! each (100M prompt tokens) through the stock agent on a scripted model,
//! scores and reports them (this machine, 2 cores, 2026-12-06):
//!
//! | cases | time | cases/s | tokens/s | peak memory |
//! |---|---|---|---|---|
//! | 100,000 | 2.1 s | 48,500 | 5.9 M | 9 MB |
//! | 1,000,000 | 22.4 s | 44,700 | 5.5 M | 10 MB |
//!
//! (tokens as the scripted model reports them, 122 a case; the scripted model
//! gets every tenth case wrong on purpose, and the score comes out at 90.0%.)
//! Killed with SIGKILL after 8 s (147,859 cases written) and rerun with
//! `--resume`, it went on from there: 1,000,000 lines, each id once.
//!
//! ## JSON repair
//!
//! `statewise::action::repair` passes 203 of the 212 supported cases (95.8%)
//! of json_repair's own test suite (CI prints the figure and the cases it
//! leaves out; `REPAIR_CONFORMANCE_VERBOSE=1 cargo test --test it repair_conformance -- --nocapture`
//! lists the failures). The cases are reference data beside the checkout
//! (`../shared/conformance/`, or the file `JSON_REPAIR_CASES` names), not
//! copied into the project. A second test mangles eleven actions in the 26
//! ways small models do (a lost closer or opening brace, single or curly
//! quotes, an unescaped quotation, a fence, tags or prose around it, the
//! action written as a string, ...): all 221 read as meant, and the answer
//! text streamed while they arrive is never taken back. Try it: `echo "{name: 'x', args: {a: 1,}" | cargo run --example repair`.
//!
//! Fuzzing (stable toolchain; `cargo install cargo-fuzz` first):
//!
//! ```sh
//! cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run repair -- -max_len=2048 -timeout=2 -max_total_time=600
//! ```
