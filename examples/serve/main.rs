//! An agent on the web: an AG-UI server and a page to talk to it.
//!
//! ```sh
//! cargo run --features server --example serve
//! # then open http://127.0.0.1:3000
//! ```
//!
//! Ask what time it is (a tool call, shown with its arguments and result),
//! or to email the team (a call that waits for your approval on the page).
//! Any AG-UI client can use the same agent at `POST /agent`; background
//! runs are under `/runs`, a WebSocket at `/ws`.
//!
//! The model is a deterministic stand-in that streams word by word (no
//! network, no model file); `--model SPEC` uses a real one
//! (`openai:gpt-4o-mini`, `local:PATH.gguf` with feature `local`).
//! `--native` makes the stand-in call its tools natively, as OpenAI and
//! Anthropic models do (it writes JSON actions otherwise, as small local
//! models do); the page shows the same either way. `--port N` changes the
//! port (0 picks a free one; the address is printed either way).
//! `--redis URL` (with feature `redis`) keeps the runs' checkpoints, which
//! run each paused thread waits in, and every run's event log on that
//! Redis, so two servers on one Redis serve one fleet: a thread paused on
//! one resumes on the other (or on the same one after a restart), and
//! either answers any run's status, replays its events from
//! `Last-Event-ID` and cancels it.
//!
//! `--api-key KEY` (repeatable) lets in only requests carrying
//! `Authorization: Bearer KEY`; each key is its own principal (`key1`,
//! `key2`, ... in the order given), and a run is answered only to the
//! principal that started it. The page needs no key to load, but its
//! requests do, so with keys set use an AG-UI client that sends one.

mod demo;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use statewise::guard::Principal;
use statewise::model::{FnModel, SharedModel};
use statewise::server::{ApiKeys, Server};
use statewise::tool::{ToolRegistry, Toolbox};

const PAGE: &str = include_str!("page.html");

struct Args {
    port: u16,
    model: Option<String>,
    native: bool,
    redis: Option<String>,
    api_keys: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        port: 3000,
        model: None,
        native: false,
        redis: None,
        api_keys: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--port" => args.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--model" => args.model = Some(value()?),
            "--native" => args.native = true,
            "--redis" => args.redis = Some(value()?),
            "--api-key" => args.api_keys.push(value()?),
            other => {
                return Err(format!(
                    "unknown argument {other} (try --port N, --model SPEC, --native, --redis URL, --api-key KEY)"
                ))
            }
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("serve: {e}");
            return ExitCode::from(2);
        }
    };
    let model: SharedModel = match &args.model {
        Some(spec) => match statewise::spec::from_spec(spec) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("serve: {e}");
                return ExitCode::FAILURE;
            }
        },
        None if args.native => Arc::new(
            FnModel::new("demo", demo::native_assistant)
                .native_tools(true)
                .paced(Duration::from_millis(40)),
        ),
        None => Arc::new(FnModel::new("demo", demo::assistant).paced(Duration::from_millis(40))),
    };
    let registry = Arc::new(
        ToolRegistry::new()
            .with(statewise_states::tools::Clock)
            .with(demo::SendEmail),
    );
    let server = Server::new(move |input| {
        let tools = Toolbox::new(Arc::clone(&registry))
            .require_approval(["send_email"])
            .with_client_tools(input.client_tools());
        statewise_states::agent(Arc::clone(&model), tools)
    })
    .with_page(PAGE);
    let server = match args.api_keys.is_empty() {
        true => server,
        false => {
            let keys = args
                .api_keys
                .iter()
                .enumerate()
                .fold(ApiKeys::new(), |keys, (i, key)| {
                    // Each key its own principal, holding every scope.
                    keys.key(
                        key,
                        Principal::new(format!("key{}", i + 1)).with_scopes(["*"]),
                    )
                });
            server.with_auth(keys)
        }
    };
    let server = match shared(server, args.redis.as_deref()) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("serve: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("serve: cannot listen on 127.0.0.1:{}: {e}", args.port);
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => println!("serving on http://{addr}"),
        Err(e) => eprintln!("serve: {e}"),
    }
    if let Err(e) = server.serve(listener).await {
        eprintln!("serve: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// `server` keeping its checkpoints, paused threads and run logs on the
/// Redis at `url`, if one is given.
#[cfg(feature = "redis")]
fn shared(server: Server, url: Option<&str>) -> Result<Server, String> {
    let Some(url) = url else { return Ok(server) };
    let store = statewise::store::RedisStore::open(url).map_err(|e| e.to_string())?;
    let threads = statewise::server::RedisThreads::open(url).map_err(|e| e.to_string())?;
    let logs = statewise::server::RedisRunLogs::open(url).map_err(|e| e.to_string())?;
    Ok(server
        .with_store(store)
        .with_threads(threads)
        .with_logs(logs))
}

#[cfg(not(feature = "redis"))]
fn shared(server: Server, url: Option<&str>) -> Result<Server, String> {
    match url {
        None => Ok(server),
        Some(_) => Err("--redis needs the `redis` feature (--features server,redis)".into()),
    }
}
