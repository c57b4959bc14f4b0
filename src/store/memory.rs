//! [`MemoryStore`]: checkpoints in a map, for tests and short-lived runs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::BoxFuture;

use super::{Checkpoint, CheckpointMeta, Store, StoreError};

type Runs = BTreeMap<String, BTreeMap<u32, Arc<Checkpoint>>>;

/// Checkpoints in memory. Clones share the same map, so a clone is the
/// same store "reopened".
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    runs: Arc<Mutex<Runs>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Runs> {
        // A writer that panicked left whole entries behind (inserts are
        // single map operations), so the map is still consistent.
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for MemoryStore {
    fn put<'a>(&'a self, checkpoint: &'a Checkpoint) -> BoxFuture<'a, Result<(), StoreError>> {
        let saved = Arc::new(checkpoint.clone());
        self.lock()
            .entry(checkpoint.run_id.clone())
            .or_default()
            .insert(checkpoint.step, saved);
        Box::pin(async { Ok(()) })
    }

    fn get<'a>(
        &'a self,
        run_id: &'a str,
        step: Option<u32>,
    ) -> BoxFuture<'a, Result<Option<Checkpoint>, StoreError>> {
        let found = self.lock().get(run_id).and_then(|steps| match step {
            Some(s) => steps.get(&s).cloned(),
            None => steps.values().next_back().cloned(),
        });
        Box::pin(async move { Ok(found.map(Arc::unwrap_or_clone)) })
    }

    fn list<'a>(
        &'a self,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<CheckpointMeta>, StoreError>> {
        let metas = self
            .lock()
            .get(run_id)
            .map(|steps| steps.values().map(|c| CheckpointMeta::from(&**c)).collect())
            .unwrap_or_default();
        Box::pin(async move { Ok(metas) })
    }

    fn runs(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        let runs = self.lock().keys().cloned().collect();
        Box::pin(async move { Ok(runs) })
    }

    fn delete<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        let removed = self.lock().remove(run_id).is_some();
        Box::pin(async move { Ok(removed) })
    }

    fn put_new<'a>(
        &'a self,
        checkpoint: &'a Checkpoint,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        // Under one lock, so two forks to one id cannot both succeed.
        let mut runs = self.lock();
        let written = !runs.contains_key(&checkpoint.run_id);
        if written {
            runs.entry(checkpoint.run_id.clone())
                .or_default()
                .insert(checkpoint.step, Arc::new(checkpoint.clone()));
        }
        Box::pin(async move { Ok(written) })
    }
}
