//! Matching a run's tool calls against the calls a case expects (the
//! tool-trajectory score of Google ADK's `adk eval`): in order, exactly, or
//! as a set, with partial argument matchers.
//!
//! An expected call lists only the arguments it cares about. A value is
//! matched literally (numbers by value, objects partially), or by an
//! operator object: `{"$regex": "^Par"}`, `{"$contains": "paris"}`,
//! `{"$approx": 42, "$tolerance": 0.5}`, `{"$any": true}`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::env::ToolCall;

/// A tool call a case expects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedCall {
    /// The tool's name.
    pub name: String,
    /// The arguments that must match; others are not looked at.
    #[serde(default)]
    pub arguments: Map<String, Value>,
}

/// How expected calls line up with the run's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CallOrder {
    /// The expected calls happen in this order; other calls may come
    /// between them.
    #[default]
    InOrder,
    /// The run made exactly these calls, in this order, and no others.
    Exact,
    /// Each expected call matches a different call of the run, in any
    /// order.
    AnyOrder,
}

/// Whether `got` satisfies `want` in `order`, and why.
pub(super) fn calls_match(
    want: &[ExpectedCall],
    order: CallOrder,
    got: &[ToolCall],
) -> (bool, String) {
    let made = || {
        let names: Vec<&str> = got.iter().map(|c| c.name.as_str()).collect();
        if names.is_empty() {
            "no tool calls".to_owned()
        } else {
            format!("calls made: {}", names.join(", "))
        }
    };
    match order {
        CallOrder::Exact => {
            if want.len() != got.len() {
                return (false, format!("expected {} calls; {}", want.len(), made()));
            }
            for (i, (w, g)) in want.iter().zip(got).enumerate() {
                if let Err(why) = call_matches(w, g) {
                    return (false, format!("call {}: {why}", i + 1));
                }
            }
            (true, format!("exactly the {} expected calls", want.len()))
        }
        CallOrder::InOrder => {
            let mut rest = got.iter();
            for w in want {
                if !rest.any(|g| call_matches(w, g).is_ok()) {
                    return (
                        false,
                        format!("no {} call matching in order; {}", w.name, made()),
                    );
                }
            }
            (true, format!("the {} expected calls, in order", want.len()))
        }
        CallOrder::AnyOrder => {
            let mut used = vec![false; got.len()];
            for w in want {
                let free = got
                    .iter()
                    .enumerate()
                    .find(|(i, g)| !used[*i] && call_matches(w, g).is_ok());
                match free {
                    Some((i, _)) => used[i] = true,
                    None => return (false, format!("no {} call matching; {}", w.name, made())),
                }
            }
            (true, format!("the {} expected calls", want.len()))
        }
    }
}

fn call_matches(want: &ExpectedCall, got: &ToolCall) -> Result<(), String> {
    if want.name != got.name {
        return Err(format!(
            "{} called where {} was expected",
            got.name, want.name
        ));
    }
    for (key, matcher) in &want.arguments {
        let value = got.arguments.get(key).unwrap_or(&Value::Null);
        if !value_matches(matcher, value) {
            return Err(format!(
                "{}: argument {key} is {value}, expected {matcher}",
                got.name
            ));
        }
    }
    Ok(())
}

/// Whether `got` matches `want`: an operator object, else literally
/// (numbers by value, objects by their listed keys, lists item by item).
pub(super) fn value_matches(want: &Value, got: &Value) -> bool {
    if let Value::Object(ops) = want {
        if !ops.is_empty() && ops.keys().all(|k| k.starts_with('$')) {
            return operators_match(ops, got);
        }
    }
    match (want, got) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Number(a), Value::String(b)) => b.trim().parse::<f64>().ok() == a.as_f64(),
        (Value::Object(a), Value::Object(b)) => a
            .iter()
            .all(|(k, v)| value_matches(v, b.get(k).unwrap_or(&Value::Null))),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(w, g)| value_matches(w, g))
        }
        _ => want == got,
    }
}

fn operators_match(ops: &Map<String, Value>, got: &Value) -> bool {
    let text = match got {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    ops.iter().all(|(op, arg)| match op.as_str() {
        "$any" => !got.is_null() || arg == &Value::Bool(false),
        "$regex" => arg
            .as_str()
            .and_then(|p| regex::Regex::new(p).ok())
            .is_some_and(|re| re.is_match(&text)),
        "$contains" => arg
            .as_str()
            .is_some_and(|n| text.to_lowercase().contains(&n.to_lowercase())),
        "$approx" => {
            let tolerance = ops
                .get("$tolerance")
                .and_then(Value::as_f64)
                .unwrap_or(1e-6);
            let got = got.as_f64().or_else(|| text.trim().parse().ok());
            match (arg.as_f64(), got) {
                (Some(want), Some(got)) => (want - got).abs() <= tolerance,
                _ => false,
            }
        }
        "$tolerance" => true,
        _ => false, // an unknown operator never matches, so a typo fails loudly
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(name: &str, args: Value) -> ToolCall {
        ToolCall::new("c", name, args)
    }

    fn want(name: &str, args: Value) -> ExpectedCall {
        serde_json::from_value(json!({"name": name, "arguments": args})).unwrap()
    }

    #[test]
    fn orders_differ_in_what_they_allow() {
        let got = [
            call("search", json!({"q": "weather in Paris", "n": 3})),
            call("calculator", json!({"expr": "2+2"})),
        ];
        let search = want("search", json!({"q": {"$contains": "paris"}}));
        let calc = want("calculator", json!({}));
        let ordered = [search.clone(), calc.clone()];
        let reversed = [calc.clone(), search.clone()];
        assert!(calls_match(&ordered, CallOrder::InOrder, &got).0);
        assert!(!calls_match(&reversed, CallOrder::InOrder, &got).0);
        assert!(calls_match(&reversed, CallOrder::AnyOrder, &got).0);
        assert!(calls_match(&ordered, CallOrder::Exact, &got).0);
        assert!(!calls_match(std::slice::from_ref(&calc), CallOrder::Exact, &got).0);
        assert!(calls_match(std::slice::from_ref(&calc), CallOrder::InOrder, &got).0);
        // One run call cannot satisfy two expected calls.
        let (ok, why) = calls_match(&[calc.clone(), calc], CallOrder::AnyOrder, &got);
        assert!(
            !ok && why.contains("calls made: search, calculator"),
            "{why}"
        );
    }

    #[test]
    fn argument_matchers() {
        assert!(value_matches(&json!(3), &json!(3.0)));
        assert!(value_matches(&json!(3), &json!("3")));
        assert!(!value_matches(&json!(3), &json!(4)));
        assert!(value_matches(&json!({"$regex": "^Par"}), &json!("Paris")));
        assert!(!value_matches(&json!({"$regex": "^Par"}), &json!("Lyon")));
        assert!(value_matches(
            &json!({"$approx": 42, "$tolerance": 0.5}),
            &json!(42.3)
        ));
        assert!(!value_matches(
            &json!({"$approx": 42, "$tolerance": 0.1}),
            &json!(42.3)
        ));
        assert!(value_matches(&json!({"$any": true}), &json!([1])));
        assert!(!value_matches(&json!({"$any": true}), &Value::Null));
        assert!(
            !value_matches(&json!({"$regexx": "a"}), &json!("a")),
            "typos fail"
        );
        // Objects match on the keys listed.
        assert!(value_matches(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        assert!(!value_matches(&json!({"a": 1, "c": 3}), &json!({"a": 1})));
        let (ok, why) = calls_match(
            &[want("search", json!({"n": 5}))],
            CallOrder::Exact,
            &[call("search", json!({"n": 3}))],
        );
        assert!(!ok && why.contains("argument n is 3"), "{why}");
    }
}
