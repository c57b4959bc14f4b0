//! Finding and mending the JSON in a model's reply.

use serde_json::Value;

use super::parser::{Parser, MAX_DEPTH};

/// Why no JSON value could be recovered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RepairError {
    /// The text is empty or blank.
    #[error("the reply is empty")]
    Empty,
    /// Nothing in the text could be read as a JSON object or array.
    #[error("no JSON object or array found in the reply (it starts with {excerpt:?})")]
    NoJson {
        /// The first characters of the text.
        excerpt: String,
    },
    /// The JSON nests deeper than the parser follows.
    #[error("the JSON nests deeper than {limit} levels")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
}

/// Recovers the JSON in a model's reply.
///
/// - Valid JSON is returned as it is, whatever its type.
/// - Otherwise the JSON objects and arrays in the text are found (inside
///   ```` ``` ```` fences when there are any, else anywhere among prose and
///   tags such as `<tool_call>`) and mended: quotes, commas, colons and
///   closers that are missing or wrong; comments; Python's `True`, `None`,
///   single quotes and tuples; raw control characters in strings.
/// - Several documents come back as one array of all of them; empty ones
///   are dropped when a non-empty one exists.
///
/// Key order and the integers as written are preserved, no key is
/// invented, and non-ASCII text is kept as it is. Text with no object or
/// array in it is an error, never `{}`.
///
/// ```
/// use serde_json::json;
/// use statewise::action::repair;
///
/// let v = repair("Sure! ```json\n{name: 'calculator', 'arguments': {'x': 1,},\n```")?;
/// assert_eq!(v, json!({"name": "calculator", "arguments": {"x": 1}}));
/// assert!(repair("I don't know.").is_err());
/// # Ok::<(), statewise::action::RepairError>(())
/// ```
pub fn repair(text: &str) -> Result<Value, RepairError> {
    repair_with(text, false)
}

/// Recovers what can be known for certain from the start of a reply that is
/// still streaming: like [`repair`], but a string, number or literal cut off
/// by the end of the text is left out instead of being completed, so every
/// value returned is final. A key whose value is still arriving maps to
/// `null`.
///
/// ```
/// use serde_json::json;
/// use statewise::action::repair_prefix;
///
/// assert_eq!(repair_prefix(r#"{"name": "calcu"#)?, json!({"name": null}));
/// assert_eq!(repair_prefix(r#"{"name": "calculator", "argu"#)?, json!({"name": "calculator"}));
/// # Ok::<(), statewise::action::RepairError>(())
/// ```
pub fn repair_prefix(text: &str) -> Result<Value, RepairError> {
    repair_with(text, true)
}

fn repair_with(text: &str, partial: bool) -> Result<Value, RepairError> {
    if text.trim().is_empty() {
        return Err(RepairError::Empty);
    }
    if !partial {
        if let Ok(v) = serde_json::from_str::<Value>(text) {
            return Ok(v);
        }
    }
    let mut chars: Vec<char> = text.chars().collect();
    if starts_with_key(&chars) {
        // `"final_answer": "..."}`: the opening brace was left out (or
        // was the prompt's, as a prefilled reply has it).
        chars.insert(0, '{');
    }
    let mut docs = Vec::new();
    for block in fenced_blocks(&chars).unwrap_or_else(|| vec![&chars[..]]) {
        documents(block, partial, &mut docs)?;
    }
    if docs.is_empty() && !partial {
        // Fences that held no JSON: look at the whole text.
        documents(&chars, partial, &mut docs)?;
    }
    if docs.iter().any(|d| !is_empty_container(d)) {
        docs.retain(|d| !is_empty_container(d));
    } else {
        docs.truncate(1);
    }
    match docs.len() {
        0 => Err(RepairError::NoJson {
            excerpt: text.trim().chars().take(40).collect(),
        }),
        1 => Ok(docs.remove(0)),
        _ => Ok(Value::Array(docs)),
    }
}

/// Whether `s` begins, after whitespace, with a quoted key and its colon.
fn starts_with_key(s: &[char]) -> bool {
    let Some(start) = s.iter().position(|c| !c.is_whitespace()) else {
        return false;
    };
    let quote = s[start];
    if quote != '"' && quote != '\'' {
        return false;
    }
    let Some(len) = s[start + 1..]
        .iter()
        .take(256)
        .position(|&c| c == quote || c == '\n')
    else {
        return false;
    };
    let end = start + 1 + len;
    s[end] == quote
        && s[end + 1..]
            .iter()
            .find(|c| !c.is_whitespace())
            .is_some_and(|&c| c == ':')
}

fn is_empty_container(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// The contents of ```` ``` ```` fences, when a fence opens before any JSON
/// does; `None` when the JSON is not fenced (a fence inside a JSON string is
/// text).
fn fenced_blocks(s: &[char]) -> Option<Vec<&[char]>> {
    let fence = |i: usize| s.get(i..i + 3) == Some(&['`', '`', '`'][..]);
    let first_fence = (0..s.len()).find(|&i| fence(i))?;
    if s[..first_fence].iter().any(|c| matches!(c, '{' | '[')) {
        return None;
    }
    let mut blocks = Vec::new();
    let mut i = first_fence;
    while i < s.len() {
        // Skip the fence, any extra backticks, and a language tag.
        while s.get(i) == Some(&'`') {
            i += 1;
        }
        while s.get(i).is_some_and(|c| c.is_alphanumeric()) {
            i += 1;
        }
        let start = i;
        while i < s.len() && !fence(i) {
            i += 1;
        }
        blocks.push(&s[start..i]);
        // Skip the closing fence, then look for the next opening one.
        i += 3;
        while i < s.len() && !fence(i) {
            i += 1;
        }
    }
    Some(blocks)
}

/// Every JSON document in `s`, in order, pushed onto `docs`.
fn documents(s: &[char], partial: bool, docs: &mut Vec<Value>) -> Result<(), RepairError> {
    // A parenthesized tuple is JSON only when the text starts with it, not
    // in prose such as "(1) Keep this note".
    let first = s.iter().position(|c| !c.is_whitespace());
    let mut p = Parser::new(s, partial);
    let opens = |k: usize| matches!(s[k], '{' | '[') || (s[k] == '(' && Some(k) == first);
    while let Some(start) = (p.i..s.len()).find(|&k| opens(k)) {
        p.i = start;
        let value = p.parse_value();
        if p.too_deep {
            return Err(RepairError::TooDeep { limit: MAX_DEPTH });
        }
        match value {
            Some(Value::Object(mut map)) => {
                if continues_object(s, p.i) {
                    p.continue_object(&mut map);
                }
                docs.push(Value::Object(map));
            }
            Some(v) => docs.push(v),
            None => {}
        }
        if p.i <= start {
            p.i = start + 1;
        }
        if p.at_end() {
            break;
        }
    }
    Ok(())
}

/// `{"a": 1}, "b": 2}`: after a closed object, a comma and a quoted key
/// (followed by `:` or by a value) mean the object was closed too early.
fn continues_object(s: &[char], i: usize) -> bool {
    let skip_ws = |mut k: usize| {
        while s.get(k).is_some_and(|c| c.is_whitespace()) {
            k += 1;
        }
        k
    };
    let k = skip_ws(i);
    if s.get(k) != Some(&',') {
        return false;
    }
    let k = skip_ws(k + 1);
    let Some(&q) = s.get(k).filter(|c| matches!(c, '"' | '\'')) else {
        return false;
    };
    let Some(end) = s[k + 1..].iter().take(256).position(|&c| c == q) else {
        return false;
    };
    let after = skip_ws(k + 1 + end + 1);
    matches!(s.get(after), Some(':' | '"' | '\''))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(text: &str) -> Value {
        repair(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    // Regression tests for every data-loss bug of llm_json 1.0.3 listed in
    // the repair issue.

    #[test]
    fn top_level_arrays_keep_every_element() {
        assert_eq!(r("[1, 2, {'a': 3}]"), json!([1, 2, {"a": 3}]));
        assert_eq!(
            r("```json\n[{\"a\": 1}, {\"b\": 2}]\n```"),
            json!([{"a": 1}, {"b": 2}])
        );
        assert_eq!(r("[{\"a\": 1}, {\"b\": 2},]"), json!([{"a": 1}, {"b": 2}]));
    }

    #[test]
    fn characters_outside_the_bmp_survive() {
        assert_eq!(r("{'emoji': '😀 𝄞 日本'}"), json!({"emoji": "😀 𝄞 日本"}));
        assert_eq!(
            r(r#"{"e": "\ud83d\ude00", "lone": "\ud800x"}"#),
            json!({"e": "😀", "lone": "\u{fffd}x"})
        );
    }

    #[test]
    fn raw_newlines_and_tabs_inside_strings() {
        let code = "{\"code\": \"def f():\n\treturn 1\n\"}";
        assert_eq!(r(code), json!({"code": "def f():\n\treturn 1\n"}));
        assert_eq!(r("{'a': 'x\ty',}"), json!({"a": "x\ty"}));
    }

    #[test]
    fn a_minus_before_a_word_is_text() {
        assert_eq!(r(r#"{"a": -abc}"#), json!({"a": "-abc"}));
        assert_eq!(
            r(r#"{"a": -1.5e3, "b": -abc, "c": 1}"#),
            json!({"a": -1500.0, "b": "-abc", "c": 1})
        );
    }

    #[test]
    fn no_invented_keys() {
        assert_eq!(r(r#"{"key": 1/3}"#), json!({"key": "1/3"}));
        assert_eq!(r(r#"{"key": 1/3, "x": 2}"#), json!({"key": "1/3", "x": 2}));
    }

    #[test]
    fn several_documents_are_all_kept() {
        assert_eq!(
            r(r#"{"a": 1} and then {"b": 2}"#),
            json!([{"a": 1}, {"b": 2}])
        );
        let tagged =
            "<tool_call>{\"name\": \"a\"}</tool_call>\n<tool_call>{\"name\": \"a\"}</tool_call>";
        assert_eq!(r(tagged), json!([{"name": "a"}, {"name": "a"}]));
    }

    #[test]
    fn nothing_salvageable_is_an_error_not_an_empty_object() {
        assert_eq!(repair(""), Err(RepairError::Empty));
        assert_eq!(repair(" \n "), Err(RepairError::Empty));
        assert!(matches!(
            repair("no json here"),
            Err(RepairError::NoJson { .. })
        ));
        assert!(matches!(repair("}"), Err(RepairError::NoJson { .. })));
    }

    #[test]
    fn key_order_and_integers_are_kept() {
        let v = r("{'zeta': 1, 'alpha': 12345678901234567890, 'mid': -7,}");
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["zeta", "alpha", "mid"]);
        assert_eq!(v["alpha"].as_u64(), Some(12345678901234567890));
        assert!(v["zeta"].is_u64());
        assert_eq!(
            v.to_string(),
            r#"{"zeta":1,"alpha":12345678901234567890,"mid":-7}"#
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000);
        assert_eq!(
            repair(&deep),
            Err(RepairError::TooDeep { limit: MAX_DEPTH })
        );
        let deep = "{\"a\":".repeat(10_000);
        assert_eq!(
            repair(&deep),
            Err(RepairError::TooDeep { limit: MAX_DEPTH })
        );
    }

    #[test]
    fn prefixes_hold_only_complete_values() {
        let full =
            r#"{"tool_calls": [{"name": "calculator", "arguments": {"expression": "1+2"}}]}"#;
        let mut seen_name = None;
        for end in (0..=full.len()).filter(|&e| full.is_char_boundary(e)) {
            let Ok(v) = repair_prefix(&full[..end]) else {
                continue;
            };
            if let Some(Value::String(name)) = v.pointer("/tool_calls/0/name") {
                assert_eq!(name, "calculator", "at {end}");
                seen_name.get_or_insert(end);
            }
        }
        // The name is known as soon as its closing quote arrives.
        assert_eq!(
            seen_name,
            Some(full.find("calculator").unwrap() + "calculator\"".len())
        );
    }
}
