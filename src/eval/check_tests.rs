use super::*;
use crate::dataset::Item;
use crate::env::Usage;
use serde_json::json;

fn case(expected: Option<Value>) -> Item {
    serde_json::from_value(json!({"id": "c", "input": "q", "expected": expected})).unwrap()
}

fn run(answer: &str) -> ItemResult {
    serde_json::from_value(json!({"id": "c", "answer": answer, "path": [], "usage": Usage::default(), "latency_ms": 250.0})).unwrap()
}

fn check(spec: Value) -> Check {
    serde_json::from_value(spec).unwrap()
}

fn passes(spec: Value, expected: Option<Value>, answer: &str) -> bool {
    check(spec).score(&case(expected), &run(answer)).passed
}

#[test]
fn equals_and_contains_take_the_expected_value() {
    assert!(passes(
        json!({"type": "equals"}),
        Some(json!("Paris")),
        " Paris\n"
    ));
    assert!(!passes(
        json!({"type": "equals"}),
        Some(json!("Paris")),
        "It is Paris"
    ));
    assert!(passes(
        json!({"type": "equals", "ignore_case": true}),
        Some(json!("paris")),
        "PARIS"
    ));
    assert!(passes(
        json!({"type": "equals"}),
        Some(json!({"a": 1})),
        r#"{"a": 1.0}"#
    ));
    assert!(passes(
        json!({"type": "contains"}),
        Some(json!("paris")),
        "It is Paris."
    ));
    assert!(passes(
        json!({"type": "contains", "value": ["Lyon", "Paris"]}),
        None,
        "Paris"
    ));
    let s = check(json!({"type": "contains"})).score(&case(None), &run("x"));
    assert!(
        !s.passed && s.reason.contains("no \"expected\""),
        "{}",
        s.reason
    );
}

#[test]
fn a_number_must_stand_on_its_own() {
    let contains = json!({"type": "contains"});
    assert!(passes(contains.clone(), Some(json!(391)), "It is 391."));
    assert!(passes(contains.clone(), Some(json!(391)), "391.0"));
    assert!(!passes(contains.clone(), Some(json!(391)), "3910"));
    assert!(!passes(contains.clone(), Some(json!(391)), "391.5"));
    assert!(!passes(contains, Some(json!("42")), "1.42"));
}

#[test]
fn regex_and_number() {
    assert!(passes(
        json!({"type": "regex", "pattern": "\\b42\\b"}),
        None,
        "6 times 7 is 42."
    ));
    assert!(!passes(
        json!({"type": "regex", "pattern": "\\b42\\b"}),
        None,
        "420"
    ));
    let bad = check(json!({"type": "regex", "pattern": "("})).score(&case(None), &run("x"));
    assert!(!bad.passed && bad.reason.contains("invalid pattern"));
    assert!(passes(
        json!({"type": "number", "value": 2.72, "tolerance": 0.01}),
        None,
        "e is about 2.718"
    ));
    assert!(passes(
        json!({"type": "number"}),
        Some(json!(1234.5)),
        "It costs 1,234.50 euros"
    ));
    assert!(passes(
        json!({"type": "number"}),
        Some(json!(-4)),
        "The result is -4."
    ));
    let s =
        check(json!({"type": "number", "value": 10})).score(&case(None), &run("about 12 or 13"));
    assert!(!s.passed);
    assert_eq!(s.value, Some(json!(12.0)), "the nearest number is kept");
    assert_eq!(
        numbers_in("6×7=42, x2 and 1,000 and 3.5"),
        [6.0, 7.0, 42.0, 1000.0, 3.5]
    );
}

#[test]
fn json_schema_checks_the_output_or_the_parsed_answer() {
    let schema = json!({"type": "json_schema", "schema": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}});
    assert!(passes(schema.clone(), None, r#"{"city": "Paris"}"#));
    assert!(!passes(schema.clone(), None, r#"{"town": "Paris"}"#));
    assert!(!passes(schema.clone(), None, "Paris"));
    let mut typed = run("ignored");
    typed.output = Some(json!({"city": "Lyon"}));
    assert!(check(schema).score(&case(None), &typed).passed);
}

#[test]
fn limits_on_latency_cost_and_tokens() {
    let mut r = run("x");
    r.usage.prompt_tokens = 80;
    r.usage.completion_tokens = 30;
    r.usage.cost = 0.002;
    let score = |spec| check(spec).score(&case(None), &r);
    assert!(score(json!({"type": "max_latency_ms", "value": 300})).passed);
    assert!(!score(json!({"type": "max_latency_ms", "value": 200})).passed);
    assert!(score(json!({"type": "max_tokens", "value": 110})).passed);
    assert!(!score(json!({"type": "max_tokens", "value": 100})).passed);
    assert!(!score(json!({"type": "max_cost", "value": 0.001})).passed);
    assert_eq!(
        score(json!({"type": "max_cost", "value": 0.01})).value,
        Some(json!(0.002))
    );
}

#[test]
fn unknown_types_and_fields_are_refused_when_read() {
    let err =
        serde_json::from_value::<Check>(json!({"type": "regexp", "pattern": "a"})).unwrap_err();
    assert!(err.to_string().contains("regexp"), "{err}");
    assert!(serde_json::from_value::<Check>(json!({"type": "regex", "patern": "a"})).is_err());
}
