//! Forks on the fleet: the [`Dispatch`] a worker gives each run, which
//! puts the run's fork branches on the queue as child runs.
//!
//! A child is queued once per run id (its id is fixed by where it sits in
//! the parent), so a parent resumed after a crash hands out the same
//! children again without queueing them twice. Whether one was given up
//! is read from its recorded outcome.

use futures::future::BoxFuture;

use super::keys::Keys;
use super::outcome::{Outcome, OutcomeStatus};
use super::protocol::{ensure_group, SUBMIT_CHILD};
use crate::backend::redis::RedisConn;
use crate::backend::BackendError;
use crate::machine::{ChildRun, Dispatch};

/// Hands a run's fork branches to the queue, as runs of `machine`.
#[derive(Debug, Clone)]
pub(super) struct QueueDispatch {
    pub(super) conn: RedisConn,
    pub(super) keys: Keys,
    pub(super) machine: String,
    /// The parent delivery's W3C traceparent: children join its trace.
    pub(super) trace: String,
}

impl Dispatch for QueueDispatch {
    fn dispatch<'a>(&'a self, child: &'a ChildRun) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            // An Env always serializes: its maps have string keys.
            let text = serde_json::to_string(child)
                .map_err(|e| BackendError::corrupt(child.run_id.clone(), e))?;
            ensure_group(&self.conn, &self.keys).await?;
            let keys = [self.keys.submitted(), self.keys.queue()];
            self.conn
                .run(|mut conn| {
                    let mut call = SUBMIT_CHILD.prepare_invoke();
                    call.key(&keys[..])
                        .arg(&child.run_id)
                        .arg(&self.machine)
                        .arg(&self.trace)
                        .arg(&text);
                    async move { call.invoke_async::<i64>(&mut conn).await }
                })
                .await?;
            Ok(())
        })
    }

    fn given_up<'a>(
        &'a self,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<(String, String)>, BackendError>> {
        Box::pin(async move {
            let Some(text) = self.conn.hget(&self.keys.outcomes(), run_id).await? else {
                return Ok(None);
            };
            let outcome: Outcome = serde_json::from_str(&text)
                .map_err(|e| BackendError::corrupt(format!("outcome of {run_id}"), e))?;
            Ok(match outcome.status {
                OutcomeStatus::Failed | OutcomeStatus::Dead => Some((
                    outcome.code.unwrap_or_else(|| "failed".to_owned()),
                    outcome.error.unwrap_or_default(),
                )),
                _ => None,
            })
        })
    }
}
