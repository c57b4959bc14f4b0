//! [`BatchVendor`]: what the batch layer needs of a vendor's Batch API.

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::model::{ChatRequest, ModelError, Reply};

/// One request of a batch, named by its `custom_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRequest {
    /// The id the vendor returns its result under.
    pub custom_id: String,
    /// The call.
    pub request: ChatRequest,
}

/// How large one batch may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Requests in one batch, at most.
    pub max_requests: usize,
    /// Bytes of one batch's requests (as JSON), at most.
    pub max_bytes: usize,
}

/// Where a submitted batch is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchState {
    /// Not done yet (validating, in progress, finalizing).
    Running,
    /// Done: results can be read (some may have failed).
    Ended,
    /// The vendor failed the whole batch; no results.
    Failed(String),
}

/// What became of one request of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ItemOutcome {
    /// The model's reply, with its exact usage.
    Succeeded {
        /// The reply.
        reply: Reply,
    },
    /// The request failed at the vendor.
    Errored {
        /// The HTTP status the vendor gave it, if any.
        status: Option<u16>,
        /// What the vendor said.
        message: String,
    },
    /// The batch's window ran out before the request was served.
    Expired,
    /// The batch was cancelled before the request was served.
    Canceled,
}

/// A vendor's Batch API: submit requests, poll the batch, read its results.
pub trait BatchVendor: Send + Sync {
    /// The vendor's name (`openai`, `anthropic`).
    fn name(&self) -> &str;

    /// How large one batch may be.
    fn limits(&self) -> BatchLimits;

    /// Submits `requests` as one batch; its id.
    fn submit<'a>(
        &'a self,
        requests: &'a [BatchRequest],
    ) -> BoxFuture<'a, Result<String, ModelError>>;

    /// Where batch `batch_id` is.
    fn state<'a>(&'a self, batch_id: &'a str) -> BoxFuture<'a, Result<BatchState, ModelError>>;

    /// The outcome of every request of an ended batch, by `custom_id`, in
    /// any order; a request missing from them expired.
    fn results<'a>(
        &'a self,
        batch_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, ItemOutcome)>, ModelError>>;
}

/// The lines of a vendor's JSONL results file, each read as a `T`; a line
/// that is not one is a protocol error.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(super) fn jsonl<T: DeserializeOwned>(provider: &str, text: &str) -> Result<Vec<T>, ModelError> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).map_err(|e| ModelError::Protocol {
                provider: provider.to_owned(),
                chunks: 0,
                message: format!("a batch result line is not one: {e}"),
            })
        })
        .collect()
}
