//! [`WorkerStats`]: what a worker has done, counted as it goes.

use std::sync::atomic::{AtomicU64, Ordering};

/// What a worker has done so far.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub(super) claimed: AtomicU64,
    pub(super) reclaimed: AtomicU64,
    pub(super) recorded: AtomicU64,
    pub(super) released: AtomicU64,
    pub(super) abandoned: AtomicU64,
    pub(super) dead: AtomicU64,
    pub(super) parked: AtomicU64,
}

impl WorkerStats {
    /// Runs taken from the queue as new deliveries.
    pub fn claimed(&self) -> u64 {
        self.claimed.load(Ordering::Relaxed)
    }
    /// Runs taken over from a worker whose lease ran out.
    pub fn reclaimed(&self) -> u64 {
        self.reclaimed.load(Ordering::Relaxed)
    }
    /// Outcomes this worker recorded.
    pub fn recorded(&self) -> u64 {
        self.recorded.load(Ordering::Relaxed)
    }
    /// Deliveries left for another try (the store failed, a panic).
    pub fn released(&self) -> u64 {
        self.released.load(Ordering::Relaxed)
    }
    /// Runs dropped because another worker had taken them over.
    pub fn abandoned(&self) -> u64 {
        self.abandoned.load(Ordering::Relaxed)
    }
    /// Runs this worker sent to the dead-letter stream.
    pub fn dead(&self) -> u64 {
        self.dead.load(Ordering::Relaxed)
    }
    /// Times a run was parked to wait for its child runs.
    pub fn parked(&self) -> u64 {
        self.parked.load(Ordering::Relaxed)
    }
}
