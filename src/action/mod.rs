//! Reading a model's reply as an [`Action`]: [`repair`] finds and mends the
//! JSON, [`parse_action`] maps it onto tool calls or a final answer.
//!
//! Errors name exactly what was wrong, because the Reasoning state sends
//! them back to the model as feedback.

mod parser;
mod reader;
mod repair;
mod unescape;
mod walk;

use serde_json::{json, Map, Value};

use crate::env::{Action, ToolCall};
use crate::tool::ToolSpec;

pub use reader::{ActionReader, Parsed, PartialAction, Progress};
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
    /// The action holds more tool calls than allowed at once.
    #[error("the action holds {found} tool calls; at most {max} are allowed at once")]
    TooManyCalls {
        /// How many it holds.
        found: usize,
        /// The limit.
        max: usize,
    },
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

/// The JSON Schema of the action format the stock prompts ask for:
/// `{"tool_calls": [{"name", "arguments"}, ...]}` with each tool's own
/// argument schema, or `{"final_answer": "..."}`. Models that constrain
/// their output to a schema (llama.cpp's grammars, OpenAI's structured
/// outputs) can then only write a valid action naming a real tool.
///
/// At most `max_calls` tool calls per action (`maxItems`), so a model
/// cannot run away listing calls.
///
/// ```
/// use serde_json::json;
/// use statewise::{action::action_schema, tool::ToolSpec};
///
/// let calc = ToolSpec { name: "calc".into(), description: "math".into(), parameters: json!({"type": "object"}) };
/// let schema = action_schema(&[calc], 4);
/// let calls = &schema["anyOf"][0]["properties"]["tool_calls"];
/// assert_eq!(calls["items"]["anyOf"][0]["properties"]["name"], json!({"const": "calc"}));
/// assert_eq!(calls["maxItems"], 4);
/// assert_eq!(schema["anyOf"][1]["required"], json!(["final_answer"]));
/// ```
pub fn action_schema(tools: &[ToolSpec], max_calls: usize) -> Value {
    let final_answer = json!({
        "type": "object",
        "properties": {"final_answer": {"type": "string"}},
        "required": ["final_answer"],
        "additionalProperties": false
    });
    if tools.is_empty() {
        return json!({"anyOf": [final_answer]});
    }
    let calls: Vec<Value> = tools
        .iter()
        .map(|t| {
            json!({
                "type": "object",
                "properties": {"name": {"const": t.name}, "arguments": t.parameters},
                "required": ["name", "arguments"],
                "additionalProperties": false
            })
        })
        .collect();
    json!({"anyOf": [
        {
            "type": "object",
            "properties": {"tool_calls": {
                "type": "array", "minItems": 1, "maxItems": max_calls.max(1), "items": {"anyOf": calls}}},
            "required": ["tool_calls"],
            "additionalProperties": false
        },
        final_answer
    ]})
}

/// Reads an already repaired JSON value as an action.
///
/// A list is read as several actions, one per object in it (lists in it are
/// opened, other items skipped): tool calls are joined in order; a final
/// answer counts only when the list holds no tool call, since the model
/// answers after seeing their results.
pub fn action_from_value(value: Value) -> Result<Action, ParseError> {
    let action = match value {
        Value::Array(items) => action_from_list(items),
        Value::Object(map) => action_from_object(map),
        // The action written as a JSON string (`"{\"final_answer\": ..."`),
        // as a model that encodes its output twice does.
        Value::String(text) => match repair(&text) {
            Ok(inner @ (Value::Object(_) | Value::Array(_))) => return action_from_value(inner),
            _ => Err(ParseError::NotAnAction {
                found: "a lone string".to_owned(),
            }),
        },
        other => Err(ParseError::NotAnAction {
            found: format!("a lone {}", type_name(&other)),
        }),
    };
    action.map(numbered)
}

fn action_from_list(items: Vec<Value>) -> Result<Action, ParseError> {
    let objects: Vec<Map<String, Value>> = items
        .iter()
        .flat_map(|item| match item {
            Value::Array(inner) => inner.iter().collect(),
            other => vec![other],
        })
        .filter_map(|v| v.as_object().cloned())
        .collect();
    if objects.is_empty() {
        return match items.first() {
            None => Err(ParseError::NoCalls),
            Some(first) => Err(ParseError::NotAnAction {
                found: format!("a list of {}", type_name(first)),
            }),
        };
    }
    let mut calls = Vec::new();
    let mut answer = None;
    for (index, object) in objects.into_iter().enumerate() {
        match action_from_object(object).map_err(|e| e.at_call(index))? {
            Action::ToolCalls(more) => calls.extend(more),
            Action::FinalAnswer(a) => {
                answer.get_or_insert(a);
            }
        }
    }
    if calls.is_empty() {
        return Ok(Action::FinalAnswer(answer.unwrap_or_default()));
    }
    Ok(Action::ToolCalls(calls))
}

/// Fills every missing call id in by position (`call_0`, ...).
fn numbered(action: Action) -> Action {
    match action {
        Action::ToolCalls(mut calls) => {
            for (i, call) in calls.iter_mut().enumerate() {
                if call.id.is_empty() {
                    call.id = format!("call_{i}");
                }
            }
            Action::ToolCalls(calls)
        }
        answer => answer,
    }
}

impl ParseError {
    /// The same error, about the call at `index` of a list.
    fn at_call(self, index: usize) -> Self {
        match self {
            ParseError::MissingToolName { .. } => ParseError::MissingToolName { index },
            ParseError::BadArguments { tool, found, .. } => {
                ParseError::BadArguments { index, tool, found }
            }
            other => other,
        }
    }
}

const FINAL_KEYS: &[&str] = &["final_answer", "finalAnswer", "answer"];
const NAME_KEYS: &[&str] = &[
    "name",
    "tool",
    "action",
    "tool_name",
    "function",
    "function_call",
];
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
    if let Some(calls) = map.remove("tool_calls").or_else(|| map.remove("calls")) {
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
    if NAME_KEYS
        .iter()
        .chain(ARG_KEYS)
        .any(|k| map.contains_key(*k))
    {
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
    // OpenAI's wire shapes: {"id": ..., "type": "function", "function": {"name", "arguments"}},
    // and the older {"function_call": {"name", "arguments"}}.
    if let Some(Value::Object(inner)) = map.get("function").or_else(|| map.get("function_call")) {
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
        Some(Value::String(id)) => id,
        _ => String::new(),
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
    fn lists_skip_junk_and_prefer_calls() {
        // Prose with a bracket before the action yields two documents.
        let text = r#"Step [1]: I will call {"name": "calc", "arguments": {"x": 1}}"#;
        assert_eq!(calls(text), vec![("calc".to_owned(), json!({"x": 1}))]);
        let text = r#"[{"name": "a"}, {"final_answer": "done"}, {"name": "b"}]"#;
        let Action::ToolCalls(c) = parse_action(text).unwrap() else {
            panic!()
        };
        assert_eq!((c[0].id.as_str(), c[1].id.as_str()), ("call_0", "call_1"));
        assert_eq!(
            parse_action(r#"[{"final_answer": "x"}]"#).unwrap(),
            Action::FinalAnswer("x".into())
        );
        let e = parse_action(r#"[{"name": "a"}, {"args": {}}]"#).unwrap_err();
        assert_eq!(e, ParseError::MissingToolName { index: 1 });
        assert!(parse_action("[1, 2]")
            .unwrap_err()
            .to_string()
            .contains("a list of number"));
        let legacy = r#"{"function_call": {"name": "calc", "arguments": "{\"x\": 2}"}}"#;
        assert_eq!(calls(legacy), vec![("calc".to_owned(), json!({"x": 2}))]);
    }

    #[test]
    fn non_json_string_arguments_are_kept() {
        assert_eq!(
            calls(r#"{"action": "search", "action_input": "weather in Paris"}"#),
            vec![("search".to_owned(), json!("weather in Paris"))]
        );
    }
}
