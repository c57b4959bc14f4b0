//! A worker of the run queue: runs what `submit` queues, from Redis.
//!
//! ```sh
//! cargo run --example worker --features redis -- --redis redis://127.0.0.1:6379
//! cargo run --example submit --features redis -- --redis redis://127.0.0.1:6379 "Book a table for two"
//! ```
//!
//! Start as many workers as you like, on as many machines; kill one and
//! another takes its runs over after the lease (`--lease MS`), resuming
//! each from its last checkpoint.
//!
//! The machine, `agent`, is the stock agent loop with one tool, `note`: an
//! effect outside the run (it writes a note to Redis) that happens once per
//! idempotency key, however often the run is delivered. The model is
//! `--model SPEC` (`openai:gpt-4o-mini`, `local:PATH.gguf` with `--features
//! local`, ...), or by default a deterministic stand-in (no network, no
//! model file) that notes the request, then answers; `--latency MS` makes
//! each of its replies take that long.
//!
//! A second machine, `count`, makes two calls of `count` at once (one
//! quick, one after 300 ms), each adding one to a counter in Redis with no
//! check of its own: with `--no-journal` a worker killed between them
//! makes the quick one again when the run resumes; with the journal (the
//! default) it does not.
//!
//! A third, `fanout`, forks four branches that each work for `--latency`:
//! they run as child runs on the queue's workers, and the forking run
//! gives its worker slot back while it waits for them.
//!
//! `--log-json` writes structured logs (JSON lines, spans included) to
//! stderr; `RUST_LOG` filters them. `--otlp` (with `--features otel`)
//! sends the spans to `OTEL_EXPORTER_OTLP_ENDPOINT`.

#[path = "common/logs.rs"]
mod logs;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use statewise::model::{
    ChatModel, ChatRequest, ChunkStream, FnModel, ModelError, Reply, SharedModel,
};
use statewise::state::FnState;
use statewise::tool::{Tool, ToolContext, ToolRegistry, Toolbox};
use statewise::worker::Worker;
use statewise::{Emit, EmitStream, Env, Fork, Machine, Next, State};
use tokio_util::sync::CancellationToken;

/// Writes a note to Redis once per idempotency key, and counts its calls.
struct Note {
    redis: redis::aio::ConnectionManager,
    prefix: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct NoteArgs {
    /// What to note.
    text: String,
}

/// Sets the note if its key is new and then counts it as written; counts
/// every call. KEYS: note, notes written, note calls.
const WRITE_ONCE: &str = r"
local new = redis.call('SET', KEYS[1], ARGV[1], 'NX')
if new then redis.call('INCR', KEYS[2]) end
redis.call('INCR', KEYS[3])
if new then return 1 else return 0 end
";

impl Tool for Note {
    type Args = NoteArgs;
    type Output = String;
    type Error = redis::RedisError;

    fn name(&self) -> &str {
        "note"
    }
    fn description(&self) -> &str {
        "Writes a note for the team."
    }
    async fn call(&self, args: NoteArgs, ctx: ToolContext) -> Result<String, redis::RedisError> {
        let p = &self.prefix;
        let written: i64 = redis::Script::new(WRITE_ONCE)
            .key(format!("{p}:note:{}", ctx.idempotency_key))
            .key(format!("{p}:notes-written:{}", ctx.run_id))
            .key(format!("{p}:note-calls:{}", ctx.run_id))
            .arg(&args.text)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(if written == 1 {
            format!("noted: {}", args.text)
        } else {
            format!("already noted: {}", args.text)
        })
    }
}

/// Counts its executions of a run, after waiting `after_ms`: an effect
/// that is not idempotent by itself (no key, no check), so only the
/// framework's journal keeps a resumed run from doing it again.
struct Count {
    redis: redis::aio::ConnectionManager,
    prefix: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct CountArgs {
    /// How long to wait before counting, in milliseconds.
    after_ms: u64,
}

impl Tool for Count {
    type Args = CountArgs;
    type Output = u64;
    type Error = redis::RedisError;

    fn name(&self) -> &str {
        "count"
    }
    fn description(&self) -> &str {
        "Counts, after a while."
    }
    async fn call(&self, args: CountArgs, ctx: ToolContext) -> Result<u64, redis::RedisError> {
        tokio::time::sleep(Duration::from_millis(args.after_ms)).await;
        redis::cmd("INCR")
            .arg(format!("{}:counted:{}", self.prefix, ctx.run_id))
            .query_async(&mut self.redis.clone())
            .await
    }
}

/// Makes two counting calls at once, a quick one and a slow one (a worker
/// killed between them has done one effect of its step), then answers.
fn counting_stand_in(request: &ChatRequest) -> Result<Reply, ModelError> {
    let counted = request
        .messages
        .iter()
        .any(|m| m.content.starts_with("Observation from `count`"));
    let action = if counted {
        json!({"final_answer": "counted twice"})
    } else {
        json!({"tool_calls": [
            {"name": "count", "arguments": {"after_ms": 0}},
            {"name": "count", "arguments": {"after_ms": 300}},
        ]})
    };
    Ok(Reply::text(action.to_string()))
}

/// Notes the request, then answers.
fn stand_in(request: &ChatRequest) -> Result<Reply, ModelError> {
    let question = request
        .messages
        .iter()
        .find(|m| m.role == statewise::Role::User)
        .map(|m| m.content.clone())
        .unwrap_or_default();
    let noted = request
        .messages
        .iter()
        .any(|m| m.content.starts_with("Observation from `note`"));
    let action = if noted {
        json!({"final_answer": format!("Noted: {question}")})
    } else {
        json!({"name": "note", "arguments": {"text": question}})
    };
    Ok(Reply::text(action.to_string()))
}

/// `fanout`'s branch: works for `latency`, then answers with its input.
struct Work {
    latency: Duration,
}

impl State for Work {
    fn name(&self) -> &str {
        "work"
    }

    fn run<'a>(&'a self, env: &'a mut Env) -> EmitStream<'a> {
        Box::pin(statewise::try_stream! {
            tokio::time::sleep(self.latency).await;
            let part = env.input.clone().unwrap_or_default();
            yield Emit::Token(format!("part {part}"));
            env.answer = Some(format!("part {part}"));
        })
    }

    fn transition(&self, _: &Env) -> Next {
        Next::End
    }
}

/// The `fanout` machine: `plan` forks four `work` branches (child runs on
/// the queue's workers), `merge` joins what they answered.
fn fanout(latency: Duration) -> Machine {
    let plan = FnState::new(
        "plan",
        |_: &mut Env| Ok(()),
        |_: &Env| {
            Next::fork((0..4).fold(Fork::join_at("merge"), |f, i| f.branch("work", json!(i))))
        },
    );
    let merge = FnState::new(
        "merge",
        |env: &mut Env| {
            let parts: Vec<String> = env
                .branches
                .iter()
                .filter_map(|b| b.answer.clone())
                .collect();
            env.answer = Some(format!("merged {}", parts.join(", ")));
            Ok(())
        },
        |_: &Env| Next::End,
    );
    Machine::new("plan")
        .with_state(plan)
        .with_state(Work { latency })
        .with_state(merge)
}

/// A model whose every reply starts after `delay`.
struct Delayed {
    inner: SharedModel,
    delay: Duration,
}

impl ChatModel for Delayed {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn stream(&self, request: ChatRequest) -> ChunkStream<'_> {
        Box::pin(statewise::try_stream! {
            tokio::time::sleep(self.delay).await;
            for await chunk in self.inner.stream(request) {
                yield chunk?;
            }
        })
    }
}

struct Args {
    redis: String,
    prefix: String,
    model: Option<String>,
    latency: Duration,
    concurrency: usize,
    lease: Duration,
    max_deliveries: u64,
    id: Option<String>,
    journal: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        redis: std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        prefix: "statewise".into(),
        model: None,
        latency: Duration::ZERO,
        concurrency: 8,
        lease: Duration::from_secs(30),
        max_deliveries: 5,
        id: None,
        journal: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        let number = |v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{arg} takes a number"))
        };
        match arg.as_str() {
            "--log-json" | "--otlp" => {} // logs::init_from_args
            "--redis" => args.redis = value()?,
            "--prefix" => args.prefix = value()?,
            "--model" => args.model = Some(value()?),
            "--latency" => args.latency = Duration::from_millis(number(value()?)?),
            "--concurrency" => args.concurrency = number(value()?)? as usize,
            "--lease" => args.lease = Duration::from_millis(number(value()?)?),
            "--max-deliveries" => args.max_deliveries = number(value()?)?,
            "--id" => args.id = Some(value()?),
            "--no-journal" => args.journal = false,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    let _telemetry = logs::init_from_args("statewise-worker");
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("worker: {e}");
            return ExitCode::from(2);
        }
    };
    let model: SharedModel = match &args.model {
        Some(spec) => match statewise::spec::from_spec(spec) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("worker: {e}");
                return ExitCode::from(2);
            }
        },
        None => Arc::new(FnModel::new("stand-in", stand_in)),
    };
    let model: SharedModel = Arc::new(Delayed {
        inner: model,
        delay: args.latency,
    });
    let redis = match redis::Client::open(args.redis.as_str()) {
        Ok(client) => match client.get_connection_manager().await {
            Ok(conn) => conn,
            Err(e) => {
                eprintln!("worker: cannot reach Redis: {e}");
                return ExitCode::FAILURE;
            }
        },
        Err(e) => {
            eprintln!("worker: {e}");
            return ExitCode::from(2);
        }
    };
    let count = Count {
        redis: redis.clone(),
        prefix: args.prefix.clone(),
    };
    let note = Note {
        redis,
        prefix: args.prefix.clone(),
    };
    let agent = statewise_states::agent(model, Toolbox::new(ToolRegistry::new().with(note)));
    let counter: SharedModel = Arc::new(Delayed {
        inner: Arc::new(FnModel::new("stand-in", counting_stand_in)),
        delay: args.latency,
    });
    let counter = statewise_states::agent(counter, Toolbox::new(ToolRegistry::new().with(count)));
    let mut worker = match Worker::new(&args.redis) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("worker: {e}");
            return ExitCode::from(2);
        }
    };
    worker = worker
        .with_prefix(&args.prefix)
        .machine("agent", agent)
        .machine("count", counter)
        .machine("fanout", fanout(args.latency))
        .journal(args.journal)
        .concurrency(args.concurrency)
        .lease(args.lease)
        .max_deliveries(args.max_deliveries);
    if let Some(id) = args.id {
        worker = worker.with_id(id);
    }
    let stats = worker.stats();
    println!(
        "worker {} running `agent` ({} at a time); Ctrl-C stops it",
        worker.id(),
        args.concurrency
    );
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::signal::ctrl_c().await.ok();
        eprintln!("worker: finishing the runs it holds...");
        stop.cancel();
    });
    match worker.run(shutdown).await {
        Ok(()) => {
            println!(
                "worker: {} claimed, {} taken over, {} recorded, {} parked for child runs, {} left for another try, {} dropped (claim lost), {} dead-lettered",
                stats.claimed(),
                stats.reclaimed(),
                stats.recorded(),
                stats.parked(),
                stats.released(),
                stats.abandoned(),
                stats.dead()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("worker: {e}");
            ExitCode::FAILURE
        }
    }
}
