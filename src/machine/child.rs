//! Child runs: each branch of a fork, and each entry into a sub-machine,
//! runs as a run of its own under the parent.
//!
//! A child has a run id derived from its parent's (`parent/step/index` for
//! a branch, `parent/step/name` for a sub-machine), its own checkpoints in
//! the parent's store, and events tagged with its branch. Because the id
//! is fixed by where the child sits, a resumed parent finds each child's
//! last checkpoint: a child that had ended is not run again, one that was
//! cut off continues, one that never started starts. Budgets and the
//! deadline are the whole run's: children share one tally of what was
//! spent, and the parent's deadline.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{BoxStream, SelectAll};
use futures::StreamExt;
use tokio::time::Instant;

use super::decide::{self, BranchEnd, Joined};
use super::event::{Event, EventKind, RunFailure};
use super::sub::SubMachine;
use super::{events_only, EventStream, Machine, MachineError, RunCtx};
use crate::env::{Env, Usage};
use crate::state::{Fork, Next, OnBranchFailure};

/// What a whole run tree has spent, shared by a parent's children so a
/// budget holds for all of them together.
#[derive(Debug)]
pub(super) struct Spent(Mutex<Usage>);

impl Spent {
    /// A tally that starts at `usage` (what the parent had spent).
    pub(super) fn new(usage: Usage) -> Arc<Spent> {
        Arc::new(Spent(Mutex::new(usage)))
    }

    /// Adds what a state spent.
    pub(super) fn add(&self, usage: &Usage) {
        self.lock().add(usage);
    }

    /// Everything spent so far.
    pub(super) fn total(&self) -> Usage {
        *self.lock()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Usage> {
        // A panic elsewhere leaves a usable tally: it only holds numbers.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What a child run passes up to its parent's driver.
pub(super) enum ChildItem {
    /// An event of a child, tagged with its branch.
    Event(Box<Event>),
    /// Every branch of a fork has ended (or one failed a fail-fast fork).
    Joined(Box<Result<Joined, MachineError>>),
    /// A sub-machine's run ended.
    Ended(Box<BranchEnd>),
}

/// Where a child sits: the parent's branch, then `segment`.
pub(super) fn nest(branch: &Option<Arc<str>>, segment: &str) -> Arc<str> {
    match branch {
        Some(parent) => Arc::from(format!("{parent}/{segment}")),
        None => Arc::from(segment),
    }
}

impl Machine {
    /// Runs `fork`'s branches from `parent` (the env after `forking`, the
    /// state that forked, in run `run_id`), at most `max_concurrency` at
    /// once, passing their events through, then sums them up.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run_fork(
        &self,
        fork: &Fork,
        parent: &Env,
        forking: &str,
        run_id: &str,
        branch: &Option<Arc<str>>,
        spent: &Arc<Spent>,
        deadline: Option<(Instant, Duration)>,
    ) -> BoxStream<'static, ChildItem> {
        let step = parent.step;
        let children: Vec<(Arc<str>, Child)> = fork
            .branches
            .iter()
            .enumerate()
            .map(|(index, b)| {
                let at = nest(branch, &format!("{forking}/fork[{index}]"));
                let ctx = RunCtx {
                    // A fail-fast fork fails the run, which a resume retries.
                    keep_failure: fork.on_failure == OnBranchFailure::Join,
                    ..RunCtx::child(
                        format!("{run_id}/{step}/{index}"),
                        run_id,
                        Arc::clone(&at),
                        spent,
                        deadline,
                    )
                };
                let start = Next::To(b.target.clone());
                let maker = Child {
                    machine: self.clone(),
                    start,
                    env: decide::branch_env(parent, b),
                    ctx,
                };
                (at, maker)
            })
            .collect();
        let fork = fork.clone();
        let at = decide::ForkedAt::of(parent);
        let cap = fork.max_concurrency.unwrap_or(usize::MAX).max(1);
        Box::pin(async_stream::stream! {
            let names: Vec<Arc<str>> = children.iter().map(|(at, _)| Arc::clone(at)).collect();
            let mut waiting = children.into_iter().map(|(_, maker)| maker).enumerate();
            let mut running = SelectAll::new();
            for (index, maker) in waiting.by_ref().take(cap) {
                running.push(maker.open().map(move |e| (index, e)).boxed());
            }
            let mut ends: Vec<Option<BranchEnd>> = (0..names.len()).map(|_| None).collect();
            while let Some((index, event)) = running.next().await {
                if !event.is_terminal() {
                    yield ChildItem::Event(Box::new(event));
                    continue;
                }
                match BranchEnd::of(event.kind) {
                    None => {}
                    Some(end) => {
                        match decide::fail_fast(&fork, &names[index], end) {
                            Ok(end) => ends[index] = Some(end),
                            Err(error) => {
                                // Dropping the others cancels them.
                                yield ChildItem::Joined(Box::new(Err(error)));
                                return;
                            }
                        }
                        if let Some((index, maker)) = waiting.next() {
                            running.push(maker.open().map(move |e| (index, e)).boxed());
                        }
                    }
                }
            }
            yield ChildItem::Joined(Box::new(Ok(decide::join(&fork, at, ends))));
        })
    }

    /// Runs sub-machine `sub` from `parent` (in run `run_id`, whose step
    /// counter is at the step entering it), passing its events through.
    pub(super) fn run_sub(
        &self,
        sub: &SubMachine,
        parent: &Env,
        run_id: &str,
        branch: &Option<Arc<str>>,
        spent: &Arc<Spent>,
        deadline: Option<(Instant, Duration)>,
    ) -> BoxStream<'static, ChildItem> {
        let at = nest(branch, sub.name());
        // The step before entering: a resume re-enters at it.
        let step = parent.step - 1;
        let ctx = RunCtx::child(
            format!("{run_id}/{step}/{}", sub.name()),
            run_id,
            Arc::clone(&at),
            spent,
            deadline,
        );
        let inner = match sub.machine(parent) {
            Ok(inner) => inner.under(self),
            Err(source) => {
                let error = MachineError::State {
                    state: sub.name().to_owned(),
                    source,
                };
                return Box::pin(futures::stream::iter([ChildItem::Joined(Box::new(Err(
                    error,
                )))]));
            }
        };
        let maker = Child {
            start: Next::to(inner.entry().to_owned()),
            env: sub.child_env(parent),
            machine: inner,
            ctx,
        };
        Box::pin(maker.open().filter_map(|event| async move {
            if !event.is_terminal() {
                return Some(ChildItem::Event(Box::new(event)));
            }
            BranchEnd::of(event.kind).map(|end| ChildItem::Ended(Box::new(end)))
        }))
    }
}

/// A child run not yet started: opened, it resumes the child from its
/// last checkpoint if the store has one, else starts it.
struct Child {
    machine: Machine,
    start: Next,
    env: Env,
    ctx: RunCtx,
}

impl Child {
    fn open(self) -> EventStream {
        let Child {
            machine,
            start,
            env,
            ctx,
        } = self;
        futures::stream::once(async move {
            if let Some(store) = &machine.store {
                match store.get(&ctx.run_id, None).await {
                    Ok(Some(last)) => return machine.continue_from(last, ctx),
                    Ok(None) => {}
                    Err(error) => {
                        let failure = RunFailure {
                            run_id: ctx.run_id.to_string(),
                            error: error.into(),
                            path: Vec::new(),
                            env,
                        };
                        let event = Event {
                            step: 0,
                            state: Arc::from(""),
                            branch: ctx.branch,
                            kind: EventKind::Failed(Box::new(failure)),
                        };
                        return futures::stream::iter([event]).boxed();
                    }
                }
            }
            events_only(machine.drive(start, env, false, ctx))
        })
        .flatten()
        .boxed()
    }
}
