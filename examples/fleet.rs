//! An orchestrator that hands work to other agents through the queue and
//! merges their results: a fork whose branches (a searcher agent and an
//! analyser agent) run as child runs on the fleet's workers.
//!
//! ```sh
//! cargo run --example fleet --features redis -- --redis redis://127.0.0.1:6379 "How do tides work?"
//! ```
//!
//! Two workers run here, as tasks of this process (in production, as many
//! processes as you like, each `Worker::new(url).machine("orchestrator",
//! ..)`). The orchestrator's run forks; each branch is queued as a run of
//! its own (`<run>/1/0`, `<run>/1/1`), checkpointed and taken over after a
//! crash like any run; the orchestrator gives its worker slot back while it
//! waits and is queued again when the last branch ends. The models are
//! deterministic stand-ins (no network, no model file). The keys live
//! under a prefix of their own, deleted at the end.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use statewise::machine::SubMachine;
use statewise::model::{ChatRequest, FnModel, ModelError, Reply};
use statewise::state::FnState;
use statewise::tool::{Tool, ToolContext, ToolRegistry, Toolbox};
use statewise::worker::{RunQueue, Worker};
use statewise::{Env, Fork, Machine, Next, Role};
use tokio_util::sync::CancellationToken;

/// An offline search over a few notes.
struct Search;

#[derive(Deserialize, schemars::JsonSchema)]
struct SearchArgs {
    /// What to look for.
    query: String,
}

impl Tool for Search {
    type Args = SearchArgs;
    type Output = String;
    type Error = std::convert::Infallible;

    fn name(&self) -> &str {
        "search"
    }
    fn description(&self) -> &str {
        "Searches the offline notes."
    }
    async fn call(&self, args: SearchArgs, _ctx: ToolContext) -> Result<String, Self::Error> {
        let notes = [
            ("tide", "tides follow the Moon's pull, two highs a day"),
            ("rust", "Rust checks ownership at compile time"),
            ("queue", "a queue hands each job to one worker at a time"),
        ];
        let query = args.query.to_lowercase();
        Ok(notes
            .iter()
            .find(|(key, _)| query.contains(key))
            .map_or("nothing in the notes".to_owned(), |(_, note)| {
                (*note).to_owned()
            }))
    }
}

/// The question a stand-in model was asked.
fn question(request: &ChatRequest) -> String {
    request
        .messages
        .iter()
        .find(|m| m.role == Role::User)
        .map(|m| m.content.clone())
        .unwrap_or_default()
}

/// The searcher's stand-in: searches, then answers from what it found.
fn searcher(request: &ChatRequest) -> Result<Reply, ModelError> {
    let found = request
        .messages
        .iter()
        .find(|m| m.content.starts_with("Observation from `search`"))
        // The result is the observation's last line.
        .and_then(|m| m.content.lines().last());
    let action = match found {
        Some(text) => json!({"final_answer": format!("found: {text}")}),
        None => {
            json!({"tool_calls": [{"name": "search", "arguments": {"query": question(request)}}]})
        }
    };
    Ok(Reply::text(action.to_string()))
}

/// The analyser's stand-in: says what kind of question it is.
fn analyser(request: &ChatRequest) -> Result<Reply, ModelError> {
    let q = question(request);
    let kind = if q.to_lowercase().starts_with("how") {
        "a question about a mechanism"
    } else {
        "a question of fact"
    };
    let words = q.split_whitespace().count();
    let answer = format!("{kind}, {words} words");
    Ok(Reply::text(json!({ "final_answer": answer }).to_string()))
}

/// A sub-machine that runs `agent` on the branch's input as its question.
fn branch_agent(name: &str, agent: Machine) -> SubMachine {
    SubMachine::new(name, agent).input(|parent: &Env| {
        let text = parent
            .input
            .as_ref()
            .and_then(Value::as_str)
            .unwrap_or_default();
        Env::from_user(text)
    })
}

/// The orchestrator: forks the question to the searcher and the analyser,
/// then merges their answers.
fn orchestrator() -> Machine {
    let search = statewise_states::agent(
        Arc::new(FnModel::new("searcher", searcher)),
        Toolbox::new(ToolRegistry::new().with(Search)),
    );
    let analyse = statewise_states::agent(
        Arc::new(FnModel::new("analyser", analyser)),
        Toolbox::new(ToolRegistry::new()),
    );
    let orchestrate = FnState::new(
        "orchestrate",
        |_: &mut Env| Ok(()),
        |env: &Env| {
            let q = json!(env.last_user_message().unwrap_or_default());
            Next::fork(
                Fork::join_at("merge")
                    .branch("searcher", q.clone())
                    .branch("analyser", q),
            )
        },
    );
    let merge = FnState::new(
        "merge",
        |env: &mut Env| {
            let parts: Vec<String> = env
                .branches
                .iter()
                .map(|b| {
                    format!(
                        "{}: {}",
                        b.target,
                        b.answer.as_deref().unwrap_or("no answer")
                    )
                })
                .collect();
            env.answer = Some(parts.join("\n"));
            Ok(())
        },
        |_: &Env| Next::End,
    );
    Machine::new("orchestrate")
        .with_state(orchestrate)
        .with_machine(branch_agent("searcher", search))
        .with_machine(branch_agent("analyser", analyse))
        .with_state(merge)
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let mut asked = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--redis", Some(value)) => url = value,
            ("--redis", None) => {
                eprintln!("fleet: --redis needs a URL");
                return ExitCode::from(2);
            }
            (_, next) => asked.extend([Some(arg), next].into_iter().flatten()),
        }
    }
    let question = if asked.is_empty() {
        "How do tides work?".to_owned()
    } else {
        asked.join(" ")
    };
    match run(&url, &question).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleet: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(url: &str, question: &str) -> Result<(), Box<dyn std::error::Error>> {
    let prefix = format!("fleet-{}-{:08x}", std::process::id(), fastrand::u32(..));
    let shutdown = CancellationToken::new();
    let mut workers = Vec::new();
    for n in 0..2 {
        let worker = Worker::new(url)?
            .with_prefix(&prefix)
            .with_id(format!("worker-{n}"))
            .concurrency(2)
            .machine("orchestrator", orchestrator());
        workers.push(tokio::spawn(worker.run(shutdown.clone())));
    }
    let queue = RunQueue::open(url)?.with_prefix(&prefix);
    queue
        .submit("orchestrator", "ask", &Env::from_user(question))
        .await?;
    let outcome = queue.wait("ask", Duration::from_secs(60)).await;
    let children = [
        queue.outcome("ask/1/0").await?,
        queue.outcome("ask/1/1").await?,
    ];
    shutdown.cancel();
    for worker in workers {
        worker.await??;
    }
    forget(url, &prefix).await;
    let outcome = outcome?;
    println!("question: {question}");
    for child in children.into_iter().flatten() {
        println!("child run {} ran on {}", child.run_id, child.worker);
    }
    println!(
        "orchestrator ({:?}, on {}):",
        outcome.status, outcome.worker
    );
    println!("{}", outcome.answer.unwrap_or_default());
    Ok(())
}

/// Deletes the example's keys.
async fn forget(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
    }
}
