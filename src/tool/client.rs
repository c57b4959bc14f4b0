//! Client tools: tools the caller runs, not this process (a web page's
//! tools, offered in an AG-UI request).
//!
//! The model sees their specs like any other tool's. A call of one pauses
//! the run with a [`client_request`] (an [`Interrupt`], so the pause is a
//! checkpoint and survives a restart); the caller runs the calls and
//! resumes the run with their results, one per call id
//! ([`ClientResults`]), which become the calls' observations.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::env::{Interrupt, Observation, ToolCall};

/// The prefix of a [`client_request`]'s id.
pub const CLIENT_REQUEST_PREFIX: &str = "client:";

/// The request for the caller to run `calls` of client tools and response
/// with their results ([`ClientResults`]).
pub fn client_request(calls: &[&ToolCall]) -> Interrupt {
    let ids: Vec<&str> = calls.iter().map(|c| c.id.as_str()).collect();
    let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
    Interrupt::new(
        format!("{CLIENT_REQUEST_PREFIX}{}", ids.join(",")),
        format!("Run {} and response with the results.", names.join(", ")),
    )
    .with_payload(json!({ "tool_calls": calls }))
    .with_schema(json!({
        "type": "object",
        "description": "each call's result by call id; {\"error\": \"...\"} for a failed call",
        "additionalProperties": true
    }))
}

/// The ids of the tool calls a request is about: those in the payload of
/// a [`client_request`] or an
/// [`approval_request`](super::approval::approval_request).
pub fn requested_call_ids(request: &Interrupt) -> Vec<String> {
    request.payload["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["id"].as_str().map(str::to_owned))
        .collect()
}

/// Whether `request` asks the caller to run client tools.
pub fn is_client_request(request: &Interrupt) -> bool {
    request.id.starts_with(CLIENT_REQUEST_PREFIX)
}

/// The results of client tool calls, by call id: the response to a
/// [`client_request`]. A result `{"error": "..."}` (an object with only
/// that key) is a failed call.
///
/// ```
/// use statewise::tool::client::ClientResults;
/// use statewise::ToolCall;
/// use serde_json::json;
///
/// let response = json!({"c1": "22 °C in Lisbon"});
/// let results = ClientResults::from_response(&response);
/// let call = ToolCall::new("c1", "weather", json!({"city": "Lisbon"}));
/// let seen = results.observe(&call);
/// assert_eq!(seen.render(), "22 °C in Lisbon");
/// assert!(!seen.is_error);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientResults {
    results: BTreeMap<String, Value>,
}

impl ClientResults {
    /// No results yet.
    pub fn new() -> Self {
        ClientResults::default()
    }

    /// Adds call `call_id`'s result.
    pub fn with(mut self, call_id: impl Into<String>, result: Value) -> Self {
        self.results.insert(call_id.into(), result);
        self
    }

    /// The results in a response; a response that is not an object holds none.
    pub fn from_response(response: &Value) -> Self {
        let results = response
            .as_object()
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        ClientResults { results }
    }

    /// The response that carries these results.
    pub fn into_response(self) -> Value {
        Value::Object(self.results.into_iter().collect())
    }

    /// Call `call`'s observation: its result, or an error observation when
    /// the response failed it or left it out (the model then sees why).
    pub fn observe(&self, call: &ToolCall) -> Observation {
        let (content, is_error) = match self.results.get(&call.id) {
            None => (
                json!({"error": "the client returned no result for this call"}),
                true,
            ),
            Some(Value::Object(o)) if o.len() == 1 && o.contains_key("error") => {
                (Value::Object(o.clone()), true)
            }
            Some(result) => (result.clone(), false),
        };
        Observation {
            call_id: call.id.clone(),
            tool: call.name.clone(),
            content,
            is_error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_names_its_calls_and_is_recognised() {
        let a = ToolCall::new("c1", "weather", json!({"city": "Oslo"}));
        let b = ToolCall::new("c2", "clock", json!({}));
        let request = client_request(&[&a, &b]);
        assert_eq!(request.id, "client:c1,c2");
        assert!(is_client_request(&request));
        assert_eq!(request.payload["tool_calls"][1]["name"], "clock");
        assert_eq!(requested_call_ids(&request), ["c1", "c2"]);
        assert!(!is_client_request(&Interrupt::new("approve:c1", "?")));
    }

    #[test]
    fn results_become_observations_and_a_missing_one_is_an_error() {
        let results = ClientResults::from_response(
            &ClientResults::new()
                .with("c1", json!({"temp": 21}))
                .with("c2", json!({"error": "no GPS"}))
                .into_response(),
        );
        let ok = results.observe(&ToolCall::new("c1", "weather", json!({})));
        assert_eq!(
            (ok.render().as_str(), ok.is_error),
            (r#"{"temp":21}"#, false)
        );
        let failed = results.observe(&ToolCall::new("c2", "where", json!({})));
        assert!(failed.is_error);
        let missing = results.observe(&ToolCall::new("c3", "where", json!({})));
        assert!(missing.is_error);
        assert!(
            ClientResults::from_response(&json!(true))
                .observe(&ToolCall::new("c1", "x", json!({})))
                .is_error
        );
    }
}
