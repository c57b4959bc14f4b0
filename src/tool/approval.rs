//! Tool approval: the request a toolbox's guarded calls make of a person,
//! and the response that approves, rejects or edits each call.
//!
//! The request is an [`Interrupt`] whose id is made from the call ids, so a
//! state that asked finds the response when it runs again; the response is plain
//! JSON (one [`Decision`] per call id), so a web client or a terminal can
//! write it without this crate.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::env::{Interrupt, Observation, ToolCall};

/// What a person decided about one tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Run the call as the model wrote it.
    Approve,
    /// Do not run it; the model sees "rejected by the user: `reason`".
    Reject {
        /// Why, for the model.
        #[serde(default)]
        reason: String,
    },
    /// Run it with these arguments instead.
    Edit {
        /// The arguments to run it with.
        arguments: Value,
    },
}

/// The decisions on one approval request, by call id: the response to
/// [`approval_request`]. A response of plain `true` approves every call and
/// `false` rejects every call.
///
/// ```
/// use statewise::tool::approval::{Approvals, Decision};
/// use serde_json::json;
///
/// let response = Approvals::new()
///     .approve("c1")
///     .reject("c2", "not on a Friday")
///     .edit("c3", json!({"to": "ops@example.com"}))
///     .into_response();
/// let back = Approvals::from_response(&response).unwrap();
/// assert_eq!(back.get("c2"), Some(&Decision::Reject { reason: "not on a Friday".into() }));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Approvals {
    decisions: BTreeMap<String, Decision>,
    /// For a response of plain `true` or `false`: the decision on any call.
    all: Option<Decision>,
}

/// A response that is neither a decision per call id nor `true`/`false`.
#[derive(Debug, thiserror::Error)]
#[error("an approval response must be true, false or {{\"<call id>\": {{\"decision\": \"approve\" | \"reject\" | \"edit\", ...}}}}: {source}")]
pub struct ApprovalError {
    #[source]
    source: serde_json::Error,
}

impl Approvals {
    /// No decisions yet.
    pub fn new() -> Self {
        Approvals::default()
    }

    /// Approves call `call_id`.
    pub fn approve(mut self, call_id: impl Into<String>) -> Self {
        self.decisions.insert(call_id.into(), Decision::Approve);
        self
    }

    /// Rejects call `call_id`, telling the model `reason`.
    pub fn reject(mut self, call_id: impl Into<String>, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        self.decisions
            .insert(call_id.into(), Decision::Reject { reason });
        self
    }

    /// Approves call `call_id` with `arguments` instead of the model's.
    pub fn edit(mut self, call_id: impl Into<String>, arguments: Value) -> Self {
        self.decisions
            .insert(call_id.into(), Decision::Edit { arguments });
        self
    }

    /// The response to give [`Machine::resume_with`](crate::Machine::resume_with).
    pub fn into_response(self) -> Value {
        json!(self.decisions)
    }

    /// Reads a response: decisions by call id, or `true`/`false` for all.
    pub fn from_response(response: &Value) -> Result<Self, ApprovalError> {
        match response {
            Value::Bool(true) => Ok(Approvals {
                all: Some(Decision::Approve),
                ..Approvals::default()
            }),
            Value::Bool(false) => Ok(Approvals {
                all: Some(Decision::Reject {
                    reason: String::new(),
                }),
                ..Approvals::default()
            }),
            other => serde_json::from_value(other.clone())
                .map(|decisions| Approvals {
                    decisions,
                    all: None,
                })
                .map_err(|source| ApprovalError { source }),
        }
    }

    /// The decision on call `call_id`; a call the response does not name is
    /// not approved.
    pub fn get(&self, call_id: &str) -> Option<&Decision> {
        self.decisions.get(call_id).or(self.all.as_ref())
    }

    /// What to do with `call`: run it (with its arguments, edited or not),
    /// or the error observation the model sees instead.
    pub fn apply(&self, call: &ToolCall) -> Verdict {
        let rejected = |reason: &str| {
            let text = if reason.is_empty() {
                "rejected by the user".to_owned()
            } else {
                format!("rejected by the user: {reason}")
            };
            Observation {
                call_id: call.id.clone(),
                tool: call.name.clone(),
                content: json!({ "error": text }),
                is_error: true,
            }
        };
        match self.get(&call.id) {
            Some(Decision::Approve) => Verdict::Run(call.clone()),
            Some(Decision::Edit { arguments }) => Verdict::Run(ToolCall {
                arguments: arguments.clone(),
                ..call.clone()
            }),
            Some(Decision::Reject { reason }) => Verdict::Rejected(rejected(reason)),
            None => Verdict::Rejected(rejected("no decision was given for this call")),
        }
    }
}

/// What [`Approvals::apply`] makes of a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Run this call (the arguments may be the person's).
    Run(ToolCall),
    /// Do not run it; record this error observation instead.
    Rejected(Observation),
}

/// The request for a person to approve `calls`: its id names the calls,
/// its payload lists them (id, tool, arguments) and its schema describes
/// the response ([`Approvals`]).
pub fn approval_request(calls: &[&ToolCall]) -> Interrupt {
    let ids: Vec<&str> = calls.iter().map(|c| c.id.as_str()).collect();
    let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
    Interrupt::new(
        format!("approve:{}", ids.join(",")),
        format!("Run {}?", names.join(", ")),
    )
    .with_payload(json!({ "tool_calls": calls }))
    .with_schema(response_schema())
}

/// The JSON Schema of an approval response.
fn response_schema() -> Value {
    json!({
        "oneOf": [
            { "type": "boolean", "description": "true approves every call, false rejects every call" },
            {
                "type": "object",
                "description": "a decision per call id",
                "additionalProperties": {
                    "oneOf": [
                        { "type": "object", "properties": { "decision": { "const": "approve" } }, "required": ["decision"] },
                        { "type": "object", "properties": { "decision": { "const": "reject" }, "reason": { "type": "string" } }, "required": ["decision"] },
                        { "type": "object", "properties": { "decision": { "const": "edit" }, "arguments": { "type": "object" } }, "required": ["decision", "arguments"] }
                    ]
                }
            }
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str) -> ToolCall {
        ToolCall::new(id, "send_email", json!({"to": "a@example.com"}))
    }

    #[test]
    fn each_decision_is_applied() {
        let approvals = Approvals::from_response(
            &Approvals::new()
                .approve("c1")
                .reject("c2", "too late")
                .edit("c3", json!({"to": "b@example.com"}))
                .into_response(),
        )
        .unwrap();
        assert_eq!(approvals.apply(&call("c1")), Verdict::Run(call("c1")));
        let Verdict::Rejected(no) = approvals.apply(&call("c2")) else {
            panic!("rejected");
        };
        assert!(no.is_error);
        assert_eq!(no.render(), r#"{"error":"rejected by the user: too late"}"#);
        let Verdict::Run(edited) = approvals.apply(&call("c3")) else {
            panic!("edited");
        };
        assert_eq!(edited.arguments, json!({"to": "b@example.com"}));
        // A call the response leaves out does not run.
        assert!(matches!(approvals.apply(&call("c4")), Verdict::Rejected(_)));
    }

    #[test]
    fn true_and_false_decide_for_every_call() {
        let yes = Approvals::from_response(&json!(true)).unwrap();
        assert!(matches!(yes.apply(&call("any")), Verdict::Run(_)));
        let no = Approvals::from_response(&json!(false)).unwrap();
        assert!(matches!(no.apply(&call("any")), Verdict::Rejected(_)));
        assert!(Approvals::from_response(&json!("yes please")).is_err());
        assert!(Approvals::from_response(&json!({"c1": {"decision": "maybe"}})).is_err());
    }

    #[test]
    fn the_request_names_its_calls() {
        let (a, b) = (call("c1"), call("c2"));
        let request = approval_request(&[&a, &b]);
        assert_eq!(request.id, "approve:c1,c2");
        assert_eq!(request.payload["tool_calls"][1]["id"], "c2");
        assert!(request.schema["oneOf"].is_array());
    }
}
