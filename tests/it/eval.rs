//! The evaluation bench: the eval example against an OpenAI-compatible
//! server (scores checked against an independent scoring of the outputs,
//! regressions failing CI), resuming after SIGKILL with every case scored
//! once, the library with YAML cases, env inputs, repeats, a judge and a
//! custom evaluator, and the HTML report in headless Chromium.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use serde_json::{json, Value};
use statewise::dataset::{Dataset, Item, ItemResult, Score};
use statewise::eval::{Eval, Evaluator, Judge, Report};
use statewise::model::{FnModel, Reply};
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::Usage;

use crate::support::{self, temp_dir, MockServer, Recorded};

/// The cases: marker, question, evaluators or expected, tags.
fn cases() -> Vec<Value> {
    vec![
        json!({"id": "calc", "input": "[calc] What is 6 times 7?", "tags": ["math"],
               "evaluators": [{"type": "regex", "pattern": "\\b42\\b"}, {"type": "tool_calls", "calls": [{"name": "calculator", "arguments": {"expression": {"$contains": "6"}}}]}]}),
        json!({"id": "capital", "input": "[capital] What is the capital of France?", "expected": "Paris", "tags": ["geo"]}),
        json!({"id": "wrong", "input": "[wrong] What is the capital of Germany?", "expected": "Berlin", "tags": ["geo"]}),
        json!({"id": "equals", "input": "[equals] Say yes.", "tags": ["format"], "evaluators": [{"type": "equals", "value": "yes"}]}),
        json!({"id": "number", "input": "[number] How many legs does a spider have?", "expected": 8, "tags": ["math"], "evaluators": [{"type": "number"}]}),
        json!({"id": "json", "input": "[json] Give a city as JSON.", "tags": ["format"],
               "evaluators": [{"type": "json_schema", "schema": {"type": "object", "required": ["city"]}}]}),
        json!({"id": "tokens", "input": "[tokens] Count to three.", "tags": ["limits"], "evaluators": [{"type": "max_tokens", "value": 10}]}),
        json!({"id": "latency", "input": "[latency] Hi", "tags": ["limits"], "evaluators": [{"type": "max_latency_ms", "value": 60000}]}),
        json!({"id": "none", "input": "[none] Tell me anything."}),
        json!({"id": "regexfail", "input": "[regexfail] What is 2+2?", "tags": ["math"], "evaluators": [{"type": "regex", "pattern": "\\b4\\b"}]}),
    ]
}

/// What the mock model answers each case; `worse` breaks three of them.
fn answer(request: &Recorded, worse: bool) -> String {
    let body = request.body.as_str();
    let pick = |good: &'static str, bad: &'static str| if worse { bad } else { good };
    let text = if body.contains("[calc]") {
        return support::react_reply(request);
    } else if body.contains("[capital]") {
        pick("The capital of France is Paris.", "It is Lyon.")
    } else if body.contains("[wrong]") {
        "Munich."
    } else if body.contains("[equals]") {
        pick("yes", "no")
    } else if body.contains("[number]") {
        pick("A spider has 8 legs.", "A spider has six legs.")
    } else if body.contains("[json]") {
        "{\"city\": \"Lisbon\"}"
    } else if body.contains("[tokens]") {
        "one two three"
    } else if body.contains("[latency]") {
        "Hello"
    } else if body.contains("[regexfail]") {
        "four"
    } else {
        "Anything."
    };
    json!({"final_answer": text}).to_string()
}

/// The same verdicts, written independently of the bench: each case's
/// pass rule applied to the `output` (and tool calls) of its line.
fn independent(line: &Value) -> bool {
    let out = line["output"].as_str().unwrap_or("").to_lowercase();
    let words: Vec<&str> = out
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    match line["id"].as_str().unwrap() {
        "calc" => {
            words.contains(&"42")
                && line["tool_calls"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["name"] == "calculator"))
        }
        "capital" => out.contains("paris"),
        "wrong" => out.contains("berlin"),
        "equals" => out.trim() == "yes",
        "number" => words.contains(&"8"),
        "json" => serde_json::from_str::<Value>(&out).is_ok_and(|v| v.get("city").is_some()),
        "tokens" => false, // 60 tokens a run, over the limit of 10
        "latency" | "none" => line["error"].is_null(),
        "regexfail" => words.contains(&"4"),
        other => panic!("unknown case {other}"),
    }
}

fn write_jsonl(path: &Path, lines: &[Value]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(path, text).unwrap();
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn mock(worse: Arc<AtomicBool>) -> MockServer {
    MockServer::start(move |request| {
        let usage = Usage {
            prompt_tokens: 50,
            completion_tokens: 10,
            ..Usage::default()
        };
        let text = answer(request, worse.load(Ordering::SeqCst));
        support::stream_pieces(
            support::sse_events(&text, Some(usage)),
            Duration::from_millis(1),
        )
    })
    .await
}

fn eval(server: &MockServer, args: &[&str]) -> Output {
    Command::new(support::example("eval"))
        .args(args)
        .env("OPENAI_BASE_URL", server.url("/v1"))
        .env_remove("OPENAI_API_KEY")
        .output()
        .expect("the eval example runs")
}

/// The last line of stdout, as JSON.
fn summary(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eval_command_scores_like_an_independent_scorer_and_fails_ci_on_regressions() {
    let worse = Arc::new(AtomicBool::new(false));
    let server = mock(worse.clone()).await;
    let dir = temp_dir("eval-command");
    let cases_path = dir.join("cases.jsonl");
    write_jsonl(&cases_path, &cases());
    let (base, new, html) = (
        dir.join("base.jsonl"),
        dir.join("new.jsonl"),
        dir.join("report.html"),
    );
    let s = |p: &PathBuf| p.to_str().unwrap().to_owned();

    let out = eval(
        &server,
        &[
            &s(&cases_path),
            "--out",
            &s(&base),
            "--model",
            "mock",
            "--report",
            &s(&html),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sum = summary(&out);
    let results = lines(&base);
    let passed = results.iter().filter(|l| independent(l)).count();
    assert_eq!(sum["cases"], 10, "{sum}");
    assert_eq!(sum["passed"], passed as u64, "{sum}");
    assert_eq!(
        passed, 7,
        "calc, capital, equals, number, json, latency and none pass; {sum}"
    );
    for line in &results {
        assert_eq!(line["passed"].as_bool(), Some(independent(line)), "{line}");
        assert!(
            line["scores"].as_array().is_some_and(|s| !s.is_empty()),
            "{line}"
        );
    }
    assert_eq!(sum["by_tag"]["geo"]["passed"], 1, "{sum}");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("geo") && table.contains("evaluator"),
        "{table}"
    );
    assert!(std::fs::read_to_string(&html).unwrap().contains("<svg"));

    // A complete results file is not run again: the gate reads it.
    let asked = server.requests().len();
    let gate = eval(
        &server,
        &[
            &s(&cases_path),
            "--out",
            &s(&base),
            "--model",
            "mock",
            "--fail-under",
            "0.9",
        ],
    );
    assert_eq!(gate.status.code(), Some(1), "0.7 is under 0.9");
    assert_eq!(server.requests().len(), asked, "nothing was run twice");

    worse.store(true, Ordering::SeqCst);
    let out = eval(
        &server,
        &[
            &s(&cases_path),
            "--out",
            &s(&new),
            "--model",
            "mock",
            "--baseline",
            &s(&base),
            "--fail-on-regression",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(summary(&out)["regressions"], 3);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let listed: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("worse   "))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(listed.len(), 3, "{stdout}");
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(sorted, ["capital", "equals", "number"], "{stdout}");

    let compare = |flag: Option<&str>| {
        let mut args = vec!["compare".to_owned(), s(&base), s(&new)];
        args.extend(flag.map(str::to_owned));
        Command::new(support::example("eval"))
            .args(&args)
            .output()
            .unwrap()
    };
    let out = compare(Some("--fail-on-regression"));
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first = stdout.lines().nth(1).unwrap_or_default();
    assert!(
        first.trim_start().starts_with("worse"),
        "regressions first: {stdout}"
    );
    assert_eq!(
        summary(&out)["regressions"].as_array().map(Vec::len),
        Some(3)
    );
    assert!(compare(None).status.success());
}

/// The eval example killed with SIGKILL five times during a 5,000-case
/// run, each time after a few hundred more cases, then run to the end:
/// every case is in the results once, in order, scored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_five_times_every_case_is_scored_exactly_once() {
    let server = mock(Arc::new(AtomicBool::new(false))).await;
    let dir = temp_dir("eval-kill");
    let n = 5000;
    let cases: Vec<Value> = (0..n)
        .map(|i| json!({"id": format!("k{i}"), "input": format!("[capital] Case {i}: what is the capital of France?"), "expected": "Paris", "tags": [format!("t{}", i % 4)]}))
        .collect();
    let input = dir.join("cases.jsonl");
    write_jsonl(&input, &cases);
    let output = dir.join("results.jsonl");
    let run = || {
        Command::new(support::example("eval"))
            .args([
                input.to_str().unwrap(),
                "--out",
                output.to_str().unwrap(),
                "--model",
                "mock",
                "--concurrency",
                "32",
            ])
            .env("OPENAI_BASE_URL", server.url("/v1"))
            .env_remove("OPENAI_API_KEY")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the eval example starts")
    };
    let complete = || {
        std::fs::read_to_string(&output)
            .unwrap_or_default()
            .matches('\n')
            .count()
    };
    let mut rng = fastrand::Rng::with_seed(33);
    let mut after_kills = Vec::new();
    for _ in 0..5 {
        let want = complete() + rng.usize(150..600);
        let mut child = run();
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while complete() < want && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix
        child.wait().unwrap();
        after_kills.push(complete());
    }
    let finished = run().wait_with_output().unwrap();
    assert!(
        finished.status.success(),
        "{}",
        String::from_utf8_lossy(&finished.stderr)
    );
    println!("eval kill test: complete lines after each SIGKILL: {after_kills:?}");
    assert!(
        after_kills.iter().all(|c| *c > 0 && *c < n),
        "every kill landed mid-run: {after_kills:?}"
    );

    let results = lines(&output);
    let ids: Vec<&str> = results.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let want: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
    assert_eq!(ids, want, "every case exactly once, in order");
    assert!(results
        .iter()
        .all(|r| r["passed"] == true && r["scores"].as_array().map(Vec::len) == Some(1)));
    let sum = summary(&finished);
    assert_eq!(
        (sum["cases"].as_u64(), sum["passed"].as_u64()),
        (Some(n as u64), Some(n as u64))
    );
    assert_eq!(sum["by_tag"]["t3"]["cases"], 1250);
}

/// Grades `answer` by its length, as a user's own evaluator would.
struct Short;

impl Evaluator for Short {
    fn evaluate<'a>(
        &'a self,
        _case: &'a Item,
        run: &'a ItemResult,
    ) -> futures::future::BoxFuture<'a, Score> {
        async move {
            let n = run.answer.as_deref().map_or(0, str::len);
            Score::new("short", n <= 12, format!("{n} characters")).with_value(n as u64)
        }
        .boxed()
    }
}

#[tokio::test]
async fn yaml_cases_env_inputs_repeats_a_judge_and_a_custom_evaluator() {
    let dir = temp_dir("eval-yaml");
    let input = dir.join("cases.yaml");
    std::fs::write(
        &input,
        r#"cases:
  - id: greet
    input:
      messages:
        - {role: system, content: "Answer in French."}
        - {role: user, content: "Say hello."}
    tags: [tone]
    evaluators:
      - {type: contains, value: bonjour}
      - {type: judge, rubric: "The answer greets the user in French."}
  - id: sum
    input: "What is 2 + 3?"
    expected: 5
    evaluators: [{type: number}]
"#,
    )
    .unwrap();
    // The agent's model answers from the conversation it was given; the
    // judge's passes what greets in French.
    let agent_model = Arc::new(FnModel::new("agent", |req| {
        let french = req
            .messages
            .iter()
            .any(|m| m.content.contains("Answer in French."));
        let answer = if french { "Bonjour !" } else { "2 + 3 = 5" };
        Ok(Reply::text(json!({"final_answer": answer}).to_string()))
    }));
    let judge_model = Arc::new(FnModel::new("judge", |req| {
        let greets = req.messages[1].content.contains("Bonjour");
        let verdict = if greets { "pass" } else { "fail" };
        Ok(Reply::text(
            json!({"reasoning": "Says bonjour.", "verdict": verdict}).to_string(),
        ))
    }));
    let machine = statewise_states::agent(agent_model, Toolbox::new(ToolRegistry::new()));
    let output = dir.join("results.jsonl");
    let report: Report = Eval::new()
        .judge(Judge::new(judge_model))
        .evaluator(Arc::new(Short))
        .run(Dataset::new(machine).repeat(3), &input, &output)
        .await
        .unwrap();
    assert_eq!(
        (report.total.cases, report.total.passed),
        (6, 6),
        "{}",
        report.table()
    );
    let consistency = report.consistency.unwrap();
    assert_eq!(
        (consistency.always, consistency.sometimes, consistency.never),
        (2, 0, 0)
    );
    let results = lines(&output);
    let repeats: Vec<u64> = results
        .iter()
        .map(|r| r["repeat"].as_u64().unwrap())
        .collect();
    assert_eq!(repeats, [1, 2, 3, 1, 2, 3]);
    let scores: HashMap<String, Value> = results[0]["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_owned(), s.clone()))
        .collect();
    assert_eq!(
        scores["judge"]["reason"], "Says bonjour.",
        "the judge's reasoning is kept"
    );
    assert_eq!(scores["short"]["value"], 9);
    assert_eq!(results[0]["tags"], json!(["tone"]));
    assert_eq!(results[3]["output"], "2 + 3 = 5");

    // Rerun: the results are complete, nothing runs, the report is the same.
    let again = Eval::new()
        .run(
            Dataset::new(statewise_states::agent(
                Arc::new(FnModel::new("unused", |_| panic!("ran again"))),
                Toolbox::new(ToolRegistry::new()),
            ))
            .repeat(3),
            &input,
            &output,
        )
        .await
        .unwrap();
    assert_eq!(again.total, report.total);
}

/// The HTML report of a run with failures, opened in Debian's Chromium:
/// no errors, nothing fetched, the charts and a failing case's drill-down
/// shown. The screenshot is saved under target/screenshots/.
#[cfg(feature = "server")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_opens_in_headless_chromium() {
    let chromium =
        PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    assert!(
        chromium.exists(),
        "{} is missing: run scripts/setup-tests",
        chromium.display()
    );
    let server = mock(Arc::new(AtomicBool::new(false))).await;
    let dir = temp_dir("eval-html");
    let cases_path = dir.join("cases.jsonl");
    write_jsonl(&cases_path, &cases());
    let (results, html) = (dir.join("results.jsonl"), dir.join("report.html"));
    let out = eval(
        &server,
        &[
            cases_path.to_str().unwrap(),
            "--out",
            results.to_str().unwrap(),
            "--model",
            "mock",
            "--report",
            html.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let screenshot = shots.join("eval-report.png");
    let _ = std::fs::remove_file(&screenshot);
    let seen = crate::agui::node(
        "report.mjs",
        &json!({"file": html, "screenshot": screenshot, "chromium": chromium}),
    )
    .await;
    assert!(seen.get("error").is_none(), "{seen}");
    assert_eq!(seen["consoleErrors"], json!([]), "{seen}");
    assert_eq!(seen["pageErrors"], json!([]), "{seen}");
    assert_eq!(seen["requests"], json!([]), "self-contained: {seen}");
    assert_eq!(
        seen["tagBars"], 10,
        "two bars for each of five tags: {seen}"
    );
    assert_eq!(seen["histograms"], 2, "{seen}");
    assert_eq!(seen["cases"], 10, "{seen}");
    let figures = seen["figures"].to_string();
    assert!(figures.contains("70.0%"), "{seen}");
    let drill = seen["drillDown"].as_str().unwrap();
    assert!(
        drill.contains("contains none of") && drill.contains("states:"),
        "{drill}"
    );
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000);
}

/// The eval command with no model named runs the chat example's embedded
/// model (SmolLM2 in-process); its summary matches an independent scoring
/// of the outputs, and `--var` fills a placeholder in an expected answer.
#[cfg(feature = "local")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eval_command_runs_the_embedded_model() {
    let dir = temp_dir("eval-local");
    let cases = [
        ("mul", "What is 6 times 7?", "{answer}"),
        ("add", "What is 15 + 27?", "42"),
        ("capital", "What is the capital of France?", "Paris"),
        ("sub", "What is 100 - 1?", "99"),
    ];
    let lines_in: Vec<Value> = cases
        .iter()
        .map(|(id, q, want)| json!({"id": id, "input": q, "expected": [want], "tags": ["local"]}))
        .collect();
    let (input, output) = (dir.join("cases.jsonl"), dir.join("results.jsonl"));
    write_jsonl(&input, &lines_in);
    let out = Command::new(support::example("eval"))
        .args([input.to_str().unwrap(), "--out", output.to_str().unwrap()])
        .args(["--var", "answer=42", "--concurrency", "1"])
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .output()
        .expect("the eval example runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sum = summary(&out);
    let results = lines(&output);
    assert_eq!(results.len(), cases.len());
    let right = |line: &Value| {
        let want = match line["id"].as_str().unwrap() {
            "capital" => return line["output"].as_str().unwrap().contains("Paris"),
            "sub" => "99",
            _ => "42",
        };
        let text = line["output"].as_str().unwrap_or("");
        text.split(|c: char| !c.is_ascii_digit() && c != '.')
            .any(|w| w.trim_end_matches(".0").trim_end_matches('.') == want)
    };
    let passed = results.iter().filter(|l| right(l)).count();
    assert_eq!(sum["cases"], 4, "{sum}");
    assert_eq!(sum["passed"], passed as u64, "{sum} {results:?}");
    assert!(
        passed >= 3,
        "the chat agent with its calculator: {results:?}"
    );
}
