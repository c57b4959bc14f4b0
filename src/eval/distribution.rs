//! A distribution in fixed memory: counts in buckets a tenth of a decade
//! wide (about 26% apart), so a million latencies or costs cost a few
//! hundred counters, and quantiles are good to within a bucket.

use std::collections::BTreeMap;

/// Counts of positive values by logarithmic bucket, and of zeros.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Distribution {
    buckets: BTreeMap<i32, u64>,
    zeros: u64,
    count: u64,
    sum: f64,
    max: f64,
}

const PER_DECADE: f64 = 10.0;

impl Distribution {
    /// Counts `value` (negative values count as zero).
    pub fn add(&mut self, value: f64) {
        self.count += 1;
        if value.is_finite() && value > 0.0 {
            self.sum += value;
            self.max = self.max.max(value);
            let bucket = (value.log10() * PER_DECADE).floor() as i32;
            *self.buckets.entry(bucket).or_default() += 1;
        } else {
            self.zeros += 1;
        }
    }

    /// How many values were counted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Their mean (0 when empty).
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }

    /// The largest value.
    pub fn max(&self) -> f64 {
        self.max
    }

    /// The `q` quantile (0..=1), as the upper edge of its bucket (capped
    /// at the largest value).
    pub fn quantile(&self, q: f64) -> f64 {
        let rank = ((self.count as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = self.zeros;
        if seen >= rank {
            return 0.0;
        }
        for (bucket, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                return upper(*bucket).min(self.max);
            }
        }
        self.max
    }

    /// The non-empty buckets as `(low, high, count)`, smallest first; zeros
    /// come first as `(0, 0, n)`.
    pub fn buckets(&self) -> Vec<(f64, f64, u64)> {
        let mut out = Vec::new();
        if self.zeros > 0 {
            out.push((0.0, 0.0, self.zeros));
        }
        for (bucket, n) in &self.buckets {
            out.push((upper(*bucket - 1), upper(*bucket), *n));
        }
        out
    }
}

fn upper(bucket: i32) -> f64 {
    10f64.powf(f64::from(bucket + 1) / PER_DECADE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_within_a_bucket_in_fixed_memory() {
        let mut d = Distribution::default();
        for i in 1..=100_000 {
            d.add(i as f64 / 100.0); // 0.01 to 1000
        }
        for (q, exact) in [(0.5, 500.0), (0.95, 950.0), (0.99, 990.0)] {
            let got = d.quantile(q);
            assert!(got >= exact && got <= exact * 1.26, "q{q}: {got}");
        }
        assert!(d.buckets().len() <= 51, "five decades, ten buckets each");
        assert!((d.mean() - 500.005).abs() < 1e-6);
        d.add(0.0);
        assert_eq!(d.buckets()[0], (0.0, 0.0, 1));
        assert_eq!(d.quantile(0.0), 0.0);
    }
}
