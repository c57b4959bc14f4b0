//! Pauses for a person: a run that asks ends interrupted with a saved
//! checkpoint, and `resume_with` goes on from exactly there, running no
//! model call and no tool call twice; tool calls wait for approval and can
//! be rejected or edited; forks and sub-machines pass their branches'
//! requests up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use statewise::machine::finish;
use statewise::model::ScriptedModel;
use statewise::state::FnState;
use statewise::store::{MemoryStore, SqliteStore};
use statewise::tool::approval::Approvals;
use statewise::tool::{Tool, ToolRegistry, Toolbox};
use statewise::{
    Emit, EmitStream, Env, EventKind, Fork, Interrupt, Machine, MachineError, Next, Role,
    RunOutput, State, SubMachine,
};

use crate::support::temp_dir;

/// Moves money: the side effect that must happen once. Records each call.
#[derive(Clone, Default)]
struct Transfer {
    calls: Arc<Mutex<Vec<Value>>>,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct TransferArgs {
    to: String,
    amount: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl Tool for Transfer {
    type Args = TransferArgs;
    type Output = String;
    type Error = Never;

    fn name(&self) -> &str {
        "transfer"
    }
    fn description(&self) -> &str {
        "Sends money."
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {"to": {"type": "string"}, "amount": {"type": "integer"}}})
    }
    async fn call(
        &self,
        args: TransferArgs,
        _ctx: statewise::tool::ToolContext,
    ) -> Result<String, Never> {
        self.calls
            .lock()
            .unwrap()
            .push(json!({"to": args.to, "amount": args.amount}));
        Ok(format!("sent {} to {}", args.amount, args.to))
    }
}

fn tools(transfer: &Transfer) -> Toolbox {
    Toolbox::new(ToolRegistry::new().with(transfer.clone())).require_approval(["transfer"])
}

const CALL: &str =
    r#"{"tool_calls": [{"name": "transfer", "arguments": {"to": "bob", "amount": 40}}]}"#;

fn agent(model: &Arc<ScriptedModel>, transfer: &Transfer) -> Machine {
    statewise_states::agent(model.clone(), tools(transfer))
}

fn interrupted(out: &RunOutput) -> &Interrupt {
    out.interrupt().expect("the run paused for a person")
}

#[tokio::test]
async fn an_approval_survives_a_restart_and_runs_the_tool_once() {
    let db = temp_dir("approve").join("runs.sqlite");
    let transfer = Transfer::default();
    let first_model = Arc::new(ScriptedModel::new().text(CALL));
    let machine = agent(&first_model, &transfer).with_store(SqliteStore::open(&db).unwrap());
    let mut events = machine.stream_as("pay-1", Env::from_user("Pay bob 40"));
    let mut asked = None;
    let mut last = None;
    while let Some(event) = events.next().await {
        if let EventKind::Emitted(Emit::Interrupt(request)) = &event.kind {
            asked = Some(request.clone());
        }
        last = Some(event);
    }
    let EventKind::Interrupted(out) = last.unwrap().kind else {
        panic!("the run ends interrupted, not finished or failed");
    };
    let request = interrupted(&out);
    assert_eq!(asked.as_deref(), Some(request));
    assert_eq!(out.run_id, "pay-1");
    assert_eq!(
        (request.run_id.as_str(), request.branch.as_deref()),
        ("pay-1", None)
    );
    assert!(request.id.starts_with("approve:"), "{}", request.id);
    assert_eq!(request.payload["tool_calls"][0]["name"], "transfer");
    assert_eq!(request.payload["tool_calls"][0]["arguments"]["amount"], 40);
    assert!(request.schema.is_object());
    assert_eq!(out.answer, None);
    assert!(
        transfer.calls.lock().unwrap().is_empty(),
        "nothing ran before the response"
    );
    drop(machine);

    // A new process: a new machine on the same file, a model that only
    // knows the rest of the conversation.
    let second_model =
        Arc::new(ScriptedModel::new().text(r#"{"final_answer": "Sent 40 to bob."}"#));
    let store = SqliteStore::open(&db).unwrap();
    let machine = agent(&second_model, &transfer).with_store(store.clone());
    // Resuming without a response asks again, running nothing.
    let again = finish(machine.resume("pay-1").await.unwrap())
        .await
        .unwrap();
    assert_eq!(interrupted(&again).id, request.id);
    let out = finish(machine.resume_with("pay-1", json!(true)).await.unwrap())
        .await
        .unwrap();
    assert_eq!(out.answer.as_deref(), Some("Sent 40 to bob."));
    assert!(out.interrupt().is_none());
    assert_eq!(
        *transfer.calls.lock().unwrap(),
        [json!({"to": "bob", "amount": 40})]
    );
    // No model call was made again: one before the pause, one after.
    assert_eq!(first_model.calls().len(), 1);
    assert_eq!(second_model.calls().len(), 1);
    assert_eq!(
        out.path,
        ["reasoning", "tools", "tools", "reasoning", "answer"]
    );
    // A second response finds nobody waiting.
    assert!(matches!(
        machine.resume_with("pay-1", json!(true)).await,
        Err(MachineError::NotPaused { .. })
    ));
}

/// A run of the agent paused on its transfer call: the machine, the tool,
/// the model (whose second response is `answer`) and the call's id.
async fn paused_on_transfer(
    run_id: &str,
    answer: &str,
) -> (Machine, Transfer, Arc<ScriptedModel>, String) {
    let transfer = Transfer::default();
    let model = Arc::new(
        ScriptedModel::new()
            .text(CALL)
            .text(json!({ "final_answer": answer }).to_string()),
    );
    let machine = agent(&model, &transfer).with_store(MemoryStore::new());
    let out = machine
        .run_as(run_id, Env::from_user("Pay bob 40"))
        .await
        .unwrap();
    let call_id = interrupted(&out).payload["tool_calls"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (machine, transfer, model, call_id)
}

#[tokio::test]
async fn a_rejected_call_reaches_the_model_as_an_observation() {
    let (machine, transfer, model, call_id) =
        paused_on_transfer("pay-2", "I did not send it.").await;
    let response = Approvals::new()
        .reject(call_id, "not this month")
        .into_response();
    let out = finish(machine.resume_with("pay-2", response).await.unwrap())
        .await
        .unwrap();
    assert_eq!(out.answer.as_deref(), Some("I did not send it."));
    assert!(transfer.calls.lock().unwrap().is_empty());
    let observation = &out.env.observations[0];
    assert!(observation.is_error);
    // The model's second request carries the rejection.
    let second = &model.calls()[1].messages;
    assert!(
        second.iter().any(|m| m.role != Role::System
            && m.content.contains("rejected by the user: not this month")),
        "{second:#?}"
    );
}

#[tokio::test]
async fn a_person_can_edit_the_arguments_before_approving() {
    let (machine, transfer, _, call_id) = paused_on_transfer("pay-3", "Sent.").await;
    let response = Approvals::new()
        .edit(call_id, json!({"to": "bob", "amount": 25}))
        .into_response();
    finish(machine.resume_with("pay-3", response).await.unwrap())
        .await
        .unwrap();
    assert_eq!(
        *transfer.calls.lock().unwrap(),
        [json!({"to": "bob", "amount": 25})]
    );
}

/// Asks a person once per branch input, then answers with the response;
/// counts its work before and after asking.
#[derive(Clone, Default)]
struct Confirm {
    before: Arc<AtomicUsize>,
    after: Arc<AtomicUsize>,
}

impl State for Confirm {
    fn name(&self) -> &str {
        "confirm"
    }
    fn run<'a>(&'a self, env: &'a mut Env) -> EmitStream<'a> {
        Box::pin(statewise::try_stream! {
            let topic = env.input.clone().unwrap_or(Value::Null);
            let id = format!("confirm:{topic}");
            let Some(response) = env.response(&id).cloned() else {
                self.before.fetch_add(1, Ordering::SeqCst);
                // Only "b" needs a person.
                if topic != json!("b") {
                    env.answer = Some(format!("{topic}: fine"));
                    return;
                }
                yield Emit::Interrupt(Box::new(Interrupt::new(id, format!("Go ahead with {topic}?"))));
                return;
            };
            self.after.fetch_add(1, Ordering::SeqCst);
            env.answer = Some(format!("{topic}: {response}"));
        })
    }
    fn transition(&self, _env: &Env) -> Next {
        Next::End
    }
}

fn join_answers() -> FnState {
    FnState::new(
        "join",
        |env: &mut Env| {
            let answers: Vec<String> = env
                .branches
                .iter()
                .filter_map(|b| b.answer.clone())
                .collect();
            env.answer = Some(answers.join(", "));
            Ok(())
        },
        |_: &Env| Next::End,
    )
}

#[tokio::test]
async fn an_interrupt_in_a_fork_branch_pauses_the_run_and_says_which_branch() {
    let confirm = Confirm::default();
    let machine = Machine::new("plan")
        .with_state(FnState::new(
            "plan",
            |_: &mut Env| Ok(()),
            |_: &Env| {
                Next::fork(
                    ["a", "b", "c"]
                        .iter()
                        .fold(Fork::join_at("join"), |f, t| f.branch("confirm", json!(t))),
                )
            },
        ))
        .with_state(confirm.clone())
        .with_state(join_answers())
        .with_store(MemoryStore::new());
    let out = machine.run_as("f1", Env::new()).await.unwrap();
    let request = interrupted(&out);
    assert_eq!(request.branch.as_deref(), Some("plan/fork[1]"));
    assert_eq!(request.run_id, "f1/1/1");
    assert_eq!(request.prompt, "Go ahead with \"b\"?");
    assert_eq!(confirm.before.load(Ordering::SeqCst), 3);

    let out = finish(machine.resume_with("f1", json!("yes")).await.unwrap())
        .await
        .unwrap();
    assert_eq!(
        out.answer.as_deref(),
        Some("\"a\": fine, \"b\": \"yes\", \"c\": fine")
    );
    // The branches that had finished did not run again.
    assert_eq!(confirm.before.load(Ordering::SeqCst), 3);
    assert_eq!(confirm.after.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_interrupt_in_a_sub_machine_pauses_the_parent() {
    let confirm = Confirm::default();
    let inner = Machine::new("confirm").with_state(confirm.clone());
    let machine = Machine::new("check")
        .with_machine(SubMachine::new("check", inner).input(|env: &Env| {
            let mut child = env.clone();
            child.input = Some(json!("b"));
            child
        }))
        .with_store(MemoryStore::new());
    let out = machine.run_as("s1", Env::new()).await.unwrap();
    let request = interrupted(&out);
    assert_eq!(request.branch.as_deref(), Some("check"));
    assert_eq!(request.run_id, "s1/0/check");
    let out = finish(machine.resume_with("s1", json!("ok")).await.unwrap())
        .await
        .unwrap();
    // The default output takes back the child's answer.
    assert_eq!(out.answer.as_deref(), Some("\"b\": \"ok\""));
    assert_eq!(
        (
            confirm.before.load(Ordering::SeqCst),
            confirm.after.load(Ordering::SeqCst)
        ),
        (1, 1)
    );
    assert_eq!(out.path, ["check", "check"]);
}

#[tokio::test]
async fn a_transition_can_pause_the_run_too() {
    let ran = Arc::new(AtomicUsize::new(0));
    let counted = ran.clone();
    let machine = Machine::new("draft")
        .with_state(FnState::new(
            "draft",
            move |env: &mut Env| {
                counted.fetch_add(1, Ordering::SeqCst);
                env.answer = Some("draft 1".into());
                Ok(())
            },
            |_: &Env| {
                Next::interrupt(
                    Interrupt::new("review", "Publish this draft?"),
                    Next::to("publish"),
                )
            },
        ))
        .with_state(FnState::new(
            "publish",
            |env: &mut Env| {
                let verdict = env.response("review").cloned().unwrap_or_default();
                env.answer = Some(format!("published: {verdict}"));
                Ok(())
            },
            |_: &Env| Next::End,
        ))
        .with_store(MemoryStore::new());
    let out = machine.run_as("t1", Env::new()).await.unwrap();
    assert_eq!(interrupted(&out).id, "review");
    assert_eq!(out.answer.as_deref(), Some("draft 1"));
    let out = finish(machine.resume_with("t1", json!("approved")).await.unwrap())
        .await
        .unwrap();
    assert_eq!(out.answer.as_deref(), Some("published: \"approved\""));
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    assert_eq!(out.path, ["draft", "publish"]);
    // Without a store there is nothing to resume from.
    let bare = Machine::new("draft");
    assert!(matches!(
        bare.resume_with("t1", json!(1)).await,
        Err(MachineError::NoStore)
    ));
}

/// The approve example, killed (SIGKILL) while its question waits for an
/// answer, asks again when started again, and sends the email exactly
/// once after the answer.
#[test]
fn the_approve_example_survives_a_kill_between_question_and_answer() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    let exe = crate::support::example("approve");
    let dir = temp_dir("approve-kill");
    let db = dir.join("runs.sqlite");
    let outbox = dir.join("outbox.txt");
    let start = || {
        Command::new(&exe)
            .args(["--db", db.to_str().unwrap(), "--run", "mail-1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };

    let mut first = start();
    let (lines, seen) = std::sync::mpsc::channel();
    let stdout = first.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut shown = Vec::new();
    while !shown.iter().any(|l: &String| l.starts_with("approve?")) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match seen.recv_timeout(left) {
            Ok(line) => shown.push(line),
            Err(e) => panic!("the question never came ({e}): {shown:#?}"),
        }
    }
    assert!(
        shown.iter().any(|l| l.contains("send_email(")),
        "{shown:#?}"
    );
    first.kill().unwrap(); // SIGKILL, with the question unanswered
    first.wait().unwrap();
    assert!(!outbox.exists(), "nothing was sent before the answer");

    let mut second = start();
    second.stdin.take().unwrap().write_all(b"y\n").unwrap();
    let out = second.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("resuming run mail-1"), "{text}");
    assert!(
        text.contains("approve?"),
        "the question is asked again: {text}"
    );
    assert!(
        text.contains("answer: Done: the email was sent to team@example.com."),
        "{text}"
    );
    let sent = std::fs::read_to_string(&outbox).unwrap();
    assert_eq!(sent.lines().count(), 1, "{sent}");
}
