//! [`BatchLedger`]: which batch each call went out in, and what came back,
//! kept where a restarted process finds it.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use super::vendor::ItemOutcome;
use crate::backend::BackendError;

/// What the ledger knows of a call.
#[derive(Debug, Clone, PartialEq)]
pub enum LedgerEntry {
    /// Sent in batch `batch_id`, not back yet.
    Submitted {
        /// The batch.
        batch_id: String,
    },
    /// Back.
    Done(ItemOutcome),
}

/// Keeps, by `custom_id`, the batch each call went out in and its outcome,
/// and the batches still in flight: a process restarted while a batch is
/// out re-attaches to it instead of submitting its calls again.
pub trait BatchLedger: Send + Sync {
    /// What is known of call `custom_id`.
    fn lookup<'a>(
        &'a self,
        custom_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<LedgerEntry>, BackendError>>;

    /// Batch `batch_id` went out with these calls.
    fn submitted<'a>(
        &'a self,
        batch_id: &'a str,
        custom_ids: &'a [String],
    ) -> BoxFuture<'a, Result<(), BackendError>>;

    /// Batch `batch_id` ended with these outcomes.
    fn finished<'a>(
        &'a self,
        batch_id: &'a str,
        outcomes: &'a [(String, ItemOutcome)],
    ) -> BoxFuture<'a, Result<(), BackendError>>;

    /// Forgets call `custom_id` (it expired and goes out again).
    fn forget<'a>(&'a self, custom_id: &'a str) -> BoxFuture<'a, Result<(), BackendError>>;

    /// The batches that went out and have not ended.
    fn in_flight(&self) -> BoxFuture<'_, Result<Vec<String>, BackendError>>;
}

/// A ledger in memory: for tests, and for a process that will not restart
/// mid-batch. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct MemoryLedger {
    inner: Arc<Mutex<Entries>>,
}

#[derive(Debug, Default)]
struct Entries {
    calls: HashMap<String, LedgerEntry>,
    in_flight: BTreeSet<String>,
}

impl MemoryLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl BatchLedger for MemoryLedger {
    fn lookup<'a>(
        &'a self,
        custom_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<LedgerEntry>, BackendError>> {
        let found = self.lock().calls.get(custom_id).cloned();
        Box::pin(async move { Ok(found) })
    }

    fn submitted<'a>(
        &'a self,
        batch_id: &'a str,
        custom_ids: &'a [String],
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        let mut entries = self.lock();
        entries.in_flight.insert(batch_id.to_owned());
        for id in custom_ids {
            entries.calls.insert(
                id.clone(),
                LedgerEntry::Submitted {
                    batch_id: batch_id.to_owned(),
                },
            );
        }
        Box::pin(async { Ok(()) })
    }

    fn finished<'a>(
        &'a self,
        batch_id: &'a str,
        outcomes: &'a [(String, ItemOutcome)],
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        let mut entries = self.lock();
        entries.in_flight.remove(batch_id);
        for (id, outcome) in outcomes {
            entries
                .calls
                .insert(id.clone(), LedgerEntry::Done(outcome.clone()));
        }
        Box::pin(async { Ok(()) })
    }

    fn forget<'a>(&'a self, custom_id: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        self.lock().calls.remove(custom_id);
        Box::pin(async { Ok(()) })
    }

    fn in_flight(&self) -> BoxFuture<'_, Result<Vec<String>, BackendError>> {
        let batches = self.lock().in_flight.iter().cloned().collect();
        Box::pin(async move { Ok(batches) })
    }
}
