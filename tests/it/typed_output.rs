//! Typed outputs: `agent(..).output::<T>()` asks for `T`'s schema, checks
//! the reply, asks again with the problems, and fails with the last reply
//! kept once retries run out.

use std::sync::Arc;

use futures::StreamExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use statewise::model::{Capabilities, ScriptedModel};
use statewise::output::{Output, OutputError, OutputErrorKind};
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::{Emit, Env, EventKind, MachineError, StateError, StateErrorKind};
use statewise_states::tools::Calculator;
use statewise_states::{agent, Answer};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Contact {
    name: String,
    email: Option<String>,
    phone: Option<String>,
    company: Option<String>,
}

fn no_tools() -> Toolbox {
    Toolbox::new(ToolRegistry::new())
}

fn contact() -> Contact {
    Contact {
        name: "Ada Lovelace".into(),
        email: Some("ada@example.com".into()),
        phone: None,
        company: Some("Analytical Engines".into()),
    }
}

fn good_reply() -> String {
    serde_json::to_string(&contact()).unwrap()
}

fn constraining() -> Capabilities {
    Capabilities {
        json_schema: true,
        ..Capabilities::default()
    }
}

#[tokio::test]
async fn a_reply_that_fits_is_the_typed_answer() {
    let model = Arc::new(
        ScriptedModel::new()
            .with_capabilities(constraining())
            .text(r#"{"final_answer": "Ada Lovelace of Analytical Engines"}"#)
            .text(good_reply()),
    );
    let machine = agent(model.clone(), no_tools()).output::<Contact>();
    let out = machine
        .run(Env::from_user(
            "Ada Lovelace, ada@example.com, Analytical Engines",
        ))
        .await
        .unwrap();
    assert_eq!(out.output::<Contact>().unwrap(), contact());
    let calls = model.calls();
    assert_eq!(calls.len(), 2);
    // The schema goes to the provider's constraint, in the form strict
    // modes take; the prompt names the fields.
    let schema = calls[1].response_schema.as_ref().unwrap();
    assert_eq!(
        schema["required"],
        json!(["name", "email", "phone", "company"])
    );
    assert_eq!(schema["additionalProperties"], json!(false));
    let system = &calls[1].messages[0].content;
    assert!(system.contains("name, email, phone, company"), "{system}");
    // Reasoning's answer is passed on as the draft.
    assert!(calls[1]
        .messages
        .last()
        .unwrap()
        .content
        .contains("Ada Lovelace of Analytical Engines"));
}

#[tokio::test]
async fn without_a_constraint_the_prompt_carries_the_schema() {
    let model = Arc::new(
        ScriptedModel::new()
            .text(r#"{"final_answer": "Ada"}"#)
            .text(good_reply()),
    );
    let out = agent(model.clone(), no_tools())
        .output::<Contact>()
        .run(Env::from_user("Ada"))
        .await
        .unwrap();
    assert_eq!(out.output::<Contact>().unwrap(), contact());
    let asked = &model.calls()[1];
    assert!(asked.response_schema.is_none());
    let system = &asked.messages[0].content;
    assert!(system.contains(r#""required":["name"]"#), "{system}");
}

#[tokio::test]
async fn a_wrong_type_is_retried_with_the_validation_message() {
    let model = Arc::new(
        ScriptedModel::new()
            .text(r#"{"final_answer": "done"}"#)
            .text(r#"{"name": 42, "email": null, "phone": null, "company": null}"#)
            .text(good_reply()),
    );
    let machine = agent(model.clone(), no_tools()).output::<Contact>();
    let events: Vec<_> = machine.stream(Env::from_user("Ada")).collect().await;
    let out = match &events.last().unwrap().kind {
        EventKind::Finished(out) => out.clone(),
        other => panic!("the run did not finish: {other:?}"),
    };
    assert_eq!(out.output::<Contact>().unwrap(), contact());
    let calls = model.calls();
    assert_eq!(calls.len(), 3);
    // The second request shows the broken reply, then what was wrong.
    let retry = &calls[2].messages;
    let n = retry.len();
    assert!(retry[n - 2].content.contains("\"name\": 42"));
    assert!(
        retry[n - 1]
            .content
            .contains("name: 42 is not of type \"string\""),
        "{}",
        retry[n - 1].content
    );
    // Only the object that fits is sent as the answer.
    let answer: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Emitted(Emit::AnswerToken(t)) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(answer, [good_reply().as_str()]);
}

#[tokio::test]
async fn a_missing_field_is_retried() {
    let model = Arc::new(
        ScriptedModel::new()
            .text(r#"{"final_answer": "done"}"#)
            .text(r#"{"email": "ada@example.com"}"#)
            .text(good_reply()),
    );
    let out = agent(model.clone(), no_tools())
        .output::<Contact>()
        .run(Env::from_user("Ada"))
        .await
        .unwrap();
    assert_eq!(out.output::<Contact>().unwrap(), contact());
    let correction = model.calls()[2].messages.last().unwrap().content.clone();
    assert!(correction.contains("name"), "{correction}");
    assert!(correction.contains("required"), "{correction}");
}

#[tokio::test]
async fn validators_run_after_the_schema_and_their_words_reach_the_model() {
    let model = Arc::new(
        ScriptedModel::new()
            .text(r#"{"final_answer": "done"}"#)
            .text(r#"{"name": "Ada", "email": "not an address", "phone": null, "company": null}"#)
            .text(good_reply()),
    );
    let output = Output::of::<Contact>().validate(|c: &Contact| match &c.email {
        Some(email) if !email.contains('@') => {
            Err(format!("email {email:?} has no @: give an address or null"))
        }
        _ => Ok(()),
    });
    let out = agent(model.clone(), no_tools())
        .with_output(output)
        .run(Env::from_user("Ada"))
        .await
        .unwrap();
    assert_eq!(out.output::<Contact>().unwrap(), contact());
    let correction = model.calls()[2].messages.last().unwrap().content.clone();
    assert!(correction.contains("has no @"), "{correction}");
}

#[tokio::test]
async fn after_the_retries_the_error_holds_the_raw_reply() {
    let bad = r#"{"name": ["Ada"], "email": 7}"#;
    let model = Arc::new(
        ScriptedModel::new()
            .text(r#"{"final_answer": "done"}"#)
            .text("not json at all")
            .text(bad)
            .text(bad),
    );
    let failure = agent(model.clone(), no_tools())
        .with_output(Output::of::<Contact>().retries(2))
        .run(Env::from_user("Ada"))
        .await
        .unwrap_err();
    model.assert_complete();
    let MachineError::State {
        source: StateError::Output(error),
        ..
    } = &failure.error
    else {
        panic!("not an output error: {:?}", failure.error);
    };
    assert_eq!(error.kind(), OutputErrorKind::Invalid);
    let OutputError::Invalid {
        attempts,
        problems,
        raw,
        ..
    } = error
    else {
        unreachable!()
    };
    assert_eq!((*attempts, raw.as_str()), (3, bad));
    assert!(problems.iter().any(|p| p.field.as_deref() == Some("name")));
    assert_eq!(failure.error.code(), "output");
    // Nothing lost: the last reply is in the env too.
    assert_eq!(failure.env.messages.last().unwrap().content, bad);
    assert!(failure.env.answer.is_none());
}

#[tokio::test]
async fn a_typed_output_follows_tool_calls_in_the_same_run() {
    #[derive(Debug, Deserialize, JsonSchema)]
    struct Total {
        total: f64,
    }
    let model = Arc::new(
        ScriptedModel::new()
            .text(
                r#"{"tool_calls": [{"name": "calculator", "arguments": {"expression": "17*23"}}]}"#,
            )
            .text(r#"{"final_answer": "391"}"#)
            .text(r#"{"total": 391}"#),
    );
    let tools = Toolbox::new(ToolRegistry::new().with(Calculator));
    let events: Vec<_> = agent(model.clone(), tools)
        .output::<Total>()
        .stream(Env::from_user("What is 17*23?"))
        .collect()
        .await;
    let EventKind::Finished(out) = &events.last().unwrap().kind else {
        panic!("{:?}", events.last());
    };
    assert_eq!(out.path, ["reasoning", "tools", "reasoning", "answer"]);
    assert_eq!(out.output::<Total>().unwrap().total, 391.0);
    // The tool's result is in what the answer state asked with.
    let asked = &model.calls()[2].messages;
    assert!(asked.iter().any(|m| m.content.contains("391")));
    // Reasoning's prose answer is a draft, not the answer.
    let answer: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Emitted(Emit::AnswerToken(t)) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(answer, [r#"{"total":391}"#]);
}

#[tokio::test]
async fn an_answer_state_without_a_model_says_what_it_needs() {
    let model = Arc::new(ScriptedModel::new().text(r#"{"final_answer": "x"}"#));
    let machine = statewise::Machine::new("reasoning")
        .with_state(statewise_states::Reasoning::new(model, no_tools()))
        .with_state(Answer::new())
        .output::<Contact>();
    let failure = machine.run(Env::from_user("Ada")).await.unwrap_err();
    let MachineError::State { source: error, .. } = &failure.error else {
        panic!("{:?}", failure.error);
    };
    assert_eq!(error.kind(), StateErrorKind::Precondition);
    assert!(error.to_string().contains("Answer::output_model"));
}

#[test]
fn reading_a_typed_output_from_a_run_without_an_answer_is_an_error() {
    let out = statewise::RunOutput {
        answer: None,
        path: vec![],
        env: Env::new(),
        run_id: "r".into(),
    };
    assert_eq!(
        out.output::<Contact>().unwrap_err().kind(),
        OutputErrorKind::NoAnswer
    );
}

/// A typed run with a retry is traced, then replays offline from the trace
/// alone to the same object.
#[tokio::test]
async fn a_typed_run_with_a_retry_replays_from_its_trace() {
    let dir = crate::support::temp_dir("typed-replay");
    let path = dir.join("trace.jsonl");
    let model = Arc::new(
        ScriptedModel::new()
            .text(r#"{"final_answer": "done"}"#)
            .text(r#"{"name": 42, "email": null, "phone": null, "company": null}"#)
            .text(good_reply()),
    );
    let machine =
        |model: statewise::model::SharedModel| agent(model, no_tools()).output::<Contact>();
    let out = machine(model)
        .with_tracer(statewise::trace::Tracer::jsonl(&path).unwrap())
        .run(Env::from_user("Ada"))
        .await
        .unwrap();
    let recording = statewise::replay::Recording::from_jsonl(&path, None).unwrap();
    let replay = recording
        .replay(&machine(Arc::new(recording.model())))
        .await;
    assert!(replay.matches(), "{replay}");
    assert_eq!(out.output::<Contact>().unwrap(), contact());
}

/// While the object streams, partial objects follow it: each value whole,
/// each one holding the last, the last the object itself.
#[tokio::test]
async fn partial_objects_stream_as_the_object_is_written() {
    let model = Arc::new(
        ScriptedModel::new()
            .text(r#"{"final_answer": "done"}"#)
            .text(good_reply()),
    );
    let events: Vec<_> = agent(model, no_tools())
        .output::<Contact>()
        .stream(Env::from_user("Ada"))
        .collect()
        .await;
    let partials: Vec<serde_json::Value> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Emitted(Emit::PartialOutput(p)) => Some(p.clone()),
            _ => None,
        })
        .collect();
    assert!(partials.len() >= 3, "{partials:?}");
    for pair in partials.windows(2) {
        for (key, value) in pair[0].as_object().unwrap() {
            if !value.is_null() {
                assert_eq!(&pair[1][key], value, "a value never changes: {partials:?}");
            }
        }
    }
    assert_eq!(
        partials.last().unwrap(),
        &serde_json::to_value(contact()).unwrap()
    );
    // They come before the answer.
    let first_partial = events
        .iter()
        .position(|e| matches!(e.kind, EventKind::Emitted(Emit::PartialOutput(_))))
        .unwrap();
    let answer = events
        .iter()
        .position(|e| matches!(e.kind, EventKind::Emitted(Emit::AnswerToken(_))))
        .unwrap();
    assert!(first_partial < answer);
}
