//! Traces: what a step record holds, both sinks, redaction, `tracing`
//! and the openai example's `--trace` with a real API key set. Spans are in
//! tests/spans.rs.

use crate::support;

use std::process::Command;
use std::sync::Arc;

use crate::support::{react_response, temp_dir, usage, MockServer};
use futures::future::BoxFuture;
use serde_json::json;
use statewise::model::{Reply, ScriptedModel};
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::trace::{
    read_jsonl, JsonlSink, Line, SqliteSink, TraceError, TraceRecord, TraceSink, Tracer,
};
use statewise::{Action, Env, Machine, Next, Usage};
use statewise_states::tools::Calculator;

const SECRET: &str = "hunter2-hunter2-hunter2";

/// A broken JSON tool call, then the answer.
fn agent() -> Machine {
    let model = ScriptedModel::new()
        .reply(
            Reply::text("{'tool_calls': [{'name': 'calculator', 'arguments': {'expression': '1234 * 5678'}}]}")
                .with_usage(usage(210, 24)),
        )
        .reply(Reply::text(r#"{"final_answer": "It is 7006652."}"#).with_usage(usage(262, 15)));
    statewise_states::agent(
        Arc::new(model),
        Toolbox::new(ToolRegistry::new().with(Calculator)),
    )
}

fn steps(records: &[TraceRecord]) -> Vec<&statewise::trace::StepRecord> {
    records
        .iter()
        .filter_map(|r| match r {
            TraceRecord::Step(s) => Some(&**s),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_record_holds_the_whole_data_flow() {
    let dir = temp_dir("trace-flow");
    let (jsonl, db) = (dir.join("trace.jsonl"), dir.join("trace.sqlite"));
    let sqlite = SqliteSink::open(&db).unwrap();
    let tracer = Tracer::new()
        .with_sink(JsonlSink::append(&jsonl).unwrap())
        .with_sink(sqlite.clone())
        .redact(SECRET);
    let question = format!("What is 1234 * 5678? (my password is {SECRET})");
    let out = agent()
        .with_tracer(tracer)
        .run(Env::from_user(question))
        .await
        .unwrap();

    let records = read_jsonl(&jsonl).unwrap();
    let TraceRecord::Run(start) = &records[0] else {
        panic!("the trace opens with the run: {:?}", records[0]);
    };
    assert_eq!(start.run_id, out.run_id);
    assert_eq!(start.start, "reasoning");

    let steps = steps(&records);
    let states: Vec<&str> = steps.iter().map(|s| s.state.as_str()).collect();
    assert_eq!(states, out.path);
    // Reasoning: the request, the raw text, the repaired JSON, the action.
    let reasoning = steps[0];
    assert_eq!(reasoning.step, 1);
    assert_eq!(reasoning.model_calls.len(), 1);
    let call = &reasoning.model_calls[0];
    assert_eq!(call.model, "scripted");
    assert!(call.request.messages[0].content.contains("calculator"));
    assert!(reasoning.text.starts_with("{'tool_calls'"));
    assert_eq!(
        reasoning.repaired,
        Some(
            json!({"tool_calls": [{"name": "calculator", "arguments": {"expression": "1234 * 5678"}}]})
        )
    );
    assert!(matches!(&reasoning.action, Some(Action::ToolCalls(c)) if c[0].name == "calculator"));
    assert_eq!(reasoning.usage, usage(210, 24));
    assert_eq!(reasoning.next, Some(Next::to("tools")));
    assert!(reasoning.env_before.messages.len() == 1 && reasoning.env_before.step == 0);
    // Action: the tool's input and output.
    let action = steps[1];
    assert_eq!(action.tools.len(), 1);
    assert_eq!(
        action.tools[0].call.arguments,
        json!({"expression": "1234 * 5678"})
    );
    assert_eq!(action.tools[0].output, Some(json!(7006652)));
    assert!(!action.tools[0].is_error);
    assert_eq!(action.env_before.step, 1);
    // Answer, and the end of the run.
    assert_eq!(
        steps.last().unwrap().answer.as_deref(),
        Some("It is 7006652.")
    );
    let TraceRecord::End(end) = records.last().unwrap() else {
        panic!("the trace closes with the end");
    };
    assert_eq!(end.answer, out.answer);
    assert_eq!(end.path, out.path);
    assert_eq!(end.usage, out.env.usage);
    let mut summed = Usage::default();
    steps.iter().for_each(|s| summed.add(&s.usage));
    assert_eq!(summed, end.usage);
    assert!(end.error.is_none());

    // The secret is nowhere, though the question held it.
    let text = std::fs::read_to_string(&jsonl).unwrap();
    assert!(!text.contains(SECRET));
    assert!(text.contains("my password is [redacted]"));
    // SQLite holds the same records.
    assert_eq!(sqlite.read(Some(&out.run_id)).await.unwrap(), records);
}

#[tokio::test]
async fn a_failed_run_records_its_error() {
    let dir = temp_dir("trace-failure");
    let path = dir.join("trace.jsonl");
    let machine = statewise_states::agent(
        Arc::new(ScriptedModel::new().error("the model is down")),
        Toolbox::new(ToolRegistry::new()),
    )
    .with_tracer(Tracer::jsonl(&path).unwrap());
    let failure = machine.run(Env::from_user("hi")).await.unwrap_err();
    let records = read_jsonl(&path).unwrap();
    let step = steps(&records)[0];
    assert_eq!(step.next, None);
    let error = step.error.as_ref().unwrap();
    assert!(error.kind.starts_with("model:"), "{error:?}");
    assert!(error.message.contains("the model is down"));
    let TraceRecord::End(end) = records.last().unwrap() else {
        panic!("no end record");
    };
    assert_eq!(end.run_id, failure.run_id);
    assert_eq!(end.error.as_ref().unwrap().kind, error.kind);
}

/// A sink on a full disk.
struct Broken;

impl TraceSink for Broken {
    fn write<'a>(&'a self, _: &'a Line) -> BoxFuture<'a, Result<(), TraceError>> {
        Box::pin(async {
            Err(TraceError::Io {
                path: "trace.jsonl".into(),
                source: std::io::Error::other("no space left on device"),
            })
        })
    }
}

#[tokio::test]
async fn a_trace_that_cannot_be_written_fails_the_run() {
    let failure = agent()
        .with_tracer(Tracer::new().with_sink(Broken))
        .run(Env::from_user("1234 * 5678?"))
        .await
        .unwrap_err();
    assert_eq!(failure.error.code(), "trace");
}

/// The openai example with `OPENAI_API_KEY` set and `--trace`: the key is
/// sent (the server sees it) but appears nowhere in the trace, though the
/// question and the model's reply both quote it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_never_reaches_the_trace() {
    const KEY: &str = "live-key-Zq8Xw3Lm9Pv2Tt7Rr";
    let server = MockServer::start(|req| {
        let reply = support::react_reply(req);
        if reply.contains("final_answer") {
            let leaky = json!({"final_answer": format!("6 * 7 = 42 (you told me {KEY})")});
            support::streamed_reply(&leaky.to_string(), usage(30, 10))
        } else {
            react_response(req, usage(30, 10))
        }
    })
    .await;
    let dir = temp_dir("trace-key");
    let trace = dir.join("trace.jsonl");
    let out = Command::new(support::example("openai"))
        .args([&format!("What is 6 * 7? My key is {KEY}"), "--trace"])
        .arg(&trace)
        .arg("--log-json")
        .env("OPENAI_BASE_URL", server.url("/v1"))
        .env("OPENAI_API_KEY", KEY)
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );

    let text = std::fs::read_to_string(&trace).unwrap();
    assert!(text.contains("6 * 7 = 42"), "the trace has the run: {text}");
    assert!(!text.contains(KEY), "the key leaked into the trace");
    assert!(!text.contains("Zq8Xw3Lm9Pv2"), "part of the key leaked");
    assert!(text.contains("My key is [redacted]"));
    let records = read_jsonl(&trace).unwrap();
    assert_eq!(steps(&records).len(), 4);

    // The structured logs: JSON lines, spans with their attributes, and
    // no key, though every log level is on.
    let logs = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let chat = lines
        .iter()
        .find(|l| l["span"]["name"] == "chat")
        .unwrap_or_else(|| panic!("no chat span in the logs: {logs}"));
    assert_eq!(chat["span"]["gen_ai.request.model"], "gpt-4o-mini");
    assert!(!logs.contains(KEY), "the key leaked into the logs");
    assert!(
        !logs.contains("Zq8Xw3Lm9Pv2"),
        "part of the key leaked into the logs"
    );
}

/// Model calls are reported only when asked for (or traced): keeping each
/// prompt while its call runs costs memory per run in flight.
#[tokio::test]
async fn model_calls_are_emitted_only_when_recorded() {
    use futures::StreamExt;
    let count = |machine: Machine| async move {
        machine
            .stream(Env::from_user("1234 * 5678?"))
            .filter(|e| {
                std::future::ready(matches!(
                    e.kind,
                    statewise::EventKind::Emitted(statewise::Emit::ModelCall(_))
                ))
            })
            .count()
            .await
    };
    assert_eq!(count(agent()).await, 0);
    assert_eq!(count(agent().record_model_calls(true)).await, 2);
}

#[tokio::test]
async fn a_line_torn_by_a_crash_is_skipped_and_a_bad_line_is_an_error() {
    let dir = temp_dir("trace-torn");
    let path = dir.join("trace.jsonl");
    agent()
        .with_tracer(Tracer::jsonl(&path).unwrap())
        .run(Env::from_user("1234 * 5678?"))
        .await
        .unwrap();
    let whole = read_jsonl(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        format!("{text}{{\"type\": \"step\", \"run_id\": \"x\", \"st"),
    )
    .unwrap();
    assert_eq!(read_jsonl(&path).unwrap(), whole);
    std::fs::write(&path, format!("{{\"type\": \"nonsense\"}}\n{text}")).unwrap();
    assert!(matches!(
        read_jsonl(&path),
        Err(TraceError::Format { line: 1, .. })
    ));
}

/// The openai example with `--otlp`: its spans reach the OTLP/HTTP
/// endpoint `OTEL_EXPORTER_OTLP_ENDPOINT` names, flushed before it exits.
#[cfg(feature = "otel")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_otlp_flag_sends_the_examples_spans_to_the_endpoint() {
    let server = MockServer::start(|req| react_response(req, usage(30, 10))).await;
    let (url, received) = crate::otlp_receiver::start().await;
    let endpoint = url.trim_end_matches("/v1/traces").to_owned();
    let exe = support::example("openai");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(exe)
            .args(["What is 6 * 7?", "--otlp"])
            .env("OPENAI_BASE_URL", server.url("/v1"))
            .env_remove("OPENAI_API_KEY")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (names, services) = crate::otlp_receiver::spans(&received);
    assert!(
        names.contains(&"invoke_agent agent".to_owned()),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n == "chat gpt-4o-mini"), "{names:?}");
    assert!(
        services.iter().all(|s| s.contains("statewise-openai")),
        "{services:?}"
    );
}
