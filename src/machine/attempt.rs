//! Running one state: each attempt under the earlier of its own timeout
//! and the run's deadline, restarted from the env it started with when a
//! model stream was cut after it had streamed (as the limits allow), then
//! routed by the state's transition or its error route.

use std::sync::Arc;

use futures::StreamExt;
use tokio::time::Instant;
use tracing::{Instrument, Span};

use super::decide::{self, Attempt, Failure, Route};
use super::driver::{tagged, Out, Run};
use super::event::EventKind;
use super::step::Ran;
use crate::env::{Env, RunSettings};
use crate::state::{Emit, State, StateError};

impl Run {
    /// Runs `state` at `step` until it settles, restarting it as the limits
    /// allow, and routes how it ended.
    pub(super) async fn attempts(
        &mut self,
        state: Arc<dyn State>,
        step: u32,
        span: &Span,
        out: &Out,
    ) -> Ran {
        let limits = self.machine.limits;
        // A state cut off after streaming restarts from the env it
        // started with, so nothing it wrote is kept twice.
        let snapshot = (limits.state_retries > 0).then(|| Box::new(self.env.clone()));
        let mut attempt = 0;
        let failure = loop {
            let failure = self.attempt(&*state, step, span, out).await;
            match decide::after_attempt(failure, attempt, snapshot.is_some(), &limits) {
                Attempt::Restart { attempt: n, reason } => {
                    attempt = n;
                    if let Some(start) = &snapshot {
                        self.env = Env::clone(start);
                    }
                    self.recorder.restarted(&reason);
                    out.emit(self.event(step, EventKind::StateRetried { attempt, reason }))
                        .await;
                }
                Attempt::Settled(failure) => break failure,
            }
        };
        // Where the run goes, or why it stops here, and the error the
        // step record shows (a routed error goes on to `next`).
        let name = Arc::clone(&self.name);
        match decide::route(&*state, &name, step, &self.env, failure) {
            Route::To(next) => (Ok(next), None),
            // The state declared where to go on this error.
            Route::Recovered(next, record) => {
                self.env.errors.push(record.clone());
                out.emit(self.event(
                    step,
                    EventKind::StateFailed {
                        error: record.clone(),
                    },
                ))
                .await;
                (Ok(next), Some(record))
            }
            Route::Fail(error) => (Err(error), None),
        }
    }

    /// One attempt at `state`: emits its events until it ends, fails,
    /// asks a person or runs out of time.
    async fn attempt(
        &mut self,
        state: &dyn State,
        step: u32,
        span: &Span,
        out: &Out,
    ) -> Option<Failure> {
        let state_deadline = self
            .machine
            .limits
            .state_timeout
            .map(|d| (Instant::now() + d, d));
        let deadline = decide::earliest(state_deadline, self.deadline);
        // Handed to the state explicitly, for as long as it runs.
        self.env.settings = RunSettings {
            deadline: deadline.map(|(at, ..)| at),
            ..self.settings.clone()
        };
        let mut failure = None;
        {
            let (name, branch) = (&self.name, &self.branch);
            let mut emitted = state.run(&mut self.env);
            loop {
                let next_item = emitted.next().instrument(span.clone());
                let next = match deadline {
                    Some((at, limit, is_run)) => match tokio::time::timeout_at(at, next_item).await
                    {
                        Ok(next) => next,
                        Err(_) if is_run => {
                            failure = Some(Failure::Deadline(limit));
                            break;
                        }
                        Err(_) => Some(Err(StateError::TimedOut { after: limit })),
                    },
                    None => next_item.await,
                };
                match next {
                    Some(Ok(Emit::Interrupt(mut request))) => {
                        // The state stops where it asked.
                        request.run_id = self.run_id.to_string();
                        request.branch = branch.as_deref().map(str::to_owned);
                        failure = Some(Failure::Interrupt(request.clone()));
                        out.emit(tagged(
                            step,
                            name,
                            branch,
                            EventKind::Emitted(Emit::Interrupt(request)),
                        ))
                        .await;
                        break;
                    }
                    Some(Ok(e)) => {
                        self.recorder.emitted(&e);
                        out.emit(tagged(step, name, branch, EventKind::Emitted(e)))
                            .await;
                    }
                    Some(Err(e)) => {
                        failure = Some(Failure::State(e));
                        break;
                    }
                    None => break,
                }
            }
        }
        self.env.settings = RunSettings::default();
        failure
    }
}
