//! [`Router`]: one model per request, chosen before the call by a
//! [`Policy`] (RouteLLM's router; rig's model-select hook).

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::StreamExt;

use super::budget::Budget;
use super::{own_usage, shared_capabilities, smallest_window, tiers_name, Tier};
use crate::env::Usage;
use crate::model::{
    request_tokens, Capabilities, ChatModel, ChatRequest, Chunk, ChunkStream, ContextWindow,
    Estimate, ModelError, ReplyBuilder, RouteStep, Verdict,
};

/// A policy's pick: the tier (by position) and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// The tier's position in the router's list.
    pub tier: usize,
    /// Why, as events and traces show it.
    pub reason: String,
    /// What deciding cost (a classifier's call), added to the call's.
    pub usage: Usage,
}

impl Choice {
    /// Tier `tier`, for `reason`, at no cost.
    pub fn new(tier: usize, reason: impl Into<String>) -> Self {
        Choice {
            tier,
            reason: reason.into(),
            usage: Usage::default(),
        }
    }
}

/// How a [`Router`] picks a tier for a request: [`Rules`](super::Rules),
/// [`Classify`](super::Classify), or your own.
pub trait Policy: Send + Sync {
    /// The tier for `request` among `tiers`.
    fn choose<'a>(
        &'a self,
        request: &'a ChatRequest,
        tiers: &'a [Tier],
    ) -> BoxFuture<'a, Result<Choice, ModelError>>;
}

/// Streams the reply of the tier its policy picks (moved to a cheaper one
/// as its [`Budget`] requires), then a [`RouteStep`] saying which and why;
/// the call's cost is added to the budget.
///
/// Its capabilities are those all its tiers share and its context window
/// the smallest, so a request built for it suits whichever tier serves it.
#[derive(Clone)]
pub struct Router {
    name: String,
    tiers: Vec<Tier>,
    policy: Arc<dyn Policy>,
    budget: Option<Budget>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("tiers", &self.tiers)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl Router {
    /// A router over `tiers` (at least one, labels distinct), deciding by
    /// `policy`.
    pub fn new(tiers: Vec<Tier>, policy: impl Policy + 'static) -> Result<Self, ModelError> {
        Ok(Router {
            name: tiers_name("router", &tiers)?,
            tiers,
            policy: Arc::new(policy),
            budget: None,
        })
    }

    /// Holds the router's calls to `budget`: their cost is added to it, and
    /// as it nears its limit calls move to cheaper tiers
    /// ([`fit_budget`](super::fit_budget)). A clone of the router with
    /// another budget shares the tiers and policy.
    pub fn budget(mut self, budget: Budget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// The tiers.
    pub fn tiers(&self) -> &[Tier] {
        &self.tiers
    }

    /// The tier `request` goes to, and why: the policy's pick, then the
    /// budget's adjustment. What the router does before each call, so a
    /// test (or a dry run) can ask without calling a model.
    pub async fn route(&self, request: &ChatRequest) -> Result<Choice, ModelError> {
        let mut choice = self.policy.choose(request, &self.tiers).await?;
        if choice.tier >= self.tiers.len() {
            let labels: Vec<&str> = self.tiers.iter().map(Tier::label).collect();
            return Err(ModelError::Config {
                provider: "router".into(),
                message: format!(
                    "the policy chose tier {} of {}; tiers: {}",
                    choice.tier,
                    self.tiers.len(),
                    labels.join(", ")
                ),
            });
        }
        if let Some(budget) = &self.budget {
            let estimates = self.estimates(request);
            let (tier, why) = budget.fit(choice.tier, &estimates);
            if let Some(why) = why {
                choice.tier = tier;
                choice.reason = format!("{}; {why}", choice.reason);
            }
        }
        Ok(choice)
    }

    /// What `request` would cost at each tier: its prompt (estimated) and
    /// its `max_tokens` (or as many again as the prompt) of output.
    fn estimates(&self, request: &ChatRequest) -> Vec<f64> {
        let prompt = request_tokens(request, &Estimate) as u64;
        let output = request.params.max_tokens.map_or(prompt, u64::from);
        let usage = Usage {
            prompt_tokens: prompt,
            completion_tokens: output,
            ..Usage::default()
        };
        self.tiers
            .iter()
            .map(|t| t.get_price().map_or(0.0, |p| p.cost(&usage)))
            .collect()
    }
}

impl ChatModel for Router {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        shared_capabilities(&self.tiers)
    }

    fn context_window(&self) -> BoxFuture<'_, Option<ContextWindow>> {
        Box::pin(smallest_window(&self.tiers))
    }

    fn stream(&self, request: ChatRequest) -> ChunkStream<'_> {
        Box::pin(async_stream::try_stream! {
            let choice = self.route(&request).await?;
            let tier = &self.tiers[choice.tier];
            if choice.usage != Usage::default() {
                yield Chunk::Usage(choice.usage);
            }
            // What the step needs: usage, log-probabilities, nested steps
            // (not the text, which would be copied for nothing).
            let mut whole = ReplyBuilder::default();
            let mut chunks = tier.stream(request);
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk?;
                if matches!(chunk, Chunk::Usage(_) | Chunk::Logprobs(_) | Chunk::Route(_)) {
                    whole.push(chunk.clone());
                }
                yield chunk;
            }
            let reply = whole.finish();
            let mut usage = own_usage(&reply);
            usage.add(&choice.usage);
            if let Some(budget) = &self.budget {
                budget.add(reply.usage.cost + choice.usage.cost);
            }
            yield Chunk::Route(RouteStep {
                tier: tier.label().to_owned(),
                model: tier.model().name().to_owned(),
                verdict: Verdict::Routed,
                reason: choice.reason,
                usage,
                confidence: reply.confidence(),
            });
        })
    }
}

#[cfg(test)]
#[path = "router_tests.rs"]
mod tests;
