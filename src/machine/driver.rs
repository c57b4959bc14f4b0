//! The async driver: polls each state, keeps its time limits, streams its
//! events, and writes traces and checkpoints at fixed points. What it does
//! next, it asks the decision core (`decide.rs`).

use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio::time::Instant;
use tracing::Instrument;

use super::decide::{self, Attempt, Failure, Route, Then};
use super::{Driven, Machine, MachineError, RunCtx};
use crate::env::{Env, ErrorRecord};
use crate::event::{Event, EventKind, RunFailure, RunOutput};
use crate::model::KeepCalls;
use crate::state::{Next, StateError};
use crate::store::{now_ms, Checkpoint};
use crate::trace::{EndRecord, RunRecord, StepTrace, TraceRecord, TracedError};

impl Machine {
    pub(super) fn drive(
        &self,
        start: &str,
        env: Env,
        single_step: bool,
        ctx: RunCtx,
    ) -> impl Stream<Item = Driven> + Send + 'static {
        let states = Arc::clone(&self.states);
        let limits = self.limits;
        // A single step (replaying, testing) is not part of any run's record.
        let store = self.store.clone().filter(|_| !single_step);
        let tracer = self.tracer.clone().filter(|_| !single_step);
        let record_calls = self.record_calls || tracer.is_some();
        let checked = if single_step {
            Ok(())
        } else {
            self.check_edges()
        };
        let start: Arc<str> = Arc::from(start);
        async_stream::stream! {
            let RunCtx { run_id, mut path, resumed_at } = ctx;
            let run_span = tracing::info_span!("statewise.run", run_id = %run_id, start = %start);
            let run_started = std::time::Instant::now();
            let mut env = env;
            let mut name = Arc::clone(&start);
            let mut from: Option<String> = None;
            let run_deadline = limits.deadline.map(|d| (Instant::now() + d, d));

            // Boxed here and below, and only when a tracer or a store is
            // set: what only they need stays off the generator every run
            // carries (4.4 KB -> 2.8 KB), and a run with neither pays nothing.
            let opened: Result<(), MachineError> = if let Err(error) = checked {
                // A declared target is missing: fail before any state runs.
                Err(error)
            } else if tracer.is_none() && store.is_none() {
                Ok(())
            } else {
                Box::pin(async {
                    if let Some(tracer) = &tracer {
                        let record = RunRecord {
                            run_id: run_id.to_string(),
                            start: start.to_string(),
                            started_ms: now_ms(),
                            resumed_at,
                            env: env.clone(),
                        };
                        tracer.write(&TraceRecord::Run(record)).await?;
                    }
                    // Step 0: the env the run starts with, so even a crash in
                    // the first state resumes, and forks can start anywhere.
                    if let (Some(store), None) = (&store, resumed_at) {
                        let first = checkpoint(&run_id, None, Next::to(start.to_string()), &env, &path);
                        store.put(&first).await?;
                    }
                    Ok(())
                })
                .await
            };

            // Every way out of the loop carries the outcome, so the end
            // record and the last event are written in one place below.
            let (outcome, step) = 'run: loop {
                if let Err(error) = opened {
                    // Only on the first pass: the run could not be recorded.
                    break 'run (Outcome::Failed(error, env), 0);
                }
                let state = match decide::enter(&states, &name, from.as_deref(), &env, &limits) {
                    Ok(state) => Arc::clone(state),
                    Err(error) => {
                        // An unknown name entered no step; a spent limit ends at the last.
                        let step = if matches!(error, MachineError::MaxSteps { .. }) { env.step } else { 0 };
                        break 'run (Outcome::Failed(error, env), step);
                    }
                };
                // The env as `Machine::step` takes it, to rerun this step.
                let mut trace = tracer
                    .as_ref()
                    .map(|_| Box::new(StepTrace::new(&run_id, env.step + 1, &name, env.clone())));
                env.step += 1;
                let step = env.step;
                path.push(name.to_string());
                let event = |kind| Driven::Event(Event { step, state: name.clone(), kind });
                let state_span = tracing::info_span!(
                    parent: &run_span,
                    "statewise.state",
                    state = %name,
                    step,
                    next = tracing::field::Empty,
                );
                yield event(EventKind::StateEntered);

                // A state cut off after streaming restarts from the env it
                // started with, so nothing it wrote is kept twice.
                let snapshot = (limits.state_retries > 0).then(|| Box::new(env.clone()));
                let mut attempt = 0;
                let failure = loop {
                    let state_deadline = limits.state_timeout.map(|d| (Instant::now() + d, d));
                    let mut failure = None;
                    {
                        let mut emitted = state.run(&mut env);
                        loop {
                            let next_item = KeepCalls { inner: emitted.next(), on: record_calls }
                                .instrument(state_span.clone());
                            let next = match decide::earliest(state_deadline, run_deadline) {
                                Some((at, limit, is_run)) => match tokio::time::timeout_at(at, next_item).await {
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
                                Some(Ok(e)) => {
                                    if let Some(t) = &mut trace {
                                        t.observe(&e);
                                    }
                                    yield event(EventKind::Emitted(e));
                                }
                                Some(Err(e)) => {
                                    failure = Some(Failure::State(e));
                                    break;
                                }
                                None => break,
                            }
                        }
                    }
                    match decide::after_attempt(failure, attempt, snapshot.is_some(), &limits) {
                        Attempt::Restart { attempt: n, reason } => {
                            attempt = n;
                            if let Some(start) = &snapshot {
                                env = Env::clone(start);
                            }
                            if let Some(t) = &mut trace {
                                t.restart(reason.clone());
                            }
                            yield event(EventKind::StateRetried { attempt, reason });
                        }
                        Attempt::Settled(failure) => break failure,
                    }
                };
                // Where the run goes, or why it stops here, and the error
                // the step record shows (a routed error goes on to `next`).
                let (decided, routed): (Result<Next, MachineError>, Option<ErrorRecord>) =
                    match decide::route(&*state, &name, step, &env, failure) {
                        Route::To(next) => (Ok(next), None),
                        // The state declared where to go on this error.
                        Route::Recovered(next, record) => {
                            env.errors.push(record.clone());
                            yield event(EventKind::StateFailed { error: record.clone() });
                            (Ok(next), Some(record))
                        }
                        Route::Fail(error) => (Err(error), None),
                    };
                if let Ok(next) = &decided {
                    state_span.record("next", tracing::field::debug(next));
                }
                if let (Some(tracer), Some(t)) = (&tracer, trace.take()) {
                    let error = match (&decided, routed) {
                        (Err(e), _) => Some(TracedError::from(e)),
                        (Ok(_), routed) => routed.map(|r| TracedError { kind: r.kind, message: r.message }),
                    };
                    let record = TraceRecord::Step(Box::new(t.finish(&env, decided.as_ref().ok().cloned(), error)));
                    let written = Box::pin(tracer.write(&record)).await;
                    // A run failing anyway reports its own error, not the trace's.
                    if let (Err(e), Ok(_)) = (written, &decided) {
                        break 'run (Outcome::Failed(e.into(), env), step);
                    }
                }
                let next = match decided {
                    Ok(next) => next,
                    Err(error) => break 'run (Outcome::Failed(error, env), step),
                };
                let then = match decide::then(next.clone(), &env, &limits, single_step) {
                    Ok(then) => then,
                    Err(error) => break 'run (Outcome::Failed(error, env), step),
                };
                // Saved before the next state is entered: a crash from here
                // on resumes at `next`, not at this state again.
                if let Some(store) = &store {
                    let saved = Box::pin(async {
                        store.put(&checkpoint(&run_id, Some(&name), next.clone(), &env, &path)).await
                    });
                    if let Err(e) = saved.await {
                        break 'run (Outcome::Failed(e.into(), env), step);
                    }
                }

                yield event(EventKind::StateExited { next });
                match then {
                    Then::End => break 'run (Outcome::Finished(env), step),
                    Then::Pause(next) => break 'run (Outcome::Paused(env, next), step),
                    Then::Enter(to) => {
                        from = Some(name.to_string());
                        name = to;
                    }
                }
            };

            let (env, error) = match outcome {
                Outcome::Paused(env, next) => {
                    yield Driven::Paused { env, next };
                    return;
                }
                Outcome::Finished(env) => (env, None),
                Outcome::Failed(error, env) => (env, Some(error)),
            };
            let mut error = error;
            if let Some(tracer) = &tracer {
                let record = EndRecord {
                    run_id: run_id.to_string(),
                    answer: env.answer.clone(),
                    path: path.clone(),
                    usage: env.usage,
                    elapsed_ms: run_started.elapsed().as_secs_f64() * 1e3,
                    error: error.as_ref().map(TracedError::from),
                };
                let record = Box::new(TraceRecord::End(record));
                if let Err(e) = tracer.write(&record).await {
                    // A finished run whose record is lost is reported; a failed
                    // run keeps its own error.
                    error.get_or_insert(e.into());
                }
            }
            let run_id = run_id.to_string();
            let kind = match error {
                None => EventKind::Finished(Box::new(RunOutput { answer: env.answer.clone(), path, env, run_id })),
                Some(error) => EventKind::Failed(Box::new(RunFailure { error, path, env, run_id })),
            };
            yield Driven::Event(Event { step, state: name, kind });
        }
    }
}

/// How a run's loop ended.
enum Outcome {
    Finished(Env),
    Failed(MachineError, Env),
    Paused(Env, Next),
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
    }
}
