//! Replays from traces: a whole run offline, one step with another model,
//! a changed prompt found at the step it changes, steps as fixtures, and
//! the replay and trace_view examples.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use crate::support::temp_dir;
use statewise::model::{Reply, ScriptedModel, SharedModel};
use statewise::replay::{replay_step, NotRecorded, Recording, ReplayError};
use statewise::testkit::StepFixture;
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::trace::Tracer;
use statewise::{Action, Env, Machine, MachineError, Next, StateError, Usage};
use statewise_states::tools::Calculator;
use statewise_states::Reasoning;

fn agent(model: SharedModel) -> Machine {
    statewise_states::agent(model, Toolbox::new(ToolRegistry::new().with(Calculator)))
}

fn scripted() -> SharedModel {
    let usage = |p, c| Usage {
        prompt_tokens: p,
        completion_tokens: c,
        ..Usage::default()
    };
    Arc::new(
        ScriptedModel::new()
            .reply(
                Reply::text("{'tool_calls': [{'name': 'calculator', 'arguments': {'expression': '17 * 23'}}]}")
                    .with_usage(usage(200, 20)),
            )
            .reply(Reply::text(r#"{"final_answer": "17 * 23 = 391"}"#).with_usage(usage(250, 12))),
    )
}

/// Records one run of the scripted agent into `dir/trace.jsonl`.
async fn record(dir: &Path) -> PathBuf {
    let path = dir.join("trace.jsonl");
    agent(scripted())
        .with_tracer(Tracer::jsonl(&path).unwrap())
        .run(Env::from_user("What is 17 * 23?"))
        .await
        .unwrap();
    path
}

#[tokio::test]
async fn a_whole_run_replays_offline_with_the_same_answer() {
    let path = record(&temp_dir("replay-run")).await;
    let recording = Recording::from_jsonl(&path, None).unwrap();
    assert_eq!(recording.steps.len(), 4);
    // No scripted model now: only the recording answers.
    let model = recording.model();
    let replay = recording.replay(&agent(Arc::new(model))).await;
    assert!(replay.matches(), "{replay}");
    let out = replay.outcome.as_ref().unwrap();
    assert_eq!(out.answer.as_deref(), Some("17 * 23 = 391"));
    // The usage is the recorded one, so budgets decide alike.
    assert_eq!(out.env.usage.total_tokens(), 482);
    assert!(replay.to_string().starts_with("same answer and path"));
}

#[tokio::test]
async fn a_changed_prompt_fails_at_the_step_it_changes() {
    let path = record(&temp_dir("replay-prompt")).await;
    let recording = Recording::from_jsonl(&path, None).unwrap();
    let model: SharedModel = Arc::new(recording.model());
    let tools = Toolbox::new(ToolRegistry::new().with(Calculator));
    let changed = agent(model.clone())
        .with_state(Reasoning::new(model, tools).instructions("You are terse."));
    let replay = recording.replay(&changed).await;
    assert!(!replay.matches());
    let failure = replay.outcome.as_ref().unwrap_err();
    let not_recorded = match &failure.error {
        MachineError::State {
            source: StateError::Model(e),
            ..
        } => e.refusal::<NotRecorded>(),
        _ => None,
    };
    assert_eq!(
        not_recorded.map(|n| n.recorded),
        Some(2),
        "{}",
        failure.error
    );
    assert!(
        replay.to_string().contains("failed at step 1 (reasoning)"),
        "{replay}"
    );
}

#[tokio::test]
async fn one_step_reruns_with_another_model_and_shows_the_difference() {
    let path = record(&temp_dir("replay-step")).await;
    let recording = Recording::from_jsonl(&path, None).unwrap();
    let step = recording.step(1).unwrap();

    let same = replay_step(&agent(Arc::new(recording.model())), step).await;
    assert!(same.same(), "{same}");

    let other: SharedModel =
        Arc::new(ScriptedModel::new().text(r#"{"final_answer": "about 400"}"#));
    let diff = replay_step(&agent(other), step).await;
    assert!(!diff.same());
    let fields: Vec<&str> = diff.differences().iter().map(|d| d.0).collect();
    // Reasoning gives a final answer itself, so the step's answer differs too.
    assert_eq!(fields, ["text", "action", "next", "answer"]);
    assert_eq!(diff.replayed.next, Some(Next::to("answer")));
    assert_eq!(
        diff.replayed.action,
        Some(Action::FinalAnswer("about 400".into()))
    );
    let shown = diff.to_string();
    assert!(
        shown.contains("- {\"to\":\"tools\"}") && shown.contains("+ {\"to\":\"answer\"}"),
        "{shown}"
    );
}

#[tokio::test]
async fn every_recorded_step_becomes_a_passing_fixture() {
    let path = record(&temp_dir("replay-fixture")).await;
    let recording = Recording::from_jsonl(&path, None).unwrap();
    for step in &recording.steps {
        let fixture = step.to_fixture(format!("step {}", step.step));
        // Through JSON, as a fixture file would be.
        let text = serde_json::to_string_pretty(&fixture).unwrap();
        let fixture = StepFixture::from_json(&text).unwrap();
        let machine = agent(Arc::new(fixture.model()));
        fixture
            .check(&machine)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
    }
    // The fixture of the tool step checks the tool's output.
    let fixture = recording.step(2).unwrap().to_fixture("tools");
    let broken = serde_json::to_string(&fixture)
        .unwrap()
        .replace("391", "392");
    let broken = StepFixture::from_json(&broken).unwrap();
    assert!(broken
        .check(&agent(Arc::new(broken.model())))
        .await
        .is_err());
}

#[tokio::test]
async fn a_failed_step_becomes_a_fixture_expecting_the_failure() {
    let path = temp_dir("replay-failed").join("trace.jsonl");
    let failing: SharedModel = Arc::new(ScriptedModel::new().error("overloaded"));
    agent(failing)
        .with_tracer(Tracer::jsonl(&path).unwrap())
        .run(Env::from_user("hi"))
        .await
        .unwrap_err();
    let recording = Recording::from_jsonl(&path, None).unwrap();
    assert!(recording.end.as_ref().unwrap().error.is_some());
    let fixture = recording.step(1).unwrap().to_fixture("model down");
    assert_eq!(fixture.expect.error.as_deref(), Some("model"));
    fixture
        .check(&agent(Arc::new(fixture.model())))
        .await
        .unwrap();
}

#[test]
fn a_missing_run_is_a_typed_error() {
    let err = Recording::from_records(&[], None).unwrap_err();
    assert!(matches!(err, ReplayError::NoSuchRun { .. }));
    assert!(matches!(
        Recording::from_jsonl("/nonexistent/trace.jsonl", None),
        Err(ReplayError::Trace(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replay_and_trace_view_examples_read_a_recorded_trace() {
    let dir = temp_dir("replay-examples");
    let path = record(&dir).await;
    let run = |name: &str, args: &[&str]| {
        let out = Command::new(support::example(name))
            .arg(&path)
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(
            out.status.success(),
            "{name}: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let whole = run("replay", &[]);
    assert!(
        whole.contains("same answer and path (4 steps): 17 * 23 = 391"),
        "{whole}"
    );
    let fixture = dir.join("step1.json");
    run(
        "replay",
        &["--step", "1", "--fixture", fixture.to_str().unwrap()],
    );
    let fixture = StepFixture::load(&fixture).unwrap();
    assert_eq!(fixture.state, "reasoning");
    assert_eq!(fixture.replies.len(), 1);

    let view = run("trace_view", &[]);
    assert!(
        view.contains("calculator({\"expression\":\"17 * 23\"}) = 391"),
        "{view}"
    );
    assert!(view.contains("answer: 17 * 23 = 391"), "{view}");
    assert!(view.contains("```mermaid\nflowchart LR"), "{view}");
    assert!(
        view.contains("s1 --> s2") && view.contains("s4 --> stop"),
        "{view}"
    );
}

/// A run cut off and resumed (two "processes", one trace) replays as one
/// run from its first start.
#[tokio::test]
async fn a_resumed_run_replays_from_its_first_start() {
    use futures::StreamExt;
    let path = temp_dir("replay-resumed").join("trace.jsonl");
    let store = statewise::store::MemoryStore::new();
    let traced = |model| {
        agent(model)
            .with_store(store.clone())
            .with_tracer(Tracer::jsonl(&path).unwrap())
    };
    let mut events = traced(scripted()).stream_as("r", Env::from_user("What is 17 * 23?"));
    while let Some(e) = events.next().await {
        if matches!(e.kind, statewise::EventKind::StateEntered) && e.step == 3 {
            break;
        }
    }
    drop(events);
    // The second process has the rest of the script: the answer.
    let rest: SharedModel =
        Arc::new(ScriptedModel::new().text(r#"{"final_answer": "17 * 23 = 391"}"#));
    let resumed = statewise::machine::finish(traced(rest).resume("r").await.unwrap())
        .await
        .unwrap();
    assert_eq!(resumed.path.len(), 4);

    let recording = Recording::from_jsonl(&path, Some("r")).unwrap();
    assert_eq!(recording.start.resumed_at, None);
    let steps: Vec<u32> = recording.steps.iter().map(|s| s.step).collect();
    assert_eq!(steps, [1, 2, 3, 4]);
    let replay = recording.replay(&agent(Arc::new(recording.model()))).await;
    assert!(replay.matches(), "{replay}");
}
