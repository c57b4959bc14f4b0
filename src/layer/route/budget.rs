//! [`Budget`]: what a run may spend, and the plain function that moves a
//! [`Router`](super::Router)'s choice to cheaper tiers as the spending
//! nears it.

use std::sync::{Arc, Mutex};

/// A spending cap in US dollars, shared by the router that adds each
/// call's cost to it and whoever reads it. Make one per run (or per
/// principal, per day: whatever the cap is for) and give it to the router
/// ([`Router::budget`](super::Router::budget)).
#[derive(Debug, Clone)]
pub struct Budget {
    limit: f64,
    near: f64,
    spent: Arc<Mutex<f64>>,
}

impl Budget {
    /// A budget of `limit` dollars; the router moves to the cheapest tier
    /// once 80% of it is spent (see [`near`](Self::near)).
    pub fn new(limit: f64) -> Self {
        Budget {
            limit,
            near: 0.8,
            spent: Arc::new(Mutex::new(0.0)),
        }
    }

    /// The share of the limit (0 to 1) past which only the cheapest tier
    /// is used.
    pub fn near(mut self, share: f64) -> Self {
        self.near = share.clamp(0.0, 1.0);
        self
    }

    /// The cap.
    pub fn limit(&self) -> f64 {
        self.limit
    }

    /// What was spent so far.
    pub fn spent(&self) -> f64 {
        *self.spent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `cost` to what was spent.
    pub fn add(&self, cost: f64) {
        if cost.is_finite() && cost > 0.0 {
            *self.spent.lock().unwrap_or_else(|p| p.into_inner()) += cost;
        }
    }

    /// `chosen` moved to a cheaper tier as the budget requires
    /// ([`fit_budget`]), with the reason when it moved.
    pub(super) fn fit(&self, chosen: usize, estimates: &[f64]) -> (usize, Option<String>) {
        fit_budget(chosen, estimates, self.spent(), self.limit, self.near)
    }
}

/// The tier a call goes to under a budget: `chosen` while it is affordable
/// and less than `near` (a share) of `limit` is spent; once that share is
/// spent, the tier whose estimated cost (`estimates`, one per tier) is the
/// lowest; before that, if `chosen` would cost more than what is left, the
/// dearest tier that fits (the cheapest if none does). Never fails: a run
/// past its cap keeps going on the cheapest tier, and a hard stop is the
/// job of a [`Limit`](crate::layer::Limit). The reason says why it moved.
pub fn fit_budget(
    chosen: usize,
    estimates: &[f64],
    spent: f64,
    limit: f64,
    near: f64,
) -> (usize, Option<String>) {
    let Some(&estimate) = estimates.get(chosen) else {
        return (chosen, None);
    };
    let cheapest = estimates
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .map_or(chosen, |(i, _)| i);
    let left = limit - spent;
    if spent >= near * limit {
        if estimates[cheapest] < estimate {
            let why = format!("${spent:.4} of ${limit:.4} spent: the cheapest tier");
            return (cheapest, Some(why));
        }
        return (chosen, None);
    }
    if estimate <= left {
        return (chosen, None);
    }
    let fitting = estimates
        .iter()
        .enumerate()
        .filter(|(_, &e)| e <= left && e < estimate)
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(cheapest, |(i, _)| i);
    let why = format!("about ${estimate:.4} would exceed the ${left:.4} left: a cheaper tier");
    (fitting, (fitting != chosen).then_some(why))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Estimated cost of one call at three tiers.
    const COSTS: [f64; 3] = [0.001, 0.01, 0.1];

    #[test]
    fn affordable_choices_stand() {
        assert_eq!(fit_budget(2, &COSTS, 0.0, 1.0, 0.8), (2, None));
        assert_eq!(fit_budget(0, &COSTS, 0.9, 1.0, 0.8), (0, None));
    }

    #[test]
    fn near_the_cap_the_cheapest_tier_serves() {
        let (tier, why) = fit_budget(2, &COSTS, 0.8, 1.0, 0.8);
        assert_eq!(tier, 0);
        assert!(why.unwrap().contains("cheapest"));
        // Over the cap: still served, on the cheapest tier.
        assert_eq!(fit_budget(1, &COSTS, 1.5, 1.0, 0.8).0, 0);
    }

    #[test]
    fn a_call_that_would_overspend_steps_down_to_what_fits() {
        // 0.05 left before `near` is reached (limit 1, near 1.0): the large
        // tier's 0.1 does not fit, the middle one's 0.01 does.
        let (tier, why) = fit_budget(2, &COSTS, 0.95, 1.0, 1.0);
        assert_eq!(tier, 1);
        assert!(why.unwrap().contains("exceed"));
        // Nothing fits: the cheapest.
        assert_eq!(fit_budget(2, &COSTS, 0.9995, 1.0, 1.0).0, 0);
    }

    #[test]
    fn spending_adds_up_across_clones() {
        let budget = Budget::new(1.0);
        let same = budget.clone();
        budget.add(0.25);
        same.add(0.5);
        same.add(f64::NAN);
        assert!((budget.spent() - 0.75).abs() < 1e-12);
        assert_eq!(budget.fit(2, &COSTS), (2, None));
        budget.add(0.1);
        assert_eq!(budget.fit(2, &COSTS).0, 0);
    }
}
