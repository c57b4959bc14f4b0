//! Mixing models of different sizes: a [`Router`] picks one model per
//! request, a [`Cascade`] asks the cheapest first and escalates when its
//! reply fails a [`Check`], and a [`Budget`] moves a run to cheaper tiers
//! as it nears its cap.
//!
//! Both are model layers, so a state sees one model and every provider,
//! the response cache and the vendor batch lane work as tiers (a tier is
//! any [`SharedModel`]). The decisions are plain functions —
//! [`Rules::decide`], [`verdict`], [`fit_budget`] — tested without a
//! model; the layers only do the calls.
//!
//! **Streaming.** A cascade holds each tier's reply but the last until its
//! checks pass, then sends it whole; the last tier's reply streams live.
//! The alternative, streaming the cheap reply and retracting it, would make
//! every consumer (the console, AG-UI clients, the answer a person already
//! read) honour a retraction; holding costs the time of the cheap tier,
//! which is the fast one. Checks need the whole reply anyway: a JSON
//! action parses, a typed output validates and a confidence is known only
//! at the end.
//!
//! **Records.** Each model asked becomes a [`RouteStep`] chunk in the reply
//! (tier, model, verdict, reason, its usage and cost, its confidence), so
//! the route shows in events ([`Emit::Routed`](crate::state::Emit)), on the
//! call's span (`gen_ai.request.model` is the model that served), in traces,
//! in metrics and in the run's [`Env::usage_by_model`](crate::Env); a
//! replayed reply carries the same steps, so a replay takes the same route.
//!
//! ```
//! use statewise::layer::{Cascade, Confident, ParsesAsAction, Tier};
//! use statewise::model::{ScriptedModel, Price};
//!
//! let cascade = Cascade::new(vec![
//!     Tier::new("small", ScriptedModel::new()).price(Price::per_million(0.1, 0.4)),
//!     Tier::new("large", ScriptedModel::new()).price(Price::per_million(2.5, 10.0)),
//! ])?
//! .check(ParsesAsAction)
//! .check(Confident::above(0.6));
//! # Ok::<(), statewise::model::ModelError>(())
//! ```

mod budget;
mod cascade;
mod check;
mod classify;
mod router;
mod rules;

use std::sync::Arc;

use crate::env::Usage;
use crate::model::{
    ChatModel, ChatRequest, ChunkStream, ModelError, Price, PriceTable, Reply, SharedModel,
};

pub use budget::{fit_budget, Budget};
pub use cascade::{verdict, Cascade};
pub use check::{Check, Confident, FnCheck, MatchesSchema, ParsesAsAction, ValidOutput};
pub use classify::Classify;
pub use router::{Choice, Policy, Router};
pub use rules::Rules;

/// One model of a router or cascade, with its label and price.
#[derive(Clone)]
pub struct Tier {
    label: String,
    model: SharedModel,
    price: Option<Price>,
}

impl std::fmt::Debug for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tier")
            .field("label", &self.label)
            .field("model", &self.model.name())
            .field("price", &self.price)
            .finish()
    }
}

impl Tier {
    /// `model` labelled `label` (`"small"`, `"large"`): the name rules,
    /// hints, events and reports use.
    pub fn new(label: impl Into<String>, model: impl ChatModel + 'static) -> Self {
        Tier {
            label: label.into(),
            model: Arc::new(model),
            price: None,
        }
    }

    /// The tier's price: its calls' cost, as [`Priced`](crate::layer::Priced)
    /// sets it, and what a [`Budget`] estimates a call at. A tier without
    /// one keeps the cost its model reports (none counts as free).
    pub fn price(mut self, price: Price) -> Self {
        self.price = Some(price);
        self
    }

    /// The tier's price from `table`, by the model's id (its name without
    /// the provider: `openai:gpt-4o-mini` → `gpt-4o-mini`); unchanged if
    /// the table has none.
    pub fn price_from(mut self, table: &PriceTable) -> Self {
        let (_, id) = crate::semconv::provider_and_model(self.model.name());
        if let Some(price) = table.get(id) {
            self.price = Some(price);
        }
        self
    }

    /// The tier's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The tier's model.
    pub fn model(&self) -> &SharedModel {
        &self.model
    }

    /// The tier's price, if set.
    pub fn get_price(&self) -> Option<Price> {
        self.price
    }

    /// Streams the tier's reply to `request`, its usage priced at the
    /// tier's price when it has one.
    fn stream(&self, request: ChatRequest) -> ChunkStream<'_> {
        let chunks = self.model.stream(request);
        match self.price {
            Some(price) => super::priced::priced_stream(chunks, price),
            None => chunks,
        }
    }
}

/// The position of the tier labelled `label` among `labels`; a
/// configuration error listing the labels if there is none (`named_by`
/// says what named it: "a rule", "the classifier").
fn position(labels: &[&str], label: &str, named_by: &str) -> Result<usize, ModelError> {
    labels
        .iter()
        .position(|l| *l == label)
        .ok_or_else(|| ModelError::Config {
            provider: "router".into(),
            message: format!(
                "{named_by} names tier `{label}`; the tiers are: {}",
                labels.join(", ")
            ),
        })
}

/// `reply`'s usage less what the route steps inside it account for: a
/// step's own share.
fn own_usage(reply: &Reply) -> Usage {
    let mut own = reply.usage;
    for nested in &reply.route {
        let u = &nested.usage;
        own.prompt_tokens = own.prompt_tokens.saturating_sub(u.prompt_tokens);
        own.completion_tokens = own.completion_tokens.saturating_sub(u.completion_tokens);
        own.cached_tokens = own.cached_tokens.saturating_sub(u.cached_tokens);
        own.cache_write_tokens = own.cache_write_tokens.saturating_sub(u.cache_write_tokens);
        own.cost = (own.cost - u.cost).max(0.0);
        own.cached_responses = own.cached_responses.saturating_sub(u.cached_responses);
        own.batched_requests = own.batched_requests.saturating_sub(u.batched_requests);
    }
    own
}

/// The tiers' labels joined for a layer's name, or an error for none.
fn tiers_name(kind: &str, tiers: &[Tier]) -> Result<String, ModelError> {
    if tiers.is_empty() {
        return Err(ModelError::Config {
            provider: kind.to_owned(),
            message: format!("a {kind} needs at least one tier (Tier::new(label, model))"),
        });
    }
    let mut labels: Vec<&str> = tiers.iter().map(|t| t.label.as_str()).collect();
    labels.sort_unstable();
    if let Some(twice) = labels.windows(2).find(|w| w[0] == w[1]) {
        return Err(ModelError::Config {
            provider: kind.to_owned(),
            message: format!("two tiers are labelled `{}`; labels must differ", twice[0]),
        });
    }
    let names: Vec<&str> = tiers.iter().map(|t| t.model.name()).collect();
    Ok(format!("{kind}({})", names.join(" → ")))
}

/// Capabilities all `tiers` share, so a request built for one suits all.
fn shared_capabilities(tiers: &[Tier]) -> crate::model::Capabilities {
    super::common_capabilities(tiers.iter().map(|t| &t.model))
}

/// The smallest context window among `tiers`; unknown if any is.
async fn smallest_window(tiers: &[Tier]) -> Option<crate::model::ContextWindow> {
    super::smallest_window(tiers.iter().map(|t| &t.model)).await
}
