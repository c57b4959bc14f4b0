//! Testing states without a network.
//!
//! - Build envs with [`Env`]'s `with_*` methods and call
//!   [`State::transition`](crate::State::transition) directly: routing is pure.
//! - Script models with [`ScriptedModel`] and inspect what they were sent.
//! - Keep whole steps as JSON [`StepFixture`]s (input env, scripted replies,
//!   expected next state and env) and check them with [`StepFixture::check`].
//!
//! A fixture file:
//!
//! ```json
//! {
//!   "name": "a tool call goes to action",
//!   "state": "reasoning",
//!   "env": {"messages": [{"role": "user", "content": "2+2?"}]},
//!   "replies": [{"reply": {"text": "{\"name\": \"calculator\", \"arguments\": {\"expr\": \"2+2\"}}"}}],
//!   "expect": {
//!     "next": {"to": "tools"},
//!     "env": {"action": {"tool_calls": [{"name": "calculator"}]}}
//!   }
//! }
//! ```
//!
//! `expect.env` is matched as a subset: every key given must be present and
//! equal, keys left out are not checked; lists must have the given length.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::env::Env;
use crate::machine::{Machine, StepOutcome};
use crate::model::{Scripted, ScriptedModel};
use crate::state::Next;

/// One recorded step: an input env, the model's replies, and what must follow.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepFixture {
    /// What the fixture checks, for messages.
    pub name: String,
    /// The state to run.
    pub state: String,
    /// The env it runs on.
    #[serde(default)]
    pub env: Env,
    /// Replies for the state's scripted model, in order.
    #[serde(default)]
    pub replies: Vec<Scripted>,
    /// What must come out.
    pub expect: Expected,
}

/// The expected outcome of a [`StepFixture`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Expected {
    /// The next state; required unless `error` is given.
    #[serde(default)]
    pub next: Option<Next>,
    /// A subset of the env after the step.
    #[serde(default)]
    pub env: Option<Value>,
    /// The [`code`](crate::MachineError::code) the step must fail with
    /// (`action`, `model:http_503`), or its family (`model` for any
    /// model failure).
    #[serde(default)]
    pub error: Option<String>,
}

/// Why a fixture could not be loaded or did not hold.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FixtureError {
    /// The file could not be read.
    #[error("cannot read fixture {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not a fixture.
    #[error("not a step fixture: {0}")]
    Format(#[from] serde_json::Error),
    /// The step failed where the fixture expected an outcome.
    #[error("fixture `{fixture}`: step failed with {code}: {message}")]
    Failed {
        /// The fixture's name.
        fixture: String,
        /// The error's [`code`](crate::MachineError::code).
        code: String,
        /// The error.
        message: String,
    },
    /// The step's outcome differs from the fixture's.
    #[error("fixture `{fixture}`: at {at}: expected {expected}, got {actual}")]
    Mismatch {
        /// The fixture's name.
        fixture: String,
        /// Where: `next`, `error`, or a path into the env such as `env.action.tool_calls[0].name`.
        at: String,
        /// What the fixture says.
        expected: String,
        /// What the step produced.
        actual: String,
    },
}

impl StepFixture {
    /// Reads a fixture from JSON text.
    pub fn from_json(text: &str) -> Result<Self, FixtureError> {
        Ok(serde_json::from_str(text)?)
    }

    /// Reads a fixture file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, FixtureError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| FixtureError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&text)
    }

    /// A scripted model that plays this fixture's replies.
    pub fn model(&self) -> ScriptedModel {
        ScriptedModel::from_script("fixture", self.replies.clone())
    }

    /// Runs the fixture's state on its env in `machine` and compares the
    /// outcome; returns the outcome when it matches.
    pub async fn check(&self, machine: &Machine) -> Result<Option<StepOutcome>, FixtureError> {
        let mismatch = |at: &str, expected: String, actual: String| FixtureError::Mismatch {
            fixture: self.name.clone(),
            at: at.to_owned(),
            expected,
            actual,
        };
        let outcome = match (
            machine.step(&self.state, self.env.clone()).await,
            &self.expect.error,
        ) {
            (Err(f), Some(code)) if code_matches(&f.error.code(), code) => return Ok(None),
            (Err(f), Some(code)) => return Err(mismatch("error", code.clone(), f.error.code())),
            (Err(f), None) => {
                return Err(FixtureError::Failed {
                    fixture: self.name.clone(),
                    code: f.error.code(),
                    message: f.error.to_string(),
                })
            }
            (Ok(out), Some(kind)) => {
                return Err(mismatch(
                    "error",
                    kind.clone(),
                    format!("success, next {:?}", out.next),
                ))
            }
            (Ok(out), None) => out,
        };
        if let Some(next) = &self.expect.next {
            if *next != outcome.next {
                return Err(mismatch(
                    "next",
                    format!("{next:?}"),
                    format!("{:?}", outcome.next),
                ));
            }
        }
        if let Some(expected) = &self.expect.env {
            let actual = serde_json::to_value(&outcome.env)?;
            if let Err((at, e, a)) = contains(&actual, expected, "env".to_owned()) {
                return Err(mismatch(&at, e, a));
            }
        }
        Ok(Some(outcome))
    }
}

/// Whether `expected` is a subset of `actual`; on failure, the path and both sides.
fn contains(actual: &Value, expected: &Value, at: String) -> Result<(), (String, String, String)> {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e.iter().try_for_each(|(k, ev)| match a.get(k) {
            Some(av) => contains(av, ev, format!("{at}.{k}")),
            None => Err((format!("{at}.{k}"), ev.to_string(), "nothing".to_owned())),
        }),
        (Value::Array(a), Value::Array(e)) if a.len() == e.len() => a
            .iter()
            .zip(e)
            .enumerate()
            .try_for_each(|(i, (av, ev))| contains(av, ev, format!("{at}[{i}]"))),
        (Value::Array(a), Value::Array(e)) => Err((
            format!("{at}.len()"),
            e.len().to_string(),
            a.len().to_string(),
        )),
        (Value::Number(a), Value::Number(e)) if a.as_f64() == e.as_f64() => Ok(()),
        (a, e) if a == e => Ok(()),
        (a, e) => Err((at, e.to_string(), a.to_string())),
    }
}

/// Whether a failure's `code` is the `expected` one, or of its family:
/// `model` matches every `model:...` code.
fn code_matches(code: &str, expected: &str) -> bool {
    code == expected
        || code
            .strip_prefix(expected)
            .is_some_and(|rest| rest.starts_with(':'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_code_matches_itself_and_its_family() {
        use super::code_matches;
        assert!(code_matches("action", "action"));
        assert!(code_matches("model:http_503", "model"));
        assert!(code_matches("model:http_503", "model:http_503"));
        assert!(!code_matches("model:http_503", "model:http_500"));
        assert!(!code_matches("modeling", "model"));
        assert!(!code_matches("action", "model"));
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn subset_matching() {
        let actual = json!({"a": 1, "b": [{"x": 1, "y": 2}], "c": "s"});
        assert!(contains(&actual, &json!({"a": 1.0}), "env".into()).is_ok());
        assert!(contains(&actual, &json!({"b": [{"y": 2}]}), "env".into()).is_ok());
        let (at, ..) = contains(&actual, &json!({"b": [{"y": 3}]}), "env".into()).unwrap_err();
        assert_eq!(at, "env.b[0].y");
        let (at, ..) = contains(&actual, &json!({"b": []}), "env".into()).unwrap_err();
        assert_eq!(at, "env.b.len()");
        let (at, ..) = contains(&actual, &json!({"d": null}), "env".into()).unwrap_err();
        assert_eq!(at, "env.d");
    }
}
