//! Layers that wrap any [`ChatModel`], composed like tower's: each does one
//! job and is tested on its own.
//!
//! - [`Retry`]: sends a call again after a transient failure (backoff with
//!   full jitter, Retry-After honoured), only while nothing was delivered.
//! - [`Timeout`]: time to first token, idle gap, whole call.
//! - [`CircuitBreaker`]: refuses calls at once while a model keeps failing.
//! - [`Limit`]: concurrency, requests and tokens per minute, adaptive (AIMD).
//! - [`Fallback`]: the next model in line when one fails.
//! - [`Priced`]: cost from token counts.
//! - [`Cache`]: answers repeated requests from memory or an SQLite file.
//! - [`Router`] and [`Cascade`]: several models of different sizes as one,
//!   chosen per request or escalated on a failed check, under a [`Budget`].
//!
//! ```
//! use std::time::Duration;
//! use statewise::layer::{ModelExt, RetryPolicy, Timeouts, BreakerConfig};
//! use statewise::model::ScriptedModel;
//!
//! let model = ScriptedModel::new()
//!     .circuit_breaker(BreakerConfig::default())
//!     .timeouts(Timeouts { idle: Some(Duration::from_secs(10)), ..Timeouts::default() })
//!     .retry(RetryPolicy::default())
//!     .shared();
//! ```
//!
//! Order matters: retry outermost, so each attempt has its own time limits
//! and the breaker counts every attempt. [`default_stack`] builds exactly
//! that; model strings get it.
//!
//! A failure after chunks were delivered cannot be retried here without
//! duplicating text; the [`Machine`](crate::Machine) restarts the state from
//! the env it started with instead ([`Machine::state_retries`](crate::Machine::state_retries)).

/// `get_ref` and `into_inner` for a wrapper `$layer<M>` whose model is its
/// `inner` field, the way tower's layers give theirs back.
macro_rules! wrapper {
    ($layer:ident) => {
        impl<M> $layer<M> {
            /// The wrapped model.
            pub fn get_ref(&self) -> &M {
                &self.inner
            }

            /// The wrapped model, unwrapped.
            pub fn into_inner(self) -> M {
                self.inner
            }
        }
    };
}

/// The [`ChatModel`] methods a layer passes through to its `inner` model
/// unchanged: `name`, `capabilities`, `context_window` and `token_counter`.
macro_rules! forward_model_info {
    () => {
        fn name(&self) -> &str {
            self.inner.name()
        }

        fn capabilities(&self) -> $crate::model::Capabilities {
            self.inner.capabilities()
        }

        fn context_window(
            &self,
        ) -> futures::future::BoxFuture<'_, Option<$crate::model::ContextWindow>> {
            self.inner.context_window()
        }

        fn token_counter(&self) -> Option<std::sync::Arc<dyn $crate::model::TokenCounter>> {
            self.inner.token_counter()
        }
    };
}

pub mod batch;
mod breaker;
mod cache;
mod fallback;
#[cfg(feature = "redis")]
mod fleet_limit;
mod limit;
mod per_principal;
mod priced;
mod retry;
mod route;
mod timeout;

use std::sync::Arc;

pub use breaker::{
    BreakerConfig, BreakerHandle, BreakerState, BreakerStats, Breakers, CircuitBreaker, CircuitOpen,
};
pub use cache::conformance as cache_conformance;
#[cfg(feature = "redis")]
pub use cache::RedisCache;
#[cfg(feature = "sqlite")]
pub use cache::SqliteCache;
pub use cache::{cache_key, Cache, CacheStats, CacheStore, MemoryCache};
pub use fallback::Fallback;
#[cfg(feature = "redis")]
pub use fleet_limit::FleetLimit;
pub use limit::{Limit, Limits, QuotaExceeded};
pub use per_principal::PerPrincipal;
pub use priced::Priced;
pub use retry::{Retry, RetryPolicy};
pub use route::{
    fit_budget, verdict, Budget, Cascade, Check, Choice, Classify, Confident, FnCheck,
    MatchesSchema, ParsesAsAction, Policy, Router, Rules, Tier, ValidOutput,
};
pub use timeout::{Timeout, Timeouts};

use crate::model::{ChatModel, Price, SharedModel};

/// The capabilities all `models` share, so a request built for one suits
/// them all.
fn common_capabilities<'a>(
    models: impl Iterator<Item = &'a SharedModel>,
) -> crate::model::Capabilities {
    models.map(|m| m.capabilities()).fold(
        crate::model::Capabilities {
            native_tools: true,
            json_schema: true,
        },
        |a, b| crate::model::Capabilities {
            native_tools: a.native_tools && b.native_tools,
            json_schema: a.json_schema && b.json_schema,
        },
    )
}

/// The smallest context window among `models` (a request must fit
/// whichever serves it); unknown if any model's is.
async fn smallest_window<'a>(
    models: impl Iterator<Item = &'a SharedModel>,
) -> Option<crate::model::ContextWindow> {
    let mut smallest: Option<crate::model::ContextWindow> = None;
    for model in models {
        let window = model.context_window().await?;
        if smallest.as_ref().is_none_or(|s| window.tokens < s.tokens) {
            smallest = Some(window);
        }
    }
    smallest
}

/// Wraps a model in a layer by method call.
pub trait ModelExt: ChatModel + Sized {
    /// Retries transient failures ([`Retry`]).
    fn retry(self, policy: RetryPolicy) -> Retry<Self> {
        Retry::new(self, policy)
    }

    /// Time limits ([`Timeout`]).
    fn timeouts(self, limits: Timeouts) -> Timeout<Self> {
        Timeout::new(self, limits)
    }

    /// A circuit breaker of its own ([`CircuitBreaker`]).
    fn circuit_breaker(self, config: BreakerConfig) -> CircuitBreaker<Self> {
        CircuitBreaker::new(self, config)
    }

    /// Concurrency and rate limits ([`Limit`]).
    fn limit(self, limits: Limits) -> Limit<Self> {
        Limit::new(self, limits)
    }

    /// Cost at `price` ([`Priced`]).
    fn priced(self, price: Price) -> Priced<Self> {
        Priced::new(self, price)
    }

    /// Answers repeated requests from `store` ([`Cache`]).
    fn cache(self, store: Arc<dyn CacheStore>) -> Cache<Self> {
        Cache::new(self, store)
    }

    /// Sends each call as one request of a vendor batch, at the batch
    /// price ([`batch::ViaBatch`]).
    fn via_batch(
        self,
        vendor: Arc<dyn batch::BatchVendor>,
        ledger: Arc<dyn batch::BatchLedger>,
        config: batch::BatchConfig,
    ) -> batch::ViaBatch<Self> {
        batch::ViaBatch::new(self, vendor, ledger, config)
    }

    /// The model as a [`SharedModel`].
    fn shared(self) -> SharedModel
    where
        Self: 'static,
    {
        Arc::new(self)
    }
}

impl<M: ChatModel> ModelExt for M {}

/// The stack a network model gets by default: retry (default policy) around
/// time limits (default) around the circuit breaker `breakers` keep for
/// this model (by name).
pub fn default_stack<M: ChatModel + 'static>(model: M, breakers: &Breakers) -> SharedModel {
    let breaker = breakers.for_model(model.name());
    CircuitBreaker::with_handle(model, breaker)
        .timeouts(Timeouts::default())
        .retry(RetryPolicy::default())
        .shared()
}
