//! Runs on a fleet: a run queue on Redis Streams, and [`Worker`]s that
//! claim runs, run them with the [`RedisStore`](crate::store::RedisStore),
//! record their outcomes and acknowledge them.
//!
//! Delivery is at least once (a worker that dies leaves its runs to be
//! claimed again); what makes a run's effects happen once is layered on
//! top, each piece checked atomically in Redis:
//!
//! - a claim raises the run's fencing token, and every checkpoint write
//!   carries the token of the claim it runs under, so a worker that was
//!   paused past its lease cannot write over its successor's checkpoints;
//! - the new owner resumes from the last checkpoint, and the tool journal
//!   answers the calls that completed before the crash;
//! - the outcome is written once (first write wins, under the current
//!   token), in the same script that acknowledges the delivery.
//!
//! A run delivered more than [`Worker::max_deliveries`] times goes to the
//! dead-letter stream ([`RunQueue::dead_letters`]) with its last error.
//!
//! ```no_run
//! use statewise::worker::{RunQueue, Worker};
//! use statewise::{Env, Machine};
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn demo(agent: Machine) -> Result<(), Box<dyn std::error::Error>> {
//! // One process (or many): run what is queued.
//! let worker = Worker::new("redis://127.0.0.1:6379")?.machine("agent", agent);
//! tokio::spawn(worker.run(CancellationToken::new()));
//!
//! // Another: submit a run and wait for its outcome.
//! let queue = RunQueue::open("redis://127.0.0.1:6379")?;
//! queue.submit("agent", "run-1", &Env::from_user("What is 2+2?")).await?;
//! let outcome = queue.wait("run-1", std::time::Duration::from_secs(60)).await?;
//! println!("{:?}", outcome.answer);
//! # Ok(()) }
//! ```

mod children;
mod decide;
mod delivery;
mod keys;
mod outcome;
mod protocol;
mod queue;
mod runner;
mod stats;

use std::time::Duration;

pub use outcome::{DeadLetter, Outcome, OutcomeStatus};
pub use queue::{Occupancy, RunQueue, Submitted};
pub use runner::Worker;
pub use stats::WorkerStats;

use crate::backend::BackendError;
use crate::store::StoreError;

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// Redis failed (connection, script).
    #[error("run queue: {0}")]
    Backend(#[from] BackendError),
    /// The run's checkpoints could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The run had no outcome within the time waited.
    #[error("run `{run_id}` has no outcome after {waited:?}; is a worker running with the same key prefix?")]
    Timeout {
        /// The run.
        run_id: String,
        /// How long was waited.
        waited: Duration,
    },
    /// A record could not be read or written as JSON.
    #[error("{what} is not valid JSON: {source}")]
    Corrupt {
        /// What was being read or written.
        what: String,
        /// What was wrong.
        #[source]
        source: serde_json::Error,
    },
}
