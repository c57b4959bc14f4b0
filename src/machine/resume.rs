//! Continuing saved runs: after a crash ([`Machine::resume`]), from any
//! step as a new run ([`Machine::rerun`]), or with a person's response
//! ([`Machine::resume_with`]). Each starts from the run's checkpoint; what
//! a checkpoint says of its run is decided in `decide.rs`.

use std::sync::Arc;

use futures::StreamExt;

use super::decide::{self, Resumed};
use super::event::Event;
use super::{events_only, EventStream, Machine, MachineError, RunCtx};
use crate::store::{self, Checkpoint, Delivery, StoreError};

impl Machine {
    /// Continues run `run_id` from its last checkpoint, after a crash or a
    /// deliberate stop. A run that had ended yields its result again.
    pub async fn resume(&self, run_id: &str) -> Result<EventStream, MachineError> {
        let store = self.store.as_ref().ok_or(MachineError::NoStore)?;
        let last = store
            .get(run_id, None)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                run_id: run_id.to_owned(),
                step: None,
            })?;
        Ok(self.continue_from(last, RunCtx::fresh("")))
    }

    /// Starts run `new_run_id` from `step` of run `run_id` and streams it:
    /// the old run is left as it was. Step 0 is the env the old run started
    /// with.
    pub async fn rerun(
        &self,
        run_id: &str,
        step: u32,
        new_run_id: &str,
    ) -> Result<EventStream, MachineError> {
        let store = self.store.as_ref().ok_or(MachineError::NoStore)?;
        let first = store.rerun(run_id, step, new_run_id).await?;
        Ok(self.continue_from(first, RunCtx::fresh("")))
    }

    /// Continues run `run_id`, paused for a person
    /// ([`EventKind::Interrupted`](crate::machine::event::EventKind::Interrupted)), with the person's `response`: it is
    /// filed under the request's id ([`Env::response`](crate::env::Env::response)) in the run (or the
    /// branch or sub-machine) that asked, and the run goes on from its
    /// checkpoint. Nothing done before the pause runs again: finished
    /// branches and the steps before it are taken from the store.
    pub async fn resume_with(
        &self,
        run_id: &str,
        response: serde_json::Value,
    ) -> Result<EventStream, MachineError> {
        let store = self.store.as_ref().ok_or(MachineError::NoStore)?;
        match store::deliver(&**store, run_id, response).await? {
            Delivery::Filed(last) => Ok(self.continue_from(*last, RunCtx::fresh(""))),
            Delivery::NotPaused { run_id } => Err(MachineError::NotPaused { run_id }),
        }
    }

    /// Continues `checkpoint`'s run (or yields its result, if it had
    /// ended or is waiting for a person), where `base` sits (a child's
    /// branch, tally and deadline; run id and path come from the
    /// checkpoint).
    pub(super) fn continue_from(&self, checkpoint: Checkpoint, base: RunCtx) -> EventStream {
        let Checkpoint {
            run_id,
            step,
            state,
            next,
            env,
            path,
            failed,
            ..
        } = checkpoint;
        match decide::resumed(&next, &env, failed) {
            Resumed::Continue => {
                let ctx = RunCtx {
                    run_id: Arc::from(run_id),
                    path,
                    resumed_at: Some(step),
                    from: state,
                    ..base
                };
                events_only(self.drive(next, env, false, ctx))
            }
            Resumed::Ended {
                error,
                interrupted,
                state: failed_in,
            } => {
                let state = failed_in.or(state).unwrap_or_default();
                let (_, kind) = decide::ended(env, path, run_id, error, interrupted);
                let event = Event {
                    step,
                    state: Arc::from(state),
                    branch: base.branch,
                    kind,
                };
                futures::stream::once(async move { event }).boxed()
            }
        }
    }
}
