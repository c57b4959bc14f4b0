//! Runs every JSON step fixture in tests/fixtures against the stock states.

use std::path::Path;
use std::sync::Arc;

use statewise::testkit::{FixtureError, StepFixture};
use statewise::tool::{ToolRegistry, Toolbox};
use statewise_states::tools::Calculator;

fn machine_for(fixture: &StepFixture) -> statewise::Machine {
    let tools = Toolbox::new(ToolRegistry::new().with(Calculator));
    statewise_states::agent(Arc::new(fixture.model()), tools)
}

#[tokio::test]
async fn every_fixture_holds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let fixture = StepFixture::load(&path).unwrap();
            if let Err(e) = fixture.check(&machine_for(&fixture)).await {
                panic!("{}: {e}", path.display());
            }
            checked += 1;
        }
    }
    // Whatever is on disk is checked; an empty or misplaced folder is a failure.
    assert!(checked > 0, "no fixtures found in {}", dir.display());
}

#[tokio::test]
async fn a_wrong_expectation_is_reported_with_its_path() {
    let text = include_str!("../fixtures/action_runs_calculator.json").replace("1024,", "1025,");
    let fixture = StepFixture::from_json(&text).unwrap();
    match fixture.check(&machine_for(&fixture)).await {
        Err(FixtureError::Mismatch {
            at,
            expected,
            actual,
            ..
        }) => {
            assert_eq!(at, "env.observations[0].content");
            assert_eq!((expected.as_str(), actual.as_str()), ("1025", "1024"));
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unexpected_next_state_is_reported() {
    let text = include_str!("../fixtures/answer_echo.json")
        .replace(r#""next": "end""#, r#""next": {"to": "reasoning"}"#);
    let fixture = StepFixture::from_json(&text).unwrap();
    let err = fixture.check(&machine_for(&fixture)).await.unwrap_err();
    assert!(
        matches!(&err, FixtureError::Mismatch { at, .. } if at == "next"),
        "{err}"
    );
}

#[test]
fn a_malformed_fixture_is_a_typed_error() {
    assert!(matches!(
        StepFixture::from_json("{\"name\": 1}"),
        Err(FixtureError::Format(_))
    ));
    assert!(matches!(
        StepFixture::load("/nonexistent.json"),
        Err(FixtureError::Io { .. })
    ));
}
