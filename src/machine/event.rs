//! What a running [`Machine`](crate::Machine) reports, in order.

use std::sync::Arc;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use super::MachineError;
use crate::env::{Env, Usage};
use crate::output::OutputError;
use crate::state::{Emit, Next, StateEvent};

/// One thing that happened during a run, tagged with the step and state.
#[derive(Debug, Serialize)]
pub struct Event {
    /// The step (1-based count of states entered) it happened in.
    pub step: u32,
    /// The state that was running.
    pub state: Arc<str>,
    /// The branch it ran in: the forking state and the branch's index
    /// (`plan/fork[2]`), or a sub-machine's name (`research`), nested as
    /// deep as they go; `None` on the run's main line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<Arc<str>>,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// The text, if this is a token event.
    pub fn token(&self) -> Option<&str> {
        match &self.kind {
            EventKind::Emitted(Emit::Token(t)) => Some(t),
            _ => None,
        }
    }

    /// The state's own event, if this is an `E` ([`Emit::Custom`]).
    pub fn custom<E: StateEvent>(&self) -> Option<E> {
        match &self.kind {
            EventKind::Emitted(Emit::Custom(custom)) => custom.decode(),
            _ => None,
        }
    }

    /// Whether this is the last event of a run.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self.kind,
            EventKind::Finished(_) | EventKind::Failed(_) | EventKind::Interrupted(_)
        )
    }

    /// Where it happened: the branch and the state, as
    /// `plan/fork[2]/search`, or just the state on the main line.
    pub fn path(&self) -> String {
        match &self.branch {
            Some(branch) => format!("{branch}/{}", self.state),
            None => self.state.to_string(),
        }
    }
}

/// The kinds of [`Event`].
#[derive(Debug, Serialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum EventKind {
    /// The state began.
    StateEntered,
    /// The state streamed something (a token, an action, a tool call, ...).
    Emitted(Emit),
    /// The state was cut off mid-stream and starts again from the env it
    /// started with; what it streamed before is void.
    StateRetried {
        /// 1 for the first restart.
        attempt: u32,
        /// What cut it off.
        reason: String,
    },
    /// The state failed and its [`on_error`](crate::State::on_error) named
    /// where to go; `StateExited` follows.
    StateFailed {
        /// The error, as recorded in the env.
        error: crate::env::ErrorRecord,
    },
    /// The env as the state left it, just before `StateExited`; only with
    /// [`Machine::snapshots`](crate::Machine::snapshots).
    Snapshot(Box<Env>),
    /// The state ended, and the machine goes to `next`.
    StateExited {
        /// Where the run goes.
        next: Next,
    },
    /// The run ended normally. Always the last event.
    Finished(Box<RunOutput>),
    /// The run ended with an error. Always the last event.
    Failed(Box<RunFailure>),
    /// The run paused for a person: the request is
    /// [`RunOutput::interrupt`], the checkpoint is saved, and
    /// [`Machine::resume_with`](crate::Machine::resume_with) goes on with
    /// the reply. Always the last event.
    Interrupted(Box<RunOutput>),
}

/// The result of a finished run.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct RunOutput {
    /// The final answer, if a state gave one.
    pub answer: Option<String>,
    /// The names of the states run, in order.
    pub path: Vec<String>,
    /// The env as the run left it.
    pub env: Env,
    /// The run's id (see [`Machine::stream_as`](crate::Machine::stream_as)).
    pub run_id: String,
}

impl RunOutput {
    /// The request the run paused on, if it ended interrupted rather than
    /// finished (then `answer` is usually `None`).
    pub fn interrupt(&self) -> Option<&crate::env::Interrupt> {
        self.env.interrupt.as_deref()
    }

    /// Tokens and cost of the whole run.
    pub fn usage(&self) -> Usage {
        self.env.usage
    }

    /// The answer as a `T`, for a run of a machine with
    /// [`Machine::output`](crate::Machine::output) (whose answer state
    /// already checked it); an error if there is no answer, or it is not a
    /// `T`, with the answer as it was written.
    pub fn output<T: serde::de::DeserializeOwned>(&self) -> Result<T, OutputError> {
        let name = std::any::type_name::<T>().to_owned();
        let Some(answer) = &self.answer else {
            return Err(OutputError::NoAnswer { name });
        };
        serde_json::from_str(answer).map_err(|e| OutputError::Invalid {
            name,
            attempts: 1,
            problems: vec![crate::schema::Problem {
                field: None,
                message: e.to_string(),
            }],
            raw: answer.clone(),
        })
    }
}

/// A run that ended with an error, with everything it had produced.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct RunFailure {
    /// What went wrong.
    #[source]
    pub error: MachineError,
    /// The names of the states run, in order, the failing one last.
    pub path: Vec<String>,
    /// The env as the failure left it; nothing the run produced is lost.
    pub env: Env,
    /// The run's id: [`Machine::resume`](crate::Machine::resume) continues
    /// it from its last checkpoint.
    pub run_id: String,
}

impl Serialize for RunFailure {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("RunFailure", 5)?;
        s.serialize_field("run_id", &self.run_id)?;
        s.serialize_field("kind", &self.error.code())?;
        s.serialize_field("error", &self.error.to_string())?;
        s.serialize_field("path", &self.path)?;
        s.serialize_field("env", &self.env)?;
        s.end()
    }
}
