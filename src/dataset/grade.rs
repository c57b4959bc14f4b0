//! Grading a run before its result line is written: the hook the evaluation
//! bench ([`crate::eval`]) plugs into the dataset runner.
//!
//! A result is graded inside the runner, before its one `write`, so a run
//! killed at any moment has either a whole graded line for a case or none:
//! a rerun grades every case exactly once.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Item, ItemResult};

/// One evaluator's verdict on one run: pass or fail, with a number or a
/// label when the evaluator measures one, and the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// The evaluator's name (`regex`, `judge`, ...).
    pub name: String,
    /// Whether the run passed this evaluator.
    pub passed: bool,
    /// What the evaluator measured: a number (the latency, the parsed
    /// answer) or a label (the judge's grade).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// Why it passed or failed, in words.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

impl Score {
    /// A pass/fail verdict with its reason.
    pub fn new(name: impl Into<String>, passed: bool, reason: impl Into<String>) -> Self {
        Score {
            name: name.into(),
            passed,
            value: None,
            reason: reason.into(),
        }
    }

    /// The verdict with the number or label it measured.
    pub fn with_value(mut self, value: impl Into<Value>) -> Self {
        self.value = Some(value.into());
        self
    }
}

/// Scores a finished (or failed) run of an item.
pub trait Grader: Send + Sync {
    /// Every score of `result`, the run of `item`. An empty list leaves the
    /// dataset's checker in charge of `passed`.
    fn grade<'a>(&'a self, item: &'a Item, result: &'a ItemResult) -> BoxFuture<'a, Vec<Score>>;
}
