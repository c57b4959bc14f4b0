//! A terminal agent that asks before it acts: sending an email needs your
//! approval. The run pauses at the question (its checkpoint in SQLite), so
//! you can answer now, or kill the process and answer later: running the
//! same command again asks the same question, and the email goes out once.
//!
//! ```sh
//! cargo run --example approve -- --db approve.sqlite --run mail-1
//! # answer y (send), n (reject, with a reason) or e (edit the arguments)
//! ```
//!
//! The model is a deterministic stand-in (no network, no model file): it
//! asks to send one email, then answers from what happened. The "email"
//! is a line appended to `outbox.txt` next to the database.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};
use statewise::console::Console;
use statewise::model::{ChatRequest, FnModel, ModelError, Reply};
use statewise::store::{SqliteStore, Store};
use statewise::tool::approval::Approvals;
use statewise::tool::{Tool, ToolRegistry, Toolbox};
use statewise::{Env, Interrupt, Role};

/// Sends an email: appends it to the outbox file.
struct SendEmail {
    outbox: PathBuf,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct EmailArgs {
    to: String,
    subject: String,
}

impl Tool for SendEmail {
    type Args = EmailArgs;
    type Output = String;
    type Error = std::io::Error;

    fn name(&self) -> &str {
        "send_email"
    }
    fn description(&self) -> &str {
        "Sends an email."
    }
    fn parameters(&self) -> Value {
        json!({"type": "object",
               "properties": {"to": {"type": "string"}, "subject": {"type": "string"}},
               "required": ["to", "subject"]})
    }
    async fn call(
        &self,
        args: EmailArgs,
        _ctx: statewise::tool::ToolContext,
    ) -> Result<String, std::io::Error> {
        use std::io::Write;
        let mut outbox = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.outbox)?;
        writeln!(outbox, "to: {} | subject: {}", args.to, args.subject)?;
        Ok(format!("sent to {}", args.to))
    }
}

/// Asks to send the email until a tool result is in, then answers from it.
fn assistant(request: &ChatRequest) -> Result<Reply, ModelError> {
    // A tool result: a tool message, or (in JSON-action prompts) a user
    // message that keeps the call's id. Its last line is the result.
    let result = request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::Tool || m.tool_call_id.is_some())
        .and_then(|m| m.content.lines().last().map(str::to_owned));
    let action = match result {
        None => json!({"tool_calls": [{"name": "send_email",
            "arguments": {"to": "team@example.com", "subject": "The release is out"}}]}),
        Some(r) => {
            let result: Value = serde_json::from_str(&r).unwrap_or(Value::String(r));
            match (result["error"].as_str(), result.as_str()) {
                (Some(error), _) => {
                    json!({"final_answer": format!("I did not send the email: {error}.")})
                }
                (None, Some(sent)) => {
                    json!({"final_answer": format!("Done: the email was {sent}.")})
                }
                (None, None) => json!({"final_answer": format!("Done: {result}.")}),
            }
        }
    };
    Ok(Reply::text(action.to_string()))
}

/// Shows the calls awaiting approval (the console printed the question)
/// and reads your decision from stdin; `None` when stdin ends (the run
/// keeps waiting).
fn ask(request: &Interrupt, input: &mut impl BufRead) -> Option<Value> {
    let calls = request.payload["tool_calls"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for call in &calls {
        println!(
            "  {}({})",
            call["name"].as_str().unwrap_or("?"),
            call["arguments"]
        );
    }
    let mut line = String::new();
    let mut read = |prompt: &str| -> Option<String> {
        println!("{prompt}");
        line.clear();
        match input.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim().to_owned()),
        }
    };
    let answer = loop {
        let answer = read("approve? [y]es / [n]o / [e]dit")?;
        match answer.as_str() {
            "y" | "yes" | "n" | "no" | "e" | "edit" => break answer,
            _ => println!("answer y, n or e"),
        }
    };
    let mut approvals = Approvals::new();
    for call in &calls {
        let id = call["id"].as_str().unwrap_or_default().to_owned();
        approvals = match answer.as_str() {
            "y" | "yes" => approvals.approve(id),
            "n" | "no" => approvals.reject(id, read("why? (the agent is told)")?),
            _ => loop {
                let text = read(&format!("new arguments (JSON), were {}", call["arguments"]))?;
                match serde_json::from_str(&text) {
                    Ok(arguments) => break approvals.edit(id, arguments),
                    Err(e) => println!("not JSON ({e}); try again"),
                }
            },
        };
    }
    Some(approvals.into_response())
}

struct Args {
    db: PathBuf,
    run: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        db: "approve.sqlite".into(),
        run: "mail-1".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--db" => args.db = value()?.into(),
            "--run" => args.run = value()?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("approve: {e}");
            return ExitCode::from(2);
        }
    };
    let store = match SqliteStore::open(&args.db) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("approve: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outbox = args.db.with_file_name("outbox.txt");
    let tools = Toolbox::new(ToolRegistry::new().with(SendEmail { outbox }))
        .require_approval(["send_email"]);
    let model = Arc::new(FnModel::new("assistant", assistant));
    let machine = statewise_states::agent(model, tools).with_store(store.clone());

    let mut events = match store.get(&args.run, None).await {
        Ok(Some(last)) => {
            println!("resuming run {} after step {}", args.run, last.step);
            machine.resume(&args.run).await
        }
        Ok(None) => {
            println!("starting run {}", args.run);
            let question = "Tell the team the release is out.";
            Ok(machine.stream_as(args.run.as_str(), Env::from_user(question)))
        }
        Err(e) => Err(e.into()),
    };
    let console = Console::new().verbose(true);
    let mut stdin = std::io::stdin().lock();
    loop {
        let stream = match events {
            Ok(stream) => stream,
            Err(e) => {
                eprintln!("approve: {e}");
                return ExitCode::FAILURE;
            }
        };
        let out = match console.print(stream, std::io::stdout().lock()).await {
            Ok(out) => out,
            Err(failure) => {
                eprintln!("approve: run {} failed: {failure}", failure.run_id);
                return ExitCode::FAILURE;
            }
        };
        let Some(request) = out.interrupt() else {
            println!("\nanswer: {}", out.answer.unwrap_or_default());
            println!("path: {}", out.path.join(" → "));
            return ExitCode::SUCCESS;
        };
        let Some(response) = ask(request, &mut stdin) else {
            println!(
                "\nno answer; run {} waits. Run the same command to answer.",
                args.run
            );
            return ExitCode::SUCCESS;
        };
        events = machine.resume_with(&args.run, response).await;
    }
}
