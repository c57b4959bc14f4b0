//! Submits runs to the queue the `worker` example serves, and waits for
//! their outcomes.
//!
//! ```sh
//! cargo run --example submit --features redis -- --redis redis://127.0.0.1:6379 "Book a table for two"
//! cargo run --example submit --features redis -- --runs 100 "Order more coffee"
//! cargo run --example submit --features redis -- --follow "Book a table for two"
//! ```
//!
//! `--runs N` submits N runs of the request (ids `<id>-1` to `<id>-N`);
//! `--follow` prints the first run's events as its workers stream them.
//! Submitting a run id again does not queue it twice.
//!
//! `--log-json` writes structured logs (JSON lines, spans included) to
//! stderr; `RUST_LOG` filters them. `--otlp` (with `--features otel`)
//! sends the spans to `OTEL_EXPORTER_OTLP_ENDPOINT`.

#[path = "common/logs.rs"]
mod logs;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use futures::StreamExt;
use statewise::worker::RunQueue;
use statewise::Env;

struct Args {
    redis: String,
    prefix: String,
    machine: String,
    id: String,
    runs: usize,
    timeout: Duration,
    follow: bool,
    request: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        redis: std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        prefix: "statewise".into(),
        machine: "agent".into(),
        id: statewise::store::new_run_id(),
        runs: 1,
        timeout: Duration::from_secs(300),
        follow: false,
        request: String::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--log-json" | "--otlp" => {} // logs::init_from_args
            "--redis" => args.redis = value()?,
            "--prefix" => args.prefix = value()?,
            "--machine" => args.machine = value()?,
            "--id" => args.id = value()?,
            "--runs" => args.runs = value()?.parse().map_err(|_| "--runs takes a number")?,
            "--timeout" => {
                let s: u64 = value()?.parse().map_err(|_| "--timeout takes seconds")?;
                args.timeout = Duration::from_secs(s);
            }
            "--follow" => args.follow = true,
            other if other.starts_with("--") => return Err(format!("unknown argument {other}")),
            request => args.request = request.to_owned(),
        }
    }
    if args.request.is_empty() {
        return Err("give the request to submit, in quotes".into());
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    let _telemetry = logs::init_from_args("statewise-submit");
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("submit: {e}");
            return ExitCode::from(2);
        }
    };
    let queue = match RunQueue::open(&args.redis) {
        Ok(q) => q.with_prefix(&args.prefix),
        Err(e) => {
            eprintln!("submit: {e}");
            return ExitCode::from(2);
        }
    };
    let ids: Vec<String> = if args.runs == 1 {
        vec![args.id.clone()]
    } else {
        (1..=args.runs)
            .map(|i| format!("{}-{i}", args.id))
            .collect()
    };
    let started = Instant::now();
    let env = Env::from_user(args.request.as_str());
    for id in &ids {
        match queue.submit(&args.machine, id, &env).await {
            Ok(s) if s.new => {}
            Ok(_) => println!("{id}: already submitted; waiting for it"),
            Err(e) => {
                eprintln!("submit: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!("submitted {} run(s) of `{}`", ids.len(), args.machine);
    if args.follow {
        let mut events = std::pin::pin!(queue.events(&ids[0]));
        while let Some(event) = events.next().await {
            match event {
                Ok(e) => println!("  {} {}", ids[0], e),
                Err(e) => {
                    eprintln!("submit: {e}");
                    break;
                }
            }
        }
    }
    let mut failed = 0;
    for id in &ids {
        match queue.wait(id, args.timeout).await {
            Ok(outcome) => {
                let said = outcome.answer.or(outcome.error).unwrap_or_default();
                println!("{id}: {:?} by {}: {said}", outcome.status, outcome.worker);
                failed += usize::from(outcome.status != statewise::worker::OutcomeStatus::Finished);
            }
            Err(e) => {
                eprintln!("submit: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!(
        "{} run(s) ended in {:.1?}; {failed} did not finish",
        ids.len(),
        started.elapsed()
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
