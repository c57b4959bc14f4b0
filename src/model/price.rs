//! Prices per model: what a token costs ([`Price`]) and a table of them
//! by model id ([`PriceTable`]); the [`Priced`](crate::layer::Priced)
//! layer turns a call's token counts into its cost.

use std::collections::HashMap;

use crate::env::Usage;

/// US dollars per million tokens.
///
/// ```
/// use statewise::model::Price;
/// use statewise::Usage;
///
/// let price = Price::per_million(2.5, 10.0).cached(1.25);
/// let usage = Usage { prompt_tokens: 1_000_000, cached_tokens: 400_000, completion_tokens: 100_000, ..Usage::default() };
/// assert!((price.cost(&usage) - (0.6 * 2.5 + 0.4 * 1.25 + 0.1 * 10.0)).abs() < 1e-9);
/// // The same call on the vendor's batch lane costs half.
/// let batched = Usage { batched_requests: 1, ..usage };
/// assert!((price.cost(&batched) - price.cost(&usage) / 2.0).abs() < 1e-9);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// Per million uncached prompt tokens.
    pub prompt: f64,
    /// Per million completion tokens.
    pub completion: f64,
    /// Per million prompt tokens read from the cache (default: `prompt`).
    pub cached: Option<f64>,
    /// Per million prompt tokens written to the cache (default: `prompt`).
    pub cache_write: Option<f64>,
    /// What a call on the vendor's batch lane costs, as a fraction of the
    /// realtime price (default 0.5: OpenAI's and Anthropic's Batch APIs
    /// charge half).
    pub batch_factor: f64,
}

impl Price {
    /// A price for prompt and completion tokens.
    pub fn per_million(prompt: f64, completion: f64) -> Self {
        Price {
            prompt,
            completion,
            cached: None,
            cache_write: None,
            batch_factor: 0.5,
        }
    }

    /// Sets the batch lane's price as a fraction of the realtime price.
    pub fn batch_factor(mut self, factor: f64) -> Self {
        self.batch_factor = factor;
        self
    }

    /// Sets the price of cached prompt tokens.
    pub fn cached(mut self, per_million: f64) -> Self {
        self.cached = Some(per_million);
        self
    }

    /// Sets the price of prompt tokens written to the cache.
    pub fn cache_write(mut self, per_million: f64) -> Self {
        self.cache_write = Some(per_million);
        self
    }

    /// The cost of `usage` in US dollars: at the batch price when it is
    /// the usage of calls on the batch lane
    /// ([`Usage::batched_requests`]).
    pub fn cost(&self, usage: &Usage) -> f64 {
        let fresh = usage
            .prompt_tokens
            .saturating_sub(usage.cached_tokens + usage.cache_write_tokens);
        let realtime = (fresh as f64 * self.prompt
            + usage.cached_tokens as f64 * self.cached.unwrap_or(self.prompt)
            + usage.cache_write_tokens as f64 * self.cache_write.unwrap_or(self.prompt)
            + usage.completion_tokens as f64 * self.completion)
            / 1e6;
        if usage.batched_requests > 0 {
            realtime * self.batch_factor
        } else {
            realtime
        }
    }
}

/// Prices by model id (`gpt-4o-mini`), set by the user: prices change too
/// often for a library to ship them.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    prices: HashMap<String, Price>,
}

impl PriceTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the price of `model_id`.
    pub fn with(mut self, model_id: impl Into<String>, price: Price) -> Self {
        self.prices.insert(model_id.into(), price);
        self
    }

    /// The price of `model_id`.
    pub fn get(&self, model_id: &str) -> Option<Price> {
        self.prices.get(model_id).copied()
    }
}
