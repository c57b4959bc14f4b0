//! [`Journal`]: tool calls that completed, kept by idempotency key, so a
//! resumed run does not call them again.
//!
//! A checkpoint is written after a state, but a state can make several tool
//! calls, each with effects outside (a payment, an email). The journal
//! records each call's observation as it finishes; the toolbox reads it
//! before calling, and a call found there is answered from it. It sits with
//! the env because the run's settings carry it to the tools.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use super::Observation;

/// Why a journal could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("tool journal failed: {0}")]
pub struct JournalError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// Completed tool calls by run and idempotency key
/// ([`ToolContext::idempotency_key`](crate::tool::ToolContext::idempotency_key)).
pub trait Journal: Send + Sync + std::fmt::Debug {
    /// The observation recorded for `key` in run `run_id`, if the call
    /// completed.
    fn recorded<'a>(
        &'a self,
        run_id: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Observation>, JournalError>>;

    /// Records that the call `key` of run `run_id` completed with
    /// `observation`.
    fn record<'a>(
        &'a self,
        run_id: &'a str,
        key: &'a str,
        observation: &'a Observation,
    ) -> BoxFuture<'a, Result<(), JournalError>>;
}

/// A journal in memory, for tests and single-process runs.
#[derive(Debug, Clone, Default)]
pub struct MemoryJournal {
    entries: Arc<Mutex<HashMap<(String, String), Observation>>>,
}

impl MemoryJournal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many calls it holds.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Journal for MemoryJournal {
    fn recorded<'a>(
        &'a self,
        run_id: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Observation>, JournalError>> {
        let found = self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(run_id.to_owned(), key.to_owned()))
            .cloned();
        Box::pin(async move { Ok(found) })
    }

    fn record<'a>(
        &'a self,
        run_id: &'a str,
        key: &'a str,
        observation: &'a Observation,
    ) -> BoxFuture<'a, Result<(), JournalError>> {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((run_id.to_owned(), key.to_owned()), observation.clone());
        Box::pin(async { Ok(()) })
    }
}
