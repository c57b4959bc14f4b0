//! The steps of a run other than a state's attempts: entering a state or
//! sub-machine and settling where it sends the run, and a fork's branches.
//!
//! Each emits its events through [`Out`] and returns how it ended; forks
//! and sub-machines run as child runs whose events pass through, traced
//! beneath the step that started them.

use std::borrow::Cow;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio::time::Instant;
use tracing::{Instrument, Span};

use super::child::{ChildItem, Spent};
use super::decide::{self, BranchEnd, Node, Then};
use super::driver::{Out, Outcome, Run, Step};
use super::event::EventKind;
use super::sub::SubMachine;
use super::{Driven, MachineError};
use crate::env::{ErrorRecord, Interrupt};
use crate::metric;
use crate::state::{Fork, Next};

/// How a state or sub-machine ran: where it sends the run (or why the run
/// fails), and an error it recovered from.
pub(super) type Ran = (Result<Next, MachineError>, Option<ErrorRecord>);

impl Run {
    /// Enters `to` (a state or a sub-machine), runs it, records it, and
    /// names where the run goes.
    pub(super) async fn state(&mut self, to: Cow<'static, str>, out: &Out) -> Step {
        self.name = Arc::from(&*to);
        let machine = &self.machine;
        let entered = decide::enter(
            &machine.states,
            &machine.subs,
            &self.name,
            self.from.as_deref(),
            &self.env,
            &machine.limits,
        );
        let node = match entered {
            Ok(node) => node,
            Err(error) => {
                // An unknown name entered no step; a spent limit ends at the last.
                let step = if matches!(error, MachineError::MaxSteps { .. }) {
                    self.env.step
                } else {
                    0
                };
                return Step::End(Outcome::Failed(error), step);
            }
        };
        self.recorder
            .entered(self.env.step + 1, &self.name, &self.env);
        self.env.step += 1;
        let step = self.env.step;
        self.path.push(self.name.to_string());
        let started = Instant::now();
        let span = tracing::info_span!(
            parent: &self.span,
            "statewise.state",
            state = %self.name,
            step,
            next = tracing::field::Empty,
        );
        out.emit(self.event(step, EventKind::StateEntered)).await;
        let ran = match node {
            Node::Sub(sub) => self.sub_machine(sub, to, &span, out).await,
            Node::State(state) => self.attempts(state, step, &span, out).await,
        };
        if let Ok(next) = &ran.0 {
            span.record("next", tracing::field::debug(next));
        }
        let (next, then) = match self.settle(ran).await {
            Ok(settled) => settled,
            Err(error) => return Step::End(Outcome::Failed(error), step),
        };
        metric::state_ran(&self.machine.name, &self.name, started.elapsed());
        if self.machine.snapshots {
            out.emit(self.event(step, EventKind::Snapshot(Box::new(self.env.clone()))))
                .await;
        }
        out.emit(self.event(step, EventKind::StateExited { next }))
            .await;
        self.from = Some(self.name.to_string());
        match then {
            Then::End => Step::End(Outcome::Finished, step),
            Then::Stop(next) => Step::End(Outcome::Stopped(next), step),
            Then::Interrupt(..) => Step::End(Outcome::Interrupted, step),
            Then::Enter(to) => Step::Go(Next::To(to)),
            Then::Fork(fork) => Step::Go(Next::Fork(fork)),
        }
    }

    /// Records how the state ran, counts what it spent (whether it failed
    /// or not), and saves where a resumed run goes on: the next state and
    /// what the run does.
    async fn settle(&mut self, (decided, routed): Ran) -> Result<(Next, Then), MachineError> {
        if let Some(writing) = self.recorder.settled(&self.env, &decided, routed) {
            // A run failing anyway reports its own error, not the trace's.
            if let (Err(e), Ok(_)) = (writing.await, &decided) {
                return Err(e);
            }
        }
        let used = match &self.spent {
            Some(shared) => {
                shared.add(&self.env.usage.since(&self.reported));
                self.reported = self.env.usage;
                shared.total()
            }
            None => self.env.usage,
        };
        let next = decided?;
        let mut then = decide::then(next.clone(), &used, &self.machine.limits, self.single_step)?;
        // Where a resumed run goes on: past an interrupt, where the reply
        // sends it.
        let resume_at = match &mut then {
            Then::Interrupt(request, then) => {
                if request.run_id.is_empty() {
                    request.run_id = self.run_id.to_string();
                    request.branch = self.branch.as_deref().map(str::to_owned);
                }
                self.env.interrupt = Some(request.clone());
                then.clone()
            }
            _ => next.clone(),
        };
        // Saved before the next state is entered: a crash from here on
        // resumes at `next`, not at this state again.
        let name = Arc::clone(&self.name);
        self.save(Some(&name), resume_at).await?;
        Ok((next, then))
    }

    /// Runs a fork's branches as child runs, then goes on at its join (or
    /// pauses at the fork when a branch asked a person).
    pub(super) async fn fork(&mut self, fork: Box<Fork>, out: &Out) -> Step {
        let shared = self
            .spent
            .clone()
            .unwrap_or_else(|| Spent::new(self.env.usage));
        let forking = self.from.clone().unwrap_or_default();
        // The branches' runs are traced beneath the fork.
        let span = tracing::info_span!(
            parent: &self.span,
            "statewise.fork",
            from = %forking,
            branches = fork.branches.len(),
        );
        let mut branches = match &self.machine.dispatch {
            Some(dispatch) => self.machine.fork_out(
                Arc::clone(dispatch),
                &fork,
                &self.env,
                &forking,
                &self.run_id,
                &self.branch,
            ),
            None => self.machine.run_fork(
                &fork,
                &self.env,
                &forking,
                &self.run_id,
                &self.branch,
                &shared,
                self.deadline,
            ),
        };
        let ended = relay(&mut branches, &span, out).await;
        let step = self.env.step;
        let joined = match ended {
            Some(ChildItem::Joined(joined)) => match *joined {
                Ok(joined) => joined,
                Err(error) => return Step::End(Outcome::Failed(error), step),
            },
            _ => return Step::End(Outcome::Failed(MachineError::Cut), step),
        };
        // The empty responses that woke a parent waiting for its child
        // runs have done their work.
        self.env
            .responses
            .retain(|id, _| !id.starts_with(super::remote::WAITING_FOR_CHILDREN));
        let next = if let Some(request) = joined.interrupt {
            // Pause at the fork: the resumed fork takes the done
            // branches from their checkpoints and runs the rest.
            self.env.interrupt = Some(request);
            Next::Fork(fork)
        } else {
            let used = decide::take_outcomes(&mut self.env, joined.outcomes);
            // Already in the shared tally, counted by the branches.
            self.reported.add(&used);
            Next::To(fork.join.clone())
        };
        // The same step as the fork's own checkpoint: a crash from here
        // on resumes at the join, not the fork.
        let from = self.from.clone();
        if let Err(error) = self.save(from.as_deref(), next.clone()).await {
            return Step::End(Outcome::Failed(error), step);
        }
        match self.env.interrupt {
            Some(_) => Step::End(Outcome::Interrupted, step),
            None => Step::Go(next),
        }
    }

    /// Runs a sub-machine entered as state `to` as a child run, and takes
    /// its result into the env.
    async fn sub_machine(
        &mut self,
        sub: Arc<SubMachine>,
        to: Cow<'static, str>,
        span: &Span,
        out: &Out,
    ) -> Ran {
        let shared = self
            .spent
            .clone()
            .unwrap_or_else(|| Spent::new(self.env.usage));
        let mut child = self.machine.run_sub(
            &sub,
            &self.env,
            &self.run_id,
            &self.branch,
            &shared,
            self.deadline,
        );
        // The sub-machine's run is traced beneath this state.
        let end = match relay(&mut child, span, out).await {
            Some(ChildItem::Ended(end)) => *end,
            Some(ChildItem::Joined(joined)) => match *joined {
                Err(error) => return (Err(error), None),
                Ok(_) => return (Err(MachineError::Cut), None),
            },
            _ => return (Err(MachineError::Cut), None),
        };
        match end {
            BranchEnd::Finished(result) => {
                let used = sub.finish(&mut self.env, &result);
                self.reported.add(&used);
                (Ok(sub.next(&self.env)), None)
            }
            BranchEnd::Interrupted(result) => {
                // Re-entered at the same step once the reply is in, so
                // the child run it resumes is this one.
                self.env.step -= 1;
                let request = result
                    .env
                    .interrupt
                    .unwrap_or_else(|| Box::new(Interrupt::new("", "")));
                (
                    Ok(Next::Interrupt {
                        request,
                        then: Box::new(Next::To(to)),
                    }),
                    None,
                )
            }
            BranchEnd::Failed(failure) => {
                let at = match &self.branch {
                    Some(b) => format!("{b}/{}", self.name),
                    None => self.name.to_string(),
                };
                (
                    Err(MachineError::Branch {
                        branch: at,
                        source: Box::new(failure.error),
                    }),
                    None,
                )
            }
        }
    }
}

/// Passes a child run's events on, each polled beneath `span`, and returns
/// how it ended: its last item that is not an event (none if it was cut).
async fn relay(
    child: &mut (impl Stream<Item = ChildItem> + Unpin),
    span: &Span,
    out: &Out,
) -> Option<ChildItem> {
    let mut ended = None;
    while let Some(item) = child.next().instrument(span.clone()).await {
        match item {
            ChildItem::Event(e) => out.emit(Driven::Event(*e)).await,
            end => ended = Some(end),
        }
    }
    ended
}
