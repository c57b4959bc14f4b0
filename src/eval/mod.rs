//! The evaluation bench: cases with evaluators, scored on the dataset
//! runner, read back into reports and compared between two versions of an
//! agent.
//!
//! The key design decision: the bench is a [`Grader`] plugged into the
//! [`Dataset`] runner, not a runner of its own. Every case is scored inside
//! the runner before its one result line is written, so evaluation gets
//! what the runner already does (bounded concurrency, a progress bar,
//! resuming after `kill -9` with no case run or scored twice, the Redis
//! queue for a fleet, the vendors' batch lane) and reports are read back
//! from the results file in one streaming pass, in flat memory however many
//! cases there are.
//!
//! A case is a dataset line with its own evaluators:
//!
//! ```json
//! {"id": "q1", "input": "What is 6 times 7?", "tags": ["arithmetic"],
//!  "evaluators": [{"type": "regex", "pattern": "\\b42\\b"}]}
//! ```
//!
//! ```no_run
//! # async fn demo(machine: statewise::Machine) -> Result<(), statewise::eval::EvalError> {
//! use statewise::dataset::Dataset;
//! use statewise::eval::Eval;
//!
//! let report = Eval::new().run(Dataset::new(machine), "cases.jsonl", "results.jsonl").await?;
//! print!("{}", report.table());
//! println!("{}", report.summary());
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::dataset::{Dataset, DatasetError, Grader, Item, ItemResult, Score};

mod calls;
mod check;
mod compare;
mod distribution;
mod html;
mod judge;
mod report;

pub use calls::{CallOrder, ExpectedCall};
pub use check::Check;
pub use compare::{Change, Comparison};
pub use distribution::Distribution;
pub use judge::Judge;
pub use report::{Consistency, Report, Tally};

/// Scores one run of a case; implement it for checks the stock
/// [`Check`]s do not cover and add it with [`Eval::evaluator`].
pub trait Evaluator: Send + Sync {
    /// The score of `run`, the run of `case`.
    fn evaluate<'a>(&'a self, case: &'a Item, run: &'a ItemResult) -> BoxFuture<'a, Score>;
}

/// Why an evaluation could not run or be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// Running the dataset failed (a file, a bad case line, another
    /// dataset's results).
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// A results file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A line of a results file is not a result.
    #[error("{path}:{line}: not a result line ({message}); is it the output of an eval run?")]
    NotResults {
        /// The file.
        path: std::path::PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        message: String,
    },
}

/// The bench's evaluators: every case's own, the ones given here for every
/// case, and a judge model for `judge` evaluators.
#[derive(Clone, Default)]
pub struct Eval {
    checks: Vec<Check>,
    evaluators: Vec<Arc<dyn Evaluator>>,
    judge: Option<Judge>,
    vars: BTreeMap<String, String>,
    live_vars: Option<LiveVars>,
}

/// Placeholder values computed as each case is scored ([`Eval::live_vars`]).
type LiveVars = Arc<dyn Fn() -> Vec<(String, String)> + Send + Sync>;

impl std::fmt::Debug for Eval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Eval")
            .field("checks", &self.checks)
            .field("evaluators", &self.evaluators.len())
            .field("judge", &self.judge)
            .field("vars", &self.vars)
            .field("live_vars", &self.live_vars.is_some())
            .finish()
    }
}

impl Eval {
    /// A bench with only the cases' own evaluators. A case without any is
    /// scored by `contains` on its `expected` value, or, without one, by
    /// whether its run finished.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies `check` to every case, besides its own evaluators.
    pub fn check(mut self, check: Check) -> Self {
        self.checks.push(check);
        self
    }

    /// Applies a custom evaluator to every case.
    pub fn evaluator(mut self, evaluator: Arc<dyn Evaluator>) -> Self {
        self.evaluators.push(evaluator);
        self
    }

    /// The judge for `judge` evaluators.
    pub fn judge(mut self, judge: Judge) -> Self {
        self.judge = Some(judge);
        self
    }

    /// Fills `{name}` with `value` in every case's `expected` and
    /// evaluators before scoring: an answer that depends on when or where
    /// the bench runs (`"expected": "{year}"`). Other braces are left as
    /// they are, so regular expressions keep their `{3}`.
    pub fn var(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// Like [`Eval::var`], with values `vars` computes as each case is
    /// scored, so a long run checks `{hour}` against the clock of its
    /// case, not of its start. Fixed values given with [`Eval::var`] win.
    pub fn live_vars(
        mut self,
        vars: impl Fn() -> Vec<(String, String)> + Send + Sync + 'static,
    ) -> Self {
        self.live_vars = Some(Arc::new(vars));
        self
    }

    /// Runs `dataset` over the cases in `input` (JSONL, or YAML for a
    /// small hand-written set), scoring each before its line goes to
    /// `output`, and reports on the whole output. Rerun after a crash, it
    /// runs only the cases not yet written.
    pub async fn run(
        self,
        dataset: Dataset,
        input: impl AsRef<Path>,
        output: impl AsRef<Path>,
    ) -> Result<Report, EvalError> {
        let output = output.as_ref();
        dataset.grader(Arc::new(self)).run(input, output).await?;
        Report::read(output)
    }

    /// Every score of `run` of `case`.
    pub async fn scores(&self, case: &Item, run: &ItemResult) -> Vec<Score> {
        if self.vars.is_empty() && self.live_vars.is_none() {
            return self.scores_filled(case, run).await;
        }
        let mut vars: BTreeMap<String, String> = match &self.live_vars {
            Some(live) => live().into_iter().collect(),
            None => BTreeMap::new(),
        };
        vars.extend(self.vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut filled = case.clone();
        filled.expected = filled.expected.map(|v| fill(v, &vars));
        filled.evaluators = filled
            .evaluators
            .into_iter()
            .map(|v| fill(v, &vars))
            .collect();
        self.scores_filled(&filled, run).await
    }

    async fn scores_filled(&self, case: &Item, run: &ItemResult) -> Vec<Score> {
        let mut scores = Vec::new();
        if let Some(code) = &run.error {
            scores.push(Score::new(
                "finished",
                false,
                format!("the run failed: {code}"),
            ));
        }
        let mut checks: Vec<Check> = Vec::new();
        for spec in &case.evaluators {
            match serde_json::from_value::<Check>(spec.clone()) {
                Ok(check) => checks.push(check),
                Err(e) => scores.push(Score::new(
                    spec.get("type")
                        .and_then(|t| t.as_str())
                        .unwrap_or("evaluator"),
                    false,
                    format!("invalid evaluator {spec}: {e}"),
                )),
            }
        }
        checks.extend(self.checks.iter().cloned());
        if checks.is_empty() && self.evaluators.is_empty() && case.evaluators.is_empty() {
            match case.expected {
                Some(_) => checks.push(Check::Contains {
                    value: None,
                    ignore_case: true,
                }),
                None if run.error.is_none() => {
                    scores.push(Score::new("finished", true, "the run finished"))
                }
                None => {}
            }
        }
        for check in &checks {
            let score = match (check, &self.judge) {
                (Check::Judge { rubric }, Some(judge)) => judge.grade(rubric, case, run).await,
                _ => check.score(case, run),
            };
            scores.push(score);
        }
        for evaluator in &self.evaluators {
            scores.push(evaluator.evaluate(case, run).await);
        }
        scores
    }
}

/// `value` with `{name}` replaced by its value in every string in it.
fn fill(value: serde_json::Value, vars: &BTreeMap<String, String>) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(mut text) => {
            for (name, with) in vars {
                let braced = format!("{{{name}}}");
                if text.contains(&braced) {
                    text = text.replace(&braced, with);
                }
            }
            Value::String(text)
        }
        Value::Array(list) => Value::Array(list.into_iter().map(|v| fill(v, vars)).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, fill(v, vars))).collect())
        }
        other => other,
    }
}

impl Grader for Eval {
    fn grade<'a>(&'a self, item: &'a Item, result: &'a ItemResult) -> BoxFuture<'a, Vec<Score>> {
        self.scores(item, result).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn vars_fill_expected_values_and_leave_other_braces() {
        let case: Item = serde_json::from_value(json!({
            "id": "y", "input": "What year is it?", "expected": ["{year}"],
            "evaluators": [{"type": "contains"}, {"type": "regex", "pattern": "\\b\\d{4}\\b"}]
        }))
        .unwrap();
        let run: ItemResult = serde_json::from_value(
            json!({"id": "y", "answer": "It is 2031.", "path": [], "usage": {}, "latency_ms": 1.0}),
        )
        .unwrap();
        let passed = |eval: Eval| {
            let (case, run) = (case.clone(), run.clone());
            async move {
                let scores = eval.scores(&case, &run).await;
                scores.iter().map(|s| s.passed).collect::<Vec<_>>()
            }
        };
        assert_eq!(passed(Eval::new().var("year", "2031")).await, [true, true]);
        assert_eq!(passed(Eval::new().var("year", "2030")).await, [false, true]);
        assert_eq!(
            passed(Eval::new()).await,
            [false, true],
            "unfilled, {{year}} is literal"
        );
    }
}
