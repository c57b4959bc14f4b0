//! Checkpoints: the [`Env`] saved after every step, so a run can resume
//! after a crash or rerun from any step.
//!
//! A [`Store`] keeps [`Checkpoint`]s by run id and step. Give a machine one
//! with [`Machine::with_store`](crate::Machine::with_store) and it saves the
//! env before the first state (step 0) and after each state, before entering
//! the next. [`Machine::resume`](crate::Machine::resume) continues a run from
//! its last checkpoint; [`Machine::rerun`](crate::Machine::rerun) starts a new
//! run from any step of an old one.
//!
//! Four stores come with the engine: [`MemoryStore`], [`SqliteStore`] (the
//! embedded on-disk default), and for runs shared by several processes or
//! machines `RedisStore` (feature `redis`) and `PostgresStore` (feature
//! `postgres`). Every store passes the same
//! [`conformance`] suite, which a new backend runs against itself.
//!
//! ```
//! use statewise::store::{MemoryStore, Store};
//! use statewise::{Env, Machine, Next, state::FnState};
//!
//! # tokio_test_block_on(async {
//! let store = MemoryStore::new();
//! let machine = Machine::new("greet")
//!     .with_state(FnState::new("greet", |env: &mut Env| { env.answer = Some("hi".into()); Ok(()) }, |_: &Env| Next::End))
//!     .with_store(store.clone());
//! let out = machine.run_as("run-1", Env::new()).await.unwrap();
//! let last = store.get("run-1", None).await.unwrap().unwrap();
//! assert_eq!((last.step, last.next, last.env.answer), (1, Next::End, out.answer));
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```

pub mod conformance;
mod deliver;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "sqlite")]
mod sqlite;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::backend::{now_ms, BackendError};
use crate::env::Env;
use crate::state::Next;

#[cfg(feature = "postgres")]
pub use self::postgres::PostgresStore;
#[cfg(feature = "redis")]
pub use self::redis::RedisStore;
pub(crate) use deliver::{deliver, Delivery};
pub use memory::MemoryStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

/// The env of a run after one of its steps, and where the run goes next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The run.
    pub run_id: String,
    /// States run so far (`env.step`); 0 is the env the run started with.
    pub step: u32,
    /// The state that ran in this step (`None` at step 0).
    #[serde(default)]
    pub state: Option<String>,
    /// Where the run goes from here; [`Next::End`] once it has finished.
    pub next: Next,
    /// The env after the step.
    pub env: Env,
    /// The names of the states run so far, in order.
    #[serde(default)]
    pub path: Vec<String>,
    /// The run and step this run reruns from ([`Store::rerun`]).
    #[serde(default)]
    pub parent: Option<Parent>,
    /// When it was saved, in milliseconds since the Unix epoch.
    #[serde(default)]
    pub created_ms: u64,
    /// The run failed here and is done: a fork's branch whose join sees
    /// the failure. Resuming it yields the failure again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<crate::env::ErrorRecord>,
}

impl Checkpoint {
    /// The first checkpoint of run `new_run_id`, a rerun of `origin` (the
    /// checkpoint of `run_id` at `step`, if there is one).
    pub(crate) fn rerun_of(
        origin: Option<Checkpoint>,
        run_id: &str,
        step: u32,
        new_run_id: &str,
    ) -> Result<Checkpoint, StoreError> {
        let origin = origin.ok_or_else(|| StoreError::NotFound {
            run_id: run_id.to_owned(),
            step: Some(step),
        })?;
        Ok(Checkpoint {
            run_id: new_run_id.to_owned(),
            parent: Some(Parent {
                run_id: run_id.to_owned(),
                step,
            }),
            created_ms: now_ms(),
            ..origin
        })
    }
}

/// Whether a check-and-write that was sent again after a dropped
/// connection, and found `checkpoint.run_id` taken, found its own first
/// attempt: the store holds exactly `checkpoint`. Ask only after a resend:
/// a first attempt that finds the id taken did not write, even if what is
/// there is identical.
#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) async fn own_first_attempt<S: Store + ?Sized>(
    store: &S,
    checkpoint: &Checkpoint,
) -> Result<bool, StoreError> {
    let found = store.get(&checkpoint.run_id, Some(checkpoint.step)).await?;
    Ok(found.as_ref() == Some(checkpoint))
}

/// Where a rerun came from ([`Store::rerun`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parent {
    /// The original run.
    pub run_id: String,
    /// Its step the rerun starts from.
    pub step: u32,
}

/// A checkpoint without its env, as [`Store::list`] returns them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// The run.
    pub run_id: String,
    /// The step.
    pub step: u32,
    /// The state that ran in it.
    pub state: Option<String>,
    /// Where the run goes next.
    pub next: Next,
    /// When it was saved (ms since the Unix epoch).
    pub created_ms: u64,
}

impl From<&Checkpoint> for CheckpointMeta {
    fn from(c: &Checkpoint) -> Self {
        CheckpointMeta {
            run_id: c.run_id.clone(),
            step: c.step,
            state: c.state.clone(),
            next: c.next.clone(),
            created_ms: c.created_ms,
        }
    }
}

/// Why a store could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No checkpoint for this run (and step).
    #[error("no checkpoint for run `{run_id}`{}", .step.map(|s| format!(" at step {s}")).unwrap_or_default())]
    NotFound {
        /// The run.
        run_id: String,
        /// The step asked for; `None` for the latest.
        step: Option<u32>,
    },
    /// A rerun was asked to create a run id that already has checkpoints.
    #[error("run `{run_id}` already exists")]
    Exists {
        /// The run.
        run_id: String,
    },
    /// A write of a run whose claim this process lost: another worker took
    /// the run over (it was idle too long), so this one must stop. The
    /// write was not made.
    #[error("run `{run_id}` was claimed by another worker (fencing token {token} is stale); stop working on it")]
    Fenced {
        /// The run.
        run_id: String,
        /// The stale token the write carried.
        token: u64,
    },
    /// A saved record could not be read back.
    #[error("corrupt record for run `{run_id}`: {source}")]
    Corrupt {
        /// The run.
        run_id: String,
        /// What was wrong with it.
        #[source]
        source: serde_json::Error,
    },
    /// The database behind the store failed (I/O, SQL, connection).
    #[error("store: {0}")]
    Backend(#[from] BackendError),
}

impl StoreError {
    /// Wraps a database client's own error (for stores written outside
    /// this crate too).
    pub fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Backend(BackendError::new(e))
    }
}

/// Keeps checkpoints by run id and step.
///
/// `put` replaces a checkpoint with the same run id and step; concurrent
/// writers (tasks or processes) must all land. Every implementation passes
/// [`conformance::check`].
pub trait Store: Send + Sync {
    /// Saves `checkpoint`, replacing one with the same run id and step.
    fn put<'a>(&'a self, checkpoint: &'a Checkpoint) -> BoxFuture<'a, Result<(), StoreError>>;

    /// The checkpoint of `run_id` at `step`, or its latest for `None`.
    fn get<'a>(
        &'a self,
        run_id: &'a str,
        step: Option<u32>,
    ) -> BoxFuture<'a, Result<Option<Checkpoint>, StoreError>>;

    /// The checkpoints of `run_id`, by step, without their envs.
    fn list<'a>(
        &'a self,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<CheckpointMeta>, StoreError>>;

    /// Every run id with checkpoints, sorted.
    fn runs(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>>;

    /// Removes every checkpoint of `run_id`; true if there were any.
    fn delete<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Saves `checkpoint` only if its run has no checkpoints yet: `true`
    /// if it was written, `false` if the run id is taken. A backend that
    /// can check and write in one atomic step does (all of this crate's
    /// do); this default checks, then puts. A backend that sends a write
    /// again after a dropped connection answers `true` when what it finds
    /// is its own first attempt.
    fn put_new<'a>(
        &'a self,
        checkpoint: &'a Checkpoint,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            if !self.list(&checkpoint.run_id).await?.is_empty() {
                return Ok(false);
            }
            self.put(checkpoint).await?;
            Ok(true)
        })
    }

    /// Starts run `new_run_id` at `step` of `run_id`: a copy of that
    /// checkpoint recording where it came from, written with
    /// [`put_new`](Self::put_new). Fails with [`StoreError::Exists`] if
    /// `new_run_id` has checkpoints.
    fn rerun<'a>(
        &'a self,
        run_id: &'a str,
        step: u32,
        new_run_id: &'a str,
    ) -> BoxFuture<'a, Result<Checkpoint, StoreError>> {
        Box::pin(async move {
            let origin = self.get(run_id, Some(step)).await?;
            let first = Checkpoint::rerun_of(origin, run_id, step, new_run_id)?;
            if !self.put_new(&first).await? {
                return Err(StoreError::Exists {
                    run_id: first.run_id,
                });
            }
            Ok(first)
        })
    }
}

impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    fn put<'a>(&'a self, checkpoint: &'a Checkpoint) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).put(checkpoint)
    }
    fn get<'a>(
        &'a self,
        run_id: &'a str,
        step: Option<u32>,
    ) -> BoxFuture<'a, Result<Option<Checkpoint>, StoreError>> {
        (**self).get(run_id, step)
    }
    fn list<'a>(
        &'a self,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<CheckpointMeta>, StoreError>> {
        (**self).list(run_id)
    }
    fn runs(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        (**self).runs()
    }
    fn delete<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        (**self).delete(run_id)
    }
    fn put_new<'a>(
        &'a self,
        checkpoint: &'a Checkpoint,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        (**self).put_new(checkpoint)
    }
    fn rerun<'a>(
        &'a self,
        run_id: &'a str,
        step: u32,
        new_run_id: &'a str,
    ) -> BoxFuture<'a, Result<Checkpoint, StoreError>> {
        (**self).rerun(run_id, step, new_run_id)
    }
}

/// `value` as JSON, for a record of run `run_id`.
#[cfg(any(feature = "sqlite", feature = "redis", feature = "postgres"))]
pub(crate) fn to_json<T: Serialize>(value: &T, run_id: &str) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Corrupt {
        run_id: run_id.to_owned(),
        source,
    })
}

/// A record of run `run_id` read back from JSON.
#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    text: &str,
    run_id: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|source| StoreError::Corrupt {
        run_id: run_id.to_owned(),
        source,
    })
}

/// A fresh run id: time-ordered, unique enough for one machine's runs.
pub fn new_run_id() -> String {
    format!("run-{:012x}-{:08x}", now_ms(), fastrand::u32(..))
}
