//! `examples/repair.rs` as a user runs it.

use crate::support;

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(support::example("repair"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("example starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn repairs_stdin_to_compact_json() {
    let out = run(
        &[],
        "Here you go:\n```json\n{name: 'calculator', 'arguments': {'expression': '2+2',},\n```\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "{\"name\":\"calculator\",\"arguments\":{\"expression\":\"2+2\"}}\n"
    );
}

#[test]
fn nothing_salvageable_exits_1_with_a_message() {
    let out = run(&[], "I cannot help with that.");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no JSON object or array found"));
}

#[test]
fn lines_mode_reads_one_string_literal_per_line() {
    let input = [r#""{'a': 1,}""#, r#""no json""#, r#""[1, 2, 3""#].join("\n");
    let out = run(&["--lines"], &input);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "{\"a\":1}\nnull\n[1,2,3]\n"
    );
}

#[test]
fn lines_mode_rejects_a_line_that_is_not_a_string_literal() {
    let out = run(&["--lines"], "{not a string}\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1: not a JSON string literal"));
}
