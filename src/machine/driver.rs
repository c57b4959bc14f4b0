//! The async driver: polls each state, keeps its time limits, streams its
//! events, and runs forks and sub-machines as child runs. What it does
//! next, it asks the decision core (`decide.rs`); what outlives the run
//! (checkpoints, trace records), it hands the recorder (`record.rs`) at
//! fixed points.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio::time::Instant;
use tracing::Instrument;

use super::child::{ChildItem, Spent};
use super::decide::{self, Attempt, BranchEnd, Failure, Node, Route, Then};
use super::event::{Event, EventKind, RunFailure, RunOutput};
use super::record::Recorder;
use super::{Driven, Machine, MachineError, RunCtx};
use crate::env::{Env, ErrorRecord, Interrupt, RunSettings};
use crate::semconv;
use crate::state::{Next, StateError};

impl Machine {
    pub(super) fn drive(
        &self,
        start: Next,
        env: Env,
        single_step: bool,
        ctx: RunCtx,
    ) -> impl Stream<Item = Driven> + Send + 'static {
        let machine = self.clone();
        let limits = self.limits;
        // A single step (replaying, testing) is not part of any run's record.
        let store = self.store.clone().filter(|_| !single_step);
        let tracer = self.tracer.clone().filter(|_| !single_step);
        let record_model_calls = self.record_calls || tracer.is_some();
        let journal = self.journal.clone();
        let span_content = self.span_content.clone();
        let machine_name = Arc::clone(&self.name);
        let snapshots = self.snapshots;
        let background = self.background.clone();
        let checked = if single_step {
            Ok(())
        } else {
            self.check_edges()
        };
        async_stream::stream! {
            let RunCtx { run_id, parent, mut path, resumed_at, mut from, branch, spent, deadline, keep_failure } = ctx;
            let start_name = start.states().first().map(|s| s.to_string()).unwrap_or_default();
            let run_span = tracing::info_span!(
                "invoke_agent",
                { semconv::OTEL_NAME } = %format_args!("invoke_agent {machine_name}"),
                { semconv::OTEL_KIND } = "internal",
                { semconv::GEN_AI_OPERATION_NAME } = "invoke_agent",
                { semconv::GEN_AI_AGENT_NAME } = %machine_name,
                { semconv::GEN_AI_CONVERSATION_ID } = %run_id,
                statewise.run_id = %run_id,
                statewise.start = %start_name,
                statewise.outcome = tracing::field::Empty,
                { semconv::ERROR_TYPE } = tracing::field::Empty,
            );
            let family = parent.zip(branch.clone());
            let mut recorder = Recorder::new(Arc::clone(&run_id), family, store, tracer);
            let mut env = env;
            let mut at = start;
            let mut name: Arc<str> = Arc::from(start_name.as_str());
            let run_deadline = deadline.or_else(|| limits.deadline.map(|d| (Instant::now() + d, d)));
            // Fires when this stream is dropped or ends: tools' work outside
            // their futures stops with the run.
            let cancel = tokio_util::sync::CancellationToken::new();
            let _cancel_on_drop = cancel.clone().drop_guard();
            let settings = RunSettings {
                record_model_calls,
                run_id: Arc::clone(&run_id),
                deadline: None,
                cancel,
                journal,
                span_content,
                background,
            };
            // What this run has added to a shared tally (a branch's), so
            // each state adds only its own spending.
            let mut reported = env.usage;

            let opened: Result<(), MachineError> = match (checked, recorder.opened(&start_name, &at, &env, &path, resumed_at)) {
                // A declared target is missing: fail before any state runs.
                (Err(error), _) => Err(error),
                (Ok(()), Some(writing)) => writing.await,
                (Ok(()), None) => Ok(()),
            };

            // Every way out of the loop carries the outcome, so the end
            // record and the last event are written in one place below.
            let (outcome, step) = 'run: loop {
                if let Err(error) = opened {
                    // Only on the first pass: the run could not be recorded.
                    break 'run (Outcome::Failed(error, env), 0);
                }
                if let Next::Fork(fork) = at {
                    // The branches run as child runs; their events pass through.
                    let shared = spent.clone().unwrap_or_else(|| Spent::new(env.usage));
                    let forking = from.clone().unwrap_or_default();
                    // The branches' runs are traced beneath the fork.
                    let fork_span = tracing::info_span!(
                        parent: &run_span,
                        "statewise.fork",
                        from = %forking,
                        branches = fork.branches.len(),
                    );
                    let mut branches = machine.run_fork(&fork, &env, &forking, &run_id, &branch, &shared, run_deadline);
                    let mut joined = None;
                    while let Some(item) = branches.next().instrument(fork_span.clone()).await {
                        match item {
                            ChildItem::Event(e) => yield Driven::Event(*e),
                            // Kept boxed: the generator every run carries stays small.
                            ChildItem::Joined(j) => joined = Some(j),
                            ChildItem::Ended(_) => {}
                        }
                    }
                    let step = env.step;
                    let joined = match joined.map(|j| *j) {
                        Some(Ok(joined)) => joined,
                        Some(Err(error)) => break 'run (Outcome::Failed(error, env), step),
                        None => break 'run (Outcome::Failed(MachineError::Interrupted, env), step),
                    };
                    let next = if let Some(request) = joined.interrupt {
                        // Pause at the fork: the resumed fork takes the done
                        // branches from their checkpoints and runs the rest.
                        env.interrupt = Some(request);
                        Next::Fork(fork)
                    } else {
                        let used = decide::take_outcomes(&mut env, joined.outcomes);
                        // Already in the shared tally, counted by the branches.
                        reported.add(&used);
                        Next::To(fork.join.clone())
                    };
                    // The same step as the fork's own checkpoint: a crash from
                    // here on resumes at the join, not the fork.
                    if let Some(saving) = recorder.saved(from.as_deref(), next.clone(), &env, &path) {
                        if let Err(e) = saving.await {
                            break 'run (Outcome::Failed(e, env), step);
                        }
                    }
                    if env.interrupt.is_some() {
                        break 'run (Outcome::Interrupted(env), step);
                    }
                    at = next;
                    continue 'run;
                }
                let Next::To(to) = &at else {
                    // `then` turns every other Next into End, a fork or a pause.
                    break 'run (Outcome::Finished(env), 0);
                };
                name = Arc::from(&**to);
                let node = match decide::enter(&machine.states, &machine.subs, &name, from.as_deref(), &env, &limits) {
                    Ok(node) => node,
                    Err(error) => {
                        // An unknown name entered no step; a spent limit ends at the last.
                        let step = if matches!(error, MachineError::MaxSteps { .. }) { env.step } else { 0 };
                        break 'run (Outcome::Failed(error, env), step);
                    }
                };
                recorder.entered(env.step + 1, &name, &env);
                env.step += 1;
                let step = env.step;
                path.push(name.to_string());
                let event = |kind| Driven::Event(Event { step, state: name.clone(), branch: branch.clone(), kind });
                let state_started = Instant::now();
                let state_span = tracing::info_span!(
                    parent: &run_span,
                    "statewise.state",
                    state = %name,
                    step,
                    next = tracing::field::Empty,
                );
                yield event(EventKind::StateEntered);

                let (decided, routed): (Result<Next, MachineError>, Option<ErrorRecord>) = match node {
                    Node::Sub(sub) => {
                        // A sub-machine is a child run; its events pass through.
                        let shared = spent.clone().unwrap_or_else(|| Spent::new(env.usage));
                        let mut child = machine.run_sub(&sub, &env, &run_id, &branch, &shared, run_deadline);
                        let mut ended = None;
                        // The sub-machine's run is traced beneath this state.
                        while let Some(item) = child.next().instrument(state_span.clone()).await {
                            match item {
                                ChildItem::Event(e) => yield Driven::Event(*e),
                                // Kept boxed, as a fork's result is.
                                ChildItem::Joined(j) => ended = Some(Box::new(j.map(|_| None))),
                                ChildItem::Ended(end) => ended = Some(Box::new(Ok(Some(*end)))),
                            }
                        }
                        match ended.map(|e| *e) {
                            Some(Ok(Some(BranchEnd::Finished(out)))) => {
                                let used = sub.finish(&mut env, &out);
                                reported.add(&used);
                                (Ok(sub.next(&env)), None)
                            }
                            Some(Ok(Some(BranchEnd::Interrupted(out)))) => {
                                // Re-entered at the same step once the reply is in,
                                // so the child run it resumes is this one.
                                env.step -= 1;
                                let request = out.env.interrupt.unwrap_or_else(|| Box::new(Interrupt::new("", "")));
                                (Ok(Next::Interrupt { request, then: Box::new(Next::To(to.clone())) }), None)
                            }
                            Some(Ok(Some(BranchEnd::Failed(failure)))) => {
                                let at = match &branch {
                                    Some(b) => format!("{b}/{name}"),
                                    None => name.to_string(),
                                };
                                (Err(MachineError::Branch { branch: at, source: Box::new(failure.error) }), None)
                            }
                            Some(Err(error)) => (Err(error), None),
                            Some(Ok(None)) | None => (Err(MachineError::Interrupted), None),
                        }
                    }
                    Node::State(state) => {
                        // A state cut off after streaming restarts from the env it
                        // started with, so nothing it wrote is kept twice.
                        let snapshot = (limits.state_retries > 0).then(|| Box::new(env.clone()));
                        let mut attempt = 0;
                        let failure = loop {
                            let state_deadline = limits.state_timeout.map(|d| (Instant::now() + d, d));
                            let mut failure = None;
                            // Handed to the state explicitly, for as long as it runs.
                            env.settings = RunSettings {
                                deadline: decide::earliest(state_deadline, run_deadline).map(|(at, ..)| at),
                                ..settings.clone()
                            };
                            {
                                let mut emitted = state.run(&mut env);
                                loop {
                                    let next_item = emitted.next().instrument(state_span.clone());
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
                                        Some(Ok(crate::state::Emit::Interrupt(mut request))) => {
                                            // The state stops where it asked.
                                            request.run_id = run_id.to_string();
                                            request.branch = branch.as_deref().map(str::to_owned);
                                            failure = Some(Failure::Interrupt(request.clone()));
                                            yield event(EventKind::Emitted(crate::state::Emit::Interrupt(request)));
                                            break;
                                        }
                                        Some(Ok(e)) => {
                                            recorder.emitted(&e);
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
                            env.settings = RunSettings::default();
                            match decide::after_attempt(failure, attempt, snapshot.is_some(), &limits) {
                                Attempt::Restart { attempt: n, reason } => {
                                    attempt = n;
                                    if let Some(start) = &snapshot {
                                        env = Env::clone(start);
                                    }
                                    recorder.restarted(&reason);
                                    yield event(EventKind::StateRetried { attempt, reason });
                                }
                                Attempt::Settled(failure) => break failure,
                            }
                        };
                        // Where the run goes, or why it stops here, and the error
                        // the step record shows (a routed error goes on to `next`).
                        match decide::route(&*state, &name, step, &env, failure) {
                            Route::To(next) => (Ok(next), None),
                            // The state declared where to go on this error.
                            Route::Recovered(next, record) => {
                                env.errors.push(record.clone());
                                yield event(EventKind::StateFailed { error: record.clone() });
                                (Ok(next), Some(record))
                            }
                            Route::Fail(error) => (Err(error), None),
                        }
                    }
                };
                if let Ok(next) = &decided {
                    state_span.record("next", tracing::field::debug(next));
                }
                if let Some(writing) = recorder.settled(&env, &decided, routed) {
                    // A run failing anyway reports its own error, not the trace's.
                    if let (Err(e), Ok(_)) = (writing.await, &decided) {
                        break 'run (Outcome::Failed(e, env), step);
                    }
                }
                // What the state spent counts, whether it failed or not.
                let used = match &spent {
                    Some(shared) => {
                        shared.add(&env.usage.since(&reported));
                        reported = env.usage;
                        shared.total()
                    }
                    None => env.usage,
                };
                let next = match decided {
                    Ok(next) => next,
                    Err(error) => break 'run (Outcome::Failed(error, env), step),
                };
                let mut then = match decide::then(next.clone(), &used, &limits, single_step) {
                    Ok(then) => then,
                    Err(error) => break 'run (Outcome::Failed(error, env), step),
                };
                // Where a resumed run goes on: past an interrupt, where the
                // reply sends it.
                let resume_at = match &mut then {
                    Then::Interrupt(request, then) => {
                        if request.run_id.is_empty() {
                            request.run_id = run_id.to_string();
                            request.branch = branch.as_deref().map(str::to_owned);
                        }
                        env.interrupt = Some(request.clone());
                        then.clone()
                    }
                    _ => next.clone(),
                };
                // Saved before the next state is entered: a crash from here
                // on resumes at `next`, not at this state again.
                if let Some(saving) = recorder.saved(Some(&name), resume_at, &env, &path) {
                    if let Err(e) = saving.await {
                        break 'run (Outcome::Failed(e, env), step);
                    }
                }

                crate::metric::state_ran(&machine_name, &name, state_started.elapsed());
                if snapshots {
                    yield event(EventKind::Snapshot(Box::new(env.clone())));
                }
                yield event(EventKind::StateExited { next });
                from = Some(name.to_string());
                at = match then {
                    Then::End => break 'run (Outcome::Finished(env), step),
                    Then::Stop(next) => break 'run (Outcome::Stopped(env, next), step),
                    Then::Interrupt(..) => break 'run (Outcome::Interrupted(env), step),
                    Then::Enter(to) => Next::To(to),
                    Then::Fork(fork) => Next::Fork(fork),
                };
            };

            let (env, error) = match outcome {
                Outcome::Stopped(env, next) => {
                    yield Driven::Stopped(Box::new((env, next)));
                    return;
                }
                Outcome::Finished(env) | Outcome::Interrupted(env) => (env, None),
                Outcome::Failed(error, env) => (env, Some(error)),
            };
            let mut error = error;
            if let (Some(failed), true) = (&error, keep_failure) {
                // A branch whose join sees its failure is done: a resumed
                // parent reads the failure back instead of running it again.
                if let Some(saving) = recorder.failed(failed, step, &env, &path) {
                    if let Err(e) = saving.await {
                        tracing::warn!(run_id = %run_id, error = %e, "a failed branch's record was not saved; a resume runs it again");
                    }
                }
            }
            let written = match recorder.ended(&env, &path, error.as_ref()) {
                Some(writing) => writing.await,
                None => Ok(()),
            };
            if let Err(e) = written {
                // A finished run whose record is lost is reported; a failed
                // run keeps its own error.
                error.get_or_insert(e);
            }
            let run_id = run_id.to_string();
            let interrupted = env.interrupt.is_some();
            let outcome = match (&error, interrupted) {
                (Some(_), _) => "failed",
                (None, true) => "interrupted",
                (None, false) => "finished",
            };
            run_span.record("statewise.outcome", outcome);
            crate::metric::run_ended(&machine_name, outcome);
            if let Some(error) = &error {
                run_span.record(semconv::ERROR_TYPE, error.code());
            }
            let kind = match error {
                None => {
                    let out = Box::new(RunOutput { answer: env.answer.clone(), path, env, run_id });
                    if interrupted { EventKind::Interrupted(out) } else { EventKind::Finished(out) }
                }
                Some(error) => EventKind::Failed(Box::new(RunFailure { error, path, env, run_id })),
            };
            yield Driven::Event(Event { step, state: name, branch, kind });
        }
    }
}

/// How a run's loop ended.
enum Outcome {
    Finished(Env),
    Failed(MachineError, Env),
    /// A single step stops before going on.
    Stopped(Env, Next),
    /// Paused for a person; the request is in the env.
    Interrupted(Env),
}
