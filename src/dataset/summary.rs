//! What a dataset run reports: counts, accuracy, tokens and cost, and
//! latency percentiles from a fixed-size histogram.

use std::collections::BTreeMap;
use std::time::Duration;

use super::ItemResult;
use crate::env::Usage;

/// Latencies in buckets 10% wide from 1 ms: percentiles to within 10%, in
/// fixed memory however many items there are.
#[derive(Debug, Clone, Default)]
pub(super) struct Histogram {
    buckets: BTreeMap<u32, u64>,
    count: u64,
}

impl Histogram {
    const GROWTH: f64 = 1.1;

    fn add(&mut self, ms: f64) {
        let bucket = (ms.max(1.0).ln() / Self::GROWTH.ln()).floor() as u32;
        *self.buckets.entry(bucket).or_default() += 1;
        self.count += 1;
    }

    /// The `q` quantile (0..=1), as the upper edge of its bucket.
    fn quantile(&self, q: f64) -> Duration {
        let rank = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                return Duration::from_secs_f64(Self::GROWTH.powi(*bucket as i32 + 1) / 1000.0);
            }
        }
        Duration::ZERO
    }
}

/// What a dataset run did, over the whole output file.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Results in the output.
    pub total: u64,
    /// Of those, found there when the run started.
    pub resumed: u64,
    /// Runs that finished.
    pub succeeded: u64,
    /// Items with an `expected` value.
    pub checked: u64,
    /// Of those, answers the checker accepted.
    pub passed: u64,
    /// Tokens and cost of every run.
    pub usage: Usage,
    /// Failed runs by error kind.
    pub errors: BTreeMap<String, u64>,
    latency: Histogram,
}

impl Summary {
    pub(super) fn add(&mut self, r: &ItemResult) {
        self.total += 1;
        self.usage.add(&r.usage);
        self.latency.add(r.latency_ms);
        match &r.error {
            None => self.succeeded += 1,
            Some(kind) => *self.errors.entry(kind.clone()).or_default() += 1,
        }
        if let Some(passed) = r.passed {
            self.checked += 1;
            self.passed += u64::from(passed);
        }
    }

    /// Latency percentile `q` (0..=1), within 10%.
    pub fn latency(&self, q: f64) -> Duration {
        self.latency.quantile(q)
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "items:    {} ({} from an earlier run)",
            self.total, self.resumed
        )?;
        writeln!(f, "finished: {}", self.succeeded)?;
        if self.checked > 0 {
            let rate = self.passed as f64 / self.checked as f64 * 100.0;
            writeln!(f, "passed:   {}/{} ({rate:.1}%)", self.passed, self.checked)?;
        }
        writeln!(
            f,
            "tokens:   {} prompt + {} completion, cost ${:.4}",
            self.usage.prompt_tokens, self.usage.completion_tokens, self.usage.cost
        )?;
        if self.usage.batched_requests > 0 {
            writeln!(
                f,
                "lane:     {} calls through a vendor's batch API",
                self.usage.batched_requests
            )?;
        }
        writeln!(
            f,
            "latency:  p50 {:.0?}  p95 {:.0?}  p99 {:.0?}",
            self.latency(0.5),
            self.latency(0.95),
            self.latency(0.99)
        )?;
        for (kind, n) in &self.errors {
            writeln!(f, "failed:   {n} × {kind}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_within_ten_percent() {
        let mut h = Histogram::default();
        for ms in 1..=1000 {
            h.add(ms as f64);
        }
        for (q, exact) in [(0.5, 500.0), (0.95, 950.0), (0.99, 990.0)] {
            let got = h.quantile(q).as_secs_f64() * 1000.0;
            assert!(got >= exact && got <= exact * 1.1 + 1.0, "q{q}: {got}");
        }
        assert!(
            h.buckets.len() <= 73,
            "fixed memory: at most one bucket per 10% up to 1 s"
        );
    }
}
