//! Reading a model's reply as an [`Action`]: [`repair`] finds and mends the
//! JSON, [`parse_action`] maps it onto tool calls or a final answer.
//!
//! Errors name exactly what was wrong, because the Reasoning state sends
//! them back to the model as feedback.

mod parser;
mod repair;

use serde_json::{Map, Value};

use crate::env::{Action, ToolCall};

pub use repair::{repair, repair_prefix, RepairError};

/// Why a reply is not an action.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// No JSON could be recovered from the reply.
    #[error(transparent)]
    Repair(#[from] RepairError),
    /// The JSON is not any known action shape.
    #[error(
        "expected {{\"tool_calls\": [{{\"name\": ..., \"arguments\": {{...}}}}]}} or {{\"final_answer\": ...}}, got {found}"
    )]
    NotAnAction {
        /// A short description of what was found instead.
        found: String,
    },
    /// `tool_calls` (or a top-level list) held no calls.
    #[error("the list of tool calls is empty")]
    NoCalls,
    /// A tool call did not name its tool.
    #[error("tool call #{index} has no tool name (expected a \"name\" field)")]
    MissingToolName {
        /// 0-based position of the call.
        index: usize,
    },
    /// A tool call's arguments are not an object.
    #[error("arguments of tool call #{index} (`{tool}`) must be a JSON object, got {found}")]
    BadArguments {
        /// 0-based position of the call.
        index: usize,
        /// The tool named by the call.
        tool: String,
        /// The JSON type found.
        found: &'static str,
    },
}

/// Repairs `text` and reads it as an action.
///
/// Accepts the shapes models emit: `{"tool_calls": [...]}`, a top-level list
/// of calls, `{"name", "arguments"}`, `{"tool", "args"}`,
/// `{"action", "action_input"}` (with `"Final Answer"` as an action),
/// OpenAI's `{"function": {...}}` wrapper, arguments given as a JSON string,
/// and `{"final_answer": ...}`.
///
/// ```
/// use statewise::{action::parse_action, Action};
///
/// let action = parse_action("```json\n{'tool': 'calculator', 'args': {'expr': '6*7'}}\n```")?;
/// let Action::ToolCalls(calls) = action else { panic!() };
/// assert_eq!(calls[0].name, "calculator");
/// assert_eq!(calls[0].arguments["expr"], "6*7");
/// # Ok::<(), statewise::action::ParseError>(())
/// ```
pub fn parse_action(text: &str) -> Result<Action, ParseError> {
    action_from_value(repair(text)?)
}

/// Reads an already repaired JSON value as an action.
pub fn action_from_value(value: Value) -> Result<Action, ParseError> {
    match value {
        Value::Array(items) => calls_from_list(items),
        Value::Object(map) => action_from_object(map),
        other => Err(ParseError::NotAnAction {
            found: format!("a lone {}", type_name(&other)),
        }),
    }
}

const FINAL_KEYS: &[&str] = &["final_answer", "finalAnswer", "answer"];
const NAME_KEYS: &[&str] = &["name", "tool", "action", "tool_name", "function"];
const ARG_KEYS: &[&str] = &[
    "arguments",
    "args",
    "action_input",
    "parameters",
    "input",
    "tool_input",
];

fn action_from_object(mut map: Map<String, Value>) -> Result<Action, ParseError> {
    if let Some(answer) = FINAL_KEYS.iter().find_map(|k| map.remove(*k)) {
        return Ok(Action::FinalAnswer(text_of(answer)));
    }
    if let Some(calls) = map.remove("tool_calls") {
        return match calls {
            Value::Array(items) => calls_from_list(items),
            single @ Value::Object(_) => calls_from_list(vec![single]),
            other => Err(ParseError::NotAnAction {
                found: format!("\"tool_calls\" holding a {}", type_name(&other)),
            }),
        };
    }
    if is_final_answer_action(&map) {
        let answer = ARG_KEYS
            .iter()
            .find_map(|k| map.remove(*k))
            .unwrap_or(Value::Null);
        return Ok(Action::FinalAnswer(text_of(answer)));
    }
    if NAME_KEYS.iter().any(|k| map.contains_key(*k)) {
        return Ok(Action::ToolCalls(vec![call_from_object(0, map)?]));
    }
    let keys: Vec<&str> = map.keys().map(String::as_str).collect();
    Err(ParseError::NotAnAction {
        found: if keys.is_empty() {
            "an empty object".to_owned()
        } else {
            format!("an object with keys {}", keys.join(", "))
        },
    })
}

/// `{"action": "Final Answer", "action_input": "..."}`, as ReAct prompts teach.
fn is_final_answer_action(map: &Map<String, Value>) -> bool {
    map.get("action").and_then(Value::as_str).is_some_and(|a| {
        let a: String = a.chars().filter(|c| c.is_alphanumeric()).collect();
        a.eq_ignore_ascii_case("finalanswer")
    })
}

fn calls_from_list(items: Vec<Value>) -> Result<Action, ParseError> {
    if items.is_empty() {
        return Err(ParseError::NoCalls);
    }
    let calls = items
        .into_iter()
        .enumerate()
        .map(|(index, item)| match item {
            Value::Object(map) => call_from_object(index, map),
            _ => Err(ParseError::MissingToolName { index }),
        })
        .collect::<Result<_, _>>()?;
    Ok(Action::ToolCalls(calls))
}

fn call_from_object(index: usize, mut map: Map<String, Value>) -> Result<ToolCall, ParseError> {
    // OpenAI's wire shape: {"id": ..., "type": "function", "function": {"name", "arguments"}}.
    if let Some(Value::Object(inner)) = map.get("function") {
        let mut inner = inner.clone();
        if let Some(id) = map.remove("id") {
            inner.entry("id").or_insert(id);
        }
        return call_from_object(index, inner);
    }
    let name = NAME_KEYS
        .iter()
        .find_map(|k| match map.remove(*k) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            _ => None,
        })
        .ok_or(ParseError::MissingToolName { index })?;
    let arguments = match ARG_KEYS.iter().find_map(|k| map.remove(*k)) {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::String(s)) => arguments_from_string(s),
        Some(v @ Value::Object(_)) => v,
        Some(other) => {
            return Err(ParseError::BadArguments {
                index,
                tool: name,
                found: type_name(&other),
            })
        }
    };
    let id = match map.remove("id") {
        Some(Value::String(id)) if !id.is_empty() => id,
        _ => format!("call_{index}"),
    };
    Ok(ToolCall {
        id,
        name,
        arguments,
    })
}

/// Arguments sent as a JSON string are decoded; a string that holds no JSON
/// object is passed on as it is (a tool taking a plain string accepts it,
/// any other reports its own argument error).
fn arguments_from_string(s: String) -> Value {
    match repair(&s) {
        Ok(v @ Value::Object(_)) => v,
        _ => Value::String(s),
    }
}

fn text_of(value: Value) -> String {
    match value {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn calls(text: &str) -> Vec<(String, Value)> {
        match parse_action(text) {
            Ok(Action::ToolCalls(calls)) => {
                calls.into_iter().map(|c| (c.name, c.arguments)).collect()
            }
            other => panic!("not tool calls: {other:?}"),
        }
    }

    #[test]
    fn accepts_every_documented_shape() {
        let expr = json!({"expr": "1+1"});
        for text in [
            r#"{"tool_calls": [{"name": "calc", "arguments": {"expr": "1+1"}}]}"#,
            r#"[{"name": "calc", "arguments": {"expr": "1+1"}}]"#,
            r#"{"name": "calc", "arguments": {"expr": "1+1"}}"#,
            r#"{"tool": "calc", "args": {"expr": "1+1"}}"#,
            r#"{"action": "calc", "action_input": {"expr": "1+1"}}"#,
            r#"{"name": "calc", "arguments": "{\"expr\": \"1+1\"}"}"#,
            r#"{"tool_calls": [{"id": "x", "type": "function", "function": {"name": "calc", "arguments": "{\"expr\":\"1+1\"}"}}]}"#,
        ] {
            assert_eq!(
                calls(text),
                vec![("calc".to_owned(), expr.clone())],
                "{text}"
            );
        }
    }

    #[test]
    fn several_calls_keep_their_order_and_ids() {
        let action = parse_action(
            r#"{"tool_calls": [{"id": "a", "name": "one"}, {"name": "two", "arguments": null}]}"#,
        )
        .unwrap();
        let Action::ToolCalls(calls) = action else {
            panic!()
        };
        assert_eq!(calls[0].id, "a");
        assert_eq!(calls[1].id, "call_1");
        assert_eq!(calls[1].name, "two");
        assert_eq!(calls[1].arguments, json!({}));
    }

    #[test]
    fn final_answers() {
        for (text, want) in [
            (r#"{"final_answer": "Paris"}"#, "Paris"),
            (
                r#"{"action": "Final Answer", "action_input": "Paris"}"#,
                "Paris",
            ),
            (r#"{"final_answer": 42}"#, "42"),
        ] {
            assert_eq!(
                parse_action(text).unwrap(),
                Action::FinalAnswer(want.into()),
                "{text}"
            );
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let e = parse_action(r#"{"thought": "hmm"}"#).unwrap_err();
        assert!(e.to_string().contains("keys thought"), "{e}");
        let e = parse_action(r#"{"tool_calls": []}"#).unwrap_err();
        assert_eq!(e, ParseError::NoCalls);
        let e = parse_action(r#"[{"arguments": {}}]"#).unwrap_err();
        assert_eq!(e, ParseError::MissingToolName { index: 0 });
        let e = parse_action(r#"{"name": "calc", "arguments": [1]}"#).unwrap_err();
        assert!(
            e.to_string().contains("must be a JSON object, got array"),
            "{e}"
        );
        assert!(matches!(parse_action("   "), Err(ParseError::Repair(_))));
    }

    #[test]
    fn non_json_string_arguments_are_kept() {
        assert_eq!(
            calls(r#"{"action": "search", "action_input": "weather in Paris"}"#),
            vec![("search".to_owned(), json!("weather in Paris"))]
        );
    }
}
