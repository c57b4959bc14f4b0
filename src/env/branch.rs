//! [`BranchOutcome`]: what one branch of a fork produced, as the join state
//! sees it in [`Env::branches`](crate::Env::branches).
//!
//! A branch runs on its own copy of the env; its outcome keeps only what
//! it added (its observations, its usage), so a join does not count the
//! parent's work once per branch.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ErrorRecord, Observation, Scratch, Usage};

/// The result of one branch of a fork ([`Next::Fork`](crate::Next::Fork)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BranchOutcome {
    /// Its place in the fork, from 0.
    pub index: u32,
    /// The state (or sub-machine) it started at.
    pub target: String,
    /// The input it was given ([`Env::input`](crate::Env::input)).
    #[serde(default)]
    pub input: Value,
    /// Its answer, if it gave one.
    #[serde(default)]
    pub answer: Option<String>,
    /// Its scratch space as it ended.
    #[serde(default)]
    pub scratch: Scratch,
    /// The tool results it added.
    #[serde(default)]
    pub observations: Vec<Observation>,
    /// Tokens and cost of its model calls (already added to the parent's).
    #[serde(default)]
    pub usage: Usage,
    /// The states it ran, in order.
    #[serde(default)]
    pub path: Vec<String>,
    /// Why it failed, if it did (`kind` is the failure's code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorRecord>,
}

impl BranchOutcome {
    /// Whether the branch ended without an error.
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }
}
