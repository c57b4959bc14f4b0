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
use super::guarding::{self, Guarding};
use super::record::Recorder;
use super::step::Ran;
use super::Driven;
use crate::env::{Env, RunSettings};
use crate::guard::{Trip, Tripwire};
use crate::state::{Emit, EmitStream, State, StateError};

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
    /// asks a person, runs out of time or trips a guardrail.
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
        let answer_before = self
            .guarding
            .filters_answer()
            .then(|| self.env.answer.clone())
            .flatten();
        let failure = {
            let mut pass = Pass {
                step,
                name: &self.name,
                branch: &self.branch,
                run_id: &self.run_id,
                out,
                guarding: &mut self.guarding,
                recorder: &mut self.recorder,
                tripwire: &self.settings.tripwire,
                held: Vec::new(),
            };
            pass.drain(state.run(&mut self.env), deadline, span).await
        };
        self.env.settings = RunSettings::default();
        if failure.is_some() || !self.guarding.filters_answer() {
            self.guarding.reset_answer();
            return failure;
        }
        let settled = self
            .guarding
            .settle_answer(self.env.answer.as_deref(), answer_before.as_deref())
            .await;
        match settled {
            Ok(()) => None,
            Err(trip) => Some(tripped(trip, step, &self.name, &self.branch, out).await),
        }
    }
}

/// What the next poll of a state's stream gave.
enum Polled {
    Item(Option<Result<Emit, StateError>>),
    /// The run's deadline passed.
    RunDeadline(std::time::Duration),
}

/// The next item of `emitted`, within the earlier of the state's and the
/// run's deadlines.
async fn next_within(
    emitted: &mut EmitStream<'_>,
    deadline: Option<(Instant, std::time::Duration, bool)>,
    span: &Span,
) -> Polled {
    let next_item = emitted.next().instrument(span.clone());
    match deadline {
        Some((at, limit, is_run)) => match tokio::time::timeout_at(at, next_item).await {
            Ok(next) => Polled::Item(next),
            Err(_) if is_run => Polled::RunDeadline(limit),
            Err(_) => Polled::Item(Some(Err(StateError::TimedOut { after: limit }))),
        },
        None => Polled::Item(next_item.await),
    }
}

/// Sends `trip`'s event and makes it the attempt's failure.
async fn tripped(
    trip: Trip,
    step: u32,
    name: &Arc<str>,
    branch: &Option<Arc<str>>,
    out: &Out,
) -> Failure {
    let event = EventKind::Emitted(guarding::tripped(&trip));
    out.emit(tagged(step, name, branch, event)).await;
    Failure::Tripped(trip)
}

/// One attempt's pass over its state's stream: the parts of the run it
/// writes to while the stream holds the env.
struct Pass<'r> {
    step: u32,
    name: &'r Arc<str>,
    branch: &'r Option<Arc<str>>,
    run_id: &'r Arc<str>,
    out: &'r Out,
    guarding: &'r mut Guarding,
    recorder: &'r mut Recorder,
    tripwire: &'r Tripwire,
    /// Events held while the run's input is judged.
    held: Vec<Driven>,
}

impl Pass<'_> {
    /// Passes the stream's events on until it ends or the attempt fails.
    async fn drain(
        &mut self,
        mut emitted: EmitStream<'_>,
        deadline: Option<(Instant, std::time::Duration, bool)>,
        span: &Span,
    ) -> Option<Failure> {
        loop {
            let polled = match self.guarding.input().as_mut() {
                Some(check) => tokio::select! {
                    biased;
                    trip = check => {
                        *self.guarding.input() = None;
                        if let Some(failure) = self.judged(trip).await {
                            return Some(failure);
                        }
                        continue;
                    }
                    polled = next_within(&mut emitted, deadline, span) => polled,
                },
                None => next_within(&mut emitted, deadline, span).await,
            };
            // Nothing ends the state before its input is judged.
            let goes_on =
                matches!(&polled, Polled::Item(Some(Ok(e))) if !matches!(e, Emit::Interrupt(_)));
            let check = match goes_on {
                true => None,
                false => self.guarding.input().take(),
            };
            if let Some(check) = check {
                if let Some(failure) = self.judged(check.await).await {
                    return Some(failure);
                }
            }
            let emit = match polled {
                Polled::RunDeadline(limit) => return Some(Failure::Deadline(limit)),
                Polled::Item(Some(Ok(Emit::Interrupt(mut request)))) => {
                    // The state stops where it asked.
                    request.run_id = self.run_id.to_string();
                    request.branch = self.branch.as_deref().map(str::to_owned);
                    let failure = Failure::Interrupt(request.clone());
                    self.send(Emit::Interrupt(request)).await;
                    return Some(failure);
                }
                Polled::Item(Some(Ok(e))) => e,
                Polled::Item(Some(Err(e))) => return Some(Failure::State(e)),
                Polled::Item(None) => return self.ended().await,
            };
            if let Some(failure) = self.pass(emit).await {
                return Some(failure);
            }
        }
    }

    /// Acts on the input check's verdict: the attempt's failure when it
    /// tripped, else the held events go out.
    async fn judged(&mut self, trip: Option<Trip>) -> Option<Failure> {
        if let Some(trip) = trip {
            self.held.clear();
            return Some(self.trip(trip).await);
        }
        for event in std::mem::take(&mut self.held) {
            self.out.emit(event).await;
        }
        None
    }

    /// Passes one event on (an answer piece through the output
    /// guardrails), then acts on the trips its tool calls reported.
    async fn pass(&mut self, emit: Emit) -> Option<Failure> {
        self.recorder.emitted(&emit);
        let emit = match emit {
            Emit::AnswerToken(piece) if self.guarding.filters_answer() => {
                match self.guarding.answer_piece(&piece).await {
                    Ok(text) => text.map(Emit::AnswerToken),
                    Err(trip) => return Some(self.trip(trip).await),
                }
            }
            e => self.guarding.judge_event(e).await,
        };
        if let Some(emit) = emit {
            self.send(emit).await;
        }
        self.reported().await
    }

    /// Sends the trips the state's tool calls reported; the first that
    /// stops the run is the attempt's failure.
    async fn reported(&mut self) -> Option<Failure> {
        let mut stop = None;
        for trip in self.tripwire.drain() {
            if trip.stops && stop.is_none() {
                stop = Some(trip);
            } else {
                self.send(guarding::tripped(&trip)).await;
            }
        }
        match stop {
            Some(trip) => Some(self.trip(trip).await),
            None => None,
        }
    }

    /// The stream ended: the rest of the answer text is judged and goes
    /// out.
    async fn ended(&mut self) -> Option<Failure> {
        if let Some(failure) = self.reported().await {
            return Some(failure);
        }
        if !self.guarding.filters_answer() {
            return None;
        }
        match self.guarding.answer_end().await {
            Ok(Some(text)) => self.send(Emit::AnswerToken(text)).await,
            Ok(None) => {}
            Err(trip) => return Some(self.trip(trip).await),
        }
        None
    }

    /// Sends `emit`, or holds it while the input is judged.
    async fn send(&mut self, emit: Emit) {
        let event = tagged(self.step, self.name, self.branch, EventKind::Emitted(emit));
        match self.guarding.judging() {
            true => self.held.push(event),
            false => self.out.emit(event).await,
        }
    }

    async fn trip(&mut self, trip: Trip) -> Failure {
        tripped(trip, self.step, self.name, self.branch, self.out).await
    }
}
