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
    /// A transition, a declared target ([`State::targets`](crate::State::targets))
    /// or the entry named a state that is not registered.
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
    /// The event stream was cut: it ended without a `Finished` or `Failed`
    /// event (dropped, or its task died, before the run ended). Not a pause
    /// for a person, which ends a run with
    /// [`EventKind::Interrupted`](super::event::EventKind::Interrupted).
    #[error("the event stream ended before the run did")]
    Cut,
    /// A guardrail stopped the run ([`Guardrails`](crate::guard::Guardrails));
    /// the trip says which, where and why.
    #[error("{0}; the run was stopped before harm")]
    Guardrail(crate::guard::Trip),
    /// A checkpoint could not be saved or read.
    #[error("checkpoint store: {0}")]
    Store(#[from] StoreError),
    /// The machine was asked to resume or fork without a store
    /// ([`Machine::with_store`](super::Machine::with_store)).
    #[error("the machine has no store to resume or fork from (see Machine::with_store)")]
    NoStore,
    /// A person's response was given to a run that is not paused for one
    /// ([`Machine::resume_with`](super::Machine::resume_with)).
    #[error(
        "run `{run_id}` is not paused for a response (resume it with Machine::resume instead)"
    )]
    NotPaused {
        /// The run.
        run_id: String,
    },
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
    /// A failure recorded earlier and read back: a fork's branch that had
    /// failed before its parent was resumed. Its code is the original's.
    #[error("{message}")]
    Recorded {
        /// The original failure's code.
        code: String,
        /// The original failure's text.
        message: String,
    },
    /// A branch of a fork failed, and the fork fails fast
    /// ([`Fork::fail_fast`](crate::state::Fork::fail_fast)).
    #[error("branch `{branch}` failed: {source}")]
    Branch {
        /// The branch, as in [`Event::branch`](crate::Event::branch).
        branch: String,
        /// Its error.
        #[source]
        source: Box<MachineError>,
    },
}

impl MachineError {
    /// The kind of error, typed.
    pub fn kind(&self) -> MachineErrorKind {
        match self {
            MachineError::UnknownState { .. } => MachineErrorKind::UnknownState,
            MachineError::MaxSteps { .. } => MachineErrorKind::MaxSteps,
            MachineError::Cut => MachineErrorKind::Cut,
            MachineError::Guardrail(_) => MachineErrorKind::Guardrail,
            MachineError::Deadline { .. } => MachineErrorKind::Deadline,
            MachineError::Budget { .. } => MachineErrorKind::Budget,
            MachineError::Store(_) => MachineErrorKind::Store,
            MachineError::NoStore => MachineErrorKind::NoStore,
            MachineError::NotPaused { .. } => MachineErrorKind::NotPaused,
            MachineError::Trace(_) => MachineErrorKind::Trace,
            MachineError::State { .. } => MachineErrorKind::State,
            MachineError::Branch { .. } => MachineErrorKind::Branch,
            MachineError::Recorded { .. } => MachineErrorKind::Recorded,
        }
    }

    /// The failure's code, the one results files, traces, fixtures,
    /// replays and clients all use: a state's failure by its
    /// [`StateError::code`] (`model:http_503`, `action`, ...), else the kind
    /// (`unknown_state`, `max_steps`, `interrupted`, `deadline`, `budget`,
    /// `store`, `no_store`, `not_paused`, `trace`). A failed branch has its own error's code.
    pub fn code(&self) -> String {
        match self {
            MachineError::State { source, .. } => source.code(),
            MachineError::Branch { source, .. } => source.code(),
            MachineError::Recorded { code, .. } => code.clone(),
            other => other.kind().as_str().to_owned(),
        }
    }
}

/// The kinds of [`MachineError`], serialized in snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MachineErrorKind {
    /// [`MachineError::UnknownState`].
    UnknownState,
    /// [`MachineError::MaxSteps`].
    MaxSteps,
    /// [`MachineError::Cut`].
    Cut,
    /// [`MachineError::Guardrail`].
    Guardrail,
    /// [`MachineError::Deadline`].
    Deadline,
    /// [`MachineError::Budget`].
    Budget,
    /// [`MachineError::Store`].
    Store,
    /// [`MachineError::NoStore`].
    NoStore,
    /// [`MachineError::NotPaused`].
    NotPaused,
    /// [`MachineError::Trace`].
    Trace,
    /// [`MachineError::State`]: the state's own error says more.
    State,
    /// [`MachineError::Branch`]: the branch's own error says more.
    Branch,
    /// [`MachineError::Recorded`]: its code is the original failure's.
    Recorded,
}

impl MachineErrorKind {
    /// The snake_case name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            MachineErrorKind::UnknownState => "unknown_state",
            MachineErrorKind::MaxSteps => "max_steps",
            MachineErrorKind::Cut => "cut",
            MachineErrorKind::Guardrail => "guardrail",
            MachineErrorKind::Deadline => "deadline",
            MachineErrorKind::Budget => "budget",
            MachineErrorKind::Store => "store",
            MachineErrorKind::NoStore => "no_store",
            MachineErrorKind::NotPaused => "not_paused",
            MachineErrorKind::Trace => "trace",
            MachineErrorKind::State => "state",
            MachineErrorKind::Branch => "branch",
            MachineErrorKind::Recorded => "recorded",
        }
    }
}

impl std::fmt::Display for MachineErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ModelError, ModelErrorKind};
    use crate::state::StateErrorKind;

    #[test]
    fn one_failure_one_code_at_every_level() {
        let http = || ModelError::Http {
            provider: "openai".into(),
            status: 503,
            message: "overloaded".into(),
            retry_after: None,
        };
        assert_eq!(http().kind(), ModelErrorKind::Http);
        assert_eq!(http().code(), "http_503");
        let state = StateError::Model(http());
        assert_eq!(state.kind(), StateErrorKind::Model);
        assert_eq!(state.code(), "model:http_503");
        let machine = MachineError::State {
            state: "reasoning".into(),
            source: state,
        };
        assert_eq!(machine.kind(), MachineErrorKind::State);
        assert_eq!(machine.code(), "model:http_503");
        let limit = MachineError::MaxSteps { limit: 3 };
        assert_eq!(limit.code(), "max_steps");
        // Kinds serialize as their snake_case names.
        for (kind, name) in [
            (MachineErrorKind::UnknownState, "unknown_state"),
            (MachineErrorKind::State, "state"),
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), name);
            assert_eq!(kind.as_str(), name);
        }
        assert_eq!(
            serde_json::to_value(StateErrorKind::StateTimeout).unwrap(),
            "state_timeout"
        );
        assert_eq!(
            serde_json::to_value(ModelErrorKind::ContextOverflow).unwrap(),
            "context_overflow"
        );
    }
}
