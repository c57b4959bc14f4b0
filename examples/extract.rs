//! Pull a contact out of free text as a typed value: prints one JSON object
//! of `Contact` on stdout, and nothing else there.
//!
//! ```sh
//! cargo run --release --features local --example extract -- "Mail Ada Lovelace at ada@example.com"
//! ```
//!
//! The machine is one stock [`Answer`] state and `.output::<Contact>()`:
//! the schema goes to the model's own constraint (the local model's grammar,
//! OpenAI's strict `json_schema`, a forced tool for Anthropic), the reply
//! is repaired and checked, and the model is asked again with what was
//! wrong, at most twice. Models as in the chat example: a provider when
//! `OPENAI_*` or `ANTHROPIC_*` are set, else SmolLM2-135M in-process.
//! `--log-json` and `--otlp` as there.
//!
//! ```sh
//! cargo run --release --features local --example extract -- --eval tests/data/contacts.json
//! ```
//!
//! `--eval FILE` runs every text of FILE (`[{"text", "expected"}]`) and
//! prints, instead, how many outputs fit the schema and how many of each
//! field were right (phones compared by their digits, other fields
//! ignoring case, a name also right when the output adds a title).

#[path = "common/logs.rs"]
mod logs;
#[path = "common/model.rs"]
mod model;

use std::process::ExitCode;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use statewise::model::{Params, SharedModel};
use statewise::{Env, Machine};
use statewise_states::{Answer, ANSWER};

/// A person's contact details, as far as the text gives them.
#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
struct Contact {
    /// The person's full name.
    #[schemars(length(max = 80))]
    name: String,
    /// Their email address.
    #[schemars(length(max = 80))]
    email: Option<String>,
    /// Their phone number, as written.
    #[schemars(length(max = 40))]
    phone: Option<String>,
    /// The company or organisation they work for.
    #[schemars(length(max = 80))]
    company: Option<String>,
}

/// What the model is asked; the text follows.
const ASK: &str = "Extract the contact details of the person in this text.";

#[tokio::main]
async fn main() -> ExitCode {
    let _telemetry = logs::init_from_args("statewise-extract");
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !matches!(a.as_str(), "--log-json" | "--otlp"))
        .collect();
    let eval = match args.as_slice() {
        [flag, file] if flag == "--eval" => Some(file.clone()),
        [text] if !text.starts_with("--") => None,
        _ => {
            eprintln!("usage: extract \"TEXT\" | extract --eval FILE  [--log-json] [--otlp]");
            return ExitCode::from(2);
        }
    };
    let model = match model::choose("extract").await {
        Ok((model, _small)) => model,
        Err(e) => {
            eprintln!("extract: {e}");
            return ExitCode::FAILURE;
        }
    };
    let machine = extractor(model);
    let result = match eval {
        Some(file) => evaluate(&machine, &file).await,
        None => extract(&machine, &args[0]).await.map(|contact| {
            // The one line on stdout.
            println!("{}", serde_json::to_string(&contact).unwrap_or_default());
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("extract: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One stock Answer state with a model, asked for a `Contact`.
fn extractor(model: SharedModel) -> Machine {
    let params = Params {
        temperature: Some(0.0),
        max_tokens: Some(200),
        ..Params::default()
    };
    Machine::new(ANSWER)
        .with_state(Answer::with_model(model).params(params))
        .output::<Contact>()
}

async fn extract(machine: &Machine, text: &str) -> Result<Contact, String> {
    let out = machine
        .run(Env::from_user(format!("{ASK}\n\n{text}")))
        .await
        .map_err(|failure| failure.to_string())?;
    let contact = out.output::<Contact>().map_err(|e| e.to_string())?;
    Ok(grounded(contact, text))
}

/// `contact` without the values `text` does not hold: a small model fills
/// gaps with made-up ones (`123-456-7890`, `name@example.com`). An email or
/// company must appear in the text (ignoring case), a phone number's
/// digits among the text's, and a company that is the person's name or the
/// email's domain is a gap filled too; the name is kept (it is required).
fn grounded(contact: Contact, text: &str) -> Contact {
    let lower = text.to_lowercase();
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    let written = |v: Option<String>| {
        v.filter(|v| !v.trim().is_empty() && lower.contains(&v.trim().to_lowercase()))
    };
    let phone = contact.phone.filter(|p| {
        let own: String = p.chars().filter(char::is_ascii_digit).collect();
        own.len() >= 4 && digits.contains(&own)
    });
    let email = written(contact.email).filter(|e| e.contains('@'));
    // Not the person's own name, nor the email's domain: gaps filled.
    let company = written(contact.company).filter(|c| {
        let c = c.trim().to_lowercase();
        c != contact.name.trim().to_lowercase()
            && !email
                .as_ref()
                .is_some_and(|e| e.to_lowercase().contains(&c))
    });
    Contact {
        name: contact.name,
        email,
        phone,
        company,
    }
}

#[derive(Deserialize)]
struct Case {
    text: String,
    expected: Contact,
}

async fn evaluate(machine: &Machine, file: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
    let cases: Vec<Case> = serde_json::from_str(&text).map_err(|e| format!("{file}: {e}"))?;
    let (mut fit, mut right, mut whole) = (0, [0usize; 4], 0);
    for case in &cases {
        let got = match extract(machine, &case.text).await {
            Ok(got) => got,
            Err(e) => {
                println!("no output for {:?}: {e}", case.text);
                continue;
            }
        };
        fit += 1;
        let e = &case.expected;
        let fields = [
            same(Some(&got.name), Some(&e.name), false),
            same(got.email.as_ref(), e.email.as_ref(), false),
            same(got.phone.as_ref(), e.phone.as_ref(), true),
            same(got.company.as_ref(), e.company.as_ref(), false),
        ];
        for (n, ok) in right.iter_mut().zip(fields) {
            *n += usize::from(ok);
        }
        whole += usize::from(fields.iter().all(|ok| *ok));
        if !fields.iter().all(|ok| *ok) {
            println!(
                "  {:?}\n    got {}",
                case.text,
                serde_json::to_string(&got).unwrap_or_default()
            );
        }
    }
    let n = cases.len();
    println!("outputs that fit the schema: {fit}/{n}");
    for (field, ok) in ["name", "email", "phone", "company"].iter().zip(right) {
        println!("{field:>8}: {ok}/{n}");
    }
    println!("all four right: {whole}/{n}");
    Ok(())
}

/// Whether a field is right: both absent (an empty string counts as
/// absent), or equal ignoring case and spacing (phones by their digits);
/// a got value that holds the expected one is right too ("Dr. Emily
/// Carter" for "Emily Carter").
fn same(got: Option<&String>, expected: Option<&String>, digits: bool) -> bool {
    let norm = |s: &String| -> String {
        match digits {
            true => s.chars().filter(char::is_ascii_digit).collect(),
            false => s
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase(),
        }
    };
    let got = got.map(norm).filter(|s| !s.is_empty());
    let expected = expected.map(norm).filter(|s| !s.is_empty());
    match (got, expected) {
        (None, None) => true,
        (Some(g), Some(e)) => g == e || (!digits && g.contains(&e)),
        _ => false,
    }
}
