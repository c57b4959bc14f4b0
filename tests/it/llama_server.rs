//! The OpenAI provider against a real llama.cpp server (the `xllamacpp`
//! wheel) serving SmolLM2-135M: a real streamed completion through
//! Reasoning → Answer, and a conversation longer than a 1,024-token slot
//! fitted to it.
//!
//! Needs Python with `xllamacpp` (`scripts/setup-tests` installs it) and the model
//! (fetched by `scripts/fetch-model` on first use). It fails, never skips,
//! when they are missing.

use crate::context_fit::{answer, fitted, long_history, machine, Manual, Undercount};
use crate::support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use statewise::fit::Fitter;
use statewise::model::{ChatModel, ChatRequest, ModelError, OpenAi, Params};
use statewise::state::ActionParsed;
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::{Action, Emit, Env, Event, EventKind, Machine, MachineError, Message, StateError};
use statewise_states::{Answer, Reasoning};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A llama.cpp server process, killed when dropped.
pub(crate) struct LlamaServer {
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub(crate) port: u16,
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn start_server() -> LlamaServer {
    start_server_with(&[]).await
}

/// A server started with these extra arguments (`--ctx 1024`, ...).
async fn start_server_with(args: &[&str]) -> LlamaServer {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let python = std::env::var("STATEWISE_PYTHON").unwrap_or_else(|_| "python3".into());
    let child = Command::new(python)
        .arg(root().join("scripts/llama-server"))
        .args([&support::model_path(), &port.to_string(), "--threads", "2"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 starts");
    let mut server = LlamaServer { child, port };
    let health = format!("http://127.0.0.1:{port}/health");
    let started = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            server
                .child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("llama-server exited with {status}:\n{err}\n(scripts/setup-tests installs xllamacpp)");
        }
        if let Ok(r) = reqwest::get(&health).await {
            if r.status().is_success() {
                return server;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "llama-server not healthy after 180 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_real_llama_cpp_server_through_reasoning_and_answer() {
    let server = start_server().await;
    let base = format!("http://127.0.0.1:{}/v1", server.port);
    let params = Params {
        temperature: Some(0.0),
        max_tokens: Some(48),
        seed: Some(7),
        ..Params::default()
    };

    // Streamed and whole replies agree for the same seed.
    let request = ChatRequest {
        params: params.clone(),
        ..ChatRequest::new(vec![Message::user("Name a color.")])
    };
    let streamed = OpenAi::builder("smollm2").base_url(&base).build().unwrap();
    let whole = OpenAi::builder("smollm2")
        .base_url(&base)
        .streaming(false)
        .build()
        .unwrap();
    let a = streamed.complete(request.clone()).await.unwrap();
    let b = whole.complete(request).await.unwrap();
    assert!(!a.text.is_empty());
    assert_eq!(a.text, b.text);
    // (The second call may hit llama.cpp's prompt cache: compare the counts.)
    assert_eq!(
        (a.usage.prompt_tokens, a.usage.completion_tokens),
        (b.usage.prompt_tokens, b.usage.completion_tokens)
    );
    assert!(
        a.usage.prompt_tokens > 0 && a.usage.completion_tokens > 0,
        "{:?}",
        a.usage
    );

    // No tools: the action schema admits only a final answer, which the
    // grammar forces even this small model to write.
    let model = Arc::new(streamed);
    let machine = Machine::new("reasoning")
        .with_state(Reasoning::new(model, Toolbox::new(ToolRegistry::new())).params(params))
        .with_state(Answer::new());
    let events: Vec<_> = machine
        .stream(Env::from_user("What is the capital of France?"))
        .collect()
        .await;
    let reasoning_tokens = events
        .iter()
        .filter(|e| &*e.state == "reasoning" && e.token().is_some())
        .count();
    assert!(
        reasoning_tokens > 3,
        "the reasoning reply streamed in {reasoning_tokens} tokens"
    );
    // The answer as it streamed: decoded while the model wrote it.
    let streamed_answer = crate::support::answer_text(&events);
    let parsed = events.iter().find_map(|e| match e.custom() {
        Some(ActionParsed(Action::FinalAnswer(a))) => Some(a),
        _ => None,
    });
    let Some(EventKind::Finished(out)) = events.last().map(|e| &e.kind) else {
        panic!("run failed: {:?}", events.last());
    };
    assert_eq!(out.path, ["reasoning", "answer"]);
    assert_eq!(parsed.as_deref(), out.answer.as_deref());
    assert_eq!(Some(streamed_answer.as_str()), out.answer.as_deref());
    assert!(!streamed_answer.trim().is_empty());
    assert!(out.usage().completion_tokens > 0);
    println!(
        "SmolLM2 via llama.cpp answered: {streamed_answer:?} ({:?})",
        out.usage()
    );
}

/// The acceptance check of context fitting: a server with a 1,024-token
/// slot, and a conversation (twelve earlier exchanges, then a tool that
/// reads a 1,500-word manual) that overflows it. Unfitted, the server
/// refuses it with a typed overflow; fitted, the run completes without a
/// 400, every prompt within the slot; and a fit that counts far too few
/// tokens is corrected by the server's overflow answer.
#[tokio::test]
async fn a_conversation_longer_than_a_1024_token_slot_is_fitted_to_it() {
    let server = start_server_with(&["--ctx", "1024"]).await;
    let base = format!("http://127.0.0.1:{}/v1", server.port);
    let model = Arc::new(OpenAi::builder("smollm2").base_url(&base).build().unwrap());
    let window = model.context_window().await.expect("the server's /props");
    assert_eq!(window.tokens, 1024);
    let params = Params {
        temperature: Some(0.0),
        max_tokens: Some(64),
        seed: Some(7),
        ..Params::default()
    };
    let tools = Toolbox::new(ToolRegistry::new().with(Manual { words: 1500 }));
    let reasoning = || {
        Reasoning::new(model.clone(), tools.clone())
            .params(params.clone())
            .max_tool_rounds(1)
    };
    let env = long_history(
        12,
        "What does the manual say? Read it with the manual tool.",
    );

    let failure = machine(reasoning().fitter(Fitter::off()), tools.clone())
        .run(env.clone())
        .await
        .unwrap_err();
    let MachineError::State {
        source:
            StateError::Model(ModelError::ContextOverflow {
                prompt_tokens: Some(sent),
                window: Some(1024),
                ..
            }),
        ..
    } = &failure.error
    else {
        panic!("unfitted, the server should refuse it: {failure:?}");
    };
    assert!(*sent > 1024, "{sent}");

    for (fitter, label) in [
        (Fitter::default(), "estimated"),
        (
            Fitter::default().counter(Arc::new(Undercount)),
            "undercounted",
        ),
    ] {
        let events: Vec<Event> = machine(reasoning().fitter(fitter), tools.clone())
            .record_model_calls(true)
            .stream(env.clone())
            .collect()
            .await;
        let answer = answer(&events);
        if let Some(EventKind::Failed(failure)) = events.last().map(|e| &e.kind) {
            panic!("{label}: the run failed: {}", failure.error);
        }
        assert!(
            answer.as_deref().is_some_and(|a| !a.trim().is_empty()),
            "{label}: no answer"
        );
        let fits = fitted(&events);
        assert!(!fits.is_empty(), "{label}: nothing was fitted");
        for e in &events {
            match &e.kind {
                EventKind::StateFailed { error } => panic!("{label}: {error:?}"),
                EventKind::StateRetried { reason, .. } => panic!("{label}: {reason}"),
                EventKind::Emitted(Emit::ModelCall(call)) => {
                    let used = call.reply.usage.prompt_tokens + call.reply.usage.completion_tokens;
                    assert!(used <= 1024, "{label}: {:?}", call.reply.usage);
                }
                _ => {}
            }
        }
        let calls = events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Emitted(Emit::ModelCall(_))))
            .count();
        println!("{label}: answered {answer:?} in {calls} calls; fits: {fits:?}");
        if label == "undercounted" {
            assert!(
                fits.iter().any(|f| f.tighter),
                "the server's overflow answer led to a tighter fit: {fits:?}"
            );
        }
    }
}

/// `memory::OpenAiEmbedder` against llama.cpp's `/v1/embeddings`: one
/// vector per text, of the model's width (SmolLM2-135M: 576), in order,
/// batched across requests, and a store searched with them finds the text
/// that shares the query's subject.
#[tokio::test]
async fn a_real_llama_cpp_server_embeds_for_memory() {
    use statewise::memory::{
        cosine, EmbedError, Embedder, InMemoryStore, MemoryStore, OpenAiEmbedder, PutOptions,
        Search, SearchMode,
    };
    let server = start_server_with(&["--embeddings"]).await;
    let base = format!("http://127.0.0.1:{}/v1", server.port);
    let embedder = OpenAiEmbedder::builder("smollm2")
        .base_url(&base)
        .dimensions(576)
        .batch(2)
        .build()
        .unwrap();
    let texts: Vec<String> = [
        "The cat sat on the warm windowsill.",
        "Quarterly revenue grew by eight percent.",
        "A kitten slept by the sunny window.",
    ]
    .map(String::from)
    .to_vec();
    let vectors = embedder.embed(&texts).await.unwrap();
    assert_eq!(vectors.len(), 3);
    assert!(vectors.iter().all(|v| v.len() == 576));
    // Batched in twos, the order still follows the texts: the first text
    // alone gives the first vector.
    let alone = embedder.embed(&texts[..1]).await.unwrap();
    assert!(cosine(&alone[0], &vectors[0]) > 0.999);
    assert!(cosine(&vectors[0], &vectors[2]) > cosine(&vectors[0], &vectors[1]));

    // Declared with the wrong width: a typed error, nothing stored.
    let wrong = OpenAiEmbedder::builder("smollm2")
        .base_url(&base)
        .dimensions(384)
        .build()
        .unwrap();
    let error = wrong.embed(&texts[..1]).await.unwrap_err();
    assert!(matches!(error, EmbedError::Shape { .. }), "{error:?}");

    let store = InMemoryStore::new(embedder);
    let ns = vec!["docs".to_string()];
    for (i, text) in texts.iter().enumerate() {
        store
            .put(
                &ns,
                &format!("t{i}"),
                serde_json::json!({ "text": text }),
                PutOptions::default(),
            )
            .await
            .unwrap();
    }
    let hits = store
        .search(
            &Search::under(["docs"])
                .query("a cat sleeping near a window")
                .mode(SearchMode::Vector)
                .page(1, 0),
        )
        .await
        .unwrap();
    assert_ne!(hits[0].key, "t1", "{hits:?}");
}
