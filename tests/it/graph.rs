//! The declared graph: states say where they can go, a run checks those
//! targets before any state runs, and the machine draws itself.

use std::sync::Arc;

use statewise::model::ScriptedModel;
use statewise::state::FnState;
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::{Env, Machine, MachineError, Next};
use statewise_states::tools::Calculator;
use statewise_states::{Answer, Reasoning};

fn tools() -> Toolbox {
    Toolbox::new(ToolRegistry::new().with(Calculator))
}

#[tokio::test]
async fn an_unknown_declared_target_is_rejected_before_any_model_call() {
    let model = Arc::new(ScriptedModel::new().text(r#"{"final_answer": "4"}"#));
    // Reasoning with tools declares `tools`, which is not registered.
    let machine = Machine::new("reasoning")
        .with_state(Reasoning::new(model.clone(), tools()))
        .with_state(Answer::new());
    let err = machine.validate().unwrap_err();
    let MachineError::UnknownState { name, from, known } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(name, "tools");
    assert_eq!(from.as_deref(), Some("reasoning"));
    assert_eq!(known, &["answer", "reasoning"]);
    assert!(err
        .to_string()
        .contains("registered states: answer, reasoning"));

    let failure = machine.run(Env::from_user("2+2?")).await.unwrap_err();
    assert!(matches!(
        &failure.error,
        MachineError::UnknownState { name, .. } if name == "tools"
    ));
    assert!(failure.path.is_empty(), "no state ran: {:?}", failure.path);
    assert!(model.calls().is_empty(), "no model was called");

    // Registering it mends the machine; a single step never checked.
    let mended = machine.with_state(statewise_states::RunTools::new(tools()));
    mended.validate().unwrap();
    let out = mended.run(Env::from_user("2+2?")).await.unwrap();
    assert_eq!(out.answer.as_deref(), Some("4"));
}

#[tokio::test]
async fn states_that_declare_nothing_are_not_checked() {
    let machine =
        Machine::new("a").with_state(FnState::new("a", |_: &mut Env| Ok(()), |_: &Env| Next::End));
    machine.validate().unwrap();
    let declared = machine.clone().with_state(
        FnState::new("b", |_: &mut Env| Ok(()), |_: &Env| Next::End).with_targets([Next::to("c")]),
    );
    assert!(matches!(
        declared.validate(),
        Err(MachineError::UnknownState { ref name, .. }) if name == "c"
    ));
    // The entry is checked too.
    let no_entry = Machine::new("missing");
    assert!(matches!(
        no_entry.validate(),
        Err(MachineError::UnknownState { ref name, from: None, .. }) if name == "missing"
    ));
}

#[test]
fn the_stock_agent_draws_its_graph() {
    let model = Arc::new(ScriptedModel::new());
    let chart = statewise_states::agent(model, tools()).mermaid();
    // States by position in name order: answer, reasoning, tools.
    for line in [
        "flowchart TD",
        "s0[\"answer\"]",
        "s1[\"reasoning\"]",
        "s2[\"tools\"]",
        "start --> s1",
        "s2 --> s1",
        "s0 --> stop",
        "s1 --> s2",
        "s1 --> s0",
        "s1 --> s1",
    ] {
        assert!(
            chart.lines().any(|l| l.trim() == line),
            "{line:?} missing:\n{chart}"
        );
    }
    // A missing target and an undeclared state are drawn as such.
    let partial = Machine::new("reasoning")
        .with_state(Reasoning::new(Arc::new(ScriptedModel::new()), tools()))
        .with_state(FnState::new("x", |_: &mut Env| Ok(()), |_: &Env| Next::End))
        .mermaid();
    assert!(partial.contains("(not registered)"), "{partial}");
    assert!(partial.contains("-.-> undeclared"), "{partial}");
}
