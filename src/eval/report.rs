//! What an eval run amounts to, read back from its results file in one
//! streaming pass: counts by tag and by evaluator, latency and cost
//! distributions, and a bounded sample of cases for the drill-down, so a
//! million-case report takes the same memory as a hundred-case one.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use serde_json::{json, Value};

use super::distribution::Distribution;
use super::EvalError;
use crate::dataset::ItemResult;
use crate::env::Usage;

/// Failing cases kept for the drill-down, at most.
const KEEP_FAILED: usize = 200;
/// Passing cases kept for the drill-down, at most.
const KEEP_PASSED: usize = 50;

/// Cases and passes of one group (a tag, an evaluator).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    /// Cases (runs, with repeats) in the group.
    pub cases: u64,
    /// Of those, how many passed.
    pub passed: u64,
    /// Their latencies added up, in milliseconds.
    pub latency_ms: f64,
    /// Their cost added up, in dollars.
    pub cost: f64,
}

impl Tally {
    fn add(&mut self, passed: bool, r: &ItemResult) {
        self.cases += 1;
        self.passed += u64::from(passed);
        self.latency_ms += r.latency_ms;
        self.cost += r.usage.cost;
    }

    /// The share that passed (0 when empty).
    pub fn score(&self) -> f64 {
        if self.cases == 0 {
            0.0
        } else {
            self.passed as f64 / self.cases as f64
        }
    }
}

/// How often a case passed across its repeats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Consistency {
    /// Cases that passed every repeat.
    pub always: u64,
    /// Cases that passed some repeats.
    pub sometimes: u64,
    /// Cases that passed none.
    pub never: u64,
}

/// The figures of an eval run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Every run (cases times repeats).
    pub total: Tally,
    /// Runs that ended in an error, by its kind.
    pub errors: BTreeMap<String, u64>,
    /// Tokens and cost of every run.
    pub usage: Usage,
    /// By tag (a case with two tags counts in both; untagged ones under
    /// `(untagged)`).
    pub by_tag: BTreeMap<String, Tally>,
    /// By evaluator name: how often each passed.
    pub by_evaluator: BTreeMap<String, Tally>,
    /// Latencies in milliseconds.
    pub latency: Distribution,
    /// Costs in dollars.
    pub cost: Distribution,
    /// Across repeats, when cases ran more than once.
    pub consistency: Option<Consistency>,
    /// Cases for the drill-down: failures first (up to 200), then passes
    /// (up to 50), each in file order.
    pub sample: Vec<ItemResult>,
    passed_sample: Vec<ItemResult>,
    streak: Option<(String, u64, u64)>,
}

impl Report {
    /// Reads the results file of an eval run.
    pub fn read(path: impl AsRef<Path>) -> Result<Report, EvalError> {
        let path = path.as_ref();
        let io = |source| EvalError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut report = Report::default();
        for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(io)?;
            if line.trim().is_empty() {
                continue;
            }
            let result: ItemResult =
                serde_json::from_str(&line).map_err(|e| EvalError::NotResults {
                    path: path.to_path_buf(),
                    line: n as u64 + 1,
                    message: e.to_string(),
                })?;
            report.add(result);
        }
        report.finish();
        Ok(report)
    }

    /// Counts one result.
    pub fn add(&mut self, r: ItemResult) {
        let passed = r.passed == Some(true);
        self.total.add(passed, &r);
        self.usage.add(&r.usage);
        self.latency.add(r.latency_ms);
        self.cost.add(r.usage.cost);
        if let Some(code) = &r.error {
            *self.errors.entry(code.clone()).or_default() += 1;
        }
        if r.tags.is_empty() {
            self.by_tag
                .entry("(untagged)".into())
                .or_default()
                .add(passed, &r);
        }
        for tag in &r.tags {
            self.by_tag.entry(tag.clone()).or_default().add(passed, &r);
        }
        for score in &r.scores {
            self.by_evaluator
                .entry(score.name.clone())
                .or_default()
                .add(score.passed, &r);
        }
        if r.repeat.is_some() {
            self.count_repeat(&r.id, passed);
        }
        if !passed && self.sample.len() < KEEP_FAILED {
            self.sample.push(r);
        } else if passed && self.passed_sample.len() < KEEP_PASSED {
            self.passed_sample.push(r);
        }
    }

    /// Repeats of a case are consecutive lines: a case's tally closes when
    /// the next case's first repeat arrives.
    fn count_repeat(&mut self, id: &str, passed: bool) {
        match &mut self.streak {
            Some((current, runs, passes)) if current == id => {
                *runs += 1;
                *passes += u64::from(passed);
            }
            _ => {
                self.close_streak();
                self.streak = Some((id.to_owned(), 1, u64::from(passed)));
            }
        }
    }

    fn close_streak(&mut self) {
        if let Some((_, runs, passes)) = self.streak.take() {
            let c = self.consistency.get_or_insert_with(Consistency::default);
            match passes {
                0 => c.never += 1,
                p if p == runs => c.always += 1,
                _ => c.sometimes += 1,
            }
        }
    }

    /// Ends counting: closes the last repeat streak and appends the passing
    /// sample to the failing one.
    pub fn finish(&mut self) {
        self.close_streak();
        let passed = std::mem::take(&mut self.passed_sample);
        self.sample.extend(passed);
    }

    /// The share of runs that passed.
    pub fn score(&self) -> f64 {
        self.total.score()
    }

    /// The JSON summary: `{"cases": N, "passed": P, "score": P/N, ...}`.
    pub fn summary(&self) -> Value {
        let groups = |map: &BTreeMap<String, Tally>| -> Value {
            map.iter()
                .map(|(k, t)| {
                    (
                        k.clone(),
                        json!({"cases": t.cases, "passed": t.passed, "score": round(t.score())}),
                    )
                })
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let mut summary = json!({
            "cases": self.total.cases,
            "passed": self.total.passed,
            "score": round(self.score()),
            "errors": self.errors,
            "tokens": self.usage.total_tokens(),
            "cost": self.usage.cost,
            "latency_ms": {
                "p50": round(self.latency.quantile(0.5)),
                "p95": round(self.latency.quantile(0.95)),
                "mean": round(self.latency.mean()),
            },
            "by_tag": groups(&self.by_tag),
            "by_evaluator": groups(&self.by_evaluator),
        });
        if let (Some(c), Some(map)) = (self.consistency, summary.as_object_mut()) {
            map.insert(
                "repeats".into(),
                json!({"always": c.always, "sometimes": c.sometimes, "never": c.never}),
            );
        }
        summary
    }

    /// A table for a terminal: one row per tag, then one per evaluator.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let width = self
            .by_tag
            .keys()
            .chain(self.by_evaluator.keys())
            .map(|k| k.chars().count())
            .max()
            .unwrap_or(0)
            .max(12);
        let row = |out: &mut String, name: &str, t: &Tally| {
            let mean = if t.cases == 0 {
                0.0
            } else {
                t.latency_ms / t.cases as f64
            };
            let _ = writeln!(
                out,
                "{name:<width$}  {:>8}  {:>8}  {:>6.1}%  {:>10.0}  {:>10.4}",
                t.cases,
                t.passed,
                t.score() * 100.0,
                mean,
                t.cost
            );
        };
        let _ = writeln!(
            out,
            "{:<width$}  {:>8}  {:>8}  {:>7}  {:>10}  {:>10}",
            "tag", "cases", "passed", "score", "mean ms", "cost $"
        );
        for (tag, t) in &self.by_tag {
            row(&mut out, tag, t);
        }
        row(&mut out, "all", &self.total);
        let _ = writeln!(
            out,
            "\n{:<width$}  {:>8}  {:>8}  {:>7}",
            "evaluator", "runs", "passed", "score"
        );
        for (name, t) in &self.by_evaluator {
            let _ = writeln!(
                out,
                "{name:<width$}  {:>8}  {:>8}  {:>6.1}%",
                t.cases,
                t.passed,
                t.score() * 100.0
            );
        }
        if let Some(c) = self.consistency {
            let _ = writeln!(
                out,
                "\nacross repeats: {} cases always pass, {} sometimes, {} never",
                c.always, c.sometimes, c.never
            );
        }
        for (kind, n) in &self.errors {
            let _ = writeln!(out, "failed runs: {n} × {kind}");
        }
        out
    }

    /// A self-contained HTML page (no scripts or styles from elsewhere):
    /// scores by tag, latency and cost distributions, and the drill-down.
    pub fn html(&self, title: &str) -> String {
        super::html::render(self, title)
    }
}

fn round(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Score;

    fn result(id: &str, passed: bool, tags: &[&str], repeat: Option<u32>) -> ItemResult {
        let mut r: ItemResult = serde_json::from_value(json!({"id": id, "answer": "a", "path": [], "usage": {"cost": 0.001}, "latency_ms": 100.0})).unwrap();
        r.passed = Some(passed);
        r.tags = tags.iter().map(|t| t.to_string()).collect();
        r.repeat = repeat;
        r.scores = vec![Score::new("regex", passed, "")];
        r
    }

    #[test]
    fn tallies_by_tag_evaluator_and_repeat() {
        let mut report = Report::default();
        for (id, passed, repeat) in [
            ("a", true, 1),
            ("a", true, 2),
            ("b", true, 1),
            ("b", false, 2),
            ("c", false, 1),
            ("c", false, 2),
        ] {
            report.add(result(id, passed, &["math"], Some(repeat)));
        }
        report.add(result("d", true, &[], None));
        report.finish();
        assert_eq!((report.total.cases, report.total.passed), (7, 4));
        assert_eq!(report.by_tag["math"].passed, 3);
        assert_eq!(report.by_tag["(untagged)"].cases, 1);
        assert_eq!(report.by_evaluator["regex"].cases, 7);
        assert_eq!(
            report.consistency,
            Some(Consistency {
                always: 1,
                sometimes: 1,
                never: 1
            })
        );
        assert_eq!(report.sample.len(), 7);
        assert!(
            report.sample[..3].iter().all(|r| r.passed == Some(false)),
            "failures first"
        );
        let summary = report.summary();
        assert_eq!(summary["cases"], 7);
        assert_eq!(summary["score"], round(4.0 / 7.0));
        assert_eq!(summary["by_tag"]["math"]["passed"], 3);
        let table = report.table();
        assert!(
            table.contains("math") && table.contains("1 sometimes"),
            "{table}"
        );
    }
}
