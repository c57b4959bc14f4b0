//! What a router or cascade did with a call: which models were asked, what
//! became of each reply, and what each cost.
//!
//! The steps travel as chunks ([`Chunk::Route`](super::Chunk::Route)) inside
//! the reply they explain, so everything that keeps replies — traces,
//! checkpoints, the response cache, replays — keeps the route with them,
//! and a replayed run reports the route it took the first time.

use serde::{Deserialize, Serialize};

use crate::env::Usage;

/// What became of one model's part of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Verdict {
    /// A router chose this model for the call.
    Routed,
    /// A cascade kept this model's reply: its checks passed (or it was the
    /// last tier).
    Accepted,
    /// A cascade set this model's reply aside: a check failed, and the next
    /// tier was asked.
    Rejected,
    /// The model failed before its reply began; the next tier was asked.
    Failed,
}

impl Verdict {
    /// The verdict's name, as in metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Routed => "routed",
            Verdict::Accepted => "accepted",
            Verdict::Rejected => "rejected",
            Verdict::Failed => "failed",
        }
    }
}

/// One model's part of a routed or cascaded call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteStep {
    /// The tier's label in its router or cascade (`"small"`, `"large"`).
    pub tier: String,
    /// The model's name.
    pub model: String,
    /// What became of its part.
    pub verdict: Verdict,
    /// Why: the policy's reason for a route, the failed check (or error)
    /// for a rejection.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// What this model's part used, cost included. A router's step counts
    /// only what the steps nested inside it do not.
    #[serde(default)]
    pub usage: Usage,
    /// The reply's confidence (geometric mean of its token probabilities),
    /// where the provider returned log-probabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
}

impl std::fmt::Display for RouteStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}) {}",
            self.tier,
            self.model,
            self.verdict.as_str()
        )?;
        if let Some(c) = self.confidence {
            write!(f, " at confidence {c:.3}")?;
        }
        if !self.reason.is_empty() {
            write!(f, ": {}", self.reason)?;
        }
        Ok(())
    }
}

/// The geometric mean of the probabilities whose natural logs are
/// `logprobs` — how sure the model was of its reply, one token at a time;
/// `None` for no tokens.
pub fn confidence(logprobs: &[f32]) -> Option<f64> {
    if logprobs.is_empty() {
        return None;
    }
    let mean = logprobs.iter().map(|&l| f64::from(l)).sum::<f64>() / logprobs.len() as f64;
    Some(mean.exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidence_is_the_geometric_mean_probability() {
        assert_eq!(confidence(&[]), None);
        let sure = confidence(&[0.0, 0.0]).unwrap();
        assert!((sure - 1.0).abs() < 1e-9);
        let half = confidence(&[0.5f32.ln(), 0.5f32.ln()]).unwrap();
        assert!((half - 0.5).abs() < 1e-6);
        let mixed = confidence(&[0.0, 0.25f32.ln()]).unwrap();
        assert!((mixed - 0.5).abs() < 1e-6, "{mixed}");
    }
}
