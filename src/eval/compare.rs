//! Two results files of the same cases side by side: which cases got worse
//! or better, and how far the overall score moved, with a confidence
//! interval from a paired bootstrap.
//!
//! A case's score is the share of its repeats that passed, so a case run
//! five times that passed 4/5 and now 2/5 counts as a regression of 0.4.
//! Both files are read in one pass each, keeping one number per case.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

use super::EvalError;
use crate::dataset::ItemResult;

/// Bootstrap resamples for the interval.
const RESAMPLES: usize = 2000;
/// Past this many cases the interval comes from the normal approximation,
/// which a bootstrap of that size agrees with, at a fraction of the time.
const BOOTSTRAP_LIMIT: usize = 20_000;

/// One case whose score moved.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The case's id.
    pub id: String,
    /// Its score in the baseline (0..=1).
    pub before: f64,
    /// Its score now.
    pub after: f64,
    /// Why it failed now, from its failing scores (empty if it passed).
    pub reason: String,
}

/// The difference between a baseline and a new results file.
#[derive(Debug, Clone, Default)]
pub struct Comparison {
    /// Cases that got worse, the largest drop first.
    pub regressions: Vec<Change>,
    /// Cases that got better, the largest gain first.
    pub improvements: Vec<Change>,
    /// Cases in both files.
    pub common: usize,
    /// Cases only in the baseline, and only in the new file.
    pub only_before: usize,
    /// Cases only in the new file.
    pub only_after: usize,
    /// Mean case score on the common cases, before and after.
    pub score_before: f64,
    /// The same, now.
    pub score_after: f64,
    /// The 95% confidence interval of `score_after - score_before`.
    pub interval: (f64, f64),
}

#[derive(Default)]
struct CaseScore {
    runs: u32,
    passes: u32,
    reason: String,
}

impl CaseScore {
    fn score(&self) -> f64 {
        f64::from(self.passes) / f64::from(self.runs.max(1))
    }
}

fn read(path: &Path) -> Result<(Vec<String>, HashMap<String, CaseScore>), EvalError> {
    let io = |source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let (mut order, mut cases) = (Vec::new(), HashMap::<String, CaseScore>::new());
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let r: ItemResult = serde_json::from_str(&line).map_err(|e| EvalError::NotResults {
            path: path.to_path_buf(),
            line: n as u64 + 1,
            message: e.to_string(),
        })?;
        let passed = r.passed == Some(true);
        let case = cases.entry(r.id.clone()).or_insert_with(|| {
            order.push(r.id.clone());
            CaseScore::default()
        });
        case.runs += 1;
        case.passes += u32::from(passed);
        if !passed && case.reason.is_empty() {
            let failing: Vec<String> = r
                .scores
                .iter()
                .filter(|s| !s.passed)
                .map(|s| format!("{}: {}", s.name, s.reason))
                .collect();
            case.reason = failing.join("; ");
        }
    }
    Ok((order, cases))
}

impl Comparison {
    /// Compares the results file `after` against the baseline `before`.
    pub fn read(before: impl AsRef<Path>, after: impl AsRef<Path>) -> Result<Self, EvalError> {
        let (_, old) = read(before.as_ref())?;
        let (order, new) = read(after.as_ref())?;
        let mut c = Comparison::default();
        let mut diffs = Vec::new();
        let (mut sum_before, mut sum_after) = (0.0, 0.0);
        for id in &order {
            let now = &new[id];
            let Some(then) = old.get(id) else {
                c.only_after += 1;
                continue;
            };
            let (b, a) = (then.score(), now.score());
            sum_before += b;
            sum_after += a;
            diffs.push(a - b);
            let change = Change {
                id: id.clone(),
                before: b,
                after: a,
                reason: now.reason.clone(),
            };
            if a < b {
                c.regressions.push(change);
            } else if a > b {
                c.improvements.push(change);
            }
        }
        c.common = diffs.len();
        c.only_before = old.keys().filter(|id| !new.contains_key(*id)).count();
        let n = c.common.max(1) as f64;
        (c.score_before, c.score_after) = (sum_before / n, sum_after / n);
        c.interval = interval(&diffs);
        let drop = |x: &Change| x.after - x.before;
        c.regressions.sort_by(|x, y| drop(x).total_cmp(&drop(y)));
        c.improvements.sort_by(|x, y| drop(y).total_cmp(&drop(x)));
        Ok(c)
    }

    /// The change in the mean case score.
    pub fn delta(&self) -> f64 {
        self.score_after - self.score_before
    }

    /// The comparison as JSON, regressions first.
    pub fn to_json(&self) -> serde_json::Value {
        let list = |changes: &[Change]| -> Vec<serde_json::Value> {
            changes
                .iter()
                .map(|c| serde_json::json!({"id": c.id, "before": c.before, "after": c.after, "reason": c.reason}))
                .collect()
        };
        serde_json::json!({
            "regressions": list(&self.regressions),
            "improvements": list(&self.improvements),
            "common": self.common,
            "only_before": self.only_before,
            "only_after": self.only_after,
            "score_before": self.score_before,
            "score_after": self.score_after,
            "delta": self.delta(),
            "interval95": [self.interval.0, self.interval.1],
        })
    }
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} regressions, {} improvements over {} common cases",
            self.regressions.len(),
            self.improvements.len(),
            self.common
        )?;
        for c in &self.regressions {
            writeln!(
                f,
                "  worse   {}  {:.2} -> {:.2}  {}",
                c.id, c.before, c.after, c.reason
            )?;
        }
        for c in &self.improvements {
            writeln!(f, "  better  {}  {:.2} -> {:.2}", c.id, c.before, c.after)?;
        }
        writeln!(
            f,
            "score {:.4} -> {:.4} ({:+.4}, 95% CI {:+.4} to {:+.4})",
            self.score_before,
            self.score_after,
            self.delta(),
            self.interval.0,
            self.interval.1
        )?;
        if self.only_before + self.only_after > 0 {
            writeln!(
                f,
                "{} cases only in the baseline, {} only in the new results",
                self.only_before, self.only_after
            )?;
        }
        Ok(())
    }
}

/// The 95% interval of the mean of paired differences: a percentile
/// bootstrap (seeded, so a comparison prints the same figures every time)
/// up to [`BOOTSTRAP_LIMIT`] cases, the normal approximation past it.
fn interval(diffs: &[f64]) -> (f64, f64) {
    let n = diffs.len();
    if n == 0 {
        return (0.0, 0.0);
    }
    let mean = diffs.iter().sum::<f64>() / n as f64;
    if n > BOOTSTRAP_LIMIT {
        let var = diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0);
        let half = 1.96 * (var / n as f64).sqrt();
        return (mean - half, mean + half);
    }
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut means: Vec<f64> = (0..RESAMPLES)
        .map(|_| (0..n).map(|_| diffs[rng.usize(..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((RESAMPLES as f64 - 1.0) * q).round() as usize];
    (at(0.025), at(0.975))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_holds_the_mean_and_narrows_with_more_cases() {
        let few: Vec<f64> = (0..40)
            .map(|i| if i % 4 == 0 { -1.0 } else { 0.0 })
            .collect();
        let (lo, hi) = interval(&few);
        assert!(lo < -0.25 && -0.25 < hi && hi <= 0.0, "{lo} {hi}");
        let many: Vec<f64> = few.iter().cycle().take(4000).copied().collect();
        let (lo2, hi2) = interval(&many);
        assert!(hi2 - lo2 < (hi - lo) / 5.0, "{lo2} {hi2}");
        let huge: Vec<f64> = few.iter().cycle().take(40_000).copied().collect();
        let (lo3, hi3) = interval(&huge);
        assert!(lo3 < -0.25 && -0.25 < hi3 && hi3 - lo3 < 0.02);
        assert_eq!(interval(&[0.0; 10]), (0.0, 0.0));
    }
}
