//! The async driver: a run's lifetime as a short loop over its steps.
//!
//! [`Run`] holds what a run carries from step to step (its env, path,
//! recorder, tally and deadline). Each kind of step is an async method of
//! its own that emits its events through [`Out`] and returns where the run
//! goes: a state with its attempts (`attempt.rs`), a fork or a sub-machine
//! (`step.rs`). Events go from the step that makes them straight to the
//! run's stream, not up through a stream per level: a token is copied once
//! however deep the step, which the per-run CPU figures (P2a) depend on. What
//! to do next is asked of the decision core (`decide.rs`); what outlives
//! the run (checkpoints, trace records) is handed to the recorder
//! (`record.rs`) at fixed points.

use std::sync::Arc;
use std::time::Duration;

use async_fn_stream::{fn_stream, StreamEmitter};
use futures::Stream;
use tokio::time::Instant;
use tracing::Span;

use super::child::Spent;
use super::decide;
use super::event::{Event, EventKind};
use super::guarding::{self, Guarding};
use super::record::Recorder;
use super::{Driven, Machine, MachineError, RunCtx};
use crate::env::{Env, RunSettings, Usage};
use crate::metric;
use crate::semconv;
use crate::state::Next;

impl Machine {
    pub(super) fn drive(
        &self,
        start: Next,
        env: Env,
        single_step: bool,
        ctx: RunCtx,
    ) -> impl Stream<Item = Driven> + Send + 'static {
        let checked = if single_step {
            Ok(())
        } else {
            self.check_edges()
        };
        let machine = self.clone();
        fn_stream(move |out| async move {
            let resumed_at = ctx.resumed_at;
            let mut run = Run::new(machine, ctx, env, &start, single_step);
            // Fires when this stream is dropped or ends: tools' work outside
            // their futures stops with the run.
            let _cancel_on_drop = run.settings.cancel.clone().drop_guard();
            let opened = match checked {
                // A declared target is missing: fail before any state runs.
                Err(error) => Err(error),
                Ok(()) => run.opened(&start, resumed_at).await,
            };
            // Input refused before the first state: no model call is made.
            let opened = match (opened, run.guarding.before_first().await) {
                (Ok(()), Some(trip)) => {
                    let tripped = EventKind::Emitted(guarding::tripped(&trip));
                    out.emit(run.event(0, tripped)).await;
                    Err(MachineError::Guardrail(trip))
                }
                (opened, _) => opened,
            };
            let mut at = start;
            // Every way out of the loop carries the outcome, so the end
            // record and the last event are written in one place.
            let (outcome, step) = match opened {
                Err(error) => (Outcome::Failed(error), 0),
                Ok(()) => loop {
                    let stepped = match at {
                        Next::Fork(fork) => run.fork(fork, &out).await,
                        Next::To(to) => run.state(to, &out).await,
                        // `then` turns every other Next into End, a fork or a pause.
                        _ => break (Outcome::Finished, 0),
                    };
                    match stepped {
                        Step::Go(next) => at = next,
                        Step::End(outcome, step) => break (outcome, step),
                    }
                },
            };
            let outcome = run.answered(outcome, step, &out).await;
            out.emit(run.finish(outcome, step).await).await;
        })
    }
}

/// Where a step's events go: straight to the run's stream, however deep
/// the step that emits them.
pub(super) type Out = StreamEmitter<Driven>;

/// What a run carries from step to step.
pub(super) struct Run {
    pub(super) machine: Machine,
    pub(super) run_id: Arc<str>,
    /// The branch its events are tagged with; `None` for a top-level run.
    pub(super) branch: Option<Arc<str>>,
    pub(super) env: Env,
    pub(super) path: Vec<String>,
    /// The state the run came from.
    pub(super) from: Option<String>,
    /// The state entered last (the start's name before any).
    pub(super) name: Arc<str>,
    /// The run tree's tally, for a child.
    pub(super) spent: Option<Arc<Spent>>,
    /// What this run has added to the shared tally, so each state adds
    /// only its own spending.
    pub(super) reported: Usage,
    pub(super) deadline: Option<(Instant, Duration)>,
    pub(super) single_step: bool,
    keep_failure: bool,
    pub(super) recorder: Recorder,
    /// What each state is handed while it runs (its deadline is set per
    /// attempt).
    pub(super) settings: RunSettings,
    /// The run's `invoke_agent` span, parent of its states' spans.
    pub(super) span: Span,
    /// Its guardrails' state from event to event.
    pub(super) guarding: Guarding,
}

/// How a step ended: the run goes on at a `Next`, or ends at a step.
pub(super) enum Step {
    Go(Next),
    End(Outcome, u32),
}

/// How a run's loop ended.
pub(super) enum Outcome {
    Finished,
    Failed(MachineError),
    /// A single step stops before going on.
    Stopped(Next),
    /// Paused for a person; the request is in the env.
    Interrupted,
}

impl Run {
    fn new(machine: Machine, ctx: RunCtx, env: Env, start: &Next, single_step: bool) -> Self {
        let start_name = start
            .states()
            .first()
            .map(|s| s.to_string())
            .unwrap_or_default();
        let RunCtx {
            run_id,
            parent,
            path,
            from,
            branch,
            spent,
            deadline,
            keep_failure,
            resumed_at,
            ..
        } = ctx;
        let name = &machine.name;
        let span = tracing::info_span!(
            "invoke_agent",
            { semconv::OTEL_NAME } = %format_args!("invoke_agent {name}"),
            { semconv::OTEL_KIND } = "internal",
            { semconv::GEN_AI_OPERATION_NAME } = "invoke_agent",
            { semconv::GEN_AI_AGENT_NAME } = %name,
            { semconv::GEN_AI_CONVERSATION_ID } = %run_id,
            statewise.run_id = %run_id,
            statewise.start = %start_name,
            statewise.outcome = tracing::field::Empty,
            { semconv::ERROR_TYPE } = tracing::field::Empty,
        );
        // A single step (replaying, testing) is not part of any run's record.
        let store = machine.store.clone().filter(|_| !single_step);
        let tracer = machine.tracer.clone().filter(|_| !single_step);
        let cancel = tokio_util::sync::CancellationToken::new();
        let settings = RunSettings {
            record_model_calls: machine.record_calls || tracer.is_some(),
            run_id: Arc::clone(&run_id),
            deadline: None,
            cancel,
            journal: machine.journal.clone(),
            span_content: machine.span_content.clone(),
            background: machine.background.clone(),
            output: machine.output.clone(),
            principal: env.principal.clone().map(Arc::new),
            guardrails: machine.guardrails.clone(),
            tripwire: crate::guard::Tripwire::default(),
        };
        // A run starting afresh has its input judged; a resumed one, a
        // branch or a single step had theirs judged where they began.
        let fresh = resumed_at.is_none() && branch.is_none() && !single_step;
        let guarding = Guarding::new(&machine.guardrails, fresh.then(|| env.run_input()));
        let recorder = Recorder::new(
            Arc::clone(&run_id),
            parent.zip(branch.clone()),
            store,
            tracer,
        );
        Run {
            deadline: deadline.or_else(|| machine.limits.deadline.map(|d| (Instant::now() + d, d))),
            machine,
            run_id,
            branch,
            reported: env.usage,
            env,
            path,
            from,
            name: Arc::from(start_name),
            spent,
            single_step,
            keep_failure,
            recorder,
            settings,
            span,
            guarding,
        }
    }

    /// Writes the run's start record (or its resumption).
    async fn opened(&self, start: &Next, resumed_at: Option<u32>) -> Result<(), MachineError> {
        match self
            .recorder
            .opened(&self.name, start, &self.env, &self.path, resumed_at)
        {
            Some(writing) => writing.await,
            None => Ok(()),
        }
    }

    /// Saves the checkpoint the run resumes from: at `next`, coming from
    /// `state`.
    pub(super) async fn save(&self, state: Option<&str>, next: Next) -> Result<(), MachineError> {
        match self.recorder.saved(state, next, &self.env, &self.path) {
            Some(saving) => saving.await,
            None => Ok(()),
        }
    }

    /// An event of `step` in the state entered last.
    pub(super) fn event(&self, step: u32, kind: EventKind) -> Driven {
        tagged(step, &self.name, &self.branch, kind)
    }

    /// A finished run's outcome once its answer is what the output
    /// guardrails let out (failed when one blocks it).
    async fn answered(&mut self, outcome: Outcome, step: u32, out: &Out) -> Outcome {
        if !matches!(outcome, Outcome::Finished) || self.env.interrupt.is_some() {
            return outcome;
        }
        let env = &mut self.env;
        match self
            .guarding
            .final_answer(&mut env.answer, &mut env.messages)
            .await
        {
            Ok(()) => outcome,
            Err(trip) => {
                let tripped = EventKind::Emitted(guarding::tripped(&trip));
                out.emit(self.event(step, tripped)).await;
                Outcome::Failed(MachineError::Guardrail(trip))
            }
        }
    }

    /// Writes the run's end, and its last item: the final event, or for a
    /// single step the env handed back.
    async fn finish(self, outcome: Outcome, step: u32) -> Driven {
        let mut error = match outcome {
            Outcome::Stopped(next) => return Driven::Stopped(Box::new((self.env, next))),
            Outcome::Finished | Outcome::Interrupted => None,
            Outcome::Failed(error) => Some(error),
        };
        if let (Some(failed), true) = (&error, self.keep_failure) {
            // A branch whose join sees its failure is done: a resumed
            // parent reads the failure back instead of running it again.
            if let Some(saving) = self.recorder.failed(failed, step, &self.env, &self.path) {
                if let Err(e) = saving.await {
                    tracing::warn!(run_id = %self.run_id, error = %e, "a failed branch's record was not saved; a resume runs it again");
                }
            }
        }
        let written = match self.recorder.ended(&self.env, &self.path, error.as_ref()) {
            Some(writing) => writing.await,
            None => Ok(()),
        };
        if let Err(e) = written {
            // A finished run whose record is lost is reported; a failed
            // run keeps its own error.
            error.get_or_insert(e);
        }
        let interrupted = self.env.interrupt.is_some();
        let (outcome, kind) = decide::ended(
            self.env,
            self.path,
            self.run_id.to_string(),
            error,
            interrupted,
        );
        self.span.record("statewise.outcome", outcome);
        metric::run_ended(&self.machine.name, outcome);
        if let EventKind::Failed(failure) = &kind {
            self.span.record(semconv::ERROR_TYPE, failure.error.code());
        }
        tagged(step, &self.name, &self.branch, kind)
    }
}

/// An event of `step` in `state`, tagged with the run's branch.
pub(super) fn tagged(
    step: u32,
    state: &Arc<str>,
    branch: &Option<Arc<str>>,
    kind: EventKind,
) -> Driven {
    Driven::Event(Event {
        step,
        state: Arc::clone(state),
        branch: branch.clone(),
        kind,
    })
}
