//! Repair properties over many inputs, and every crasher the fuzzer found.

use serde_json::{json, Value};
use statewise::action::{parse_action, repair, repair_prefix, ActionReader};

/// Inputs the fuzzer (fuzz/fuzz_targets/repair.rs) found to crash or hang
/// an earlier version. Each must now finish without a panic. (The first
/// campaign, 479k runs over 8 minutes seeded with the conformance inputs,
/// found none; add any new finding here.)
const CRASHERS: &[&str] = &[];

/// Tricky shapes: unbalanced quotes and closers, comments, escapes at the
/// end, nesting at the limit.
fn tricky() -> Vec<String> {
    let mut v: Vec<String> = [
        "{\"a\": \"\\",
        "{\"a\": \"\\u12",
        "{\"a\": \"\\ud83d",
        "[\"\\ud83d\\u",
        "{'a': '\"}",
        "{\"a\"",
        "{\"a\":",
        "{,,,}",
        "[,,,]",
        "{:}",
        "{\"\": \"\"}",
        "(",
        "(((",
        "((1,)",
        "{'a': (1, (2, 3)}",
        "/* {",
        "{/*",
        "{//",
        "{#",
        "[#]",
        "```",
        "``````",
        "```json",
        "```json\n{",
        "“",
        "{“a”: “b",
        "{\"a\": 1e",
        "{\"a\": -",
        "[.]",
        "[-.e]",
        "{\"a\": 1_}",
        "[[[[]]]]]]]",
        "}}}}{{{{",
        "\"\"\"\"\"\"",
        "{\"a\": \"b\"}, \"c\": \"d\"}, \"e\"",
        "{a b c d: e f g}",
        "{\"k\": [1, 2}, 3]",
        "[{]}",
        "{[}]",
        "\u{0}{\u{0}:\u{0}}",
        "{'a': 'é😀",
        "{\"a\": True",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(CRASHERS.iter().map(|s| s.to_string()));
    v.push(format!("{}{}", "[".repeat(127), "]".repeat(127)));
    v.push(format!("{}1", "{\"a\":".repeat(127)));
    v
}

/// The inputs of json_repair's cases, when they are beside the checkout.
fn conformance_inputs() -> Vec<String> {
    let Some(text) = crate::repair_conformance::cases_text() else {
        return Vec::new();
    };
    let cases: Vec<Value> = serde_json::from_str(&text).unwrap();
    cases
        .iter()
        .map(|c| c["input"].as_str().unwrap().to_owned())
        .collect()
}

/// Every prefix of every input goes through every entry point.
#[test]
fn no_input_prefix_panics() {
    let mut inputs = tricky();
    inputs.extend(conformance_inputs());
    let mut count = 0;
    for input in &inputs {
        for (end, _) in input.char_indices().chain([(input.len(), ' ')]) {
            let prefix = &input[..end];
            let _ = repair(prefix);
            let _ = repair_prefix(prefix);
            let _ = parse_action(prefix);
            count += 1;
        }
        let mut reader = ActionReader::new("call_");
        for c in input.chars() {
            let _ = reader.push(&c.to_string());
        }
        assert_eq!(
            reader.finish().is_ok(),
            parse_action(input).is_ok(),
            "{input:?}"
        );
    }
    assert!(count > 1_000, "only {count} prefixes checked");
}

/// `prefix` is a part of `full`: everything it holds is in `full` at the
/// same place, with `null` standing for a value still to come.
fn is_part_of(prefix: &Value, full: &Value) -> bool {
    match (prefix, full) {
        (Value::Null, _) => true,
        (Value::Object(p), Value::Object(f)) => p
            .iter()
            .all(|(k, v)| f.get(k).is_some_and(|w| is_part_of(v, w))),
        (Value::Array(p), Value::Array(f)) => {
            p.len() <= f.len() && p.iter().zip(f).all(|(a, b)| is_part_of(a, b))
        }
        (p, f) => p == f,
    }
}

/// What a prefix shows is never taken back by the rest of the text.
#[test]
fn prefixes_of_valid_json_are_never_retracted() {
    let documents = [
        json!({"tool_calls": [{"name": "calculator", "arguments": {"expression": "2 * (3 + 4)", "exact": true}},
                              {"name": "search", "arguments": {"q": "say \"hi\"", "n": 10, "tags": ["a", "b"]}}]}),
        json!({"final_answer": "Paris is the capital of France. Its population is 2.1 million."}),
        json!([{"name": "clock", "arguments": {}}, {"name": "calc", "arguments": {"x": -1.5e3, "y": null}}]),
        json!({"nested": {"deep": [[1, 2], [3, {"k": "v"}]], "unicode": "日本😀"}}),
    ];
    for doc in &documents {
        for text in [doc.to_string(), serde_json::to_string_pretty(doc).unwrap()] {
            for (end, _) in text.char_indices() {
                if let Ok(partial) = repair_prefix(&text[..end]) {
                    assert!(
                        is_part_of(&partial, doc),
                        "prefix {:?}\n gave {partial}\n which is not part of {doc}",
                        &text[..end]
                    );
                }
            }
        }
    }
}

/// Valid JSON comes back exactly as serde_json reads it.
#[test]
fn valid_json_is_unchanged() {
    for text in [
        r#"{"b": 1, "a": [true, null, "x\ny"]}"#,
        "[]",
        "42",
        r#""s""#,
        "-0.5",
        r#"{"big": 123456789012345678}"#,
    ] {
        assert_eq!(
            repair(text).unwrap(),
            serde_json::from_str::<Value>(text).unwrap(),
            "{text}"
        );
    }
}
