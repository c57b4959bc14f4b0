//! Long-term memory from the command line: facts kept in a SQLite file,
//! embedded in process by all-MiniLM-L6-v2, found by keywords and meaning,
//! and a question answered from them by the embedded chat model.
//!
//! ```sh
//! cargo run --release --features memory-local --example memory -- --db mem.db add --ns alice "Alice's cat is called Miso."
//! cargo run --release --features memory-local --example memory -- --db mem.db search --ns alice --k 3 "What is the cat's name?"
//! cargo run --release --features memory-local --example memory -- --db mem.db ask --ns alice "What is my cat called?"
//! ```
//!
//! `add` prints the stored key (the same text twice is stored once);
//! `search` prints one JSON line per hit, best first, with `text` and
//! `score`; `ask` streams an answer written from the best three memories
//! and names them. A namespace is written `a/b/c`. No API settings are
//! needed: `scripts/fetch-model` and `scripts/fetch-model embedder` fetch
//! the two models (`scripts/setup-tests` does both); with `OPENAI_API_KEY` or
//! `ANTHROPIC_API_KEY` set, `ask` uses that chat model instead. With
//! `OPENAI_API_KEY` or `OPENAI_BASE_URL` set, memories are embedded by that
//! server too (`OPENAI_EMBEDDING_MODEL`, default `text-embedding-3-small`;
//! `OPENAI_EMBEDDING_DIMENSIONS` for a model OpenAI does not make). A
//! database keeps the model it was filled with and refuses another's.

#[path = "common/model.rs"]
mod model;

use std::process::ExitCode;

use futures::StreamExt;
use serde_json::json;
use statewise::env::Message;
use std::sync::Arc;

use statewise::memory::{
    content_key, Embedder, MemoryStore, MiniLm, OpenAiEmbedder, PutOptions, Search, SqliteMemory,
};
use statewise::model::{ChatRequest, ReplyStream, Streamed};
use statewise::RunSettings;

struct Args {
    db: String,
    command: String,
    ns: Vec<String>,
    k: usize,
    text: String,
}

const USAGE: &str = "usage: memory [--db PATH] (add|search|ask) --ns NS [--k K] \"TEXT\"";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        db: "memory.db".into(),
        command: String::new(),
        ns: Vec::new(),
        k: 3,
        text: String::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--db" => args.db = value()?,
            "--ns" => args.ns = value()?.split('/').map(str::to_owned).collect(),
            "--k" => args.k = value()?.parse().map_err(|e| format!("--k: {e}"))?,
            "add" | "search" | "ask" if args.command.is_empty() => args.command = arg,
            flag if flag.starts_with("--") => {
                return Err(format!("unknown option {flag}; {USAGE}"))
            }
            _ if args.text.is_empty() => args.text = arg,
            _ => return Err(format!("give the text as one argument (quote it); {USAGE}")),
        }
    }
    if args.command.is_empty() || args.ns.is_empty() || args.text.is_empty() {
        return Err(USAGE.into());
    }
    Ok(args)
}

/// The embedder: an OpenAI-compatible server's when its settings are set,
/// else MiniLM in process.
fn embedder() -> Result<Arc<dyn Embedder>, String> {
    let set = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if set("OPENAI_API_KEY").is_none() && set("OPENAI_BASE_URL").is_none() {
        return Ok(Arc::new(MiniLm::load_default().map_err(|e| e.to_string())?));
    }
    let model = set("OPENAI_EMBEDDING_MODEL").unwrap_or_else(|| "text-embedding-3-small".into());
    let mut builder = OpenAiEmbedder::builder(model).from_env();
    if let Some(dimensions) = set("OPENAI_EMBEDDING_DIMENSIONS") {
        let dimensions = dimensions
            .parse()
            .map_err(|e| format!("OPENAI_EMBEDDING_DIMENSIONS: {e}"))?;
        builder = builder.dimensions(dimensions);
    }
    Ok(Arc::new(builder.build().map_err(|e| e.to_string())?))
}

async fn run(args: Args) -> Result<(), String> {
    let embedder = embedder()?;
    let store = SqliteMemory::open(&args.db, embedder).map_err(|e| e.to_string())?;
    match args.command.as_str() {
        "add" => {
            let key = content_key("memory", args.text.trim());
            let value = json!({ "text": args.text.trim() });
            store
                .put(&args.ns, &key, value, PutOptions::default())
                .await
                .map_err(|e| e.to_string())?;
            println!("{key}");
        }
        "search" => {
            let search = Search::under(args.ns.clone())
                .query(&args.text)
                .page(args.k, 0);
            for hit in store.search(&search).await.map_err(|e| e.to_string())? {
                let line = json!({"key": hit.key, "text": hit.value["text"], "score": hit.score});
                println!("{line}");
            }
        }
        _ => ask(&store, &args).await?,
    }
    Ok(())
}

/// Answers `args.text` from the best memories, streaming the answer.
async fn ask(store: &SqliteMemory, args: &Args) -> Result<(), String> {
    let search = Search::under(args.ns.clone())
        .query(&args.text)
        .page(args.k, 0);
    let hits = store.search(&search).await.map_err(|e| e.to_string())?;
    let facts: Vec<String> = hits
        .iter()
        .filter_map(|h| h.value["text"].as_str().map(str::to_owned))
        .collect();
    let (chat, _) = model::choose("memory").await?;
    let notes: String = facts.iter().map(|f| format!("- {f}\n")).collect();
    let request = ChatRequest {
        messages: vec![
            Message::system(format!(
                "Answer the user's question in one sentence, using only these facts about them:\n{notes}"
            )),
            Message::user(args.text.clone()),
        ],
        ..ChatRequest::default()
    };
    let mut reply = ReplyStream::call(&*chat, request, &RunSettings::default());
    while let Some(piece) = reply.next().await {
        if let Streamed::Token(text) = piece.map_err(|e| e.to_string())? {
            print!("{text}");
        }
    }
    println!();
    for fact in facts {
        println!("  from: {fact}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("memory: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("memory: {e}");
            ExitCode::FAILURE
        }
    }
}
