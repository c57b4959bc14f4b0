//! Fan-out and join, and sub-machines: branches run concurrently on their
//! own envs and the join sees them all; a fork cut off midway resumes and
//! runs only the branches that had not finished; a sub-machine's events
//! arrive nested under its name.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use statewise::state::FnState;
use statewise::store::{MemoryStore, SqliteStore, Store};
use statewise::{
    Emit, EmitStream, Env, EventKind, Fork, Machine, MachineError, Next, State, StateError,
    SubMachine,
};

use crate::support::temp_dir;

/// Searches for its branch's input: counts its runs per input, spends ten
/// prompt tokens, fails on `"boom"`, and waits `pause` first.
#[derive(Clone, Default)]
struct Search {
    runs: Arc<Mutex<BTreeMap<String, u32>>>,
    in_flight: Arc<AtomicUsize>,
    most_in_flight: Arc<AtomicUsize>,
    pause: Duration,
    /// Inputs that never finish (a process about to be killed).
    hang_on: Option<String>,
}

impl Search {
    fn runs(&self) -> BTreeMap<String, u32> {
        self.runs.lock().unwrap().clone()
    }
}

impl State for Search {
    fn name(&self) -> &str {
        "search"
    }

    fn run<'a>(&'a self, env: &'a mut Env) -> EmitStream<'a> {
        Box::pin(statewise::try_stream! {
            let query = env.input.as_ref().and_then(|v| v.as_str()).unwrap_or_default().to_owned();
            *self.runs.lock().unwrap().entry(query.clone()).or_default() += 1;
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_in_flight.fetch_max(now, Ordering::SeqCst);
            yield Emit::Token(format!("searching {query}"));
            tokio::time::sleep(self.pause).await;
            if self.hang_on.as_deref() == Some(query.as_str()) {
                futures::future::pending::<()>().await;
            }
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            env.usage.prompt_tokens += 10;
            if query == "boom" {
                Err(StateError::custom("search index offline"))?;
            }
            env.scratch.set("hits", &query.len())?;
            env.observations.push(statewise::Observation {
                call_id: query.clone(),
                tool: "search".into(),
                content: json!(format!("results for {query}")),
                is_error: false,
            });
            env.answer = Some(format!("found {query}"));
        })
    }

    fn transition(&self, _env: &Env) -> Next {
        Next::End
    }
}

const QUERIES: [&str; 5] = ["rust", "tokio", "boom", "serde", "axum"];

fn agent(search: Search, fork: impl Fn(Fork) -> Fork + Send + Sync + 'static) -> Machine {
    let plan = FnState::new(
        "plan",
        |env: &mut Env| {
            env.usage.prompt_tokens += 1;
            Ok(())
        },
        move |_: &Env| {
            let branches = QUERIES.iter().fold(Fork::join_at("summarize"), |f, q| {
                f.branch("search", json!(q))
            });
            Next::fork(fork(branches))
        },
    );
    let summarize = FnState::new(
        "summarize",
        |env: &mut Env| {
            let parts: Vec<String> = env
                .branches
                .iter()
                .map(|b| match (&b.answer, &b.error) {
                    (Some(answer), None) => answer.clone(),
                    (_, Some(error)) => format!("[{} failed: {}]", b.input, error.kind),
                    (None, None) => "[nothing]".to_owned(),
                })
                .collect();
            env.answer = Some(parts.join("; "));
            Ok(())
        },
        |_: &Env| Next::End,
    );
    Machine::new("plan")
        .with_state(plan)
        .with_state(search)
        .with_state(summarize)
}

#[tokio::test]
async fn a_five_branch_fork_with_a_failing_branch_is_joined() {
    let search = Search {
        pause: Duration::from_millis(5),
        ..Search::default()
    };
    let machine = agent(search.clone(), |f| f);
    let mut events = machine.stream(Env::from_user("compare"));
    let mut tagged = Vec::new();
    let mut last = None;
    while let Some(event) = events.next().await {
        if let EventKind::Emitted(Emit::Token(t)) = &event.kind {
            tagged.push((event.path(), t.clone()));
        }
        last = Some(event);
    }
    let EventKind::Finished(out) = last.unwrap().kind else {
        panic!("the run finishes: a failed branch does not fail the fork by default");
    };
    assert_eq!(
        out.answer.as_deref(),
        Some("found rust; found tokio; [\"boom\" failed: custom]; found serde; found axum")
    );
    assert_eq!(out.path, ["plan", "summarize"]);
    // The join saw every branch: answer, scratch, observations, usage, error.
    let branches = &out.env.branches;
    assert_eq!(branches.len(), 5);
    assert_eq!(branches[3].scratch.get::<usize>("hits").unwrap(), Some(5));
    assert_eq!(branches[3].observations.len(), 1);
    assert_eq!(branches[3].usage.prompt_tokens, 10);
    assert_eq!(branches[3].path, ["search"]);
    let failed = branches[2].error.as_ref().unwrap();
    assert!(failed.message.contains("search index offline"));
    // The branches' usage is summed into the run's: 1 (plan) + 5 x 10.
    assert_eq!(out.usage().prompt_tokens, 51);
    // Every branch ran concurrently; their events say which branch.
    assert_eq!(search.most_in_flight.load(Ordering::SeqCst), 5);
    for (i, q) in QUERIES.iter().enumerate() {
        let path = format!("plan/fork[{i}]/search");
        assert!(
            tagged.contains(&(path.clone(), format!("searching {q}"))),
            "{path}: {tagged:?}"
        );
    }
}

#[tokio::test]
async fn a_fail_fast_fork_fails_at_the_first_failed_branch() {
    let search = Search::default();
    let machine = agent(search, |f| f.fail_fast());
    let failure = machine.run(Env::from_user("compare")).await.unwrap_err();
    let MachineError::Branch { branch, source } = &failure.error else {
        panic!("{:?}", failure.error);
    };
    assert_eq!(branch, "plan/fork[2]");
    assert!(matches!(**source, MachineError::State { .. }));
    assert_eq!(failure.error.code(), "custom");
}

#[tokio::test]
async fn a_fork_caps_its_concurrency() {
    let search = Search {
        pause: Duration::from_millis(10),
        ..Search::default()
    };
    let machine = agent(search.clone(), |f| f.max_concurrency(2));
    let out = machine.run(Env::from_user("compare")).await.unwrap();
    assert_eq!(out.env.branches.len(), 5);
    assert_eq!(search.most_in_flight.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_budget_holds_for_all_branches_together() {
    // Each branch spends 10 tokens, far below the 35 allowed; one at a
    // time, the run passes 35 in the fourth branch.
    let machine = agent(Search::default(), |f| f.max_concurrency(1)).max_tokens(35);
    let failure = machine.run(Env::from_user("compare")).await.unwrap_err();
    let kinds: Vec<Option<&str>> = failure
        .env
        .branches
        .iter()
        .map(|b| b.error.as_ref().map(|e| e.kind.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [None, None, Some("custom"), Some("budget"), Some("budget")]
    );
    // And the run as a whole is over budget.
    assert!(matches!(failure.error, MachineError::Budget { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_cut_off_midway_resumes_and_runs_only_the_unfinished_branches() {
    let dir = temp_dir("fork-resume");
    let db = dir.join("runs.sqlite");
    // One branch at a time, so when `serde` (the fourth) hangs, three are
    // done; the process is "killed" there (the stream dropped, the store
    // reopened by a new machine).
    let first = Search {
        hang_on: Some("serde".into()),
        ..Search::default()
    };
    let machine =
        agent(first.clone(), |f| f.max_concurrency(1)).with_store(SqliteStore::open(&db).unwrap());
    let mut events = machine.stream_as("r1", Env::from_user("compare"));
    while let Some(event) = events.next().await {
        if event.branch.as_deref() == Some("plan/fork[3]")
            && matches!(event.kind, EventKind::Emitted(Emit::Token(_)))
        {
            break;
        }
    }
    drop(events);
    drop(machine);
    assert_eq!(
        first.runs(),
        BTreeMap::from([
            ("boom".to_owned(), 1),
            ("rust".to_owned(), 1),
            ("serde".to_owned(), 1),
            ("tokio".to_owned(), 1),
        ])
    );

    let second = Search::default();
    let store = SqliteStore::open(&db).unwrap();
    let machine = agent(second.clone(), |f| f.max_concurrency(1)).with_store(store.clone());
    let out = statewise::machine::finish(machine.resume("r1").await.unwrap())
        .await
        .unwrap();
    // Only the branch that was cut off and the one never started ran.
    assert_eq!(
        second.runs(),
        BTreeMap::from([("axum".to_owned(), 1), ("serde".to_owned(), 1)])
    );
    assert_eq!(
        out.answer.as_deref(),
        Some("found rust; found tokio; [\"boom\" failed: custom]; found serde; found axum")
    );
    // The failed branch's record came from the first process, too.
    assert_eq!(out.env.branches.len(), 5);
    // Each branch has its own run in the store, under the parent's id.
    let branch = store.get("r1/1/0", None).await.unwrap().unwrap();
    assert_eq!(branch.next, Next::End);
}

/// An inner machine of two steps, each a token and a counter bump.
fn inner(counter: Arc<AtomicUsize>) -> Machine {
    let step = |name: &'static str, next: Next, counter: Arc<AtomicUsize>| {
        struct Step {
            name: &'static str,
            next: Next,
            counter: Arc<AtomicUsize>,
        }
        impl State for Step {
            fn name(&self) -> &str {
                self.name
            }
            fn run<'a>(&'a self, env: &'a mut Env) -> EmitStream<'a> {
                Box::pin(statewise::try_stream! {
                    self.counter.fetch_add(1, Ordering::SeqCst);
                    env.usage.completion_tokens += 3;
                    env.answer = Some(format!("{} done", self.name));
                    yield Emit::Token(self.name.to_owned());
                })
            }
            fn transition(&self, _env: &Env) -> Next {
                self.next.clone()
            }
        }
        Step {
            name,
            next,
            counter,
        }
    };
    Machine::new("look")
        .with_state(step("look", Next::to("read"), counter.clone()))
        .with_state(step("read", Next::End, counter))
}

#[tokio::test]
async fn a_sub_machines_events_arrive_nested_under_its_name() {
    let counter = Arc::new(AtomicUsize::new(0));
    let machine = Machine::new("research")
        .with_machine(
            SubMachine::new("research", inner(counter.clone()))
                .transition(|_: &Env| Next::to("report")),
        )
        .with_state(FnState::new(
            "report",
            |env: &mut Env| {
                env.answer = env.answer.take().map(|a| format!("report: {a}"));
                Ok(())
            },
            |_: &Env| Next::End,
        ));
    machine.validate().unwrap();
    let mut seen = Vec::new();
    let mut events = machine.stream(Env::from_user("go"));
    let mut last = None;
    while let Some(event) = events.next().await {
        match &event.kind {
            EventKind::StateEntered => seen.push(event.path()),
            EventKind::Emitted(Emit::Token(t)) => {
                assert_eq!(event.branch.as_deref(), Some("research"), "{t}");
            }
            _ => {}
        }
        last = Some(event);
    }
    assert_eq!(
        seen,
        ["research", "research/look", "research/read", "report"]
    );
    let EventKind::Finished(out) = last.unwrap().kind else {
        panic!("finished");
    };
    assert_eq!(out.answer.as_deref(), Some("report: read done"));
    assert_eq!(
        out.usage().completion_tokens,
        6,
        "the child's usage is the parent's"
    );
    assert_eq!(out.path, ["research", "report"]);
    assert!(machine.mermaid().contains("subgraph"));
}

#[tokio::test]
async fn a_sub_machine_built_from_the_env_is_rebuilt_on_resume() {
    // The plan (a list of step names) is in the env; the builder turns it
    // into a chain. A resume rebuilds the same chain from the checkpoint.
    let ran = Arc::new(Mutex::new(Vec::<String>::new()));
    let built = Arc::new(AtomicUsize::new(0));
    let hang = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let make = {
        let (ran, built, hang) = (ran.clone(), built.clone(), hang.clone());
        move |env: &Env| -> Result<Machine, StateError> {
            built.fetch_add(1, Ordering::SeqCst);
            let plan: Vec<String> = env
                .scratch
                .get("plan")?
                .ok_or_else(|| StateError::custom("no plan in the env"))?;
            let mut machine = Machine::new(plan[0].clone());
            for (i, step) in plan.iter().enumerate() {
                let next = plan.get(i + 1).map_or(Next::End, |n| Next::to(n.clone()));
                let (ran, hang, me) = (ran.clone(), hang.clone(), step.clone());
                machine.register(StepThen {
                    name: step.clone(),
                    next,
                    run: Arc::new(move || {
                        ran.lock().unwrap().push(me.clone());
                        me == "write" && hang.load(Ordering::SeqCst)
                    }),
                });
            }
            Ok(machine)
        }
    };
    let store = MemoryStore::new();
    let machine = Machine::new("execute")
        .with_machine(SubMachine::build("execute", make))
        .with_store(store.clone());
    let env = Env::from_user("go")
        .with_scratch("plan", &["outline", "draft", "write", "review"])
        .unwrap();
    let mut events = machine.stream_as("p1", env);
    while let Some(event) = events.next().await {
        if event.path() == "execute/write" && matches!(event.kind, EventKind::StateEntered) {
            // Let it start hanging, then stop the process.
            let more = tokio::time::timeout(Duration::from_millis(50), events.next()).await;
            assert!(more.is_err(), "`write` hangs");
            break;
        }
    }
    drop(events);
    assert_eq!(*ran.lock().unwrap(), ["outline", "draft", "write"]);
    hang.store(false, Ordering::SeqCst);
    let out = statewise::machine::finish(machine.resume("p1").await.unwrap())
        .await
        .unwrap();
    // Rebuilt once more; the done steps were not run again.
    assert_eq!(built.load(Ordering::SeqCst), 2);
    assert_eq!(
        *ran.lock().unwrap(),
        ["outline", "draft", "write", "write", "review"]
    );
    assert_eq!(out.path, ["execute"]);
    let missing = Machine::new("execute")
        .with_machine(SubMachine::build("execute", |_: &Env| {
            Err(StateError::custom("no plan in the env"))
        }))
        .run(Env::new())
        .await
        .unwrap_err();
    assert!(matches!(missing.error, MachineError::State { ref state, .. } if state == "execute"));
}

/// Runs `run` (which says whether to hang), then goes to `next`.
struct StepThen {
    name: String,
    next: Next,
    run: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl State for StepThen {
    fn name(&self) -> &str {
        &self.name
    }
    fn run<'a>(&'a self, _env: &'a mut Env) -> EmitStream<'a> {
        Box::pin(statewise::try_stream! {
            if (self.run)() {
                futures::future::pending::<()>().await;
            }
            yield Emit::Token(self.name.clone());
        })
    }
    fn transition(&self, _env: &Env) -> Next {
        self.next.clone()
    }
}

/// `cargo run --example fork`: the planner's four questions become four
/// research branches, the writer joins them, and the diagram is printed.
#[test]
fn the_fork_example_researches_in_parallel_and_draws_itself() {
    let out = std::process::Command::new(crate::support::example("fork"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 0..4 {
        assert!(
            text.contains(&format!("── plan/fork[{i}]/research/answer")),
            "{text}"
        );
    }
    assert!(
        text.contains("\"What is tokio?\": Tokio is an async runtime"),
        "{text}"
    );
    assert!(
        text.contains("\"What is a monad?\": Nothing in the notes"),
        "{text}"
    );
    assert!(text.contains("path: plan → write"), "{text}");
    assert!(
        text.contains("flowchart TD") && text.contains("-- fork -->"),
        "{text}"
    );
    assert!(text.contains("subgraph"), "{text}");
}

/// A traced run with a fork: each branch's records carry its own run id
/// and its parent, and a recording picks the parent run by default.
#[tokio::test]
async fn a_traced_fork_records_each_branch_as_a_child_run() {
    use statewise::replay::Recording;
    use statewise::trace::{read_jsonl, JsonlSink, TraceRecord, Tracer};

    let path = temp_dir("fork-trace").join("trace.jsonl");
    let tracer = Tracer::new().with_sink(JsonlSink::append(&path).unwrap());
    let out = agent(Search::default(), |f| f)
        .with_tracer(tracer)
        .run_as("t1", Env::from_user("compare"))
        .await
        .unwrap();
    assert_eq!(out.env.branches.len(), 5);
    let records = read_jsonl(&path).unwrap();
    let starts: Vec<(String, Option<String>, Option<String>)> = records
        .iter()
        .filter_map(|r| match r {
            TraceRecord::Run(r) => Some((r.run_id.clone(), r.parent.clone(), r.branch.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(starts[0], ("t1".to_owned(), None, None));
    let mut children: Vec<_> = starts[1..].iter().collect();
    children.sort();
    assert_eq!(children.len(), 5);
    for (i, (run_id, parent, branch)) in children.iter().enumerate() {
        assert_eq!(run_id, &format!("t1/1/{i}"));
        assert_eq!(parent.as_deref(), Some("t1"));
        assert_eq!(branch.clone(), Some(format!("plan/fork[{i}]")));
    }
    let recording = Recording::from_records(&records, None).unwrap();
    assert_eq!(recording.run_id(), "t1");
    assert_eq!(recording.steps.len(), 2, "plan and summarize");
}

/// Calls its model with the branch's input and answers with the reply.
struct Ask {
    model: statewise::model::SharedModel,
}

impl State for Ask {
    fn name(&self) -> &str {
        "ask"
    }
    fn run<'a>(&'a self, env: &'a mut Env) -> EmitStream<'a> {
        use statewise::model::{ChatRequest, ReplyStream};
        Box::pin(statewise::try_stream! {
            let question = env.input.clone().unwrap_or_default().to_string();
            let request = ChatRequest::new(vec![statewise::Message::user(question)]);
            let mut call = ReplyStream::call(&*self.model, request, &env.settings);
            while let Some(streamed) = call.next().await {
                yield Emit::from(streamed?);
            }
            env.answer = Some(call.finish().text);
        })
    }
    fn transition(&self, _env: &Env) -> Next {
        Next::End
    }
}

#[tokio::test]
async fn a_traced_fork_replays_offline_with_its_branches_model_calls() {
    use statewise::model::{ChatRequest, FnModel, Reply};
    use statewise::replay::Recording;
    use statewise::trace::{JsonlSink, Tracer};

    let machine = |model: statewise::model::SharedModel| {
        Machine::new("plan")
            .with_state(FnState::new(
                "plan",
                |_: &mut Env| Ok(()),
                |_: &Env| {
                    Next::fork(
                        ["a", "b", "c"]
                            .iter()
                            .fold(Fork::join_at("join"), |f, q| f.branch("ask", json!(q))),
                    )
                },
            ))
            .with_state(Ask { model })
            .with_state(FnState::new(
                "join",
                |env: &mut Env| {
                    let all: Vec<String> = env
                        .branches
                        .iter()
                        .filter_map(|b| b.answer.clone())
                        .collect();
                    env.answer = Some(all.join(" "));
                    Ok(())
                },
                |_: &Env| Next::End,
            ))
    };
    let live = Arc::new(FnModel::new("live", |r: &ChatRequest| {
        Ok(Reply::text(format!("<{}>", r.messages[0].content)))
    }));
    let path = temp_dir("fork-replay").join("trace.jsonl");
    let tracer = Tracer::new().with_sink(JsonlSink::append(&path).unwrap());
    let out = machine(live)
        .with_tracer(tracer)
        .run(Env::new())
        .await
        .unwrap();
    assert_eq!(out.answer.as_deref(), Some("<\"a\"> <\"b\"> <\"c\">"));

    let recording = Recording::from_jsonl(&path, None).unwrap();
    assert_eq!(recording.children.len(), 3, "one step per branch");
    let replay = recording
        .replay(&machine(Arc::new(recording.model())))
        .await;
    assert!(replay.matches(), "{replay:?}");
}

/// Records the child runs handed to it (once per run id), and says which
/// were given up.
#[derive(Debug, Clone, Default)]
struct Handed {
    children: Arc<Mutex<Vec<statewise::machine::ChildRun>>>,
    given_up: Arc<Mutex<BTreeMap<String, (String, String)>>>,
}

impl statewise::machine::Dispatch for Handed {
    fn dispatch<'a>(
        &'a self,
        child: &'a statewise::machine::ChildRun,
    ) -> futures::future::BoxFuture<'a, Result<(), statewise::backend::BackendError>> {
        let mut children = self.children.lock().unwrap();
        if !children.iter().any(|c| c.run_id == child.run_id) {
            children.push(child.clone());
        }
        Box::pin(async { Ok(()) })
    }

    fn given_up<'a>(
        &'a self,
        run_id: &'a str,
    ) -> futures::future::BoxFuture<
        'a,
        Result<Option<(String, String)>, statewise::backend::BackendError>,
    > {
        let found = self.given_up.lock().unwrap().get(run_id).cloned();
        Box::pin(async move { Ok(found) })
    }
}

/// The last event of a stream.
async fn last_of(mut events: statewise::EventStream) -> statewise::Event {
    let mut last = None;
    while let Some(event) = events.next().await {
        last = Some(event);
    }
    last.expect("the run said how it ended")
}

/// What a paused run waits for, if it waits for child runs.
fn waits_for(event: &statewise::Event) -> Option<Vec<String>> {
    match &event.kind {
        EventKind::Interrupted(out) => {
            statewise::machine::waiting_for(out.env.interrupt.as_deref()?)
        }
        _ => None,
    }
}

/// A fork handed out: the parent runs no branch itself and pauses waiting
/// for its child runs; each resume joins those that ended (from their
/// checkpoints, or given up) and waits for the rest, handing nothing out
/// twice; once all have ended, the join sees them as if run here.
#[tokio::test]
async fn a_handed_out_fork_waits_for_its_child_runs_then_joins_them() {
    let store = Arc::new(MemoryStore::new());
    let search = Search {
        pause: Duration::from_millis(1),
        ..Search::default()
    };
    let handed = Handed::default();
    let parent = agent(search.clone(), |f| f)
        .with_store(Arc::clone(&store))
        .with_dispatch(handed.clone());
    let first = last_of(parent.stream_as("p", Env::from_user("compare"))).await;
    let ids: Vec<String> = (0..5).map(|i| format!("p/1/{i}")).collect();
    assert_eq!(waits_for(&first), Some(ids.clone()));
    assert!(search.runs().is_empty(), "the parent ran a branch itself");

    // Elsewhere (a worker): the first three children run.
    let elsewhere = agent(search.clone(), |f| f).with_store(Arc::clone(&store));
    let children = handed.children.lock().unwrap().clone();
    assert_eq!(children.len(), 5);
    for child in &children[..3] {
        let mut events = elsewhere.stream_child(child.clone()).await;
        let mut paths = Vec::new();
        while let Some(event) = events.next().await {
            paths.push(event.path());
        }
        assert!(
            paths.iter().all(|p| p.starts_with(&child.branch)),
            "{paths:?}"
        );
    }
    let second = last_of(
        parent
            .resume_with("p", serde_json::Value::Null)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(waits_for(&second), Some(ids[3..].to_vec()));
    assert_eq!(handed.children.lock().unwrap().len(), 5, "handed out twice");

    // The fourth runs; the fifth is given up by the queue.
    last_of(elsewhere.stream_child(children[3].clone()).await).await;
    handed
        .given_up
        .lock()
        .unwrap()
        .insert("p/1/4".into(), ("dead".into(), "delivered 6 times".into()));
    let done = last_of(
        parent
            .resume_with("p", serde_json::Value::Null)
            .await
            .unwrap(),
    )
    .await;
    let EventKind::Finished(out) = done.kind else {
        panic!("the run finishes once every child has ended: {done:?}");
    };
    assert_eq!(
        out.answer.as_deref(),
        Some("found rust; found tokio; [\"boom\" failed: custom]; found serde; [\"axum\" failed: dead]")
    );
    let once: BTreeMap<String, u32> = QUERIES[..4].iter().map(|q| (q.to_string(), 1)).collect();
    assert_eq!(search.runs(), once, "each child ran once, elsewhere");
    assert!(
        out.env.responses.is_empty(),
        "the wake-ups left nothing behind"
    );
}
