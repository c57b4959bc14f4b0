//! [`Cascade`]: the cheapest model first, the next only when a reply fails
//! its checks (FrugalGPT's cascade, AutoMix's escalation on
//! self-verification).

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::StreamExt;

use super::check::Check;
use super::{own_usage, shared_capabilities, smallest_window, tiers_name, Tier};
use crate::env::Usage;
use crate::model::{
    Capabilities, ChatModel, ChatRequest, Chunk, ChunkStream, ContextWindow, ModelError, Reply,
    RouteStep, Verdict,
};

/// Holds each tier's reply but the last until its checks pass, then sends
/// it whole; on a failed check (or an error) sends a rejected
/// [`RouteStep`] and the rejected reply's usage, and asks the next tier.
/// The last tier's reply streams live and is kept whatever its checks say
/// (there is no one left to ask), its step saying whether they passed.
///
/// Its capabilities are those all its tiers share and its context window
/// the smallest, so a request built for it suits every tier.
#[derive(Clone)]
pub struct Cascade {
    name: String,
    tiers: Vec<Tier>,
    checks: Vec<Arc<dyn Check>>,
}

impl std::fmt::Debug for Cascade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let checks: Vec<&str> = self.checks.iter().map(|c| c.name()).collect();
        f.debug_struct("Cascade")
            .field("tiers", &self.tiers)
            .field("checks", &checks)
            .finish()
    }
}

impl Cascade {
    /// The cascade over `tiers`, cheapest first; at least one, labels
    /// distinct.
    pub fn new(tiers: Vec<Tier>) -> Result<Self, ModelError> {
        Ok(Cascade {
            name: tiers_name("cascade", &tiers)?,
            tiers,
            checks: Vec::new(),
        })
    }

    /// Adds a check every reply but the last tier's must pass.
    pub fn check(mut self, check: impl Check + 'static) -> Self {
        self.checks.push(Arc::new(check));
        self
    }

    /// The tiers, cheapest first.
    pub fn tiers(&self) -> &[Tier] {
        &self.tiers
    }

    fn wants_logprobs(&self) -> bool {
        self.checks.iter().any(|c| c.wants_logprobs())
    }
}

/// Whether `reply` passes `checks`: `Err` names the first that fails and
/// why.
pub fn verdict(
    checks: &[Arc<dyn Check>],
    request: &ChatRequest,
    reply: &Reply,
) -> Result<(), String> {
    for check in checks {
        check
            .check(request, reply)
            .map_err(|why| format!("{}: {why}", check.name()))?;
    }
    Ok(())
}

impl ChatModel for Cascade {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        shared_capabilities(&self.tiers)
    }

    fn context_window(&self) -> BoxFuture<'_, Option<ContextWindow>> {
        Box::pin(smallest_window(&self.tiers))
    }

    fn stream(&self, mut request: ChatRequest) -> ChunkStream<'_> {
        if self.wants_logprobs() {
            request.params.logprobs = true;
        }
        Box::pin(async_stream::try_stream! {
            let last = self.tiers.len() - 1;
            for (i, tier) in self.tiers.iter().enumerate() {
                if i == last {
                    let mut chunks = tier.stream(request.clone());
                    let mut whole = crate::model::ReplyBuilder::default();
                    while let Some(chunk) = chunks.next().await {
                        let chunk = chunk?;
                        whole.push(chunk.clone());
                        yield chunk;
                    }
                    let reply = whole.finish();
                    let reason = match verdict(&self.checks, &request, &reply) {
                        Ok(()) => String::new(),
                        Err(why) => format!("kept as the last tier; {why}"),
                    };
                    yield Chunk::Route(step(tier, Verdict::Accepted, reason, &reply));
                    return;
                }
                // Held: nothing of this tier reaches the caller unless kept.
                let mut held = Vec::new();
                let mut chunks = tier.stream(request.clone());
                let mut failed = None;
                while let Some(chunk) = chunks.next().await {
                    match chunk {
                        Ok(c) => held.push(c),
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                drop(chunks);
                let reply = Reply::from_chunks(held.iter().cloned());
                let set_aside = match failed {
                    Some(e) => Some((Verdict::Failed, e.to_string())),
                    None => verdict(&self.checks, &request, &reply)
                        .err()
                        .map(|why| (Verdict::Rejected, why)),
                };
                let Some((outcome, why)) = set_aside else {
                    for chunk in held {
                        yield chunk;
                    }
                    yield Chunk::Route(step(tier, Verdict::Accepted, String::new(), &reply));
                    return;
                };
                // What a reply set aside used is paid all the same, and the
                // steps inside it (a nested cascade's) are kept.
                if reply.usage != Usage::default() {
                    yield Chunk::Usage(reply.usage);
                }
                for nested in &reply.route {
                    yield Chunk::Route(nested.clone());
                }
                yield Chunk::Route(step(tier, outcome, why, &reply));
            }
        })
    }
}

/// The step `tier`'s `reply` makes. Steps the tier's model sent itself (a
/// cascade inside a cascade) keep their own usage; this one counts the rest.
fn step(tier: &Tier, verdict: Verdict, reason: String, reply: &Reply) -> RouteStep {
    RouteStep {
        tier: tier.label.clone(),
        model: tier.model.name().to_owned(),
        verdict,
        reason,
        usage: own_usage(reply),
        confidence: reply.confidence(),
    }
}

#[cfg(test)]
#[path = "cascade_tests.rs"]
mod tests;
