//! The verdicts guardrails return, one type per stage, so a guardrail can
//! only answer what its stage can do.

use serde_json::Value;

/// An input guardrail's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The input may go on.
    Pass,
    /// The run stops; the reason names what was found, never the data.
    Trip(String),
}

/// An output guardrail's verdict on answer text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputCheck {
    /// The text leaves as it is.
    Pass,
    /// This text leaves instead (for example with personal data masked).
    Rewrite(String),
    /// Nothing more leaves and the run stops, for this reason.
    Block(String),
}

/// A tool guardrail's verdict on a call before it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallCheck {
    /// The call runs.
    Allow,
    /// The call does not run; the model reads this reason and goes on.
    Reject(String),
    /// The call does not run and the run stops, for this reason.
    Stop(String),
}

/// A tool guardrail's verdict on a call's result.
#[derive(Debug, Clone, PartialEq)]
pub enum ResultCheck {
    /// The model reads the result as it is.
    Keep,
    /// The model reads this instead (for example with personal data
    /// masked).
    Replace(Value),
    /// The model reads nothing more and the run stops, for this reason.
    Stop(String),
}
