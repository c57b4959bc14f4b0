//! Shows a JSONL trace as a timeline per run and a Mermaid flowchart of
//! the steps (paste it into any Mermaid viewer, or a GitHub comment).
//!
//! ```sh
//! cargo run --example openai -- "What is 17 * 23?" --trace trace.jsonl
//! cargo run --example trace_view -- trace.jsonl [--run ID]
//! ```

use std::process::ExitCode;

use statewise::replay::Recording;
use statewise::trace::{read_jsonl, StepRecord, TraceRecord};
use statewise::Action;

/// What a step did, in a few words.
fn summary(step: &StepRecord) -> String {
    if let Some(e) = &step.error {
        return format!("failed: {}", e.kind);
    }
    if !step.tools.is_empty() {
        let calls: Vec<String> = step
            .tools
            .iter()
            .map(|t| {
                let out = t.output.as_ref().map(|o| o.to_string()).unwrap_or_default();
                format!("{}({}) = {}", t.call.name, t.call.arguments, out)
            })
            .collect();
        return calls.join("; ");
    }
    match &step.action {
        Some(Action::ToolCalls(calls)) => {
            let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
            format!("calls {}", names.join(", "))
        }
        Some(Action::FinalAnswer(_)) => "decides to answer".to_owned(),
        None => match &step.answer {
            Some(a) => format!("answers {:?}", shorten(a, 60)),
            None => String::new(),
        },
    }
}

fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// Mermaid labels cannot hold quotes or brackets.
fn label(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' => '\'',
            '[' | '{' => '(',
            ']' | '}' => ')',
            '<' | '>' | '|' => ' ',
            c => c,
        })
        .collect()
}

fn print_run(recording: &Recording) {
    let start = recording.start.started_ms;
    let resumed = recording
        .start
        .resumed_at
        .map(|s| format!(", resumed after step {s}"))
        .unwrap_or_default();
    println!("run {}{resumed}", recording.run_id());
    for step in &recording.steps {
        let next = match &step.next {
            Some(statewise::Next::To(s)) => format!("→ {s}"),
            Some(statewise::Next::End) => "→ end".to_owned(),
            Some(statewise::Next::Fork(f)) => format!("⑂ {} → {}", f.branches.len(), f.join),
            Some(statewise::Next::Interrupt { request, .. }) => format!("⏸ {}", request.id),
            None => "✗".to_owned(),
        };
        let cached = step.usage.cached_responses;
        let cache = if cached > 0 {
            format!(" ({cached} cached)")
        } else {
            String::new()
        };
        println!(
            "  +{:>6} ms  {:>2} {:<10} {:>7.1} ms  {:>5}+{:<4} tok{cache}  {next:<12} {}",
            step.started_ms.saturating_sub(start),
            step.step,
            step.state,
            step.elapsed_ms,
            step.usage.prompt_tokens,
            step.usage.completion_tokens,
            summary(step),
        );
    }
    match &recording.end {
        Some(end) => {
            let outcome = match &end.error {
                Some(e) => format!("failed ({}): {}", e.kind, e.message),
                None => format!("answer: {}", end.answer.as_deref().unwrap_or("(none)")),
            };
            println!(
                "  end after {:.0} ms, {}+{} tokens, ${:.6}; {outcome}",
                end.elapsed_ms,
                end.usage.prompt_tokens,
                end.usage.completion_tokens,
                end.usage.cost
            );
        }
        None => println!("  (no end record: the run was cut off)"),
    }

    println!("\n```mermaid\nflowchart LR");
    println!("    start((start))");
    let mut previous = "start".to_owned();
    for step in &recording.steps {
        let id = format!("s{}", step.step);
        println!(
            "    {id}[\"{} {}<br/>{:.0} ms<br/>{}\"]",
            step.step,
            step.state,
            step.elapsed_ms,
            label(&shorten(&summary(step), 48))
        );
        println!("    {previous} --> {id}");
        previous = id;
    }
    if recording.end.as_ref().is_some_and(|e| e.error.is_none()) {
        println!("    stop((end))\n    {previous} --> stop");
    }
    println!("```\n");
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut path, mut run) = (None, None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--run" => run = args.next(),
            _ => path = Some(arg),
        }
    }
    let Some(path) = path else {
        eprintln!("usage: trace_view TRACE.jsonl [--run ID]");
        return ExitCode::from(2);
    };
    let records = match read_jsonl(&path) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("trace_view: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut runs: Vec<&str> = records
        .iter()
        .filter(|r| matches!(r, TraceRecord::Run(_)))
        .map(TraceRecord::run_id)
        .filter(|id| run.as_deref().is_none_or(|r| r == *id))
        .collect();
    runs.dedup();
    if runs.is_empty() {
        eprintln!(
            "trace_view: no run{} in {path}",
            run.map(|r| format!(" {r}")).unwrap_or_default()
        );
        return ExitCode::FAILURE;
    }
    for id in runs {
        match Recording::from_records(&records, Some(id)) {
            Ok(recording) => print_run(&recording),
            Err(e) => eprintln!("trace_view: {e}"),
        }
    }
    ExitCode::SUCCESS
}
