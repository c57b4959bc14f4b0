//! The machine's decisions, as plain functions: which state to enter,
//! whether a state cut off restarts, where a state that ended goes,
//! whether the run goes on, forks, pauses for a person or ends, and what a
//! fork's branches add up to.
//!
//! The driver (`driver.rs`) does the I/O: it polls states, keeps time,
//! writes traces and checkpoints. Everything it decides, it asks here, so
//! every decision is unit-tested without a runtime.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::error::{MachineError, Resource};
use super::event::{EventKind, RunFailure, RunOutput};
use super::sub::SubMachine;
use crate::env::{BranchOutcome, Env, ErrorRecord, Interrupt, Usage};
use crate::state::{Branch, Fork, Next, OnBranchFailure, State, StateError};

/// The limits a run is held to.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) max_steps: u32,
    pub(super) state_retries: u32,
    pub(super) state_timeout: Option<Duration>,
    pub(super) deadline: Option<Duration>,
    pub(super) max_tokens: Option<u64>,
    pub(super) max_cost: Option<f64>,
}

impl Limits {
    /// The budget the run, having `spent` so far, has gone over, if any.
    pub(super) fn over_budget(&self, spent: &Usage) -> Option<MachineError> {
        let used = spent.total_tokens();
        if let Some(limit) = self.max_tokens.filter(|l| used > *l) {
            return Some(MachineError::Budget {
                resource: Resource::Tokens,
                limit: limit as f64,
                used: used as f64,
            });
        }
        let cost = spent.cost;
        self.max_cost
            .filter(|l| cost > *l)
            .map(|limit| MachineError::Budget {
                resource: Resource::Cost,
                limit,
                used: cost,
            })
    }
}

/// Why a state's attempt ended early.
#[derive(Debug)]
pub(super) enum Failure {
    /// The state failed (a timeout of its own included).
    State(StateError),
    /// The run's deadline passed.
    Deadline(Duration),
    /// The state asked a person ([`Emit::Interrupt`](crate::Emit::Interrupt)).
    Interrupt(Box<Interrupt>),
    /// A guardrail stopped the run.
    Tripped(crate::guard::Trip),
}

/// What a run enters: a state, or a machine run as a child.
pub(super) enum Node {
    State(Arc<dyn State>),
    Sub(Arc<SubMachine>),
}

/// The state (or sub-machine) to enter next, or why the run cannot: the
/// name is unknown (the error lists the known ones) or the step limit is
/// reached.
pub(super) fn enter(
    states: &BTreeMap<String, Arc<dyn State>>,
    subs: &BTreeMap<String, Arc<SubMachine>>,
    name: &str,
    from: Option<&str>,
    env: &Env,
    limits: &Limits,
) -> Result<Node, MachineError> {
    let node = match (states.get(name), subs.get(name)) {
        (Some(state), _) => Node::State(Arc::clone(state)),
        (None, Some(sub)) => Node::Sub(Arc::clone(sub)),
        (None, None) => {
            return Err(MachineError::UnknownState {
                name: name.to_owned(),
                from: from.map(str::to_owned),
                known: known_names(states, subs),
            })
        }
    };
    if env.step >= limits.max_steps {
        return Err(MachineError::MaxSteps {
            limit: limits.max_steps,
        });
    }
    Ok(node)
}

/// Every registered name, sorted: states and sub-machines.
pub(super) fn known_names(
    states: &BTreeMap<String, Arc<dyn State>>,
    subs: &BTreeMap<String, Arc<SubMachine>>,
) -> Vec<String> {
    let mut names: Vec<String> = states.keys().chain(subs.keys()).cloned().collect();
    names.sort();
    names
}

/// The sooner of the state's and the run's deadlines, with its length and
/// whether it is the run's.
pub(super) fn earliest<I: Ord>(
    state: Option<(I, Duration)>,
    run: Option<(I, Duration)>,
) -> Option<(I, Duration, bool)> {
    match (state, run) {
        (Some((s, sd)), Some((r, rd))) => Some(if r <= s {
            (r, rd, true)
        } else {
            (s, sd, false)
        }),
        (Some((s, sd)), None) => Some((s, sd, false)),
        (None, Some((r, rd))) => Some((r, rd, true)),
        (None, None) => None,
    }
}

/// What to do once a state's attempt has ended.
#[derive(Debug)]
pub(super) enum Attempt {
    /// Run the state again from the env it started with: a model stream
    /// was cut after it had streamed, so nothing it wrote is kept twice.
    Restart {
        /// 1 for the first restart.
        attempt: u32,
        /// What cut it off.
        reason: String,
    },
    /// The state is done, well or not.
    Settled(Option<Failure>),
}

/// Whether the attempt that ended with `failure` (after `attempts`
/// restarts) restarts: a transient model error after tokens were streamed,
/// while restarts are left and the env it started with was kept.
pub(super) fn after_attempt(
    failure: Option<Failure>,
    attempts: u32,
    snapshot_kept: bool,
    limits: &Limits,
) -> Attempt {
    match failure {
        Some(Failure::State(StateError::Model(e)))
            if snapshot_kept
                && e.is_transient()
                && e.emitted()
                && attempts < limits.state_retries =>
        {
            Attempt::Restart {
                attempt: attempts + 1,
                reason: e.to_string(),
            }
        }
        failure => Attempt::Settled(failure),
    }
}

/// Where a settled state sends the run.
#[derive(Debug)]
pub(super) enum Route {
    /// Its transition's choice.
    To(Next),
    /// It failed, and its `on_error` named where to go; the error is
    /// recorded in the env.
    Recovered(Next, ErrorRecord),
    /// The run fails.
    Fail(MachineError),
}

/// Where `state` (named `name`, at `step`), settled with `failure`, sends
/// the run: its transition, its error route, or a failure.
pub(super) fn route(
    state: &dyn State,
    name: &str,
    step: u32,
    env: &Env,
    failure: Option<Failure>,
) -> Route {
    match failure {
        None => Route::To(state.transition(env)),
        // Once the response is in, the state runs again and finds it.
        Some(Failure::Interrupt(request)) => Route::To(Next::Interrupt {
            request,
            then: Box::new(Next::to(name.to_owned())),
        }),
        Some(Failure::Deadline(after)) => Route::Fail(MachineError::Deadline { after }),
        Some(Failure::Tripped(trip)) => Route::Fail(MachineError::Guardrail(trip)),
        Some(Failure::State(source)) => match state.on_error(&source) {
            Some(next) => Route::Recovered(next, source.record(step, name)),
            None => Route::Fail(MachineError::State {
                state: name.to_owned(),
                source,
            }),
        },
    }
}

/// What the run does after a state routed it to `next`.
#[derive(Debug, PartialEq)]
pub(super) enum Then {
    /// The run is over.
    End,
    /// A single step ([`Machine::step`](super::Machine::step)) stops
    /// before going on to `next`.
    Stop(Next),
    /// Enter this state.
    Enter(Cow<'static, str>),
    /// Run these branches, then their join.
    Fork(Box<Fork>),
    /// Pause for a person: the run ends interrupted with this request and
    /// goes on at the second field once the response is in.
    Interrupt(Box<Interrupt>, Next),
}

/// Whether the run goes on to `next`, having `spent` so far: not over its
/// budgets, and not a single step.
pub(super) fn then(
    next: Next,
    spent: &Usage,
    limits: &Limits,
    single_step: bool,
) -> Result<Then, MachineError> {
    if let Some(error) = limits.over_budget(spent) {
        return Err(error);
    }
    Ok(match next {
        Next::End => Then::End,
        next if single_step => Then::Stop(next),
        Next::To(to) => Then::Enter(to),
        Next::Fork(fork) => Then::Fork(fork),
        Next::Interrupt { request, then } => Then::Interrupt(request, *then),
    })
}

/// The env branch `branch` of a fork starts with: the parent's, with the
/// branch's input, and nothing of the parent's own bookkeeping (usage is
/// counted per branch and summed at the join; replies and interrupts are
/// the parent's).
pub(super) fn branch_env(parent: &Env, branch: &Branch) -> Env {
    let mut env = parent.clone();
    env.input = Some(branch.input.clone());
    env.usage = Usage::default();
    env.branches.clear();
    env.interrupt = None;
    env.responses.clear();
    env
}

/// How a branch (or a sub-machine) run ended: its last event.
#[derive(Debug)]
pub(super) enum BranchEnd {
    Finished(RunOutput),
    Failed(RunFailure),
    Interrupted(RunOutput),
}

impl BranchEnd {
    /// The end a terminal event's kind tells of; `None` for other events.
    pub(super) fn of(kind: EventKind) -> Option<BranchEnd> {
        match kind {
            EventKind::Finished(out) => Some(BranchEnd::Finished(*out)),
            EventKind::Failed(failure) => Some(BranchEnd::Failed(*failure)),
            EventKind::Interrupted(out) => Some(BranchEnd::Interrupted(*out)),
            _ => None,
        }
    }
}

/// A fork that fails fast stops at a failed branch, with the error the
/// run fails with; otherwise the fork goes on, keeping the branch's end.
pub(super) fn fail_fast(
    fork: &Fork,
    branch: &str,
    end: BranchEnd,
) -> Result<BranchEnd, MachineError> {
    match (fork.on_failure, end) {
        (OnBranchFailure::FailFast, BranchEnd::Failed(failure)) => Err(MachineError::Branch {
            branch: branch.to_owned(),
            source: Box::new(failure.error),
        }),
        (_, end) => Ok(end),
    }
}

/// What the join state sees of a fork, and whether the run pauses first.
#[derive(Debug)]
pub(super) struct Joined {
    /// Every branch's outcome, in branch order.
    pub(super) outcomes: Vec<BranchOutcome>,
    /// The first branch's request, if a branch paused for a person: the
    /// run pauses at the fork and runs the join once it has the response.
    pub(super) interrupt: Option<Box<Interrupt>>,
}

/// Where a fork started in its parent: what [`join`] needs of the parent's
/// env, without a copy of it.
#[derive(Debug, Clone, Copy)]
pub(super) struct ForkedAt {
    /// The parent's step.
    pub(super) step: u32,
    /// Its observations so far (a branch's outcome keeps only those after).
    pub(super) observations: usize,
}

impl ForkedAt {
    pub(super) fn of(parent: &Env) -> Self {
        ForkedAt {
            step: parent.step,
            observations: parent.observations.len(),
        }
    }
}

/// Sums up a fork's branches, which ended as `ends` (`None`: a branch's
/// stream stopped without saying how, counted as failed). `at` is where
/// the fork started: a branch's outcome keeps only the observations it
/// added.
pub(super) fn join(fork: &Fork, at: ForkedAt, ends: Vec<Option<BranchEnd>>) -> Joined {
    let mut interrupt = None;
    let known = at.observations;
    let outcomes = fork
        .branches
        .iter()
        .zip(ends)
        .enumerate()
        .map(|(index, (branch, end))| {
            let (env, path, error) = match end {
                Some(BranchEnd::Finished(out)) => (out.env, out.path, None),
                Some(BranchEnd::Interrupted(out)) => {
                    if interrupt.is_none() {
                        interrupt = out.env.interrupt.clone();
                    }
                    (out.env, out.path, None)
                }
                Some(BranchEnd::Failed(failure)) => {
                    let record = ErrorRecord {
                        step: failure.env.step,
                        state: failure.path.last().cloned().unwrap_or_default(),
                        kind: failure.error.code(),
                        message: failure.error.to_string(),
                    };
                    (failure.env, failure.path, Some(record))
                }
                None => {
                    let record = ErrorRecord {
                        step: at.step,
                        state: branch.target.to_string(),
                        kind: MachineError::Cut.code(),
                        message: MachineError::Cut.to_string(),
                    };
                    (Env::default(), Vec::new(), Some(record))
                }
            };
            BranchOutcome {
                index: index as u32,
                target: branch.target.to_string(),
                input: branch.input.clone(),
                answer: env.answer,
                scratch: env.scratch,
                observations: env.observations.into_iter().skip(known).collect(),
                usage: env.usage,
                path,
                error,
            }
        })
        .collect();
    Joined {
        outcomes,
        interrupt,
    }
}

/// Puts a finished fork's outcomes into the parent env for the join state
/// to read, and adds the branches' usage to the run's; returns that usage.
pub(super) fn take_outcomes(env: &mut Env, outcomes: Vec<BranchOutcome>) -> Usage {
    let mut used = Usage::default();
    for outcome in &outcomes {
        used.add(&outcome.usage);
    }
    env.usage.add(&used);
    env.branches = outcomes;
    used
}

/// How a run that ended reports it: its outcome (`finished`,
/// `interrupted` or `failed`, as metrics and spans name it) and its last
/// event.
pub(super) fn ended(
    env: Env,
    path: Vec<String>,
    run_id: String,
    error: Option<MachineError>,
    interrupted: bool,
) -> (&'static str, EventKind) {
    match error {
        Some(error) => (
            "failed",
            EventKind::Failed(Box::new(RunFailure {
                error,
                path,
                env,
                run_id,
            })),
        ),
        None => {
            let out = Box::new(RunOutput {
                answer: env.answer.clone(),
                path,
                env,
                run_id,
            });
            if interrupted {
                ("interrupted", EventKind::Interrupted(out))
            } else {
                ("finished", EventKind::Finished(out))
            }
        }
    }
}

/// What a checkpoint a run is continued from says of it.
#[derive(Debug)]
pub(super) enum Resumed {
    /// The run goes on at the checkpoint's `next`.
    Continue,
    /// The run is over: it reports its end again (a recorded failure's
    /// error and state, or none), paused for a person or not.
    Ended {
        error: Option<MachineError>,
        interrupted: bool,
        /// The state a recorded failure happened in.
        state: Option<String>,
    },
}

/// Whether a run whose last checkpoint holds `next`, `env` and `failed`
/// goes on, or had ended (failed, finished or paused for a person).
pub(super) fn resumed(next: &Next, env: &Env, failed: Option<ErrorRecord>) -> Resumed {
    if let Some(record) = failed {
        return Resumed::Ended {
            error: Some(MachineError::Recorded {
                code: record.kind,
                message: record.message,
            }),
            interrupted: false,
            state: Some(record.state),
        };
    }
    let interrupted = match next {
        _ if env.interrupt.is_some() => true,
        Next::End => false,
        Next::Interrupt { .. } => true,
        Next::To(_) | Next::Fork(_) => return Resumed::Continue,
    };
    Resumed::Ended {
        error: None,
        interrupted,
        state: None,
    }
}

#[cfg(test)]
mod tests;
