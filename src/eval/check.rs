//! The stock evaluators, as a case writes them: `{"type": "regex",
//! "pattern": "\\b42\\b"}`. Each is a plain function of the case and its
//! run's result, so it is unit-tested without running anything; only the
//! judge, which asks a model, lives elsewhere ([`super::judge`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::calls::{calls_match, CallOrder, ExpectedCall};
use crate::dataset::{Item, ItemResult, Score};

/// One evaluator as a dataset writes it, tagged by `type`.
///
/// Where `value` is optional the case's `expected` stands in for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Check {
    /// The answer is the value: the same text (trimmed), or for a JSON
    /// value the same JSON as the typed output or the answer parsed.
    Equals {
        /// What the answer must be.
        #[serde(default)]
        value: Option<Value>,
        /// Compare text ignoring case.
        #[serde(default)]
        ignore_case: bool,
    },
    /// The answer contains the value (any of them, for a list); a number
    /// must stand on its own (`391.0` holds 391, `3910` does not).
    Contains {
        /// What the answer must contain.
        #[serde(default)]
        value: Option<Value>,
        /// Compare ignoring case (the default).
        #[serde(default = "yes")]
        ignore_case: bool,
    },
    /// The answer matches a regular expression (Rust `regex` syntax).
    Regex {
        /// The expression.
        pattern: String,
        /// Match ignoring case.
        #[serde(default)]
        ignore_case: bool,
    },
    /// A number in the answer (or the typed output, if it is one) is the
    /// value within a tolerance.
    Number {
        /// The number wanted.
        #[serde(default)]
        value: Option<f64>,
        /// The largest difference accepted.
        #[serde(default = "tolerance")]
        tolerance: f64,
    },
    /// The typed output (else the answer parsed as JSON) is valid against
    /// a JSON Schema.
    JsonSchema {
        /// The schema.
        schema: Value,
    },
    /// The run called these tools, with arguments that match.
    ToolCalls {
        /// The calls wanted.
        calls: Vec<ExpectedCall>,
        /// How the calls must line up with the run's.
        #[serde(default)]
        order: CallOrder,
    },
    /// The run took at most this many milliseconds.
    MaxLatencyMs {
        /// The limit.
        value: f64,
    },
    /// The run cost at most this many dollars.
    MaxCost {
        /// The limit.
        value: f64,
    },
    /// The run used at most this many tokens, prompt and completion.
    MaxTokens {
        /// The limit.
        value: u64,
    },
    /// A model grades the answer against a rubric ([`Eval::judge`](super::Eval::judge)).
    Judge {
        /// What a good answer does, in words.
        rubric: String,
    },
}

fn yes() -> bool {
    true
}

fn tolerance() -> f64 {
    1e-6
}

impl Check {
    /// The evaluator's name in scores and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Check::Equals { .. } => "equals",
            Check::Contains { .. } => "contains",
            Check::Regex { .. } => "regex",
            Check::Number { .. } => "number",
            Check::JsonSchema { .. } => "json_schema",
            Check::ToolCalls { .. } => "tool_calls",
            Check::MaxLatencyMs { .. } => "max_latency_ms",
            Check::MaxCost { .. } => "max_cost",
            Check::MaxTokens { .. } => "max_tokens",
            Check::Judge { .. } => "judge",
        }
    }

    /// Scores `run` of `case`; the judge, which needs a model, fails here
    /// (the bench runs it instead).
    pub fn score(&self, case: &Item, run: &ItemResult) -> Score {
        let answer = run.answer.as_deref().unwrap_or("");
        let name = self.name();
        let expected = |value: &Option<Value>| value.clone().or_else(|| case.expected.clone());
        match self {
            Check::Equals { value, ignore_case } => match expected(value) {
                Some(want) => equals(&want, answer, run.output.as_ref(), *ignore_case),
                None => no_value(name),
            },
            Check::Contains { value, ignore_case } => match expected(value) {
                Some(want) => contains(&want, answer, *ignore_case),
                None => no_value(name),
            },
            Check::Regex {
                pattern,
                ignore_case,
            } => regex(pattern, *ignore_case, answer),
            Check::Number { value, tolerance } => {
                let want = value.or_else(|| case.expected.as_ref().and_then(number_of));
                match want {
                    Some(want) => number(want, *tolerance, answer, run.output.as_ref()),
                    None => no_value(name),
                }
            }
            Check::JsonSchema { schema } => json_schema(schema, answer, run.output.as_ref()),
            Check::ToolCalls { calls, order } => {
                let (passed, reason) = calls_match(calls, *order, &run.tool_calls);
                Score::new(name, passed, reason)
            }
            Check::MaxLatencyMs { value } => within(name, run.latency_ms, *value, "ms"),
            Check::MaxCost { value } => within(name, run.usage.cost, *value, "$"),
            Check::MaxTokens { value } => within(
                name,
                run.usage.total_tokens() as f64,
                *value as f64,
                "tokens",
            ),
            Check::Judge { .. } => Score::new(
                name,
                false,
                "no judge model: give the bench one (Eval::judge, or --judge MODEL)",
            ),
        }
    }
}

fn no_value(name: &str) -> Score {
    Score::new(
        name,
        false,
        format!("the case has no \"expected\" and the {name} evaluator no \"value\""),
    )
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn number_of(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn equals(want: &Value, answer: &str, output: Option<&Value>, ignore_case: bool) -> Score {
    let passed = match want {
        Value::String(s) if ignore_case => answer.trim().to_lowercase() == s.trim().to_lowercase(),
        Value::String(s) => answer.trim() == s.trim(),
        _ => {
            let got = output
                .cloned()
                .or_else(|| serde_json::from_str(answer.trim()).ok());
            got.is_some_and(|got| same_json(want, &got))
        }
    };
    let reason = if passed {
        "the answer is the expected value".to_owned()
    } else {
        format!("expected {}", clip(&text_of(want)))
    };
    Score::new("equals", passed, reason)
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
pub(super) fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

fn contains(want: &Value, answer: &str, ignore_case: bool) -> Score {
    let needles: Vec<String> = match want {
        Value::Array(list) => list.iter().map(text_of).collect(),
        other => vec![text_of(other)],
    };
    let found = needles.iter().find(|n| holds(answer, n, ignore_case));
    match found {
        Some(n) => Score::new("contains", true, format!("the answer contains {}", clip(n))),
        None => Score::new(
            "contains",
            false,
            format!("the answer contains none of {}", clip(&needles.join(" | "))),
        ),
    }
}

/// Whether `text` holds `needle`; a numeric needle must not be part of a
/// longer number.
fn holds(text: &str, needle: &str, ignore_case: bool) -> bool {
    let (text, needle) = if ignore_case {
        (text.to_lowercase(), needle.to_lowercase())
    } else {
        (text.to_owned(), needle.to_owned())
    };
    let needle = needle.trim();
    if needle.is_empty() {
        return true;
    }
    let numeric = needle
        .trim_start_matches('-')
        .chars()
        .all(|c| c.is_ascii_digit() || c == '.')
        && needle.chars().any(|c| c.is_ascii_digit());
    text.match_indices(needle).any(|(at, _)| {
        if !numeric {
            return true;
        }
        let before = text[..at].chars().next_back();
        let after = &text[at + needle.len()..];
        let digit_before = before.is_some_and(|c| c.is_ascii_digit() || c == '.');
        let mut rest = after.chars();
        let longer = match rest.next() {
            Some(c) if c.is_ascii_digit() => true,
            // `391.0` holds 391; `391.5` does not.
            Some('.') => {
                let decimals: String = rest.take_while(|c| c.is_ascii_digit()).collect();
                decimals.chars().any(|c| c != '0')
            }
            _ => false,
        };
        !digit_before && !longer
    })
}

fn regex(pattern: &str, ignore_case: bool, answer: &str) -> Score {
    let compiled = regex::RegexBuilder::new(pattern)
        .case_insensitive(ignore_case)
        .build();
    match compiled {
        Ok(re) => match re.find(answer) {
            Some(m) => Score::new("regex", true, format!("matched {}", clip(m.as_str()))),
            None => Score::new("regex", false, format!("no match for /{pattern}/")),
        },
        Err(e) => Score::new("regex", false, format!("invalid pattern /{pattern}/: {e}")),
    }
}

/// Every number written in `text`, in order (`1,234.5` is one number).
pub(super) fn numbers_in(text: &str) -> Vec<f64> {
    // Compiled once: a constant pattern, not state that changes behaviour.
    static NUMBER: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let re = NUMBER.get_or_init(|| {
        regex::Regex::new(r"(?:^|[^\w.])(-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)").ok()
    });
    let Some(re) = re else {
        return Vec::new();
    };
    re.captures_iter(text)
        .filter_map(|c| c.get(1)?.as_str().replace(',', "").parse().ok())
        .collect()
}

fn number(want: f64, tolerance: f64, answer: &str, output: Option<&Value>) -> Score {
    let candidates = match output.and_then(number_of) {
        Some(n) => vec![n],
        None => numbers_in(answer),
    };
    let nearest = candidates
        .iter()
        .copied()
        .min_by(|a, b| (a - want).abs().total_cmp(&(b - want).abs()));
    match nearest {
        Some(n) if (n - want).abs() <= tolerance => Score::new(
            "number",
            true,
            format!("{n} is within {tolerance} of {want}"),
        )
        .with_value(n),
        Some(n) => Score::new(
            "number",
            false,
            format!("the nearest number, {n}, is not within {tolerance} of {want}"),
        )
        .with_value(n),
        None => Score::new(
            "number",
            false,
            format!("no number in the answer (wanted {want})"),
        ),
    }
}

fn json_schema(schema: &Value, answer: &str, output: Option<&Value>) -> Score {
    let name = "json_schema";
    let value = match output {
        Some(v) => v.clone(),
        None => match crate::action::repair(answer) {
            Ok(v) => v,
            Err(_) => return Score::new(name, false, "the answer is not JSON"),
        },
    };
    let validator = match jsonschema::validator_for(schema) {
        Ok(v) => v,
        Err(e) => return Score::new(name, false, format!("invalid schema: {e}")),
    };
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .take(3)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if errors.is_empty() {
        Score::new(name, true, "valid against the schema")
    } else {
        Score::new(name, false, errors.join("; "))
    }
}

fn within(name: &str, got: f64, limit: f64, unit: &str) -> Score {
    let passed = got <= limit;
    let word = if passed { "within" } else { "over" };
    Score::new(
        name,
        passed,
        format!("{got:.6} {unit}, {word} the limit of {limit} {unit}"),
    )
    .with_value(got)
}

/// At most 120 characters of `text`, for reasons.
pub(super) fn clip(text: &str) -> String {
    match text.char_indices().nth(120) {
        Some((at, _)) => format!("{:?}…", &text[..at]),
        None => format!("{text:?}"),
    }
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
