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

pub mod batch;
mod breaker;
mod cache;
pub mod cache_conformance;
mod fallback;
#[cfg(feature = "redis")]
mod fleet_limit;
mod limit;
#[cfg(feature = "redis")]
mod redis_cache;
mod retry;
#[cfg(feature = "sqlite")]
mod sqlite_cache;
mod timeout;

use std::sync::Arc;

pub use breaker::{BreakerConfig, BreakerHandle, BreakerState, BreakerStats, CircuitBreaker};
pub use cache::{cache_key, Cache, CacheStats, CacheStore, MemoryCache};
pub use fallback::Fallback;
#[cfg(feature = "redis")]
pub use fleet_limit::FleetLimit;
pub use limit::{Limit, Limits};
#[cfg(feature = "redis")]
pub use redis_cache::RedisCache;
pub use retry::{Retry, RetryPolicy};
#[cfg(feature = "sqlite")]
pub use sqlite_cache::SqliteCache;
pub use timeout::{Timeout, Timeouts};

use crate::model::{ChatModel, Price, Priced, SharedModel};

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
/// time limits (default) around the process-wide circuit breaker of this
/// model (by name).
pub fn default_stack<M: ChatModel + 'static>(model: M) -> SharedModel {
    let breaker = BreakerHandle::for_model(model.name(), BreakerConfig::default());
    CircuitBreaker::with_handle(model, breaker)
        .timeouts(Timeouts::default())
        .retry(RetryPolicy::default())
        .shared()
}
