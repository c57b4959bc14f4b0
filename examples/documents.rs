//! An agent that answers from a folder of documents kept in its memory by
//! a scheduled job, and names its sources.
//!
//! ```sh
//! cargo run --release --features server,memory-local --example documents -- \
//!     --docs examples/docs --db docs.db "How long is the warranty?"
//! cargo run --release --features server,memory-local --example documents -- \
//!     --docs examples/docs --db docs.db --port 3000 --every "0 * * * * *"
//! ```
//!
//! With a question it indexes the folder once, answers and exits. Without
//! one it serves AG-UI on `--port` (`POST /agent` answers a question) and
//! a cron schedule (`--every`, default each minute) runs the `index` job
//! on the server: it reads the folder's `.md` and `.txt` files, cuts each
//! changed one into passages (`memory::chunks`), embeds them with MiniLM in
//! process and updates the store, deleting the passages of files removed
//! or shortened. An unchanged file costs one read and one hash. Every
//! index run prints one line: files seen, changed, removed, passages.
//!
//! The answer comes from the three passages that best match the question
//! (hybrid search), written by the embedded chat model (`OPENAI_*` picks a
//! provider instead), and ends with the files they came from.

#[path = "common/model.rs"]
mod model;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use futures::StreamExt;
use serde_json::{json, Value};
use statewise::agui::RunAgentInput;
use statewise::memory::{
    chunks, content_key, CachedEmbedder, MemoryStore, MiniLm, PutOptions, Search, SqliteMemory,
};
use statewise::model::SharedModel;
use statewise::server::{Schedule, Server};
use statewise::{Emit, EmitStream, Env, EventKind, Machine, Message, Next, Role, State};
use statewise_states::Answer;

const USAGE: &str = "usage: documents --docs DIR [--db PATH] [--port N] [--every CRON] [QUESTION]";

/// Where passages live, and where each file's hash and passage count live.
const PASSAGES: &str = "docs";
const FILES: &str = "docs-files";

struct Args {
    docs: PathBuf,
    db: PathBuf,
    port: u16,
    every: String,
    question: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        docs: PathBuf::new(),
        db: PathBuf::from("docs.db"),
        port: 3000,
        every: "0 * * * * *".into(),
        question: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--docs" => args.docs = value()?.into(),
            "--db" => args.db = value()?.into(),
            "--port" => args.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--every" => args.every = value()?,
            _ if arg.starts_with("--") => return Err(format!("unknown option {arg}\n{USAGE}")),
            _ => args.question = Some(arg),
        }
    }
    if args.docs.as_os_str().is_empty() {
        return Err(USAGE.into());
    }
    Ok(args)
}

/// The index job, a state of its own: brings the store in step with the
/// folder.
struct IndexFolder {
    dir: PathBuf,
    store: Arc<dyn MemoryStore>,
}

/// What one index run did.
#[derive(Debug, Default)]
struct Indexed {
    files: usize,
    changed: usize,
    removed: usize,
    passages: usize,
}

impl IndexFolder {
    async fn index(&self) -> Result<Indexed, Box<dyn std::error::Error + Send + Sync>> {
        let files_ns = vec![FILES.to_string()];
        let passages_ns = vec![PASSAGES.to_string()];
        let mut done = Indexed::default();
        let mut seen = Vec::new();
        let mut entries: Vec<_> = std::fs::read_dir(&self.dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "md" || x == "txt"))
            .collect();
        entries.sort();
        for path in entries {
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&path)?;
            let hash = content_key("file", &text);
            seen.push(name.clone());
            done.files += 1;
            let known = self.store.get(&files_ns, &name).await?;
            let old_count = known
                .as_ref()
                .and_then(|k| k.value["passages"].as_u64())
                .unwrap_or(0);
            if known.as_ref().is_some_and(|k| k.value["hash"] == hash) {
                done.passages += old_count as usize;
                continue;
            }
            let passages = chunks(&text, 80, 15);
            let items = passages
                .iter()
                .enumerate()
                .map(|(i, passage)| {
                    let value = json!({ "text": passage, "source": name, "passage": i });
                    (passages_ns.clone(), format!("{name}#{i}"), value)
                })
                .collect();
            self.store
                .put_many(items, PutOptions::default().index(["text"]))
                .await?;
            for stale in passages.len() as u64..old_count {
                self.store
                    .delete(&passages_ns, &format!("{name}#{stale}"))
                    .await?;
            }
            let file = json!({ "hash": hash, "passages": passages.len() });
            self.store
                .put(
                    &files_ns,
                    &name,
                    file,
                    PutOptions::default().index(Vec::<String>::new()),
                )
                .await?;
            done.changed += 1;
            done.passages += passages.len();
        }
        for gone in self.store.list(&files_ns, usize::MAX, 0).await? {
            if seen.contains(&gone.key) {
                continue;
            }
            let count = gone.value["passages"].as_u64().unwrap_or(0);
            for i in 0..count {
                self.store
                    .delete(&passages_ns, &format!("{}#{i}", gone.key))
                    .await?;
            }
            self.store.delete(&files_ns, &gone.key).await?;
            done.removed += 1;
        }
        Ok(done)
    }
}

impl State for IndexFolder {
    fn name(&self) -> &str {
        "index"
    }

    fn run<'a>(&'a self, env: &'a mut Env) -> EmitStream<'a> {
        Box::pin(statewise::try_stream! {
            let done = self.index().await.map_err(statewise::StateError::custom)?;
            let line = format!(
                "indexed {} files: {} changed, {} removed, {} passages",
                done.files, done.changed, done.removed, done.passages
            );
            println!("{line}");
            yield Emit::AnswerToken(line.clone());
            env.answer = Some(line);
        })
    }

    fn transition(&self, _env: &Env) -> Next {
        Next::End
    }
}

/// Puts the passages that best match the question before it, and keeps
/// their sources for [`Cite`].
struct Retrieve {
    store: Arc<dyn MemoryStore>,
}

impl State for Retrieve {
    fn name(&self) -> &str {
        "retrieve"
    }

    fn run<'a>(&'a self, env: &'a mut Env) -> EmitStream<'a> {
        Box::pin(statewise::try_stream! {
            let at = env.messages.iter().rposition(|m| m.role == Role::User).unwrap_or(0);
            let question = env.messages.get(at).map(|m| m.content.clone()).unwrap_or_default();
            let search = Search::under([PASSAGES]).query(question).page(3, 0);
            let hits = self.store.search(&search).await.map_err(statewise::StateError::custom)?;
            let mut passages = String::from(
                "Answer the user's question in one or two sentences, using only these passages:\n",
            );
            let mut sources: Vec<String> = Vec::new();
            for hit in &hits {
                let source = hit.value["source"].as_str().unwrap_or("?").to_owned();
                let text = hit.value["text"].as_str().unwrap_or("");
                passages.push_str(&format!("[{source}] {text}\n"));
                if !sources.contains(&source) {
                    sources.push(source);
                }
            }
            env.messages.insert(at, Message::system(passages));
            env.scratch.set(&SOURCES, &sources).map_err(statewise::StateError::custom)?;
            yield Emit::custom(&Retrieved { sources });
        })
    }

    fn transition(&self, _env: &Env) -> Next {
        Next::To("answer".into())
    }
}

/// Which files the passages for a question came from.
#[derive(serde::Serialize, serde::Deserialize)]
struct Retrieved {
    sources: Vec<String>,
}

impl statewise::state::StateEvent for Retrieved {
    const NAME: &'static str = "retrieved";
}

/// The files the passages came from, between Retrieve and Cite.
const SOURCES: statewise::ScratchKey<Vec<String>> = statewise::ScratchKey::new("documents.sources");

/// Ends the answer with its sources, streamed like the rest of it.
struct Cite;

impl State for Cite {
    fn name(&self) -> &str {
        "cite"
    }

    fn run<'a>(&'a self, env: &'a mut Env) -> EmitStream<'a> {
        Box::pin(statewise::try_stream! {
            let sources = env.scratch.get(&SOURCES).ok().flatten().unwrap_or_default();
            if !sources.is_empty() {
                let line = format!("\nSources: {}", sources.join(", "));
                yield Emit::AnswerToken(line.clone());
                env.answer.get_or_insert_with(String::new).push_str(&line);
            }
        })
    }

    fn transition(&self, _env: &Env) -> Next {
        Next::End
    }
}

/// The machine a run gets: the index job when the schedule's input asks
/// for it, else the answer.
fn machine(
    input: &RunAgentInput,
    dir: &Path,
    store: &Arc<dyn MemoryStore>,
    chat: &SharedModel,
) -> Machine {
    let job = input
        .forwarded_props
        .as_ref()
        .and_then(|p| p.get("job"))
        .and_then(Value::as_str);
    if job == Some("index") {
        return Machine::new("index").with_state(IndexFolder {
            dir: dir.to_path_buf(),
            store: Arc::clone(store),
        });
    }
    Machine::new("retrieve")
        .with_state(Retrieve {
            store: Arc::clone(store),
        })
        .with_state(Answer::with_model(Arc::clone(chat)).then("cite"))
        .with_state(Cite)
}

fn index_input() -> RunAgentInput {
    serde_json::from_value(json!({
        "threadId": "index", "runId": "index", "messages": [], "tools": [], "context": [],
        "state": null, "forwardedProps": { "job": "index" }
    }))
    .expect("a valid AG-UI input")
}

async fn run(args: Args) -> Result<(), String> {
    let embedder = CachedEmbedder::new(MiniLm::load_default().map_err(|e| e.to_string())?, 10_000);
    let store: Arc<dyn MemoryStore> =
        Arc::new(SqliteMemory::open(&args.db, embedder).map_err(|e| e.to_string())?);
    let (chat, _) = model::choose("documents").await?;
    let index = index_input();
    // Indexed once at the start, so the first question finds the folder.
    machine(&index, &args.docs, &store, &chat)
        .run(Env::new())
        .await
        .map_err(|e| e.to_string())?;
    let Some(question) = args.question else {
        let (dir, store2, chat2) = (args.docs.clone(), Arc::clone(&store), Arc::clone(&chat));
        let server = Server::new(move |input| machine(input, &dir, &store2, &chat2));
        let schedule = Schedule::new("index", &args.every, index).map_err(|e| e.to_string())?;
        let _job = server.schedule(schedule);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
            .await
            .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", args.port))?;
        if let Ok(addr) = listener.local_addr() {
            println!("serving on http://{addr}");
        }
        return server.serve(listener).await.map_err(|e| e.to_string());
    };
    let ask: RunAgentInput = serde_json::from_value(json!({
        "threadId": "ask", "runId": "ask", "tools": [], "context": [], "state": null,
        "forwardedProps": null,
        "messages": [{ "id": "q", "role": "user", "content": question }],
    }))
    .map_err(|e| e.to_string())?;
    let mut events = machine(&ask, &args.docs, &store, &chat).stream(ask.env());
    while let Some(event) = events.next().await {
        match event.kind {
            EventKind::Emitted(Emit::AnswerToken(text)) => print!("{text}"),
            EventKind::Failed(e) => return Err(e.to_string()),
            _ => {}
        }
    }
    println!();
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("documents: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("documents: {e}");
            ExitCode::FAILURE
        }
    }
}
