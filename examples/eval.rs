//! The evaluation bench: an agent over a dataset of cases, each scored by
//! its evaluators, with a report people read and exit codes CI can use.
//!
//! ```sh
//! cargo run --release --example eval -- DATASET.jsonl --out RESULTS.jsonl \
//!     [--model SPEC] [--report REPORT.html] [--baseline OLD.jsonl] [--concurrency N] \
//!     [--repeat N] [--judge SPEC] [--lane batch] [--queue redis://HOST] \
//!     [--fail-under SCORE] [--fail-on-regression]
//! cargo run --release --example eval -- compare OLD.jsonl NEW.jsonl [--fail-on-regression]
//! ```
//!
//! A case line: `{"id": "q1", "input": "What is 6 times 7?", "tags": ["math"],
//! "evaluators": [{"type": "regex", "pattern": "\\b42\\b"}]}`, or with
//! `"expected"` for `equals`/`contains` (see `statewise::eval::Check` for
//! every evaluator). YAML datasets (`.yaml`) hold a list of such cases.
//!
//! The model is `--model` (`openai:MODEL[@URL]`, `anthropic:MODEL`,
//! `local:PATH.gguf`), else the chat example's: a provider when
//! `OPENAI_BASE_URL`/`OPENAI_API_KEY` or `ANTHROPIC_API_KEY` is set, else
//! SmolLM2 in-process (built with `--features local`); the agent is the
//! chat example's. `--judge SPEC` grades `judge` evaluators with that
//! model, its verdicts cached in `RESULTS.jsonl.judge-cache.sqlite`.
//!
//! `--agent plain` asks the model plainly instead (one request, no tools),
//! the figure the chat agent is measured against. The clock's placeholders
//! in expected answers and evaluators (`{year}`, `{month}`, `{day}`,
//! `{weekday}`, `{date}`, `{hour}`) are filled in from the clock as each
//! case is scored;
//! `--var NAME=VALUE` adds or overrides one.
//!
//! Each case's line goes to RESULTS.jsonl (`id`, `output`/`answer`,
//! `scores`, `passed`, usage, latency, the trace's states and tool calls)
//! once it is scored; rerunning the same command after a crash or `kill -9`
//! runs only the cases not yet written. stdout gets the table by tag, the
//! comparison with `--baseline` (regressions first), and as its last line a
//! JSON summary: `{"cases": N, "passed": P, "score": P/N, ...}`.
//!
//! Exit code: 1 when the score is under `--fail-under` or, with
//! `--fail-on-regression`, any case got worse than in the baseline; 2 for
//! bad arguments or files.

#[path = "common/agent.rs"]
mod agent;
#[path = "common/clock.rs"]
mod clock;
#[path = "common/lane.rs"]
mod lane;
#[path = "common/model.rs"]
mod model;

use std::process::ExitCode;
use std::sync::Arc;

use statewise::dataset::Dataset;
use statewise::eval::{Comparison, Eval, Judge, Report};
use statewise::model::SharedModel;

#[derive(Default)]
struct Args {
    dataset: String,
    out: String,
    model: Option<String>,
    report: Option<String>,
    baseline: Option<String>,
    concurrency: Option<usize>,
    repeat: u32,
    judge: Option<String>,
    batch: bool,
    queue: Option<String>,
    fail_under: Option<f64>,
    fail_on_regression: bool,
    progress: bool,
    price: Option<statewise::model::Price>,
    plain: bool,
    vars: Vec<(String, String)>,
}

const USAGE: &str = "usage: eval DATASET.jsonl --out RESULTS.jsonl [--model SPEC] [--report REPORT.html] [--baseline OLD.jsonl] [--concurrency N] [--repeat N] [--judge SPEC] [--lane realtime|batch] [--queue redis://HOST] [--fail-under SCORE] [--fail-on-regression] [--price IN,OUT] [--agent chat|plain] [--var NAME=VALUE] [--progress]\n       eval compare OLD.jsonl NEW.jsonl [--fail-on-regression]";

fn number<T: std::str::FromStr>(flag: &str, value: Option<String>) -> Result<T, String> {
    let value = value.ok_or(format!("{flag} takes a value; {USAGE}"))?;
    value
        .parse()
        .map_err(|_| format!("{flag} takes a number, not {value:?}"))
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        repeat: 1,
        ..Args::default()
    };
    let mut files = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} takes a value; {USAGE}"));
        match arg.as_str() {
            "--out" => a.out = value()?,
            "--model" => a.model = Some(value()?),
            "--report" => a.report = Some(value()?),
            "--baseline" => a.baseline = Some(value()?),
            "--judge" => a.judge = Some(value()?),
            "--queue" => a.queue = Some(value()?),
            "--price" => a.price = Some(lane::price(&value()?)?),
            "--lane" => {
                a.batch = match value()?.as_str() {
                    "realtime" => false,
                    "batch" => true,
                    other => return Err(format!("--lane takes realtime or batch, not {other:?}")),
                }
            }
            "--concurrency" => a.concurrency = Some(number(&arg, args.next())?),
            "--repeat" => a.repeat = number(&arg, args.next())?,
            "--fail-under" => a.fail_under = Some(number(&arg, args.next())?),
            "--agent" => {
                a.plain = match value()?.as_str() {
                    "chat" => false,
                    "plain" => true,
                    other => return Err(format!("--agent takes chat or plain, not {other:?}")),
                }
            }
            "--var" => {
                let var = value()?;
                let (name, value) = var
                    .split_once('=')
                    .ok_or(format!("--var takes NAME=VALUE, not {var:?}"))?;
                a.vars.push((name.to_owned(), value.to_owned()));
            }
            "--fail-on-regression" => a.fail_on_regression = true,
            "--progress" => a.progress = true,
            flag if flag.starts_with("--") => {
                return Err(format!("unknown option {flag}; {USAGE}"))
            }
            _ => files.push(arg),
        }
    }
    let [dataset] = <[String; 1]>::try_from(files).map_err(|_| USAGE.to_owned())?;
    if a.out.is_empty() {
        return Err(format!("--out RESULTS.jsonl is required; {USAGE}"));
    }
    a.dataset = dataset;
    Ok(a)
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1).peekable();
    if argv.peek().map(String::as_str) == Some("compare") {
        return compare(argv.skip(1).collect());
    }
    let args = match parse_args(argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("eval: {e}");
            return ExitCode::from(2);
        }
    };
    let report = match run(&args).await {
        Ok(report) => report,
        Err(e) => {
            eprintln!("eval: {e}");
            return ExitCode::from(2);
        }
    };
    print!("{}", report.table());
    let mut summary = report.summary();
    let mut failed = args.fail_under.is_some_and(|s| report.score() < s);
    if let Some(baseline) = &args.baseline {
        match Comparison::read(baseline, &args.out) {
            Ok(c) => {
                print!("\n{c}");
                failed |= args.fail_on_regression && !c.regressions.is_empty();
                summary["regressions"] = c.regressions.len().into();
                summary["delta"] = c.delta().into();
            }
            Err(e) => {
                eprintln!("eval: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(path) = &args.report {
        if let Err(e) = std::fs::write(path, report.html(&format!("Eval of {}", args.dataset))) {
            eprintln!("eval: cannot write {path}: {e}");
            return ExitCode::from(2);
        }
        eprintln!("eval: report written to {path}");
    }
    println!("{summary}");
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn run(args: &Args) -> Result<Report, String> {
    let dataset = match &args.queue {
        Some(url) => lane::on_queue(url)?,
        None => Dataset::new(agent(args).await?),
    };
    let concurrency = args
        .concurrency
        .unwrap_or(if args.batch { 100_000 } else { 8 });
    let dataset = dataset
        .concurrency(concurrency)
        .repeat(args.repeat)
        .progress(args.progress);
    // The clock's values as each case is scored; `--var` wins over them.
    let mut eval = Eval::new().live_vars(clock::clock_vars);
    for (name, value) in &args.vars {
        eval = eval.var(name, value);
    }
    if let Some(spec) = &args.judge {
        eval = eval.judge(Judge::new(judge_model(spec, &args.out)?));
    }
    eval.run(dataset, &args.dataset, &args.out)
        .await
        .map_err(|e| e.to_string())
}

/// The chat example's agent (or with `--agent plain` the model asked
/// plainly) on `--model`, or on the chat example's model.
async fn agent(args: &Args) -> Result<statewise::Machine, String> {
    let (model, small) = model_of(args).await?;
    Ok(if args.plain {
        agent::plain_agent(model)
    } else {
        agent::chat_agent(model, small)
    })
}

/// The model, and whether it is the small local one.
async fn model_of(args: &Args) -> Result<(SharedModel, bool), String> {
    match &args.model {
        Some(spec) => {
            let spec = if spec.contains(':') {
                spec.clone()
            } else {
                format!("openai:{spec}")
            };
            let small = spec.starts_with("local:");
            let model = lane::model(&spec, args.batch, &args.out, None, args.price)?;
            Ok((model, small))
        }
        None if args.batch => Err("--lane batch needs --model openai:… or anthropic:…".into()),
        None => model::choose("eval").await,
    }
}

/// The judge's model behind a cache beside the results, so a rerun or a
/// second run over unchanged answers asks it nothing.
fn judge_model(spec: &str, out: &str) -> Result<SharedModel, String> {
    let model = statewise::spec::from_spec(spec).map_err(|e| e.to_string())?;
    let cache = statewise::layer::SqliteCache::open(format!("{out}.judge-cache.sqlite"))
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(statewise::layer::Cache::new(
        model,
        Arc::new(cache),
    )))
}

fn compare(files: Vec<String>) -> ExitCode {
    let fail_on_regression = files.iter().any(|f| f == "--fail-on-regression");
    let files: Vec<&String> = files.iter().filter(|f| !f.starts_with("--")).collect();
    let [before, after] = files[..] else {
        eprintln!("eval: {USAGE}");
        return ExitCode::from(2);
    };
    match Comparison::read(before, after) {
        Ok(c) => {
            print!("{c}");
            println!("{}", c.to_json());
            if fail_on_regression && !c.regressions.is_empty() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("eval: {e}");
            ExitCode::from(2)
        }
    }
}
