//! How the evaluation bench scales: N cases of about 100 tokens each
//! through the stock agent on a scripted model, scored and reported, with
//! the throughput and the process's peak memory printed at the end.
//!
//! ```sh
//! cargo run --release --example eval_bench -- [--cases 1000000] [--dir DIR] [--concurrency 64]
//! ```
//!
//! The dataset is written to `DIR/cases-N.jsonl` once (DIR defaults to the
//! system's temporary folder) and the results to `DIR/results-N.jsonl`,
//! which is removed first unless `--resume` is given: with it, a run killed
//! part way goes on from where it stopped. The scripted model adds the two
//! numbers each case asks about, and gets every tenth case wrong on
//! purpose, so the score must come out at 90%.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use statewise::dataset::Dataset;
use statewise::eval::{Eval, Report};
use statewise::model::{FnModel, Reply};
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::Usage;

const FILLER: &str = "The warehouse keeps its ledgers by hand, and each clerk adds the morning and evening counts before the shift ends so that nothing is lost between the two tallies of the day.";

fn write_cases(path: &PathBuf, n: u64) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for i in 0..n {
        let (a, b) = (i % 997, i % 89 + 3);
        let tag = ["ledger", "stock", "returns"][(i % 3) as usize];
        let case = serde_json::json!({
            "id": format!("c{i}"),
            "input": format!("Case {i}. {FILLER} {FILLER} The morning count is {a} and the evening count is {b}. What is the total of the two counts?"),
            "tags": [tag],
            "evaluators": [{"type": "number", "value": a + b}, {"type": "max_tokens", "value": 400}],
        });
        writeln!(out, "{case}")?;
    }
    out.flush()
}

/// Peak resident memory of this process, from /proc (Linux).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn machine() -> statewise::Machine {
    let model = Arc::new(FnModel::new("scripted-adder", |req| {
        let question = req
            .messages
            .last()
            .map(|m| m.content.as_str())
            .unwrap_or("");
        let numbers: Vec<u64> = question
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|w| w.parse().ok())
            .collect();
        let (id, a, b) = match numbers[..] {
            [id, a, b, ..] => (id, a, b),
            _ => (0, 0, 0),
        };
        let total = if id % 10 == 9 { a + b + 1 } else { a + b };
        let usage = Usage {
            prompt_tokens: 110,
            completion_tokens: 12,
            ..Usage::default()
        };
        Ok(Reply::text(
            serde_json::json!({"final_answer": format!("The total is {total}.")}).to_string(),
        )
        .with_usage(usage))
    }));
    statewise_states::agent(model, Toolbox::new(ToolRegistry::new()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut cases, mut dir, mut concurrency, mut resume) =
        (1_000_000u64, std::env::temp_dir(), 64usize, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--cases" => cases = args.next().ok_or("--cases N")?.parse()?,
            "--dir" => dir = PathBuf::from(args.next().ok_or("--dir DIR")?),
            "--concurrency" => concurrency = args.next().ok_or("--concurrency N")?.parse()?,
            "--resume" => resume = true,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let input = dir.join(format!("cases-{cases}.jsonl"));
    let output = dir.join(format!("results-{cases}.jsonl"));
    if !input.exists() {
        let started = Instant::now();
        write_cases(&input, cases)?;
        eprintln!("wrote {} in {:.1?}", input.display(), started.elapsed());
    }
    if !resume {
        let _ = std::fs::remove_file(&output);
    }
    let started = Instant::now();
    let dataset = Dataset::new(machine())
        .concurrency(concurrency)
        .progress(true);
    let report: Report = Eval::new().run(dataset, &input, &output).await?;
    let secs = started.elapsed().as_secs_f64();
    let tokens = report.usage.total_tokens();
    print!("{}", report.table());
    println!(
        "eval_bench: {} cases in {secs:.1} s: {:.0} cases/s, {:.0} tokens/s; score {:.4}; peak memory {:.0} MB",
        report.total.cases,
        report.total.cases as f64 / secs,
        tokens as f64 / secs,
        report.score(),
        peak_rss_mb().unwrap_or(f64::NAN)
    );
    Ok(())
}
