//! # Datasets and evaluation
//!
//! The dataset runner ([`dataset`](crate::dataset)) runs a machine over a
//! JSONL file of items, `{"id": ..., "input": "...", "expected": ...}`,
//! with bounded concurrency, and writes one result line per item in input
//! order, so running the same command after a crash or `kill -9` resumes
//! without losing or repeating an item. The evaluation bench
//! ([`eval`](crate::eval)) scores each case inside that runner before its
//! line is written. A case carries its own evaluators (`equals`,
//! `contains`, `regex`, `number`, `json_schema`, `tool_calls`, latency,
//! cost and token ceilings, a model `judge` with a rubric), and one
//! without them is scored by `contains` on its `expected`:
//!
//! ```
//! use std::sync::Arc;
//! use statewise::dataset::Dataset;
//! use statewise::eval::Eval;
//! use statewise::model::ScriptedModel;
//! use statewise::tool::Toolbox;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let dir = std::env::temp_dir().join(format!("guide-eval-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let cases = dir.join("cases.jsonl");
//! std::fs::write(&cases, concat!(
//!     r#"{"id": "q1", "input": "What is 6 times 7?", "evaluators": [{"type": "regex", "pattern": "\\b42\\b"}]}"#, "\n",
//!     r#"{"id": "q2", "input": "What is the capital of France?", "expected": "Paris"}"#, "\n",
//! )).unwrap();
//!
//! // A scripted model that gets the second case wrong.
//! let model = Arc::new(
//!     ScriptedModel::new()
//!         .text(r#"{"final_answer": "6 times 7 is 42."}"#)
//!         .text(r#"{"final_answer": "It is Lyon."}"#),
//! );
//! let machine = statewise_states::agent(model, Toolbox::default());
//! let report = Eval::new()
//!     .run(Dataset::new(machine).concurrency(1), &cases, dir.join("results.jsonl"))
//!     .await
//!     .unwrap();
//! assert_eq!((report.total.cases, report.total.passed), (2, 1));
//! println!("{}", report.table());
//! # std::fs::remove_dir_all(&dir).ok();
//! # }
//! ```
//!
//! From the command line, with a baseline to compare against and gates for
//! CI:
//!
//! ```sh
//! cargo run --release --features local --example eval -- cases.jsonl --out results.jsonl \
//!     --report report.html --baseline last.jsonl --fail-under 0.8 --fail-on-regression
//! ```
//!
//! It prints a table by tag and evaluator, then the per-case changes
//! against the baseline (regressions first) and the score's change with a
//! 95% paired-bootstrap interval, and as its last line a JSON summary. The
//! exit code is 1 under `--fail-under` or, with `--fail-on-regression`,
//! when a case passed before and fails now. `--report` writes one
//! self-contained HTML page; `--repeat N` measures variance; `--queue
//! redis://…` runs the cases on a worker fleet and `--lane batch` on the
//! vendors' batch lane at half price (`examples/dataset.rs` has the same
//! switches for plain datasets).
//!
//! Reports are aggregated in one streaming pass over the results, so memory
//! stays flat however many cases there are ([`figures`](super::figures)
//! has a million).
