//! [`Interrupt`]: what a paused run asks a person, and where the answer
//! goes.
//!
//! A run pauses by saving a checkpoint and ending, not by holding a task
//! open: the request lives in [`Env::interrupt`](crate::Env::interrupt),
//! so a pause survives a restart of the process, and the person's response is
//! filed in [`Env::responses`](crate::Env::responses) under the request's id.
//! A state that asked reads the response when it runs again, so it can skip
//! what it already did instead of doing it twice.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A question a run waits on: the request a person answers before
/// [`Machine::resume_with`](crate::Machine::resume_with) continues it.
///
/// ```
/// use statewise::env::Interrupt;
/// use serde_json::json;
///
/// let ask = Interrupt::new("confirm-refund", "Refund order 1182 ($40)?")
///     .with_payload(json!({"order": 1182, "amount": 40}))
///     .with_schema(json!({"type": "boolean"}));
/// assert_eq!(ask.id, "confirm-refund");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interrupt {
    /// What the response is filed under in [`Env::responses`](crate::Env::responses);
    /// stable across the state's reruns, so the state finds its answer.
    pub id: String,
    /// The question, for a person.
    pub prompt: String,
    /// What the question is about (tool calls awaiting approval, say).
    #[serde(default)]
    pub payload: Value,
    /// A JSON Schema the response should match; `null` for any.
    #[serde(default)]
    pub schema: Value,
    /// The run that asked (a branch or sub-machine has a run of its own);
    /// set by the machine.
    #[serde(default)]
    pub run_id: String,
    /// The branch that asked, as in [`Event::branch`](crate::Event::branch);
    /// `None` for the run's main line. Set by the machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

impl Interrupt {
    /// A request `id` asking `prompt`, with no payload and any response.
    pub fn new(id: impl Into<String>, prompt: impl Into<String>) -> Self {
        Interrupt {
            id: id.into(),
            prompt: prompt.into(),
            payload: Value::Null,
            schema: Value::Null,
            run_id: String::new(),
            branch: None,
        }
    }

    /// Sets what the question is about.
    pub fn with_payload(mut self, payload: Value) -> Self {
        self.payload = payload;
        self
    }

    /// Sets the JSON Schema the response should match.
    pub fn with_schema(mut self, schema: Value) -> Self {
        self.schema = schema;
        self
    }
}
