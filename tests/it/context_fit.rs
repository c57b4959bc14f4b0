//! Requests fitted to the model's context window: the stock states against
//! scripted models that enforce a window as a server does, the OpenAI and
//! Anthropic providers against mock servers that report a window or an
//! overflow in their own words, and the estimate against real tokenizers.

use crate::support::{self, MockServer, Response};

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use serde_json::{json, Value};
use statewise::fit::{Fitted, Fitter};
use statewise::model::{
    request_tokens, Anthropic, ChatModel, ChatRequest, ContextWindow, Estimate, ModelError, OpenAi,
    Params, ScriptedModel, TokenCounter,
};
use statewise::tool::{DynTool, ToolError, ToolRegistry, ToolSpec, Toolbox};
use statewise::{Emit, Env, Event, EventKind, Machine, MachineError, Role, StateError};
use statewise_states::{Answer, Reasoning, RunTools};

/// A tool whose observation is long: a manual of `words` words, numbered
/// so its beginning and end can be told apart.
pub struct Manual {
    pub words: usize,
}

impl DynTool for Manual {
    fn name(&self) -> &str {
        "manual"
    }

    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "manual".into(),
            description: "Reads the product manual.".into(),
            parameters: json!({"type": "object", "properties": {}}),
        }
    }

    fn call_json(
        &self,
        _arguments: Value,
        _ctx: statewise::tool::ToolContext,
    ) -> BoxFuture<'_, Result<Value, ToolError>> {
        let text = (0..self.words)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        futures::future::ready(Ok(Value::String(format!("MANUAL-START {text} MANUAL-END")))).boxed()
    }
}

/// Counts a twelfth of the characters: far fewer tokens than any model
/// has, so a fit by it overflows.
pub struct Undercount;

impl TokenCounter for Undercount {
    fn name(&self) -> &str {
        "undercount"
    }

    fn count(&self, text: &str) -> usize {
        text.len() / 12
    }
}

/// A conversation of `turns` earlier exchanges of about 120 tokens each,
/// then the question.
pub fn long_history(turns: usize, question: &str) -> Env {
    let mut env = Env::new();
    for i in 0..turns {
        env = env
            .with_user(format!(
                "Earlier question {i}: {}",
                "tell me more ".repeat(20)
            ))
            .with_assistant(format!(
                "Earlier answer {i}: {}",
                "more details ".repeat(20)
            ));
    }
    env.with_user(question)
}

pub fn machine(reasoning: Reasoning, tools: Toolbox) -> Machine {
    Machine::new("reasoning")
        .with_state(reasoning)
        .with_state(RunTools::new(tools))
        .with_state(Answer::new())
}

pub fn fitted(events: &[Event]) -> Vec<Fitted> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Emitted(Emit::ContextFitted(f)) => Some(f.clone()),
            _ => None,
        })
        .collect()
}

pub fn answer(events: &[Event]) -> Option<String> {
    match &events.last()?.kind {
        EventKind::Finished(out) => out.answer.clone(),
        _ => None,
    }
}

#[tokio::test]
async fn reasoning_fits_a_long_history_and_keeps_the_question() {
    let window = ContextWindow::new(1024);
    let model = Arc::new(
        ScriptedModel::new()
            .with_context_window(window)
            .text(r#"{"final_answer": "Paris"}"#),
    );
    let tools = Toolbox::new(ToolRegistry::new());
    let env = long_history(20, "What is the capital of France?");
    let unfitted = Reasoning::new(model.clone(), tools.clone()).request(&env);
    assert!(
        request_tokens(&unfitted, &Estimate) > 2000,
        "it would overflow"
    );

    let events: Vec<Event> = machine(Reasoning::new(model.clone(), tools.clone()), tools)
        .stream(env)
        .collect()
        .await;
    assert_eq!(answer(&events).as_deref(), Some("Paris"), "{events:#?}");
    let fits = fitted(&events);
    assert_eq!(fits.len(), 1);
    assert!(fits[0].dropped > 10 && fits[0].window == 1024, "{fits:?}");

    let sent = &model.calls()[0];
    assert!(request_tokens(sent, &Estimate) <= 1024 - 256);
    assert_eq!(sent.messages[0].role, Role::System);
    assert!(sent.messages[0]
        .content
        .contains("earlier messages were left out"));
    assert_eq!(
        sent.messages.last().unwrap().content,
        "What is the capital of France?"
    );
    model.assert_complete();
}

#[tokio::test]
async fn a_long_observation_keeps_its_beginning_and_end_and_its_call() {
    let model = Arc::new(
        ScriptedModel::new()
            .with_context_window(ContextWindow::new(2048))
            .text(r#"{"tool_calls": [{"name": "manual", "arguments": {}}]}"#)
            .text(r#"{"final_answer": "read it"}"#),
    );
    let tools = Toolbox::new(ToolRegistry::new().with(Manual { words: 4000 }));
    let events: Vec<Event> = machine(Reasoning::new(model.clone(), tools.clone()), tools)
        .stream(Env::from_user("What does the manual say?"))
        .collect()
        .await;
    assert_eq!(answer(&events).as_deref(), Some("read it"), "{events:#?}");
    let fits = fitted(&events);
    assert_eq!(fits.len(), 1, "only the call after the observation");
    assert_eq!((fits[0].dropped, fits[0].truncated), (0, 1), "{fits:?}");

    let second = &model.calls()[1];
    let observation = second
        .messages
        .iter()
        .find(|m| m.content.contains("Observation from `manual`"))
        .expect("the observation is still there");
    assert!(observation.content.contains("MANUAL-START"));
    assert!(observation.content.contains("MANUAL-END"));
    assert!(observation.content.contains("characters left out"));
    assert_eq!(observation.tool_call_id.as_deref(), Some("call_1_0"));
    // Its call is still there too.
    assert!(second
        .messages
        .iter()
        .any(|m| m.role == Role::Assistant && m.content.contains("manual")));
    assert!(request_tokens(second, &Estimate) <= 2048 - 512);
}

#[tokio::test]
async fn an_overflow_is_fitted_tighter_once_and_sent_again() {
    // The model counts with the estimate; the fitter, misled, undercounts.
    let model = Arc::new(
        ScriptedModel::new()
            .with_context_window(ContextWindow::new(1024))
            .text(r#"{"final_answer": "Paris"}"#),
    );
    let tools = Toolbox::new(ToolRegistry::new());
    let reasoning = Reasoning::new(model.clone(), tools.clone())
        .fitter(Fitter::default().counter(Arc::new(Undercount)));
    let events: Vec<Event> = machine(reasoning, tools)
        .stream(long_history(20, "What is the capital of France?"))
        .collect()
        .await;
    assert_eq!(answer(&events).as_deref(), Some("Paris"), "{events:#?}");
    let calls = model.calls();
    assert_eq!(
        calls.len(),
        2,
        "the overflowing call, then the refitted one"
    );
    assert!(request_tokens(&calls[0], &Estimate) >= 1024);
    assert!(request_tokens(&calls[1], &Estimate) < 1024);
    let fits = fitted(&events);
    assert!(fits.last().unwrap().tighter, "{fits:?}");
}

#[tokio::test]
async fn an_overflow_that_cannot_be_fitted_fails_the_state_with_a_typed_error() {
    // The model counts eight tokens a character: the refit, scaled by how
    // far the count was off, leaves too little room for the question.
    let model = Arc::new(
        ScriptedModel::new()
            .with_context_window(ContextWindow::new(1024).with_counter(Arc::new(Times(8))))
            .text(r#"{"final_answer": "never sent"}"#),
    );
    let tools = Toolbox::new(ToolRegistry::new());
    let reasoning = Reasoning::new(model.clone(), tools.clone())
        .fitter(Fitter::default().counter(Arc::new(Undercount)));
    let failure = machine(reasoning, tools)
        .run(long_history(20, "What is the capital of France?"))
        .await
        .unwrap_err();
    let MachineError::State {
        source: StateError::Model(error),
        ..
    } = &failure.error
    else {
        panic!("{failure:?}");
    };
    assert!(error.is_context_overflow(), "{error:?}");
    assert_eq!(error.code(), "context_overflow");
    assert_eq!(model.calls().len(), 1, "the refit refused to send");
}

/// Counts `n` tokens per character.
struct Times(usize);

impl TokenCounter for Times {
    fn name(&self) -> &str {
        "times"
    }

    fn count(&self, text: &str) -> usize {
        text.chars().count() * self.0
    }
}

#[tokio::test]
async fn what_must_be_kept_and_does_not_fit_is_refused_before_sending() {
    let model = Arc::new(ScriptedModel::new().with_context_window(ContextWindow::new(256)));
    let tools = Toolbox::new(ToolRegistry::new());
    let failure = machine(Reasoning::new(model.clone(), tools.clone()), tools)
        .run(Env::from_user("a very long question ".repeat(200)))
        .await
        .unwrap_err();
    let MachineError::State {
        source:
            StateError::Model(ModelError::ContextOverflow {
                window, message, ..
            }),
        ..
    } = &failure.error
    else {
        panic!("{failure:?}");
    };
    assert_eq!(*window, Some(256));
    assert!(message.contains("last user turn"), "{message}");
    assert!(model.calls().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn answer_with_a_model_fits_too_and_keeps_the_draft() {
    let model = Arc::new(
        ScriptedModel::new()
            .with_context_window(ContextWindow::new(1024))
            .text("Paris."),
    );
    let answer_state = Answer::with_model(model.clone());
    let env = long_history(20, "What is the capital of France?")
        .with_action(statewise::Action::FinalAnswer("paris".into()));
    let events: Vec<Event> = Machine::new("answer")
        .with_state(answer_state)
        .stream(env)
        .collect()
        .await;
    assert_eq!(answer(&events).as_deref(), Some("Paris."));
    assert_eq!(fitted(&events).len(), 1);
    let sent = &model.calls()[0];
    assert!(sent
        .messages
        .last()
        .unwrap()
        .content
        .starts_with("Draft answer: paris"));
}

/// An OpenAI-compatible mock that says its window in `/props`, as
/// llama.cpp's server does, and answers in JSON actions.
#[tokio::test]
async fn the_openai_provider_asks_the_server_its_window_once() {
    let server = MockServer::with_gets(
        |req| support::react_response(req, support::usage(10, 5)),
        |req| match req.path.as_str() {
            "/props" => Response::json(200, r#"{"default_generation_settings": {"n_ctx": 1536}}"#),
            _ => Response::json(404, "{}"),
        },
    )
    .await;
    let model = OpenAi::builder("m")
        .base_url(server.url("/v1"))
        .build()
        .unwrap();
    let window = model.context_window().await.unwrap();
    assert_eq!(window.tokens, 1536);
    assert!(
        window.counter.is_none(),
        "a remote server's tokens are estimated"
    );
    assert_eq!(model.clone().context_window().await.unwrap().tokens, 1536);
    assert_eq!(server.gets().len(), 1, "asked once, clones included");

    // Configured, it asks nothing.
    let set = OpenAi::builder("m")
        .base_url(server.url("/v1"))
        .context_window(4096)
        .build()
        .unwrap();
    assert_eq!(set.context_window().await.unwrap().tokens, 4096);
    assert_eq!(server.gets().len(), 1);

    // A server that says nothing: the window is unknown, and asking again
    // is not repeated.
    let silent = MockServer::start(|req| support::react_response(req, support::usage(1, 1))).await;
    let model = OpenAi::builder("m")
        .base_url(silent.url("/v1"))
        .build()
        .unwrap();
    assert!(model.context_window().await.is_none());
    assert!(model.context_window().await.is_none());
    let asked: Vec<String> = silent.gets().iter().map(|g| g.path.clone()).collect();
    assert_eq!(asked, ["/props", "/v1/models"]);
}

/// llama.cpp's overflow answer, over HTTP, makes Reasoning refit with the
/// window the server reported, though the model's window was unknown.
#[tokio::test]
async fn a_servers_overflow_answer_is_refitted_with_the_window_it_reports() {
    let overflow = r#"{"error":{"code":400,"message":"request (2950 tokens) exceeds the available context size (1024 tokens), try increasing it","type":"exceed_context_size_error","n_prompt_tokens":2950,"n_ctx":1024}}"#;
    let server = MockServer::start(move |req| {
        let body = req.json();
        let chars: usize = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap_or_default().len())
            .sum();
        if chars > 4000 {
            Response::json(400, overflow)
        } else {
            support::streamed_reply(r#"{"final_answer": "Paris"}"#, support::usage(900, 5))
        }
    })
    .await;
    let model = Arc::new(
        OpenAi::builder("m")
            .base_url(server.url("/v1"))
            .build()
            .unwrap(),
    );
    let tools = Toolbox::new(ToolRegistry::new());
    let events: Vec<Event> = machine(Reasoning::new(model, tools.clone()), tools)
        .stream(long_history(20, "What is the capital of France?"))
        .collect()
        .await;
    assert_eq!(answer(&events).as_deref(), Some("Paris"), "{events:#?}");
    let fits = fitted(&events);
    assert_eq!(fits.len(), 1, "{fits:?}");
    assert!(fits[0].tighter && fits[0].window == 1024, "{fits:?}");
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn anthropics_prompt_too_long_is_a_context_overflow() {
    let server = MockServer::start(|_| {
        Response::json(
            400,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208310 tokens > 200000 maximum"}}"#,
        )
    })
    .await;
    let model = Anthropic::builder("claude-sonnet-4-5")
        .base_url(server.url(""))
        .api_key("sk-ant-test")
        .build()
        .unwrap();
    assert_eq!(model.context_window().await.unwrap().tokens, 200_000);
    let err = model
        .complete(ChatRequest::new(vec![statewise::Message::user("hi")]))
        .await
        .unwrap_err();
    let ModelError::ContextOverflow {
        prompt_tokens,
        window,
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!((*prompt_tokens, *window), (Some(208_310), Some(200_000)));
    assert!(!err.is_transient());
}

/// Texts of the kinds agents send: prose, JSON, code, numbers, other
/// scripts.
#[cfg(any(feature = "tiktoken", feature = "local"))]
fn corpus() -> Vec<String> {
    vec![
        "The quick brown fox jumps over the lazy dog. ".repeat(20),
        json!({"tool_calls": [{"name": "calculator", "arguments": {"expression": "(1234 + 5678) * 91"}}]}).to_string(),
        "fn main() {\n    let x: Vec<u32> = (0..10).map(|i| i * 2).collect();\n    println!(\"{x:?}\");\n}\n".repeat(5),
        "3.14159265358979 2.71828182845904 1234567890 0xdeadbeef ".repeat(10),
        "東京は日本の首都です。Привет, мир! Ελληνικά. 🚀🎉 ".repeat(10),
        "Observation from `search` (call call_1_0):\n{\"results\": [{\"title\": \"Rust\", \"url\": \"https://www.rust-lang.org/\"}]}".repeat(8),
        "    indented\n\n\n\ttabs\t\tand   spaces   ".repeat(10),
    ]
}

#[cfg(feature = "tiktoken")]
#[test]
fn the_estimate_never_counts_fewer_than_openais_tokenizers() {
    for model in ["gpt-4o-mini", "gpt-4"] {
        let tokenizer = statewise::model::Tiktoken::for_model(model).unwrap();
        for text in corpus() {
            let exact = tokenizer.count(&text);
            let estimate = Estimate.count(&text);
            assert!(
                estimate >= exact && estimate <= 3 * exact,
                "{model} ({}): {exact} tokens, estimated {estimate}: {text:?}",
                tokenizer.name()
            );
        }
    }
    // OpenAI's own endpoint counts with them.
    let gpt = OpenAi::builder("gpt-4o")
        .api_key("sk-test")
        .build()
        .unwrap();
    let window = futures::executor::block_on(gpt.context_window()).unwrap();
    assert_eq!(window.tokens, 128_000);
    assert_eq!(window.counter.unwrap().name(), "o200k_base");
}

#[cfg(feature = "local")]
#[test]
fn the_estimate_never_counts_fewer_than_smollm2s_tokenizer() {
    let model = statewise::model::LocalModel::load(support::model_path()).unwrap();
    let window = futures::executor::block_on(model.context_window()).unwrap();
    assert_eq!(window.tokens, 4096);
    let tokenizer = window.counter.unwrap();
    assert_eq!(tokenizer.count("Hello"), 1);
    for text in corpus() {
        let exact = tokenizer.count(&text);
        let estimate = Estimate.count(&text);
        assert!(
            estimate >= exact && estimate <= 3 * exact,
            "{exact} tokens, estimated {estimate}: {text:?}"
        );
    }
}

#[test]
fn requests_count_their_tools_and_schema() {
    let bare = ChatRequest::new(vec![statewise::Message::user("hi")]);
    let mut with_tools = bare.clone();
    with_tools.tools = vec![Manual { words: 1 }.spec()];
    with_tools.response_schema = Some(json!({"type": "object"}));
    with_tools.params = Params::default();
    assert!(request_tokens(&with_tools, &Estimate) > request_tokens(&bare, &Estimate) + 10);
}

/// A fitted run replays offline from its trace: the recording reports the
/// window the run was fitted to, so the same requests are built again.
#[tokio::test]
async fn a_fitted_run_replays_from_its_trace() {
    let dir = support::temp_dir("fit-replay");
    let path = dir.join("trace.jsonl");
    let model = Arc::new(
        ScriptedModel::new()
            .with_context_window(ContextWindow::new(1024))
            .text(r#"{"final_answer": "Paris"}"#),
    );
    let tools = Toolbox::new(ToolRegistry::new());
    let env = long_history(20, "What is the capital of France?");
    machine(Reasoning::new(model, tools.clone()), tools.clone())
        .with_tracer(statewise::trace::Tracer::jsonl(&path).unwrap())
        .run(env)
        .await
        .unwrap();
    let recording = statewise::replay::Recording::from_jsonl(&path, None).unwrap();
    assert_eq!(
        recording.step(1).unwrap().fitted.len(),
        1,
        "the trace says so"
    );
    let recorded = Arc::new(recording.model());
    let replay = recording
        .replay(&machine(Reasoning::new(recorded, tools.clone()), tools))
        .await;
    assert!(replay.matches(), "{replay}");
}
