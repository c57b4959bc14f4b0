//! [`Recorder`]: the driver's one hook for what outlives a run, checkpoints
//! (a [`Store`]) and trace records (a [`Tracer`]).
//!
//! The driver calls it at fixed points (opened, a state entered, emitted,
//! restarted and settled, a checkpoint saved, the run ended) and nowhere
//! else touches a store or a tracer. Each point that does I/O returns a
//! boxed future only when there is something to write, so a run with
//! neither a store nor a tracer carries none of it.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::MachineError;
use crate::backend::now_ms;
use crate::env::{Env, ErrorRecord};
use crate::state::{Emit, Next};
use crate::store::{Checkpoint, Store};
use crate::trace::{EndRecord, RunRecord, StepTrace, TraceRecord, TracedError, Tracer};

/// A write to a store or a tracer, if there is one to make.
pub(super) type Writing<'a> = Option<BoxFuture<'a, Result<(), MachineError>>>;

/// Writes one run's checkpoints and trace records.
pub(super) struct Recorder {
    run_id: Arc<str>,
    /// The parent run and the branch, for a child run.
    parent: Option<(Arc<str>, Arc<str>)>,
    store: Option<Arc<dyn Store>>,
    tracer: Option<Tracer>,
    /// The trace of the state now running.
    step: Option<Box<StepTrace>>,
    started: std::time::Instant,
}

impl Recorder {
    pub(super) fn new(
        run_id: Arc<str>,
        parent: Option<(Arc<str>, Arc<str>)>,
        store: Option<Arc<dyn Store>>,
        tracer: Option<Tracer>,
    ) -> Self {
        Recorder {
            run_id,
            parent,
            store,
            tracer,
            step: None,
            started: std::time::Instant::now(),
        }
    }

    /// The run starts at `at` (state `start`) with `env`, or resumes after
    /// step `resumed_at`: its start record, and for a new run step 0, the
    /// env it starts with, so even a crash in the first state resumes.
    pub(super) fn opened<'a>(
        &'a self,
        start: &'a str,
        at: &'a Next,
        env: &'a Env,
        path: &'a [String],
        resumed_at: Option<u32>,
    ) -> Writing<'a> {
        if self.store.is_none() && self.tracer.is_none() {
            return None;
        }
        Some(
            async move {
                if let Some(tracer) = &self.tracer {
                    let record = RunRecord {
                        run_id: self.run_id.to_string(),
                        start: start.to_owned(),
                        started_ms: now_ms(),
                        resumed_at,
                        env: env.clone(),
                        parent: self.parent.as_ref().map(|(p, _)| p.to_string()),
                        branch: self.parent.as_ref().map(|(_, b)| b.to_string()),
                    };
                    tracer.write(&TraceRecord::Run(Box::new(record))).await?;
                }
                if let (Some(store), None) = (&self.store, resumed_at) {
                    store
                        .put(&checkpoint(&self.run_id, None, at.clone(), env, path))
                        .await?;
                }
                Ok(())
            }
            .boxed(),
        )
    }

    /// State `name` is entered as step `step`, from `env` (the env
    /// [`Machine::step`](super::Machine::step) would take to rerun it).
    pub(super) fn entered(&mut self, step: u32, name: &str, env: &Env) {
        if self.tracer.is_some() {
            self.step = Some(Box::new(StepTrace::new(
                &self.run_id,
                step,
                name,
                env.clone(),
            )));
        }
    }

    /// The running state streamed `emit`.
    pub(super) fn emitted(&mut self, emit: &Emit) {
        if let Some(step) = &mut self.step {
            step.observe(emit);
        }
    }

    /// The running state restarts, for `reason`.
    pub(super) fn restarted(&mut self, reason: &str) {
        if let Some(step) = &mut self.step {
            step.restart(reason.to_owned());
        }
    }

    /// The running state settled: where it sends the run (or why the run
    /// fails), and an error it recovered from.
    pub(super) fn settled(
        &mut self,
        env: &Env,
        decided: &Result<Next, MachineError>,
        routed: Option<ErrorRecord>,
    ) -> Writing<'_> {
        let (tracer, step) = (self.tracer.as_ref()?, self.step.take()?);
        let error = match (decided, routed) {
            (Err(e), _) => Some(TracedError::from(e)),
            (Ok(_), routed) => routed.map(|r| TracedError {
                kind: r.kind,
                message: r.message,
            }),
        };
        let record = TraceRecord::Step(Box::new(step.finish(
            env,
            decided.as_ref().ok().cloned(),
            error,
        )));
        Some(async move { Ok(tracer.write(&record).await?) }.boxed())
    }

    /// A checkpoint after `state` (`None` before any): the run goes on at
    /// `next` from `env`.
    pub(super) fn saved<'a>(
        &'a self,
        state: Option<&str>,
        next: Next,
        env: &Env,
        path: &[String],
    ) -> Writing<'a> {
        let store = self.store.as_ref()?;
        let checkpoint = checkpoint(&self.run_id, state, next, env, path);
        Some(async move { Ok(store.put(&checkpoint).await?) }.boxed())
    }

    /// The run failed with `error` and is done anyway (a branch whose join
    /// sees the failure): saved as ended, failure and all, so a resumed
    /// parent reads it back instead of running it again.
    pub(super) fn failed<'a>(
        &'a self,
        error: &MachineError,
        step: u32,
        env: &Env,
        path: &[String],
    ) -> Writing<'a> {
        let store = self.store.as_ref()?;
        let state = path.last().map(String::as_str);
        let mut last = checkpoint(&self.run_id, state, Next::End, env, path);
        last.failed = Some(ErrorRecord {
            step,
            state: state.unwrap_or_default().to_owned(),
            kind: error.code(),
            message: error.to_string(),
        });
        Some(async move { Ok(store.put(&last).await?) }.boxed())
    }

    /// The run ended (with `error`, if it failed): its end record.
    pub(super) fn ended<'a>(
        &'a self,
        env: &Env,
        path: &[String],
        error: Option<&MachineError>,
    ) -> Writing<'a> {
        let tracer = self.tracer.as_ref()?;
        let record = TraceRecord::End(EndRecord {
            run_id: self.run_id.to_string(),
            answer: env.answer.clone(),
            path: path.to_vec(),
            usage: env.usage,
            elapsed_ms: self.started.elapsed().as_secs_f64() * 1e3,
            error: error.map(TracedError::from),
        });
        Some(async move { Ok(tracer.write(&record).await?) }.boxed())
    }
}

fn checkpoint(
    run_id: &str,
    state: Option<&str>,
    next: Next,
    env: &Env,
    path: &[String],
) -> Checkpoint {
    Checkpoint {
        run_id: run_id.to_owned(),
        step: env.step,
        state: state.map(str::to_owned),
        next,
        env: env.clone(),
        path: path.to_vec(),
        parent: None,
        created_ms: now_ms(),
        failed: None,
    }
}

impl From<&MachineError> for TracedError {
    /// The failure's [`code`](MachineError::code) (`model:http_503`).
    fn from(error: &MachineError) -> Self {
        TracedError {
            kind: error.code(),
            message: error.to_string(),
        }
    }
}
