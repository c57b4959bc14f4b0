//! Forks across processes: with a [`Dispatch`], a fork's branches are
//! handed out as child runs of their own instead of run here, and the
//! parent pauses at the fork until every one has ended.
//!
//! The parent waits as a pause, not as a task: its checkpoint stays at the
//! fork with an interrupt naming the children (id prefixed
//! [`WAITING_FOR_CHILDREN`]), so whoever runs it (a queue worker) can
//! give its slot back, and resume it with an empty response once the last
//! child has ended. The resumed fork reads each ended child from its
//! checkpoint, exactly as a fork resumed after a crash does, and joins.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use serde_json::json;

use super::child::ChildItem;
use super::decide::{self, BranchEnd, ForkedAt, Joined, Resumed};
use super::event::RunFailure;
use super::{events_only, EventStream, Machine, MachineError, RunCtx};
use crate::backend::BackendError;
use crate::env::{Env, Interrupt};
use crate::state::{Fork, Next};
use crate::store::{Store, StoreError};

/// The id prefix of the interrupt a parent waits for its child runs with.
pub const WAITING_FOR_CHILDREN: &str = "statewise.children:";

/// A branch of a fork, handed out to run elsewhere.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ChildRun {
    /// Its run id (`parent/step/index`), fixed by where it sits.
    pub run_id: String,
    /// The run that forked it.
    pub parent: String,
    /// The state it starts at.
    pub start: String,
    /// The env it starts with.
    pub env: Env,
    /// Where it sits, as in [`Event::branch`](super::event::Event::branch).
    pub branch: String,
}

/// Where a machine hands out its forks' branches (a queue of workers).
pub trait Dispatch: Send + Sync + std::fmt::Debug {
    /// Hands `child` out to be run, once per run id: handing it out again
    /// does nothing.
    fn dispatch<'a>(&'a self, child: &'a ChildRun) -> BoxFuture<'a, Result<(), BackendError>>;

    /// Whether child run `run_id` was given up without a checkpoint that
    /// says how it ended (delivered too often, say): its error code and
    /// message.
    fn given_up<'a>(
        &'a self,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<(String, String)>, BackendError>>;
}

/// The run ids of the children a parent's pause waits for, if it is such
/// a pause.
pub fn waiting_for(interrupt: &Interrupt) -> Option<Vec<String>> {
    if !interrupt.id.starts_with(WAITING_FOR_CHILDREN) {
        return None;
    }
    serde_json::from_value(interrupt.payload["children"].clone()).ok()
}

impl Machine {
    /// Hands its forks' branches to `dispatch` instead of running them
    /// here; a run that forks pauses until they have all ended (see
    /// [`waiting_for`]). Needs a store the children's runs share.
    pub fn with_dispatch(mut self, dispatch: impl Dispatch + 'static) -> Self {
        self.dispatch = Some(Arc::new(dispatch));
        self
    }

    /// Runs (or, from its last checkpoint, continues) a child run handed
    /// out by a parent's [`Dispatch`].
    pub async fn stream_child(&self, child: ChildRun) -> EventStream {
        let ChildRun {
            run_id,
            parent,
            start,
            env,
            branch,
        } = child;
        let ctx = RunCtx {
            parent: Some(Arc::from(parent)),
            branch: Some(Arc::from(branch)),
            // Its failure is its outcome (the queue records it so): the
            // checkpoint keeps it for the parent's join.
            keep_failure: true,
            ..RunCtx::fresh(run_id.as_str())
        };
        if let Some(store) = &self.store {
            match store.get(&run_id, None).await {
                Ok(Some(last)) => return self.continue_from(last, ctx),
                Ok(None) => {}
                Err(error) => {
                    let failure = RunFailure {
                        run_id,
                        error: error.into(),
                        path: Vec::new(),
                        env,
                    };
                    return failed(failure);
                }
            }
        }
        events_only(self.drive(Next::To(start.into()), env, false, ctx))
    }

    /// A fork handed out: the branches that have ended are joined; if
    /// some have not, each is handed out (again: it is a no-op) and the
    /// fork ends with the pause the parent waits for them in.
    pub(super) fn fork_out(
        &self,
        dispatch: Arc<dyn Dispatch>,
        fork: &Fork,
        parent: &Env,
        forking: &str,
        run_id: &str,
        branch: &Option<Arc<str>>,
    ) -> BoxStream<'static, ChildItem> {
        let step = parent.step;
        let children: Vec<ChildRun> = fork
            .branches
            .iter()
            .enumerate()
            .map(|(index, b)| ChildRun {
                run_id: format!("{run_id}/{step}/{index}"),
                parent: run_id.to_owned(),
                start: b.target.to_string(),
                env: decide::branch_env(parent, b),
                branch: super::child::nest(branch, &format!("{forking}/fork[{index}]")).to_string(),
            })
            .collect();
        let (machine, fork, at) = (self.clone(), fork.clone(), ForkedAt::of(parent));
        let parent_run = run_id.to_owned();
        let joined = async move {
            let store = machine.store.clone().ok_or(MachineError::NoStore)?;
            let mut ends = Vec::new();
            let mut waiting = Vec::new();
            for child in &children {
                match machine.child_end(&*store, &*dispatch, child).await? {
                    Some(end) => ends.push(Some(decide::fail_fast(&fork, &child.branch, end)?)),
                    None => {
                        dispatch
                            .dispatch(child)
                            .await
                            .map_err(|e| MachineError::Store(StoreError::Backend(e)))?;
                        waiting.push(child.run_id.clone());
                        ends.push(None);
                    }
                }
            }
            if waiting.is_empty() {
                return Ok(decide::join(&fork, at, ends));
            }
            let mut request = Interrupt::new(
                format!("{WAITING_FOR_CHILDREN}{parent_run}/{step}"),
                "waiting for the fork's child runs",
            );
            request.payload = json!({ "children": waiting });
            request.run_id = parent_run;
            Ok(Joined {
                outcomes: Vec::new(),
                interrupt: Some(Box::new(request)),
            })
        };
        futures::stream::once(async move { ChildItem::Joined(Box::new(joined.await)) }).boxed()
    }

    /// How `child` ended, if it has: from its last checkpoint, or the
    /// dispatch's word that it was given up.
    async fn child_end(
        &self,
        store: &dyn Store,
        dispatch: &dyn Dispatch,
        child: &ChildRun,
    ) -> Result<Option<BranchEnd>, MachineError> {
        if let Some((code, message)) = dispatch
            .given_up(&child.run_id)
            .await
            .map_err(|e| MachineError::Store(StoreError::Backend(e)))?
        {
            return Ok(Some(BranchEnd::Failed(RunFailure {
                run_id: child.run_id.clone(),
                error: MachineError::Recorded { code, message },
                path: Vec::new(),
                env: child.env.clone(),
            })));
        }
        let Some(last) = store.get(&child.run_id, None).await? else {
            return Ok(None);
        };
        if matches!(
            decide::resumed(&last.next, &last.env, last.failed.clone()),
            Resumed::Continue
        ) {
            return Ok(None);
        }
        // An ended checkpoint continues to its one terminal event.
        let mut events = self.continue_from(last, RunCtx::fresh(child.run_id.as_str()));
        Ok(events.next().await.and_then(|e| BranchEnd::of(e.kind)))
    }
}

fn failed(failure: RunFailure) -> EventStream {
    let event = super::event::Event {
        step: 0,
        state: Arc::from(""),
        branch: None,
        kind: super::event::EventKind::Failed(Box::new(failure)),
    };
    futures::stream::iter([event]).boxed()
}
