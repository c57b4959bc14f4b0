//! The whole Reasoning → Action → Answer loop against a scripted model.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use statewise::model::ScriptedModel;
use statewise::state::FnState;
use statewise::tool::{Tool, ToolRegistry, Toolbox};
use statewise::{Emit, Env, EventKind, Machine, MachineError, Next, Role};
use statewise_states::tools::Calculator;
use statewise_states::{agent, Answer, Reasoning, RepeatedCall, RunTools};
use tokio::sync::Barrier;

/// A tool that returns only once `parties` calls are waiting together, so a
/// run that calls tools one after another never finishes.
struct Rendezvous {
    barrier: Arc<Barrier>,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct RendezvousArgs {
    label: String,
    /// Extra yields before returning, to make calls finish out of order.
    #[serde(default)]
    linger: u32,
}

impl Tool for Rendezvous {
    type Args = RendezvousArgs;
    type Output = String;
    type Error = std::convert::Infallible;

    fn name(&self) -> &str {
        "rendezvous"
    }
    fn description(&self) -> &str {
        "Waits for the other calls."
    }
    fn parameters(&self) -> Value {
        json!({"type": "object"})
    }
    async fn call(
        &self,
        args: RendezvousArgs,
        _ctx: statewise::tool::ToolContext,
    ) -> Result<String, Self::Error> {
        self.barrier.wait().await;
        for _ in 0..args.linger {
            tokio::task::yield_now().await;
        }
        Ok(format!("{} done", args.label))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the disk is full")]
struct DiskFull;

struct Failing;

impl Tool for Failing {
    type Args = Value;
    type Output = Value;
    type Error = DiskFull;

    fn name(&self) -> &str {
        "save"
    }
    fn description(&self) -> &str {
        "Always fails."
    }
    fn parameters(&self) -> Value {
        json!({"type": "object"})
    }
    async fn call(&self, _: Value, _ctx: statewise::tool::ToolContext) -> Result<Value, DiskFull> {
        Err(DiskFull)
    }
}

fn registry() -> Toolbox {
    Toolbox::new(
        ToolRegistry::new()
            .with(Calculator)
            .with(Failing)
            .with(Rendezvous {
                barrier: Arc::new(Barrier::new(2)),
            }),
    )
}

/// Every run gets an outer bound, so a hang fails instead of blocking CI.
async fn run(
    machine: &Machine,
    question: &str,
) -> Result<statewise::RunOutput, statewise::RunFailure> {
    tokio::time::timeout(
        Duration::from_secs(10),
        machine.run(Env::from_user(question)),
    )
    .await
    .expect("run did not finish within 10 s")
}

#[tokio::test]
async fn one_tool_call() {
    let model = Arc::new(
        ScriptedModel::new()
            .text(r#"{"tool_calls": [{"name": "calculator", "arguments": {"expression": "6*7"}}]}"#)
            .text(r#"{"final_answer": "6*7 is 42."}"#),
    );
    let out = run(&agent(model.clone(), registry()), "What is 6*7?")
        .await
        .unwrap();
    assert_eq!(out.answer.as_deref(), Some("6*7 is 42."));
    assert_eq!(out.path, ["reasoning", "tools", "reasoning", "answer"]);
    assert_eq!(out.env.observations[0].content, json!(42));
    // The second request showed the model the observation.
    let second = &model.calls()[1].messages;
    assert!(second
        .iter()
        .any(|m| m.role == Role::User && m.content.contains("Observation from `calculator`")));
    model.assert_complete();
}

#[tokio::test]
async fn two_tool_calls_run_concurrently_and_are_recorded_in_call_order() {
    // Call "first" lingers after the rendezvous, so it finishes second.
    let model = Arc::new(
        ScriptedModel::new()
            .text(
                r#"{"tool_calls": [
                {"name": "rendezvous", "arguments": {"label": "first", "linger": 50}},
                {"name": "rendezvous", "arguments": {"label": "second"}}]}"#,
            )
            .text(r#"{"final_answer": "both done"}"#),
    );
    let machine = agent(model, registry());
    let mut events = machine.stream(Env::from_user("go"));
    let mut finished = Vec::new();
    let mut output = None;
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(e) = events.next().await {
            match e.kind {
                EventKind::Emitted(Emit::ToolCallFinished { call_id, .. }) => {
                    finished.push(call_id)
                }
                EventKind::Finished(out) => output = Some(out),
                _ => {}
            }
        }
    })
    .await
    .expect("the two calls never met: they did not run concurrently");
    let out = output.expect("run finished");
    assert_eq!(finished, ["call_1_1", "call_1_0"], "completion order");
    let contents: Vec<_> = out.env.observations.iter().map(|o| o.render()).collect();
    assert_eq!(contents, ["first done", "second done"], "call order");
}

#[tokio::test]
async fn an_unknown_tool_becomes_an_observation() {
    let model = Arc::new(
        ScriptedModel::new()
            .text(r#"{"name": "weather", "arguments": {"city": "Paris"}}"#)
            .text(r#"{"final_answer": "I cannot check the weather."}"#),
    );
    let out = run(&agent(model.clone(), registry()), "Weather?")
        .await
        .unwrap();
    let obs = &out.env.observations[0];
    assert!(obs.is_error);
    assert!(
        obs.render().contains("unknown tool `weather`"),
        "{}",
        obs.render()
    );
    assert!(obs.render().contains("calculator"), "lists what exists");
    assert!(model.calls()[1]
        .messages
        .iter()
        .any(|m| m.content.contains("unknown tool `weather`")));
}

#[tokio::test]
async fn a_failing_tool_becomes_an_observation() {
    let model = Arc::new(
        ScriptedModel::new()
            .text(r#"{"name": "save", "arguments": {}}"#)
            .text(r#"{"final_answer": "Saving failed."}"#),
    );
    let out = run(&agent(model, registry()), "Save it").await.unwrap();
    assert_eq!(out.answer.as_deref(), Some("Saving failed."));
    assert!(out.env.observations[0].is_error);
    assert!(out.env.observations[0]
        .render()
        .contains("the disk is full"));
}

#[tokio::test]
async fn a_malformed_action_is_repaired() {
    let model = Arc::new(
        ScriptedModel::new()
            .text("Let me compute.\n```json\n{tool_calls: [{name: 'calculator', arguments: {expression: '2+2'},},]\n```")
            .text("{'final_answer': 'Four.'"),
    );
    let out = run(&agent(model, registry()), "2+2?").await.unwrap();
    assert_eq!(out.env.observations[0].content, json!(4));
    assert_eq!(out.answer.as_deref(), Some("Four."));
    assert_eq!(out.path, ["reasoning", "tools", "reasoning", "answer"]);
}

#[tokio::test]
async fn an_unparseable_action_is_retried_then_answered() {
    let model = Arc::new(
        ScriptedModel::new()
            .text(r#"{"oops": 4}"#)
            .text(r#"{"final_answer": "4"}"#),
    );
    let out = run(&agent(model.clone(), registry()), "2+2?")
        .await
        .unwrap();
    assert_eq!(out.answer.as_deref(), Some("4"));
    assert_eq!(out.path, ["reasoning", "reasoning", "answer"]);
    let retry = model.calls()[1].messages.last().cloned().unwrap();
    assert!(
        retry.content.contains("could not be read as an action"),
        "{}",
        retry.content
    );
    assert_eq!(
        out.env
            .scratch
            .get::<u32>("reasoning.parse_failures")
            .unwrap(),
        Some(1),
        "the count is the run's, kept after a good reply"
    );
}

#[tokio::test]
async fn a_prose_reply_after_an_observation_is_the_answer() {
    let model = Arc::new(
        ScriptedModel::new()
            .text(
                r#"{"tool_calls": [{"name": "calculator", "arguments": {"expression": "6 * 7"}}]}"#,
            )
            .text("The final answer is 42."),
    );
    let out = run(&agent(model.clone(), registry()), "6*7?")
        .await
        .unwrap();
    assert_eq!(out.answer.as_deref(), Some("The final answer is 42."));
    assert_eq!(out.path, ["reasoning", "tools", "reasoning", "answer"]);
    model.assert_complete();
}

#[tokio::test]
async fn unparseable_actions_end_in_a_typed_error() {
    let model = Arc::new(
        ScriptedModel::new()
            .text(r#"{"oops": 1}"#)
            .text("{'oops': 'no'}")
            .text("[]"),
    );
    let failure = run(&agent(model.clone(), registry()), "?")
        .await
        .unwrap_err();
    assert_eq!(failure.error.code(), "action");
    assert_eq!(failure.path, ["reasoning"; 3]);
    model.assert_complete();
}

#[tokio::test]
async fn unreadable_replies_between_tool_calls_still_end_the_run() {
    // Tool call, unreadable, tool call, unreadable, ...: a counter reset by
    // every good reply would let this run until the step limit.
    // Different calls each time, so the repeated-call guard stays out of it.
    let model = Arc::new(ScriptedModel::from_script(
        "alternating",
        (0..10).map(|i| {
            let text = match i % 2 {
                0 => format!(
                    r#"{{"tool_calls": [{{"name": "calculator", "arguments": {{"expression": "{i} + 1"}}}}]}}"#
                ),
                _ => r#"{"oops": true}"#.to_owned(),
            };
            statewise::model::Scripted::Reply(statewise::model::Reply::text(text))
        }),
    ));
    let failure = run(&agent(model.clone(), registry()), "?")
        .await
        .unwrap_err();
    match &failure.error {
        MachineError::State {
            source: statewise::StateError::Action { attempts: 3, .. },
            ..
        } => {}
        other => panic!("unexpected {other:?}"),
    }
    // Three tool rounds, the third unreadable reply ends it: 6 model calls.
    assert_eq!(model.calls().len(), 6);
}

#[tokio::test]
async fn a_call_repeated_forever_still_gets_an_answer() {
    let call = r#"{"tool_calls": [{"name": "calculator", "arguments": {"expression": "2 + 3"}}]}"#;
    let model = Arc::new(ScriptedModel::from_script(
        "repeats",
        (0..50).map(|_| statewise::model::Scripted::Reply(statewise::model::Reply::text(call))),
    ));
    let machine = agent(model.clone(), registry());
    let events: Vec<_> = machine.stream(Env::from_user("2+3?")).collect().await;
    let repeated: Vec<_> = events
        .iter()
        .filter_map(|e| e.custom::<RepeatedCall>())
        .map(|r| (r.tool, r.arguments, r.times))
        .collect();
    assert_eq!(
        repeated,
        [("calculator".to_owned(), json!({"expression": "2 + 3"}), 2)]
    );
    let out = match &events.last().unwrap().kind {
        EventKind::Finished(out) => out.clone(),
        other => panic!("the run did not finish: {other:?}"),
    };
    // The model called the tool a third time anyway: the observation it
    // already had is the answer.
    assert_eq!(out.answer.as_deref(), Some("5"));
    assert_eq!(
        out.path,
        [
            "reasoning",
            "tools",
            "reasoning",
            "tools",
            "reasoning",
            "answer"
        ]
    );
    // The second call was answered from the first one's observation: the
    // tool ran once.
    assert_eq!(out.env.observations.len(), 2);
    assert_eq!(
        out.env.observations[0].content,
        out.env.observations[1].content
    );
    let started = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Emitted(Emit::ToolCallStarted(_))))
        .count();
    assert_eq!(started, 1, "the tool ran once");
    let third = &model.calls()[2];
    assert!(
        !third.messages[0]
            .content
            .contains("You can call these tools"),
        "no tools offered after the repeat: {}",
        third.messages[0].content
    );
    assert!(third
        .messages
        .last()
        .unwrap()
        .content
        .contains("No more tools"));
}

#[tokio::test]
async fn a_model_told_to_stop_repeating_answers_itself() {
    let call = r#"{"tool_calls": [{"name": "calculator", "arguments": {"expression": "2 + 3"}}]}"#;
    let model = Arc::new(
        ScriptedModel::new()
            .text(call)
            .text(call)
            .text(r#"{"final_answer": "2 + 3 is 5."}"#),
    );
    let out = run(&agent(model.clone(), registry()), "2+3?")
        .await
        .unwrap();
    assert_eq!(out.answer.as_deref(), Some("2 + 3 is 5."));
    model.assert_complete();
}

#[tokio::test]
async fn different_calls_are_not_repeats() {
    let call = |e: &str| {
        format!(
            r#"{{"tool_calls": [{{"name": "calculator", "arguments": {{"expression": "{e}"}}}}]}}"#
        )
    };
    let model = Arc::new(
        ScriptedModel::new()
            .text(call("1 + 1"))
            .text(call("2 + 2"))
            .text(call("3 + 3"))
            .text(r#"{"final_answer": "done"}"#),
    );
    let out = run(&agent(model.clone(), registry()), "sums")
        .await
        .unwrap();
    assert_eq!(out.env.observations.len(), 3);
    assert!(!out.env.scratch.contains("reasoning.tools_withdrawn"));
    model.assert_complete();
}

#[tokio::test]
async fn max_steps_is_a_typed_error() {
    let looping = r#"{"name": "calculator", "arguments": {"expression": "1"}}"#;
    let model = Arc::new(ScriptedModel::from_script(
        "loop",
        (0..10).map(|_| statewise::model::Scripted::Reply(statewise::model::Reply::text(looping))),
    ));
    let machine = agent(model, registry()).max_steps(5);
    let failure = run(&machine, "loop").await.unwrap_err();
    assert!(matches!(failure.error, MachineError::MaxSteps { limit: 5 }));
    assert_eq!(failure.env.step, 5);
    assert_eq!(failure.path.len(), 5);
    assert_eq!(
        failure.env.observations.len(),
        2,
        "work done so far is kept"
    );
}

#[tokio::test]
async fn running_past_the_script_is_a_clear_error() {
    let model = Arc::new(
        ScriptedModel::new().text(r#"{"name": "calculator", "arguments": {"expression": "1"}}"#),
    );
    let failure = run(&agent(model, registry()), "?").await.unwrap_err();
    assert!(
        failure.error.code().starts_with("model:"),
        "{}",
        failure.error.code()
    );
    assert!(
        failure
            .to_string()
            .contains("got call #2 but its script held only 1"),
        "{failure}"
    );
}

#[tokio::test]
async fn a_custom_state_in_the_loop() {
    // A guard between Action and Reasoning that stops once a tool failed.
    let guard = FnState::new(
        "guard",
        |env: &mut Env| {
            if env.observations.iter().any(|o| o.is_error) {
                env.answer = Some("A tool failed; stopping.".into());
            }
            Ok(())
        },
        |env: &Env| {
            if env.answer.is_some() {
                Next::End
            } else {
                Next::to("reasoning")
            }
        },
    );
    let model = Arc::new(
        ScriptedModel::new()
            .text(r#"{"name": "calculator", "arguments": {"expression": "1+1"}}"#)
            .text(r#"{"name": "save", "arguments": {}}"#),
    );
    let tools = registry();
    let machine = Machine::new("reasoning")
        .with_state(Reasoning::new(model.clone(), tools.clone()))
        .with_state(RunTools::new(tools).then("guard"))
        .with_state(Answer::new())
        .with_state(guard);
    let out = run(&machine, "save 1+1").await.unwrap();
    assert_eq!(
        out.path,
        ["reasoning", "tools", "guard", "reasoning", "tools", "guard"]
    );
    assert_eq!(out.answer.as_deref(), Some("A tool failed; stopping."));
    model.assert_complete();
}

#[tokio::test]
async fn an_unknown_next_state_is_a_typed_error() {
    // Declared (Reasoning declares `respond`): refused before any call.
    let model = Arc::new(ScriptedModel::new().text(r#"{"final_answer": "x"}"#));
    let machine = Machine::new("reasoning")
        .with_state(Reasoning::new(model.clone(), registry()).on_answer("respond"));
    let failure = run(&machine, "?").await.unwrap_err();
    match &failure.error {
        MachineError::UnknownState { name, from, known } => {
            assert_eq!(name, "respond");
            assert_eq!(from.as_deref(), Some("reasoning"));
            assert_eq!(known, &["reasoning"]);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(model.calls().is_empty());

    // Undeclared: found when the transition names it, after the state ran.
    let machine = Machine::new("guess").with_state(statewise::state::FnState::new(
        "guess",
        |env: &mut Env| {
            env.answer = Some("x".into());
            Ok(())
        },
        |_: &Env| Next::to("respond"),
    ));
    let failure = run(&machine, "?").await.unwrap_err();
    match &failure.error {
        MachineError::UnknownState { name, from, known } => {
            assert_eq!(name, "respond");
            assert_eq!(from.as_deref(), Some("guess"));
            assert_eq!(known, &["guess"]);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(failure.env.answer.as_deref(), Some("x"));
}

#[tokio::test]
async fn streaming_and_run_give_the_same_result() {
    let script = || {
        Arc::new(
            ScriptedModel::new()
                .text(r#"{"name": "calculator", "arguments": {"expression": "3*3"}}"#)
                .text(r#"{"final_answer": "Nine."}"#),
        )
    };
    let ran = run(&agent(script(), registry()), "3*3").await.unwrap();
    let events: Vec<_> = agent(script(), registry())
        .stream(Env::from_user("3*3"))
        .collect()
        .await;
    let Some(EventKind::Finished(streamed)) = events.last().map(|e| &e.kind) else {
        panic!("last event is not Finished");
    };
    // Each run gets its own id; all else is the same.
    assert_ne!(streamed.run_id, ran.run_id);
    let streamed = statewise::RunOutput {
        run_id: ran.run_id.clone(),
        ..(**streamed).clone()
    };
    assert_eq!(streamed, ran);
    // Every state is entered and exited once per step, in order.
    let entered = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::StateEntered))
        .count();
    let exited = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::StateExited { .. }))
        .count();
    assert_eq!((entered, exited), (4, 4));
    // The answer streamed once: decoded while Reasoning read it, nothing
    // sent again by Answer.
    assert_eq!(crate::support::answer_text(&events), "Nine.");
    let answer_tokens: String = events
        .iter()
        .filter(|e| &*e.state == "answer")
        .filter_map(|e| e.token())
        .collect();
    assert_eq!(answer_tokens, "", "nothing is sent twice");
    // Events serialize for web clients.
    let json = serde_json::to_value(&events[0]).unwrap();
    assert_eq!(
        json,
        json!({"step": 1, "state": "reasoning", "type": "state_entered"})
    );
}

#[tokio::test]
async fn states_can_be_registered_between_runs() {
    let mut machine =
        Machine::new("start").with_state(FnState::new("start", |_| Ok(()), |_| Next::to("later")));
    let failure = machine.run(Env::new()).await.unwrap_err();
    assert_eq!(failure.error.code(), "unknown_state");
    let snapshot = machine.clone();
    machine.register(FnState::new(
        "later",
        |env: &mut Env| {
            env.answer = Some("registered".into());
            Ok(())
        },
        |_| Next::End,
    ));
    assert_eq!(
        machine.run(Env::new()).await.unwrap().answer.as_deref(),
        Some("registered")
    );
    assert!(
        snapshot.run(Env::new()).await.is_err(),
        "clones are snapshots"
    );
}

/// A tool that counts how often it runs: what a tool with effects does.
struct Counting {
    runs: Arc<std::sync::atomic::AtomicU32>,
}

impl Tool for Counting {
    type Args = Value;
    type Output = u32;
    type Error = std::convert::Infallible;

    fn name(&self) -> &str {
        "count"
    }
    fn description(&self) -> &str {
        "Counts its runs."
    }
    fn parameters(&self) -> Value {
        json!({"type": "object"})
    }
    async fn call(&self, _: Value, _ctx: statewise::tool::ToolContext) -> Result<u32, Self::Error> {
        Ok(self.runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1)
    }
}

#[tokio::test]
async fn a_repeated_call_in_another_key_order_is_answered_without_running_again() {
    let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let tools = Toolbox::new(ToolRegistry::new().with(Counting { runs: runs.clone() }));
    let model = Arc::new(
        ScriptedModel::new()
            .text(r#"{"tool_calls": [{"name": "count", "arguments": {"a": 1, "b": {"x": [1, 2], "y": "z"}}}]}"#)
            .text(r#"{"tool_calls": [{"name": "count", "arguments": {"b": {"y": "z", "x": [1, 2]}, "a": 1}}]}"#)
            .text(r#"{"tool_calls": [{"name": "count", "arguments": {"a": 2}}]}"#)
            .text(r#"{"final_answer": "done"}"#)
            // The next request: the same call runs again.
            .text(r#"{"tool_calls": [{"name": "count", "arguments": {"a": 1, "b": {"x": [1, 2], "y": "z"}}}]}"#)
            .text(r#"{"final_answer": "again"}"#),
    );
    // Not withdrawn for the repeat: the state under test answers it.
    let machine = Machine::new("reasoning")
        .with_state(Reasoning::new(model.clone(), tools.clone()).max_repeated_calls(3))
        .with_state(RunTools::new(tools))
        .with_state(Answer::new());
    let out = run(&machine, "count").await.unwrap();
    let contents: Vec<Value> = out
        .env
        .observations
        .iter()
        .map(|o| o.content.clone())
        .collect();
    // The repeat got the first call's observation; other arguments ran.
    assert_eq!(contents, [json!(1), json!(1), json!(2)]);
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 2);
    let ids: Vec<&str> = out
        .env
        .observations
        .iter()
        .map(|o| o.call_id.as_str())
        .collect();
    assert_eq!(ids.len(), 3);
    assert_ne!(ids[0], ids[1], "each call gets its own observation");

    let mut env = out.env;
    env.messages
        .push(statewise::Message::user("count once more"));
    let out = machine.run(env).await.unwrap();
    assert_eq!(out.answer.as_deref(), Some("again"));
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert_eq!(out.env.observations.last().unwrap().content, json!(3));
}
