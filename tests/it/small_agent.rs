//! The stock agent for small models: a constrained choice (Decide), at most
//! one tool call, and the answer written as free text.

use std::sync::Arc;

use serde_json::json;
use statewise::model::ScriptedModel;
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::{Emit, Env, EventKind};
use statewise_states::tools::{Calculator, Clock};
use statewise_states::{small_agent, Example};

use crate::support::answer_pieces;

fn tools() -> Toolbox {
    Toolbox::new(ToolRegistry::new().with(Calculator).with(Clock))
}

fn examples() -> Vec<Example> {
    Calculator::examples()
        .into_iter()
        .chain(Clock::examples())
        .collect()
}

async fn run(
    model: &Arc<ScriptedModel>,
    question: &str,
) -> (Option<String>, Vec<statewise::Event>) {
    let machine = small_agent(model.clone(), tools(), examples());
    let events: Vec<_> =
        futures::StreamExt::collect(machine.stream(Env::from_user(question))).await;
    let answer = events.iter().find_map(|e| match &e.kind {
        EventKind::Finished(out) => out.answer.clone(),
        _ => None,
    });
    (answer, events)
}

fn tools_called(events: &[statewise::Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Emitted(Emit::Observation(o)) => {
                Some(format!("{} -> {}", o.tool, o.content))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_question_from_knowledge_is_answered_without_a_tool() {
    let model = Arc::new(
        ScriptedModel::new()
            .text(r#"{"next": "answer"}"#)
            .text("The capital of France is Paris."),
    );
    let (answer, events) = run(&model, "What is the capital of France?").await;
    assert_eq!(answer.as_deref(), Some("The capital of France is Paris."));
    assert!(tools_called(&events).is_empty());
    let calls = model.calls();
    assert_eq!(calls.len(), 2);
    // The choice is held to the options by the request's schema, and the
    // examples come before the question.
    let choice = &calls[0];
    assert_eq!(
        choice.response_schema.as_ref().unwrap()["properties"]["next"]["enum"],
        json!(["math", "clock", "answer"])
    );
    assert!(choice
        .messages
        .iter()
        .any(|m| m.content == "How much is 6 times 9?"));
    assert!(choice
        .messages
        .iter()
        .any(|m| m.content == r#"{"next":"math"}"#));
    assert!(choice
        .messages
        .iter()
        .any(|m| m.content == "Who painted the Mona Lisa?"));
    assert_eq!(
        choice.messages.last().unwrap().content,
        "What is the capital of France?"
    );
    // The examples take turns, so no option's examples come in a run.
    let shown: Vec<&str> = choice
        .messages
        .iter()
        .filter(|m| m.role == statewise::Role::Assistant)
        .map(|m| m.content.as_str())
        .collect();
    assert_eq!(
        &shown[..3],
        [
            r#"{"next":"math"}"#,
            r#"{"next":"clock"}"#,
            r#"{"next":"answer"}"#
        ]
    );
    // The answer is free text, asked for as the user asked: no schema, no
    // tool talk; worked exchanges (questions unlike this one) come first,
    // as earlier turns.
    let answer = &calls[1];
    assert!(answer.response_schema.is_none());
    assert_eq!(answer.messages[0].role, statewise::Role::System);
    let turns = &answer.messages[1..answer.messages.len() - 1];
    assert!(
        !turns.is_empty() && turns.len().is_multiple_of(2),
        "{turns:#?}"
    );
    for pair in turns.chunks(2) {
        assert_eq!(pair[0].role, statewise::Role::User);
        assert_eq!(pair[1].role, statewise::Role::Assistant);
        assert!(!pair[0].content.contains("France"));
    }
    assert_eq!(
        answer.messages.last().unwrap().content,
        "What is the capital of France?"
    );
    // With no tool results the answer streams as it is written.
    let pieces = answer_pieces(&events);
    assert!(pieces.len() > 1, "{pieces:?}");
    assert_eq!(pieces.concat(), "The capital of France is Paris.");
}

#[tokio::test]
async fn an_arithmetic_question_gets_the_calculator_and_its_result_reaches_the_answer() {
    let model = Arc::new(
        ScriptedModel::new()
            .text(r#"{"next": "math"}"#)
            .text(r#"{"expression": "17 * 23"}"#)
            .text("17 * 23 is 391."),
    );
    let (answer, events) = run(&model, "What is 17 * 23?").await;
    assert_eq!(answer.as_deref(), Some("17 * 23 is 391."));
    assert_eq!(tools_called(&events), ["calculator -> 391"]);
    let calls = model.calls();
    // The arguments are held to the calculator's own schema, after its examples.
    let arguments = &calls[1];
    assert_eq!(
        arguments.response_schema.as_ref().unwrap()["required"],
        json!(["expression"])
    );
    assert!(arguments
        .messages
        .iter()
        .any(|m| m.content == r#"{"expression":"6 * 9"}"#));
    eprintln!("{:#?}", calls[2].messages);
    // The answer is written from the observation.
    assert!(
        calls[2].messages.iter().any(|m| m.content.contains("391")),
        "{:#?}",
        calls[2].messages
    );
}

#[tokio::test]
async fn a_tool_without_arguments_is_called_without_asking_for_them() {
    let model = Arc::new(
        ScriptedModel::new()
            .text(r#"{"next": "clock"}"#)
            .text("Sure!"),
    );
    let (answer, events) = run(&model, "What day is it?").await;
    let called = tools_called(&events);
    assert_eq!(called.len(), 1);
    let result = called[0].strip_prefix("clock -> ").expect("the clock ran");
    assert_eq!(model.calls().len(), 2, "the choice and the answer only");
    // An answer that leaves out the clock's result is replaced by it.
    let said: String = serde_json::from_str(result).unwrap();
    assert_eq!(answer.as_deref(), Some(said.as_str()));
}

#[tokio::test]
async fn an_answer_after_a_tool_streams_once_it_keeps_the_result() {
    // The model streams its reply a word at a time.
    let model = Arc::new(
        ScriptedModel::new()
            .text(r#"{"next": "math"}"#)
            .text(r#"{"expression": "17 * 23"}"#)
            .text("17 * 23 is 391, as asked."),
    );
    let (answer, events) = run(&model, "What is 17 * 23?").await;
    assert_eq!(answer.as_deref(), Some("17 * 23 is 391, as asked."));
    let pieces = answer_pieces(&events);
    // Held until `391` was a whole word, then live.
    assert_eq!(pieces, ["17 * 23 is 391, ", "as ", "asked."]);
}

#[tokio::test]
async fn a_choice_that_names_no_option_is_answered() {
    // A model that ignores the schema names something else.
    let model = Arc::new(
        ScriptedModel::new()
            .text(r#"{"next": "search"}"#)
            .text("I am not sure."),
    );
    let (answer, events) = run(&model, "Who won?").await;
    assert_eq!(answer.as_deref(), Some("I am not sure."));
    assert!(tools_called(&events).is_empty());
}

#[tokio::test]
async fn a_numeric_tool_is_asked_for_arguments_with_the_requests_numbers() {
    let model = Arc::new(
        ScriptedModel::new()
            .text(r#"{"next": "math"}"#)
            .text(r#"{"expression": "15 * 200"}"#)
            .text("15% of 200 is 30."),
    );
    let (answer, events) = run(&model, "What is 15 percent of 200?").await;
    assert_eq!(answer.as_deref(), Some("15% of 200 is 30."));
    // The sign put back on the percentage the model wrote bare.
    assert_eq!(tools_called(&events), ["calculator -> 30"]);
    let calls = model.calls();
    let last_user = |i: usize| {
        calls[i]
            .messages
            .iter()
            .rev()
            .find(|m| m.role == statewise::Role::User)
            .map(|m| m.content.clone())
            .unwrap_or_default()
    };
    // The choice sees the request as asked; the arguments call sees its
    // numbers too, as each of the calculator's examples shows them.
    assert_eq!(last_user(0), "What is 15 percent of 200?");
    assert_eq!(
        last_user(1),
        "What is 15 percent of 200?\nNumbers: 15%, 200"
    );
    assert!(calls[1]
        .messages
        .iter()
        .any(|m| m.content == "What is 23 + 19?\nNumbers: 23, 19"));
    assert!(!calls[0]
        .messages
        .iter()
        .any(|m| m.content.contains("Numbers:")));
}
