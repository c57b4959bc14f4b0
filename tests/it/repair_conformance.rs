//! Conformance of `action::repair` against json_repair's own test suite.
//!
//! The cases (224, from json_repair 0.61.7's tests, MIT) are reference data
//! in `../shared/conformance/`, read from there and not copied into the
//! project (see [`cases_text`]). Set `REPAIR_CONFORMANCE_VERBOSE=1` to list
//! every failing case.
//!
//! `llm_json` (the crate our repair replaced) is scored on the same cases,
//! so the reason for the replacement stays measured.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;
use statewise::action::repair;

/// The share of supported cases that must pass.
const TARGET: f64 = 0.95;

/// Cases where we differ from json_repair on purpose.
const DELIBERATE: &[(usize, &str)] = &[(
    17,
    "json_repair keeps only the last of two same-shaped documents; we keep both (never drop data)",
)];

#[derive(Deserialize)]
struct Case {
    file: String,
    #[serde(rename = "fn")]
    function: String,
    input: String,
    kwargs: serde_json::Map<String, Value>,
    expected: Value,
}

/// Why a case is outside what `repair` offers, or `None` when it is supported.
fn unsupported(case: &Case) -> Option<&'static str> {
    if case.kwargs.contains_key("logging") {
        return Some("logging (returns json_repair's repair log)");
    }
    if case.kwargs.contains_key("schema") || case.file.starts_with("test_schema") {
        return Some("schema (schema-guided repair)");
    }
    if case.kwargs.get("stream_stable") == Some(&Value::Bool(true)) {
        return Some("stream_stable=true (keeps a cut string's dangling escape)");
    }
    // return_objects, skip_json_loads and ensure_ascii change only how the
    // result is returned or encoded; comparing values makes them moot.
    None
}

/// The expected value, or `None` when json_repair expects nothing salvageable.
fn expected_value(case: &Case) -> Option<Value> {
    let returns_text = case.function == "repair_json"
        && case.kwargs.get("return_objects") != Some(&Value::Bool(true));
    match &case.expected {
        Value::String(s) if s.is_empty() => None,
        Value::String(s) if returns_text => {
            Some(serde_json::from_str(s).expect("expected output is JSON"))
        }
        v => Some(v.clone()),
    }
}

/// JSON equality where numbers compare by value (json_repair writes 1e10 as 10000000000.0).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// json_repair's cases, from `../shared/conformance/` beside the checkout
/// (CI has it there; the project does not copy it) or from the file
/// `JSON_REPAIR_CASES` names. Outside CI a checkout without them has
/// nothing to score; in CI (`CI` set) their absence fails the test.
pub(crate) fn cases_text() -> Option<String> {
    let path = std::env::var_os("JSON_REPAIR_CASES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/conformance/json_repair_cases.json")
        });
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("json_repair's cases not found at {} ({e})", path.display())
        }
        Err(_) => {
            println!(
                "json_repair's cases not found at {}: conformance not scored",
                path.display()
            );
            None
        }
    }
}

#[test]
fn repair_conformance_with_json_repair_suite() {
    let Some(text) = cases_text() else { return };
    let cases: Vec<Case> = serde_json::from_str(&text).expect("cases file is a JSON list of cases");
    assert!(cases.len() >= 200, "only {} cases", cases.len());

    let verbose = std::env::var_os("REPAIR_CONFORMANCE_VERBOSE").is_some();
    let mut unsupported_by: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let (mut supported, mut passed, mut llm_json_passed) = (0usize, 0usize, 0usize);
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        if let Some(reason) = unsupported(case) {
            unsupported_by.entry(reason).or_default().push(i);
            continue;
        }
        supported += 1;
        let got = repair(&case.input).ok();
        let matches = |got: &Option<Value>| match (got, expected_value(case)) {
            (None, None) => true,
            (Some(g), Some(e)) => same(g, &e),
            _ => false,
        };
        let llm_options = llm_json::RepairOptions {
            ensure_ascii: false,
            ..Default::default()
        };
        if matches(&llm_json::loads(&case.input, &llm_options).ok()) {
            llm_json_passed += 1;
        }
        if matches(&got) {
            passed += 1;
        } else {
            let why = DELIBERATE
                .iter()
                .find(|(id, _)| *id == i)
                .map_or("", |(_, why)| why);
            failures.push(format!(
                "  #{i} {}: {:?}{}\n      expected {}\n      got      {}",
                case.file,
                case.input,
                if why.is_empty() {
                    String::new()
                } else {
                    format!("\n      deliberate: {why}")
                },
                expected_value(case).map_or("nothing".into(), |v| v.to_string()),
                got.map_or("nothing".into(), |v| v.to_string())
            ));
        }
    }

    let rate = passed as f64 / supported as f64;
    println!("json_repair conformance: {passed}/{supported} supported cases pass ({:.1}%), target {:.0}%", rate * 100.0, TARGET * 100.0);
    println!(
        "llm_json 1.0.3 alone, same cases: {llm_json_passed}/{supported} ({:.1}%)",
        llm_json_passed as f64 / supported as f64 * 100.0
    );
    println!("unsupported: {} cases", cases.len() - supported);
    for (reason, ids) in &unsupported_by {
        println!("  {reason}: {} cases {ids:?}", ids.len());
    }
    println!(
        "failing: {} cases (listed with REPAIR_CONFORMANCE_VERBOSE=1)",
        failures.len()
    );
    if verbose || rate < TARGET {
        for f in &failures {
            println!("{f}");
        }
    }
    assert!(
        rate >= TARGET,
        "conformance {:.1}% is below the {:.0}% target",
        rate * 100.0,
        TARGET * 100.0
    );
}
