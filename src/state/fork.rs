//! [`Fork`]: a transition that runs several branches at once and joins
//! them.
//!
//! The branches are data, not code: a transition builds a `Fork` from the
//! env (one branch per tool call, per search query, per plan step), so how
//! many run and where is decided at run time, and the fork is saved in the
//! checkpoint like any other [`Next`](super::Next). Each branch runs from
//! its target state on a copy of the env with its own
//! [`input`](crate::Env::input) until it ends; the join state then sees
//! every branch's [`BranchOutcome`](crate::env::BranchOutcome).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Branches to run concurrently, and the state that joins them.
///
/// ```
/// use statewise::{Env, Next, state::Fork};
/// use serde_json::json;
///
/// // One branch per query the plan produced, at most two at a time.
/// let queries = ["rust actors", "rust state machines", "tokio select"];
/// let fork = queries
///     .iter()
///     .fold(Fork::join_at("summarize"), |f, q| f.branch("search", json!(q)))
///     .max_concurrency(2);
/// assert_eq!(fork.branches.len(), 3);
/// let next = Next::fork(fork);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fork {
    /// The branches, in order; the join sees their outcomes in this order.
    pub branches: Vec<Branch>,
    /// The state the run continues at once every branch has ended.
    pub join: Cow<'static, str>,
    /// What a failed branch does to the fork.
    #[serde(default)]
    pub on_failure: OnBranchFailure,
    /// The most branches running at once; `None` runs them all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<usize>,
}

/// One branch of a [`Fork`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Branch {
    /// The state (or sub-machine) the branch starts at.
    pub target: Cow<'static, str>,
    /// Its input, set as [`Env::input`](crate::Env::input) of its env.
    #[serde(default)]
    pub input: Value,
}

/// What a failed branch does to its [`Fork`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBranchFailure {
    /// The other branches go on, and the join sees the failure in the
    /// branch's [`error`](crate::env::BranchOutcome::error).
    #[default]
    Join,
    /// The first failure stops the other branches and fails the run with
    /// [`MachineError::Branch`](crate::MachineError::Branch).
    FailFast,
}

impl Fork {
    /// A fork with no branches yet that joins at the state `join`.
    pub fn join_at(join: impl Into<Cow<'static, str>>) -> Self {
        Fork {
            branches: Vec::new(),
            join: join.into(),
            on_failure: OnBranchFailure::Join,
            max_concurrency: None,
        }
    }

    /// Adds a branch that starts at `target` with `input`.
    pub fn branch(mut self, target: impl Into<Cow<'static, str>>, input: Value) -> Self {
        self.branches.push(Branch {
            target: target.into(),
            input,
        });
        self
    }

    /// Fails the run at the first failed branch, stopping the others.
    pub fn fail_fast(mut self) -> Self {
        self.on_failure = OnBranchFailure::FailFast;
        self
    }

    /// Runs at most `limit` branches at once (at least one).
    pub fn max_concurrency(mut self, limit: usize) -> Self {
        self.max_concurrency = Some(limit.max(1));
        self
    }
}
