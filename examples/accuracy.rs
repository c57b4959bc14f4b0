//! How often the chat example's agent answers everyday questions right,
//! next to the same model asked plainly: the figure in the README.
//!
//! ```sh
//! scripts/setup && cargo run --release --features local --example accuracy
//! cargo run --release --features local --example accuracy -- --verbose
//! cargo run --release --features local --example accuracy -- --questions OTHER.json
//! ```
//!
//! Runs SmolLM2-135M in-process (`STATEWISE_MODEL=path.gguf` picks another
//! file) on the questions of `tests/data/everyday_questions.jsonl` (the eval
//! bench's dataset format), greedy,
//! twice: through `statewise_states::small_agent` with the calculator and
//! the clock (what `examples/chat.rs` runs for a local model), and as one
//! plain request with no tools. A reply is right when it contains an
//! accepted answer (see `tests/data/README.md`).

#[path = "common/clock.rs"]
mod clock;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use serde::Deserialize;
use statewise::model::{
    default_model_path, ChatModel, ChatRequest, LocalModel, Params, SharedModel,
};
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::{Env, Message};
use statewise_states::tools::{Calculator, Clock};

#[derive(Deserialize)]
struct Question {
    kind: String,
    question: String,
    accept: Vec<String>,
}

/// The questions of `text`: the eval bench's dataset lines (`input`,
/// `expected` answers, the kind as the first tag), or a JSON list of
/// `{kind, question, accept}`.
fn questions(text: &str) -> Result<Vec<Question>, serde_json::Error> {
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(text);
    }
    #[derive(Deserialize)]
    struct Case {
        input: String,
        expected: Vec<String>,
        #[serde(default)]
        tags: Vec<String>,
    }
    let mut questions = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let case: Case = serde_json::from_str(line)?;
        questions.push(Question {
            kind: case.tags.into_iter().next().unwrap_or_else(|| "all".into()),
            question: case.input,
            accept: case.expected,
        });
    }
    Ok(questions)
}

/// `accept` with the clock's placeholders filled in.
fn filled(accept: &str, vars: &[(String, String)]) -> String {
    vars.iter().fold(accept.to_owned(), |text, (name, value)| {
        text.replace(&format!("{{{name}}}"), value)
    })
}

/// Whether `reply` contains `answer`, case-insensitively; a number must
/// stand on its own (`391.0` holds 391, `3910` does not).
fn contains(reply: &str, answer: &str) -> bool {
    let (reply, answer) = (reply.to_lowercase(), answer.to_lowercase());
    let numeric = answer.chars().all(|c| c.is_ascii_digit());
    reply.match_indices(&answer).any(|(at, _)| {
        if !numeric {
            return true;
        }
        let before = reply[..at].chars().next_back();
        let mut after = reply[at + answer.len()..].chars();
        let next = after.next();
        let digit_before = before.is_some_and(|c| c.is_ascii_digit() || c == '.');
        let digit_after = match next {
            Some(c) if c.is_ascii_digit() => true,
            // `391.0` and `391.` are fine, `391.5` is not.
            Some('.') => after.next().is_some_and(|c| c.is_ascii_digit() && c != '0'),
            _ => false,
        };
        !digit_before && !digit_after
    })
}

fn right(reply: &str, accept: &[String], vars: &[(String, String)]) -> bool {
    accept.iter().any(|a| contains(reply, &filled(a, vars)))
}

async fn plain(model: &dyn ChatModel, question: &str) -> String {
    let request = ChatRequest {
        params: Params {
            temperature: Some(0.0),
            max_tokens: Some(128),
            ..Params::default()
        },
        ..ChatRequest::new(vec![
            Message::system("You are a helpful assistant. Answer briefly."),
            Message::user(question),
        ])
    };
    let mut text = String::new();
    let mut chunks = model.stream(request);
    while let Some(chunk) = chunks.next().await {
        if let Ok(statewise::model::Chunk::Text(t)) = chunk {
            text.push_str(&t);
        }
    }
    text
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let verbose = args.iter().any(|a| a == "--verbose");
    // `--questions FILE`: another set in the same form.
    let file = args
        .iter()
        .position(|a| a == "--questions")
        .and_then(|i| args.get(i + 1))
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/everyday_questions.jsonl")
        });
    let path = default_model_path();
    if !path.exists() {
        eprintln!(
            "accuracy: no model at {}; run scripts/fetch-model",
            path.display()
        );
        std::process::exit(1);
    }
    let model: SharedModel = Arc::new(
        tokio::task::spawn_blocking(move || LocalModel::load(path))
            .await
            .unwrap()
            .expect("the model loads"),
    );
    let data = std::fs::read_to_string(&file).expect("the question set");
    let questions = questions(&data).expect("valid questions");
    let tools = Toolbox::new(ToolRegistry::new().with(Calculator).with(Clock));
    let examples = Calculator::examples().into_iter().chain(Clock::examples());
    let agent = statewise_states::small_agent(model.clone(), tools, examples);

    // kind -> (questions, agent right, plain right)
    let mut tally: BTreeMap<&str, (u32, u32, u32)> = BTreeMap::new();
    for q in &questions {
        let answered = agent
            .run(Env::from_user(q.question.as_str()))
            .await
            .map(|out| out.answer.unwrap_or_default())
            .unwrap_or_else(|failure| format!("(failed: {failure})"));
        let plainly = plain(&*model, &q.question).await;
        let vars = clock::clock_vars();
        let (a, p) = (
            right(&answered, &q.accept, &vars),
            right(&plainly, &q.accept, &vars),
        );
        let entry = tally.entry(q.kind.as_str()).or_default();
        *entry = (entry.0 + 1, entry.1 + u32::from(a), entry.2 + u32::from(p));
        if verbose {
            let mark = |ok| if ok { "right" } else { "WRONG" };
            println!(
                "{}\n  agent {}: {}\n  plain {}: {}",
                q.question,
                mark(a),
                one_line(&answered),
                mark(p),
                one_line(&plainly)
            );
        }
    }
    let total = tally
        .values()
        .fold((0, 0, 0), |t, v| (t.0 + v.0, t.1 + v.1, t.2 + v.2));
    let pct = |n: u32, of: u32| 100.0 * f64::from(n) / f64::from(of.max(1));
    println!(
        "{:<12} {:>9} {:>14} {:>14}",
        "kind", "questions", "chat agent", "plain model"
    );
    for (kind, (n, a, p)) in tally.iter().map(|(k, v)| (*k, *v)).chain([("all", total)]) {
        println!(
            "{kind:<12} {n:>9} {a:>6} ({:>3.0}%) {p:>6} ({:>3.0}%)",
            pct(a, n),
            pct(p, n)
        );
    }
}

fn one_line(text: &str) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    line.chars().take(160).collect()
}
