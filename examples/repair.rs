//! Repairs the JSON in model output.
//!
//! ```sh
//! echo "{name: 'calc', args: {x: 1,}" | cargo run --example repair
//! cargo run --example repair -- --lines < inputs.jsonl
//! ```
//!
//! Reads model output on stdin and prints the repaired JSON, compact, on
//! stdout; exits 1 with a message on stderr when nothing is salvageable.
//! With `--lines`, each stdin line is a JSON string literal holding one
//! input, and each stdout line is the repaired value or `null`.

use std::io::{BufRead, Read, Write};
use std::process::ExitCode;

use statewise::action::repair;

fn main() -> ExitCode {
    let lines = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--lines") => true,
        Some(other) => {
            eprintln!("unknown argument {other:?}; usage: repair [--lines] < INPUT");
            return ExitCode::from(2);
        }
    };
    let result = if lines { repair_lines() } else { repair_all() };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("repair: {e}");
            ExitCode::FAILURE
        }
    }
}

fn repair_all() -> std::io::Result<ExitCode> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    match repair(&text) {
        Ok(value) => {
            println!("{value}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("repair: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn repair_lines() -> std::io::Result<ExitCode> {
    let stdin = std::io::stdin().lock();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (n, line) in stdin.lines().enumerate() {
        let line = line?;
        let input: String = match serde_json::from_str(&line) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("repair: line {}: not a JSON string literal: {e}", n + 1);
                return Ok(ExitCode::FAILURE);
            }
        };
        match repair(&input) {
            Ok(value) => writeln!(out, "{value}")?,
            Err(_) => writeln!(out, "null")?,
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
