//! Plan, then research in parallel, then write: a fork whose branches are
//! decided at run time, each branch a whole agent (a sub-machine), joined
//! by a writer. Scripted models, no network; prints every event with the
//! branch it came from, then the machine's Mermaid diagram.
//!
//! ```sh
//! cargo run --example fork
//! ```
//!
//! The planner's JSON decides how many branches run. Each branch runs the
//! stock agent (Reasoning → RunTools → Answer) with an offline `search`
//! tool on its own conversation; the join state sees every branch's answer
//! in `env.branches`.

use std::io::Write;
use std::sync::Arc;

use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use statewise::model::{ChatModel, ChatRequest, FnModel, Reply, ReplyStream, ScriptedModel};
use statewise::tool::{Tool, ToolRegistry, Toolbox};
use statewise::{
    Emit, EmitStream, Env, EventKind, Fork, Machine, Message, Next, Role, ScratchKey, State,
    StateError, SubMachine,
};

const PLAN: ScratchKey<Vec<String>> = ScratchKey::new("plan");

/// Asks the planner for research questions and keeps them in the env.
struct Plan {
    model: Arc<dyn ChatModel>,
}

impl State for Plan {
    fn name(&self) -> &str {
        "plan"
    }

    fn run<'a>(&'a self, env: &'a mut Env) -> EmitStream<'a> {
        Box::pin(statewise::try_stream! {
            let mut messages = vec![Message::system(
                "Split the question into research questions. Reply {\"questions\": [...]}.",
            )];
            messages.extend(env.messages.iter().cloned());
            // The settings say whether the machine records model calls.
            let mut reply = ReplyStream::call(&*self.model, ChatRequest::new(messages), &env.settings);
            while let Some(streamed) = reply.next().await {
                yield Emit::from(streamed?);
            }
            let text = reply.finish().text;
            let plan: Value = statewise::action::repair(&text)
                .map_err(|e| StateError::custom(format!("the plan is not JSON: {e}")))?;
            let questions: Vec<String> = serde_json::from_value(plan["questions"].clone())
                .map_err(|e| StateError::custom(format!("the plan has no questions: {e}")))?;
            env.scratch.set(&PLAN, &questions)?;
        })
    }

    /// One research branch per question: decided from the env, at run time.
    fn transition(&self, env: &Env) -> Next {
        let questions = env.scratch.get(&PLAN).ok().flatten().unwrap_or_default();
        let fork = questions
            .iter()
            .fold(Fork::join_at("write"), |f, q| {
                f.branch("research", json!(q))
            })
            .max_concurrency(3);
        Next::fork(fork)
    }

    fn targets(&self) -> Option<Vec<Next>> {
        Some(vec![Next::fork(
            Fork::join_at("write").branch("research", Value::Null),
        )])
    }
}

/// Writes the answer from every branch's findings.
struct Write_;

impl State for Write_ {
    fn name(&self) -> &str {
        "write"
    }

    fn run<'a>(&'a self, env: &'a mut Env) -> EmitStream<'a> {
        Box::pin(statewise::try_stream! {
            let mut text = String::from("Findings:\n");
            for branch in &env.branches {
                let line = match (&branch.answer, &branch.error) {
                    (Some(answer), None) => format!("- {}: {answer}\n", branch.input),
                    (_, Some(error)) => format!("- {}: not found ({})\n", branch.input, error.kind),
                    (None, None) => format!("- {}: no answer\n", branch.input),
                };
                text.push_str(&line);
                yield Emit::Token(line);
            }
            env.answer = Some(text);
        })
    }

    fn transition(&self, _env: &Env) -> Next {
        Next::End
    }

    fn targets(&self) -> Option<Vec<Next>> {
        Some(vec![Next::End])
    }
}

/// An offline search: a few canned facts.
struct Search;

#[derive(Deserialize, schemars::JsonSchema)]
struct SearchArgs {
    query: String,
}

#[derive(Debug, thiserror::Error)]
#[error("no results for `{0}`")]
struct NoResults(String);

impl Tool for Search {
    type Args = SearchArgs;
    type Output = String;
    type Error = NoResults;

    fn name(&self) -> &str {
        "search"
    }
    fn description(&self) -> &str {
        "Searches the offline notes."
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]})
    }
    async fn call(
        &self,
        args: SearchArgs,
        _ctx: statewise::tool::ToolContext,
    ) -> Result<String, NoResults> {
        let q = args.query.to_lowercase();
        let fact = if q.contains("tokio") {
            "Tokio is an async runtime for Rust: a scheduler, I/O and timers."
        } else if q.contains("actor") {
            "Actors own their state and talk by messages; actix and ractor do this in Rust."
        } else if q.contains("state machine") {
            "A state machine names its states and the moves between them; statewise runs agents as one."
        } else {
            return Err(NoResults(args.query));
        };
        Ok(fact.to_owned())
    }
}

/// One research agent's model: search for its question, then answer from
/// the observation. Its reply depends only on its own conversation, so
/// branches running at once cannot mix up each other's script.
fn researcher() -> Arc<dyn ChatModel> {
    Arc::new(FnModel::new("researcher", |request: &ChatRequest| {
        let question = request
            .messages
            .iter()
            .find(|m| m.role == Role::User)
            .map(|m| m.content.clone())
            .unwrap_or_default();
        // A tool result: a tool message, or (in JSON-action prompts) a
        // user message that keeps the call's id.
        let observed = request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == Role::Tool || m.tool_call_id.is_some());
        let text = match observed {
            None => json!({"tool_calls": [{"name": "search", "arguments": {"query": question}}]})
                .to_string(),
            Some(m) if m.content.contains("error") => {
                json!({"final_answer": format!("Nothing in the notes on {question}.")}).to_string()
            }
            // The result is the last line (JSON prompts put a header above it).
            Some(m) => {
                json!({"final_answer": m.content.lines().last().unwrap_or_default()}).to_string()
            }
        };
        Ok(Reply::text(text))
    }))
}

fn machine() -> Machine {
    let planner = Arc::new(ScriptedModel::new().text(
        r#"{"questions": ["What is tokio?", "What are actors?", "What is a state machine?", "What is a monad?"]}"#,
    ));
    let tools = Toolbox::new(ToolRegistry::new().with(Search));
    let research = statewise_states::agent(researcher(), tools);
    Machine::new("plan")
        .with_state(Plan { model: planner })
        .with_machine(
            SubMachine::new("research", research)
                // Each branch asks its own question on a fresh conversation.
                .input(|env: &Env| {
                    let question = env.input.as_ref().and_then(Value::as_str).unwrap_or("?");
                    Env::from_user(question)
                })
                .transition(|_: &Env| Next::End)
                .with_targets([Next::End]),
        )
        .with_state(Write_)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let machine = machine();
    if let Err(e) = machine.validate() {
        eprintln!("{e}");
        return std::process::ExitCode::FAILURE;
    }
    let mut events = machine.stream(Env::from_user(
        "How do Rust programs juggle concurrent work?",
    ));
    let mut out = std::io::stdout().lock();
    while let Some(event) = events.next().await {
        let at = event.path();
        let _ = match event.kind {
            EventKind::StateEntered => writeln!(out, "── {at}"),
            EventKind::Emitted(Emit::ToolCallStarted(call)) => {
                writeln!(out, "   {at}: → {}({})", call.name, call.arguments)
            }
            EventKind::Emitted(Emit::Observation(o)) => {
                writeln!(out, "   {at}: ← {}", o.render())
            }
            EventKind::Emitted(Emit::Token(t)) if event.branch.is_none() => {
                write!(out, "{t}").and_then(|()| out.flush())
            }
            EventKind::StateExited { .. } if event.branch.is_none() => writeln!(out),
            EventKind::Finished(run) => writeln!(
                out,
                "\npath: {}\nbranches: {}\n",
                run.path.join(" → "),
                run.env.branches.len()
            ),
            EventKind::Failed(failure) => {
                eprintln!("\nrun failed: {failure}");
                return std::process::ExitCode::FAILURE;
            }
            _ => Ok(()),
        };
    }
    println!("{}", machine.mermaid());
    std::process::ExitCode::SUCCESS
}
