//! Why a run stops early: [`MachineError`], and the [`Resource`] a budget
//! limits.

use std::time::Duration;

use crate::state::StateError;
use crate::store::StoreError;
use crate::trace::TraceError;

/// What a budget limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    /// Prompt plus completion tokens.
    Tokens,
    /// Cost in US dollars.
    Cost,
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Resource::Tokens => "token",
            Resource::Cost => "cost",
        })
    }
}

/// Why a run stopped early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MachineError {
    /// A transition (or the entry) named a state that is not registered.
    #[error("no state named `{name}`{}; registered states: {}",
        .from.as_ref().map(|f| format!(" (reached from `{f}`)")).unwrap_or_default(),
        .known.join(", "))]
    UnknownState {
        /// The missing name.
        name: String,
        /// The state whose transition named it; `None` for the entry.
        from: Option<String>,
        /// The registered names.
        known: Vec<String>,
    },
    /// The run entered as many states as its limit allows and wanted another.
    #[error("step limit of {limit} reached before the run ended")]
    MaxSteps {
        /// The limit.
        limit: u32,
    },
    /// The run took longer than its deadline ([`Machine::deadline`](super::Machine::deadline)).
    #[error("run deadline of {after:?} passed")]
    Deadline {
        /// The deadline.
        after: Duration,
    },
    /// The run used more than its budget ([`Machine::max_tokens`](super::Machine::max_tokens), [`Machine::max_cost`](super::Machine::max_cost)).
    #[error("{resource} budget exceeded: used {used}, limit {limit}")]
    Budget {
        /// What ran out.
        resource: Resource,
        /// The limit.
        limit: f64,
        /// What was used.
        used: f64,
    },
    /// The event stream ended without a `Finished` or `Failed` event (it was
    /// cut short before being handed to [`finish`](super::finish)).
    #[error("the event stream ended before the run did")]
    Interrupted,
    /// A checkpoint could not be saved.
    #[error("checkpoint not saved: {0}")]
    Store(#[from] StoreError),
    /// A trace record could not be written.
    #[error("trace not written: {0}")]
    Trace(#[from] TraceError),
    /// A state failed.
    #[error("state `{state}` failed: {source}")]
    State {
        /// The state.
        state: String,
        /// Its error.
        #[source]
        source: StateError,
    },
}

impl MachineError {
    /// A short stable code for the kind of error, for logs, results files and
    /// clients: `unknown_state`, `max_steps`, `interrupted`, `deadline`,
    /// `budget`, `store`, `trace`, `model`, `action`, `precondition`, `scratch`, `custom` or
    /// `state_timeout`.
    pub fn kind(&self) -> &'static str {
        match self {
            MachineError::UnknownState { .. } => "unknown_state",
            MachineError::MaxSteps { .. } => "max_steps",
            MachineError::Interrupted => "interrupted",
            MachineError::Deadline { .. } => "deadline",
            MachineError::Budget { .. } => "budget",
            MachineError::Store(_) => "store",
            MachineError::Trace(_) => "trace",
            MachineError::State { source, .. } => match source {
                StateError::Model(_) => "model",
                StateError::Action { .. } => "action",
                StateError::Precondition { .. } => "precondition",
                StateError::Scratch(_) => "scratch",
                StateError::Custom(_) => "custom",
                StateError::TimedOut { .. } => "state_timeout",
            },
        }
    }
}
