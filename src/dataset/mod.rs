//! Running a machine over a JSONL dataset: bounded concurrency, memory that
//! stays flat however large the dataset, and resumable after a crash.
//!
//! Input: one item per line, `{"id": ..., "input": "...", "expected": ...}`
//! (`id` defaults to the line number, `expected` is optional). Output: one
//! result per line, **in input order**, so that a rerun of the same command
//! resumes by counting the complete lines already written (checking each id
//! against the input) instead of remembering every finished id. A line cut
//! by a crash is dropped and its item run again; no item is duplicated or
//! lost. Each result is written with one `write` call as soon as it and all
//! items before it are done, so a killed process loses only its in-flight
//! items.
//!
//! In-order writing costs some parallelism when one item is much slower
//! than the others (at most `concurrency` items are in flight, the slow one
//! included); it buys flat memory and a resume that needs no index.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
#[cfg(feature = "redis")]
use std::time::Duration;
use std::time::Instant;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::env::{Env, ToolCall, Usage};
use crate::machine::event::EventKind;
use crate::machine::{Machine, MachineError};
use crate::state::Emit;

mod grade;
mod input;
mod summary;

pub use grade::{Grader, Score};
use input::{count_lines, resume, ItemReader};
pub use summary::Summary;

/// One dataset item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// The item's id: as given, else its 1-based line number.
    pub id: String,
    /// The question for the machine.
    pub input: String,
    /// What a correct answer holds, for the checker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<Value>,
    /// The conversation to start from, when the line's `input` is an env
    /// (a JSON object); `input` is then its last user message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Env>,
    /// Labels to group results by in reports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Anything else the dataset keeps about the item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// The item's own evaluators, as written (read by the [`Grader`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evaluators: Vec<Value>,
    /// Which run of the item this is (1-based) when the dataset runs each
    /// item more than once ([`Dataset::repeat`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<u32>,
}

/// One result line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemResult {
    /// The item's id.
    pub id: String,
    /// The answer, when the run finished.
    pub answer: Option<String>,
    /// The states the run went through.
    pub path: Vec<String>,
    /// Tokens and cost of the run.
    pub usage: Usage,
    /// Wall time of the run, in milliseconds.
    pub latency_ms: f64,
    /// The error's kind when the run failed (`model:http_500`, `max_steps`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether the checker accepted the answer (items with `expected` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed: Option<bool>,
    /// The answer as a typed object, for a machine with a typed output
    /// ([`Machine::output`](crate::Machine::output)); on a graded run the
    /// answer's text when there is no typed output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// The item's run number, when it runs more than once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<u32>,
    /// The item's tags, copied for reports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The question, kept when a [`Grader`] scores the run (for reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// The tool calls the run made, in order (runs in this process only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// The [`Grader`]'s scores.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scores: Vec<Score>,
}

impl ItemResult {
    /// A result for `item` before its run: no answer, no usage.
    fn start(item: &Item) -> Self {
        ItemResult {
            id: item.id.clone(),
            answer: None,
            path: Vec::new(),
            usage: Usage::default(),
            latency_ms: 0.0,
            error: None,
            passed: None,
            output: None,
            repeat: item.repeat,
            tags: item.tags.clone(),
            input: None,
            tool_calls: Vec::new(),
            scores: Vec::new(),
        }
    }
}

/// Decides whether an answer matches the item's `expected` value.
pub type Checker = Arc<dyn Fn(&Value, &str) -> bool + Send + Sync>;

/// The default checker: the answer contains the expected value (its text,
/// for a string; its JSON otherwise), ignoring case.
pub fn contains_expected() -> Checker {
    Arc::new(|expected, answer| {
        let want = match expected {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        answer.to_lowercase().contains(&want.to_lowercase())
    })
}

/// Why a dataset run could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatasetError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An input line is not an item.
    #[error("{path}:{line}: not a dataset item: {message}")]
    BadItem {
        /// The input file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// A line of the output file is not a result.
    #[error("{path}:{line}: not a result line ({message}); is it the output of this dataset run?")]
    NotResults {
        /// The output file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// The output file holds results of another dataset.
    #[error("{path}:{line}: holds the result of {found:?} where the input has {expected:?}; is it another dataset's output?")]
    Mismatch {
        /// The output file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The id the input has there.
        expected: String,
        /// The id the output has there.
        found: String,
    },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Runs a machine over a dataset.
///
/// ```no_run
/// # async fn demo(machine: statewise::Machine) -> Result<(), statewise::dataset::DatasetError> {
/// use statewise::dataset::Dataset;
///
/// let summary = Dataset::new(machine).concurrency(16).run("questions.jsonl", "results.jsonl").await?;
/// println!("{summary}");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Dataset {
    lane: Lane,
    concurrency: usize,
    checker: Checker,
    progress: Option<bool>,
    stream_tokens: bool,
    grader: Option<Arc<dyn Grader>>,
    repeat: u32,
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataset")
            .field("concurrency", &self.concurrency)
            .field("repeat", &self.repeat)
            .finish_non_exhaustive()
    }
}

/// Where a dataset run's items run.
#[derive(Clone)]
enum Lane {
    /// In this process.
    Local(Machine),
    /// On a fleet's workers, through a run queue.
    #[cfg(feature = "redis")]
    Queue {
        queue: crate::worker::RunQueue,
        machine: String,
        run_prefix: Option<String>,
        timeout: Duration,
    },
}

impl Dataset {
    /// Runs `machine` on every item, 8 at a time, checking answers with
    /// [`contains_expected`].
    pub fn new(machine: Machine) -> Self {
        Self::with_lane(Lane::Local(machine))
    }

    /// Feeds every item through `queue` to the workers running `machine`,
    /// keeping the same resumable output file: an item's run id is
    /// `<prefix>/<item id>` (the prefix derived from the output file's
    /// path unless [`run_prefix`](Self::run_prefix) sets it), so a rerun
    /// after a crash waits for the runs already queued instead of queueing
    /// them again. `concurrency` is then the items waiting at once; the
    /// workers' own concurrency bounds the runs.
    #[cfg(feature = "redis")]
    pub fn on_queue(queue: crate::worker::RunQueue, machine: impl Into<String>) -> Self {
        Self::with_lane(Lane::Queue {
            queue,
            machine: machine.into(),
            run_prefix: None,
            timeout: Duration::from_secs(24 * 3600),
        })
    }

    /// The run id prefix of a queued dataset run's items.
    #[cfg(feature = "redis")]
    pub fn run_prefix(mut self, prefix: impl Into<String>) -> Self {
        if let Lane::Queue { run_prefix, .. } = &mut self.lane {
            *run_prefix = Some(prefix.into());
        }
        self
    }

    /// How long a queued item may take before it is written as failed
    /// (`queue_timeout`); 24 hours by default.
    #[cfg(feature = "redis")]
    pub fn queue_timeout(mut self, limit: Duration) -> Self {
        if let Lane::Queue { timeout, .. } = &mut self.lane {
            *timeout = limit;
        }
        self
    }

    fn with_lane(lane: Lane) -> Self {
        Dataset {
            lane,
            concurrency: 8,
            checker: contains_expected(),
            progress: None,
            stream_tokens: false,
            grader: None,
            repeat: 1,
        }
    }

    /// Scores every run with `grader` before its line is written; its
    /// scores replace the checker's verdict.
    pub fn grader(mut self, grader: Arc<dyn Grader>) -> Self {
        self.grader = Some(grader);
        self
    }

    /// Runs every item `n` times in a row (results carry `repeat`), to see
    /// how much answers vary.
    pub fn repeat(mut self, n: u32) -> Self {
        self.repeat = n.max(1);
        self
    }

    /// Items in flight at once, at most. For concurrency that adapts to
    /// the provider (AIMD: grow on success, halve on 429 or rising latency),
    /// wrap the model in [`Limit`](crate::layer::Limit) with `adaptive`;
    /// this bound is then its ceiling.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// The answer checker.
    pub fn checker(mut self, checker: Checker) -> Self {
        self.checker = checker;
        self
    }

    /// Shows a progress bar (rate, ETA, tokens, cost) on stderr; by
    /// default only when stdout is a terminal.
    pub fn progress(mut self, on: bool) -> Self {
        self.progress = Some(on);
        self
    }

    /// Prints every token and answer piece to stdout as it streams (off by
    /// default).
    pub fn stream_tokens(mut self, on: bool) -> Self {
        self.stream_tokens = on;
        self
    }

    /// Runs every item of `input` not yet in `output`, appending results,
    /// and summarizes the whole output.
    pub async fn run(
        &self,
        input: impl AsRef<Path>,
        output: impl AsRef<Path>,
    ) -> Result<Summary, DatasetError> {
        let (input, output) = (input.as_ref(), output.as_ref());
        let mut items = ItemReader::open(input)?.repeat(self.repeat);
        let mut summary = Summary::default();
        let mut out = resume(&mut items, output, &mut summary)?;
        summary.resumed = summary.total;

        let show = self
            .progress
            .unwrap_or_else(|| std::io::stdout().is_terminal());
        let bar = if show {
            let total = count_lines(input)? * u64::from(self.repeat);
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} {per_sec} ETA {eta} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_position(summary.total);
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };

        let prefix = run_prefix(output);
        let prefix = prefix.as_str();
        let mut results = futures::stream::iter(items.by_ref())
            .map(|item| async move {
                match item {
                    Ok(item) => Ok(self.run_item(item, prefix).await),
                    Err(e) => Err(e),
                }
            })
            .buffered(self.concurrency);
        while let Some(result) = results.next().await {
            let result = result?;
            let mut line = serde_json::to_string(&result).unwrap_or_default();
            line.push('\n');
            out.write_all(line.as_bytes()).map_err(io(output))?;
            summary.add(&result);
            bar.inc(1);
            bar.set_message(format!(
                "{} tokens ${:.4}",
                summary.usage.total_tokens(),
                summary.usage.cost
            ));
        }
        bar.finish_and_clear();
        Ok(summary)
    }

    async fn run_item(&self, item: Item, prefix: &str) -> ItemResult {
        let mut result = self.run_lane(&item, prefix).await;
        if let Some(grader) = &self.grader {
            result.input = Some(item.input.clone());
            result.scores = grader.grade(&item, &result).await;
            if !result.scores.is_empty() {
                result.passed = Some(result.scores.iter().all(|s| s.passed));
            }
            // A graded line's `output` is what was scored: the typed
            // output, else the answer's text.
            if result.output.is_none() {
                result.output = result.answer.clone().map(Value::String);
            }
        }
        result
    }

    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    async fn run_lane(&self, item: &Item, prefix: &str) -> ItemResult {
        match &self.lane {
            Lane::Local(machine) => self.run_here(machine, item).await,
            #[cfg(feature = "redis")]
            Lane::Queue {
                queue,
                machine,
                run_prefix,
                timeout,
            } => {
                let prefix = run_prefix.as_deref().unwrap_or(prefix);
                self.run_queued(queue, machine, prefix, *timeout, item)
                    .await
            }
        }
    }

    /// Submits the item (a no-op if a run before a crash did) and waits for
    /// its outcome.
    #[cfg(feature = "redis")]
    async fn run_queued(
        &self,
        queue: &crate::worker::RunQueue,
        machine: &str,
        prefix: &str,
        timeout: Duration,
        item: &Item,
    ) -> ItemResult {
        use crate::worker::{OutcomeStatus, QueueError};
        let started = Instant::now();
        let run_id = match item.repeat {
            Some(k) => format!("{prefix}/{}#{k}", item.id),
            None => format!("{prefix}/{}", item.id),
        };
        let mut result = ItemResult::start(item);
        let env = item
            .env
            .clone()
            .unwrap_or_else(|| Env::from_user(&item.input));
        let outcome = match queue.submit(machine, &run_id, &env).await {
            Ok(_) => queue.wait(&run_id, timeout).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(outcome) => {
                result.path = outcome.path;
                result.usage = outcome.usage;
                match outcome.status {
                    OutcomeStatus::Finished => {
                        result.passed = item
                            .expected
                            .as_ref()
                            .map(|e| (self.checker)(e, outcome.answer.as_deref().unwrap_or("")));
                        result.answer = outcome.answer;
                    }
                    OutcomeStatus::Interrupted => {
                        result.error = Some("waiting_for_reply".to_owned());
                    }
                    _ => {
                        result.error = Some(outcome.code.unwrap_or_else(|| "failed".to_owned()));
                        result.passed = item.expected.as_ref().map(|_| false);
                    }
                }
            }
            Err(QueueError::Timeout { .. }) => result.error = Some("queue_timeout".to_owned()),
            Err(e) => {
                tracing::warn!(run_id, error = %e, "queueing a dataset item failed");
                result.error = Some("queue".to_owned());
            }
        }
        result.latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        result
    }

    async fn run_here(&self, machine: &Machine, item: &Item) -> ItemResult {
        let started = Instant::now();
        let env = item
            .env
            .clone()
            .unwrap_or_else(|| Env::from_user(&item.input));
        let mut events = machine.stream(env);
        let mut result = ItemResult {
            error: Some(MachineError::Cut.code()),
            ..ItemResult::start(item)
        };
        while let Some(event) = events.next().await {
            match event.kind {
                EventKind::Emitted(Emit::Token(t) | Emit::AnswerToken(t)) if self.stream_tokens => {
                    print!("{t}")
                }
                EventKind::Emitted(Emit::ToolCallStarted(call)) => result.tool_calls.push(call),
                EventKind::Finished(out) => {
                    result.passed = item
                        .expected
                        .as_ref()
                        .map(|e| (self.checker)(e, out.answer.as_deref().unwrap_or("")));
                    // Checked by the answer state already.
                    result.output = machine
                        .typed_output()
                        .and(out.answer.as_deref())
                        .and_then(|a| serde_json::from_str(a).ok());
                    result.answer = out.answer;
                    result.path = out.path;
                    result.usage = out.env.usage;
                    result.error = None;
                }
                EventKind::Interrupted(out) => {
                    // Paused for a person: not an answer, and not a failure
                    // of the agent; the run resumes under its id.
                    result.error = Some("waiting_for_reply".to_owned());
                    result.path = out.path;
                    result.usage = out.env.usage;
                }
                EventKind::Failed(f) => {
                    result.error = Some(f.error.code());
                    result.path = f.path;
                    result.usage = f.env.usage;
                    result.passed = item.expected.as_ref().map(|_| false);
                }
                _ => {}
            }
        }
        result.latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        result
    }
}

/// The run id prefix of a queued dataset run writing to `output`: stable across
/// reruns of one command, different for another output file.
fn run_prefix(output: &Path) -> String {
    use sha2::{Digest, Sha256};
    let path = std::fs::canonicalize(output).unwrap_or_else(|_| output.to_path_buf());
    let hash = Sha256::digest(path.to_string_lossy().as_bytes());
    let hex: String = hash.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("dataset-{hex}")
}
