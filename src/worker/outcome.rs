//! What a queued run ended as, and the dead-letter record of a run given up.

use serde::{Deserialize, Serialize};

use crate::env::Usage;

/// How a queued run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OutcomeStatus {
    /// It reached its end.
    Finished,
    /// It failed (a state's error, a limit); `error` says why.
    Failed,
    /// It paused for a person ([`Machine::resume_with`](crate::Machine::resume_with)).
    Interrupted,
    /// It was delivered too often without ending (workers died or the
    /// store failed while running it) and went to the dead-letter stream.
    Dead,
}

/// The recorded end of a queued run: written once, by the worker holding
/// the run's current claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The run.
    pub run_id: String,
    /// How it ended.
    pub status: OutcomeStatus,
    /// Its final answer, if it finished with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// Why it failed or was given up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The failure's stable code ([`MachineError::code`](crate::MachineError::code):
    /// `max_steps`, `model:http_500`, ...; `dead` for a dead letter,
    /// `unknown_machine`, `bad_env`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The worker that recorded it.
    pub worker: String,
    /// How many times the run was delivered to a worker.
    pub deliveries: u64,
    /// The fencing token of the claim that recorded it.
    pub token: u64,
    /// The states run, in order (with those of earlier deliveries).
    #[serde(default)]
    pub path: Vec<String>,
    /// Tokens and cost of the run.
    #[serde(default)]
    pub usage: Usage,
    /// When it was recorded (ms since the Unix epoch).
    pub recorded_ms: u64,
}

/// A run given up after too many deliveries, as the dead-letter stream
/// keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The run.
    pub run_id: String,
    /// The machine it was submitted to.
    pub machine: String,
    /// The last error a delivery ended with.
    pub error: String,
    /// How many times it was delivered.
    pub deliveries: u64,
}
