//! The batch runner: resuming after SIGKILL without losing or duplicating
//! an item, torn lines, and another dataset's output.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::support::{temp_dir, MockServer};
use statewise::dataset::{Dataset, DatasetError, ItemResult};
use statewise::model::{FnModel, Reply};
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::Usage;

fn dataset(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join("input.jsonl");
    let lines: String = (0..n)
        .map(|i| format!("{}\n", serde_json::json!({"id": format!("q{i}"), "input": format!("Question {i}: what is 6 * 7?"), "expected": "42"})))
        .collect();
    std::fs::write(&path, lines).unwrap();
    path
}

fn results(path: &Path) -> Vec<ItemResult> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is a whole result"))
        .collect()
}

fn complete_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .matches('\n')
        .count()
}

/// Starts the dataset example as a child against a local mock server, kills
/// it with SIGKILL five times, each after a few more results, resumes, and
/// checks that the output holds every id exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_survives_sigkill_five_times() {
    let server = MockServer::start(|request| {
        let usage = Usage {
            prompt_tokens: 50,
            completion_tokens: 10,
            ..Usage::default()
        };
        support::stream_pieces(
            support::sse_events(&support::react_reply(request), Some(usage)),
            Duration::from_millis(4),
        )
    })
    .await;
    let dir = temp_dir("kill");
    let n = 400;
    let input = dataset(&dir, n);
    let output = dir.join("output.jsonl");
    let exe = support::example("dataset");
    let run = || {
        Command::new(&exe)
            .args([
                input.to_str().unwrap(),
                output.to_str().unwrap(),
                "--concurrency",
                "8",
                "--model",
                "mock",
            ])
            .env("OPENAI_BASE_URL", server.url("/v1"))
            .env_remove("OPENAI_API_KEY")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the dataset example starts")
    };

    let mut rng = fastrand::Rng::with_seed(7);
    let mut after_kills = Vec::new();
    for _ in 0..5 {
        // Killed once it has written a few more results (not after a
        // time, which a slow machine turns into a kill before any work or
        // after all of it).
        let want = complete_lines(&output) + rng.usize(5..40);
        let mut child = run();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while complete_lines(&output) < want && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix
        child.wait().unwrap();
        after_kills.push(complete_lines(&output));
    }
    let finished = run().wait_with_output().unwrap();
    assert!(
        finished.status.success(),
        "{}",
        String::from_utf8_lossy(&finished.stderr)
    );

    let got = results(&output);
    let ids: Vec<&str> = got.iter().map(|r| r.id.as_str()).collect();
    let want: Vec<String> = (0..n).map(|i| format!("q{i}")).collect();
    assert_eq!(ids, want, "every id exactly once, in input order");
    assert!(got
        .iter()
        .all(|r| r.error.is_none() && r.passed == Some(true)));
    let mid_run = after_kills.iter().filter(|c| **c > 0 && **c < n).count();
    println!("batch kill test: complete lines after each SIGKILL: {after_kills:?}");
    assert_eq!(mid_run, 5, "every kill landed mid-batch: {after_kills:?}");
    assert!(
        after_kills.windows(2).all(|w| w[0] <= w[1]),
        "resumed runs never lose results: {after_kills:?}"
    );
}

fn answering_machine() -> statewise::Machine {
    let model = Arc::new(FnModel::new("echo", |req| {
        let q = req
            .messages
            .last()
            .map(|m| m.content.clone())
            .unwrap_or_default();
        Ok(Reply::text(
            serde_json::json!({"final_answer": format!("re: {q}")}).to_string(),
        ))
    }));
    statewise_states::agent(model, Toolbox::new(ToolRegistry::new()))
}

#[tokio::test]
async fn a_torn_last_line_is_run_again() {
    let dir = temp_dir("torn");
    let input = dataset(&dir, 5);
    let output = dir.join("output.jsonl");
    let batch = Dataset::new(answering_machine()).progress(false);
    batch.run(&input, &output).await.unwrap();
    // Keep two results and half of the third, as a crash mid-write would.
    let text = std::fs::read_to_string(&output).unwrap();
    let cut = text.match_indices('\n').nth(1).unwrap().0 + 1 + 20;
    std::fs::write(&output, &text[..cut]).unwrap();
    let summary = batch.run(&input, &output).await.unwrap();
    assert_eq!((summary.total, summary.resumed), (5, 2));
    let ids: Vec<String> = results(&output).into_iter().map(|r| r.id).collect();
    assert_eq!(ids, ["q0", "q1", "q2", "q3", "q4"]);
    assert_eq!(summary.checked, 5);
}

#[tokio::test]
async fn another_datasets_output_is_refused_and_bad_lines_are_typed() {
    let dir = temp_dir("mismatch");
    let input = dataset(&dir, 3);
    let output = dir.join("output.jsonl");
    std::fs::write(
        &output,
        "{\"id\":\"zz\",\"answer\":null,\"path\":[],\"usage\":{},\"latency_ms\":1.0}\n",
    )
    .unwrap();
    let e = Dataset::new(answering_machine())
        .progress(false)
        .run(&input, &output)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, DatasetError::Mismatch { line: 1, expected, found, .. } if expected == "q0" && found == "zz"),
        "{e}"
    );

    std::fs::write(&output, "{\"id\":\"q0\"}\n").unwrap();
    let e = Dataset::new(answering_machine())
        .progress(false)
        .run(&input, &output)
        .await
        .unwrap_err();
    assert!(matches!(e, DatasetError::NotResults { line: 1, .. }), "{e}");
    assert_eq!(
        std::fs::read_to_string(&output).unwrap(),
        "{\"id\":\"q0\"}\n",
        "nothing is cut from a file that is not ours"
    );

    std::fs::write(&input, "{\"input\": \"ok\"}\nnot json\n").unwrap();
    let e = Dataset::new(answering_machine())
        .progress(false)
        .run(&input, dir.join("out2.jsonl"))
        .await
        .unwrap_err();
    assert!(matches!(e, DatasetError::BadItem { line: 2, .. }), "{e}");
    let e = Dataset::new(answering_machine())
        .run(dir.join("missing.jsonl"), dir.join("o.jsonl"))
        .await
        .unwrap_err();
    assert!(matches!(e, DatasetError::Io { .. }));
}

/// `--schema FILE`: every item is asked for the schema's object (the
/// provider's `response_format`), and each output line carries it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_with_a_schema_writes_one_typed_object_per_line() {
    let server = MockServer::start(|request| {
        let body = request.json();
        let format = &body["response_format"]["json_schema"];
        let text = match format["schema"]["properties"].get("product") {
            // The answer state, asked for the schema: 6 * 7, as an object;
            // the first item's first try has the wrong type.
            Some(_) => {
                assert_eq!(format["strict"], true);
                let retried = body["messages"].as_array().unwrap().iter().any(|m| {
                    m["content"]
                        .as_str()
                        .is_some_and(|c| c.contains("does not fit"))
                });
                let first = body.to_string().contains("Question 0:");
                match first && !retried {
                    true => r#"{"product": "42", "factors": [6, 7]}"#.to_owned(),
                    false => r#"{"product": 42, "factors": [6, 7]}"#.to_owned(),
                }
            }
            // Reasoning, asked for a JSON action.
            None => support::react_reply(request),
        };
        support::stream_pieces(
            support::sse_events(&text, Some(Usage::default())),
            Duration::ZERO,
        )
    })
    .await;
    let dir = temp_dir("schema");
    let input = dataset(&dir, 3);
    let schema = dir.join("product.json");
    std::fs::write(
        &schema,
        serde_json::json!({
            "type": "object",
            "properties": {
                "product": {"type": "integer"},
                "factors": {"type": "array", "items": {"type": "integer"}}
            },
            "required": ["product", "factors"]
        })
        .to_string(),
    )
    .unwrap();
    let output = dir.join("output.jsonl");
    let run = Command::new(support::example("dataset"))
        .args([
            input.to_str().unwrap(),
            output.to_str().unwrap(),
            "--model",
            "mock",
            "--schema",
            schema.to_str().unwrap(),
        ])
        .env("OPENAI_BASE_URL", server.url("/v1"))
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let got = results(&output);
    assert_eq!(got.len(), 3);
    for r in &got {
        assert_eq!(
            r.output,
            Some(serde_json::json!({"product": 42, "factors": [6, 7]})),
            "{r:?}"
        );
        assert_eq!(r.path, ["reasoning", "tools", "reasoning", "answer"]);
    }
}
