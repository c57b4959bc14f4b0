//! The OpenAI-compatible provider against a local server replaying
//! wire-format transcripts.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use crate::support::{MockServer, Response};
use futures::StreamExt;
use serde_json::json;
use statewise::model::{ChatModel, ChatRequest, Chunk, FinishReason, ModelError, OpenAi};
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::{Env, Message, ToolCall, Usage};
use statewise_states::tools::Calculator;

const KEY: &str = "sk-test-0123456789abcdef";

fn transcript(name: &str) -> String {
    support::transcript("openai", name)
}

fn model(server: &MockServer) -> OpenAi {
    OpenAi::builder("gpt-4o-mini")
        .base_url(server.url("/v1"))
        .api_key(KEY)
        .build()
        .unwrap()
}

fn question() -> ChatRequest {
    ChatRequest::new(vec![Message::user("2+2?")])
}

/// Every chunk of one call, or the error that ended it (with what came before).
async fn chunks(model: &OpenAi) -> (Vec<Chunk>, Option<ModelError>) {
    let mut stream = model.stream(question());
    let mut out = Vec::new();
    while let Some(c) = stream.next().await {
        match c {
            Ok(c) => out.push(c),
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

#[tokio::test]
async fn streams_text_with_usage_and_finish() {
    let server = MockServer::script(vec![Response::sse(&transcript("text.sse"), 7)]).await;
    let (chunks, error) = chunks(&model(&server)).await;
    assert!(error.is_none(), "{error:?}");
    let texts: Vec<&str> = chunks
        .iter()
        .filter_map(|c| match c {
            Chunk::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(texts, ["The", " answer", " is", " 4."]);
    assert!(chunks.contains(&Chunk::Finish(FinishReason::Stop)));
    assert!(chunks.contains(&Chunk::Usage(Usage {
        prompt_tokens: 12,
        completion_tokens: 5,
        cached_tokens: 4,
        ..Usage::default()
    })));

    let request = &server.requests()[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    let body = request.json();
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": "2+2?"}])
    );
}

#[tokio::test]
async fn parallel_tool_calls_split_across_chunks_are_assembled() {
    let server = MockServer::script(vec![Response::sse(&transcript("tool_calls.sse"), 13)]).await;
    let reply = model(&server).complete(question()).await.unwrap();
    assert_eq!(
        reply.tool_calls,
        vec![
            ToolCall::new("call_a", "calculator", json!({"expression": "6*7"})),
            ToolCall::new("call_b", "calculator", json!({"expression": "2+2"})),
        ]
    );
    assert_eq!(reply.finish, Some(FinishReason::ToolCalls));
    assert_eq!(reply.usage.total_tokens(), 110);
}

#[tokio::test]
async fn reasoning_is_kept_apart_from_the_answer() {
    let server = MockServer::script(vec![Response::sse(&transcript("reasoning.sse"), 5)]).await;
    let reply = model(&server).complete(question()).await.unwrap();
    assert_eq!(reply.reasoning, "The user wants 2+2. That is 4.");
    assert_eq!(reply.text, r#"{"final_answer": "4"}"#);
}

#[tokio::test]
async fn tolerates_what_compatible_servers_do() {
    // Keep-alive comments, finish_reason "", extra fields, null lists, usage
    // repeated as a running total, and a plain end without [DONE].
    let server = MockServer::script(vec![Response::sse(&transcript("compat.sse"), 3)]).await;
    let reply = model(&server).complete(question()).await.unwrap();
    assert_eq!(reply.text, "Hello");
    assert_eq!(reply.finish, Some(FinishReason::Stop));
    assert_eq!(
        (reply.usage.prompt_tokens, reply.usage.completion_tokens),
        (9, 3),
        "the last running total, once"
    );
}

#[tokio::test]
async fn streamed_and_whole_replies_are_identical() {
    for (sse, whole) in [
        ("text.sse", "text.json"),
        ("tool_calls.sse", "tool_calls.json"),
    ] {
        let server = MockServer::script(vec![
            Response::sse(&transcript(sse), 11),
            Response::json(200, transcript(whole)),
        ])
        .await;
        let streamed = model(&server).complete(question()).await.unwrap();
        let whole_model = OpenAi::builder("gpt-4o-mini")
            .base_url(server.url("/v1"))
            .api_key(KEY)
            .streaming(false)
            .build()
            .unwrap();
        let whole_reply = whole_model.complete(question()).await.unwrap();
        assert_eq!(streamed, whole_reply, "{sse} vs {whole}");
        assert_eq!(server.requests()[1].json()["stream"], false);
        assert!(server.requests()[1].json().get("stream_options").is_none());
    }
}

#[tokio::test]
async fn error_statuses_are_typed_and_redacted() {
    let server = MockServer::script(vec![
        Response::json(
            401,
            format!(r#"{{"error": {{"message": "Incorrect API key provided: {KEY}.", "type": "invalid_request_error"}}}}"#),
        ),
        Response::json(429, r#"{"error": {"message": "Rate limit reached", "type": "requests"}}"#).header("retry-after", "3"),
        Response::body(500, "text/plain", "upstream crashed"),
    ])
    .await;
    let m = model(&server);
    let e401 = m.complete(question()).await.unwrap_err();
    assert_eq!(e401.status(), Some(401));
    let text = format!("{e401} {e401:?}");
    assert!(!text.contains("0123456789abcdef"), "the key leaked: {text}");
    assert!(text.contains("Incorrect API key provided"), "{text}");

    let e429 = m.complete(question()).await.unwrap_err();
    assert_eq!(
        (e429.status(), e429.retry_after()),
        (Some(429), Some(Duration::from_secs(3)))
    );
    assert!(!e429.emitted());

    let e500 = m.complete(question()).await.unwrap_err();
    assert!(
        matches!(&e500, ModelError::Http { status: 500, message, .. } if message == "upstream crashed")
    );
}

#[tokio::test]
async fn a_stream_cut_midway_is_reported_with_what_was_sent() {
    let server = MockServer::script(vec![
        Response::sse(&transcript("text.sse"), 40).cut_after(30)
    ])
    .await;
    let (chunks, error) = chunks(&model(&server)).await;
    let error = error.expect("a cut stream is an error");
    assert!(
        matches!(error, ModelError::StreamCut { chunks: n, .. } if n == chunks.len()),
        "{error:?}"
    );
    assert!(error.emitted(), "tokens were delivered before the cut");
    assert!(!chunks.is_empty());
}

#[tokio::test]
async fn an_end_without_finish_is_a_cut() {
    let partial = transcript("text.sse")
        .split("data: {")
        .take(3)
        .collect::<Vec<_>>()
        .join("data: {");
    let server = MockServer::script(vec![Response::sse(&partial, 50)]).await;
    let (_, error) = chunks(&model(&server)).await;
    assert!(
        matches!(error, Some(ModelError::StreamCut { .. })),
        "{error:?}"
    );
}

#[tokio::test]
async fn malformed_chunks_and_stream_errors_are_protocol_errors() {
    let server = MockServer::script(vec![
        Response::sse("data: {\"choices\": [\n\n", 50),
        Response::sse(
            &format!(
                "data: {}\n\n",
                json!({"error": {"message": "model overloaded"}})
            ),
            50,
        ),
    ])
    .await;
    let m = model(&server);
    let e = m.complete(question()).await.unwrap_err();
    assert!(matches!(e, ModelError::Protocol { chunks: 0, .. }), "{e:?}");
    let e = m.complete(question()).await.unwrap_err();
    assert!(e.to_string().contains("model overloaded"), "{e}");
}

#[tokio::test]
async fn no_server_is_a_connect_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let m = OpenAi::builder("x")
        .base_url(format!("http://127.0.0.1:{port}/v1"))
        .build()
        .unwrap();
    let e = m.complete(question()).await.unwrap_err();
    assert!(matches!(e, ModelError::Connect { .. }), "{e:?}");
}

/// A whole agent run over HTTP, in JSON-action mode (a compatible server),
/// with the action schema sent as a response format.
#[tokio::test]
async fn the_agent_loop_over_http_with_equal_usage_streamed_or_not() {
    let action =
        json!({"tool_calls": [{"name": "calculator", "arguments": {"expression": "6*7"}}]})
            .to_string();
    let answer = json!({"final_answer": "42"}).to_string();
    let stream_reply = |text: &str, p: u64, c: u64| {
        let events = vec![
            json!({"choices": [{"delta": {"content": &text[..10]}}]}),
            json!({"choices": [{"delta": {"content": &text[10..]}, "finish_reason": "stop"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": p, "completion_tokens": c}}),
        ];
        Response::sse(&(support::sse_data(&events) + "data: [DONE]\n\n"), 9)
    };
    let whole_reply = |text: &str, p: u64, c: u64| {
        Response::json(
            200,
            json!({"choices": [{"message": {"content": text}, "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": p, "completion_tokens": c}})
            .to_string(),
        )
    };
    let tools = Toolbox::new(ToolRegistry::new().with(Calculator));
    let mut usages = Vec::new();
    for streaming in [true, false] {
        let reply = if streaming { stream_reply } else { whole_reply };
        let server =
            MockServer::script(vec![reply(&action, 100, 20), reply(&answer, 150, 8)]).await;
        let m = OpenAi::builder("local")
            .base_url(server.url("/v1"))
            .streaming(streaming)
            .build()
            .unwrap();
        let out = statewise_states::agent(Arc::new(m), tools.clone())
            .run(Env::from_user("What is 6*7?"))
            .await
            .unwrap();
        assert_eq!(out.answer.as_deref(), Some("42"));
        assert_eq!(out.env.observations[0].content, json!(42));
        let first = server.requests()[0].json();
        assert!(first.get("tools").is_none());
        assert_eq!(first["response_format"]["type"], "json_schema");
        let schema = &first["response_format"]["json_schema"]["schema"];
        assert_eq!(
            schema["anyOf"][0]["properties"]["tool_calls"]["items"]["anyOf"][0]["properties"]
                ["name"],
            json!({"const": "calculator"})
        );
        usages.push(out.usage());
    }
    assert_eq!(usages[0], usages[1]);
    assert_eq!(
        (usages[0].prompt_tokens, usages[0].completion_tokens),
        (250, 28)
    );
}

/// With native tool calling (OpenAI itself), specs go as `tools`, calls come
/// back as tool-call chunks, and results go back as `tool` messages.
#[tokio::test]
async fn native_tool_calling_round_trip() {
    let server = MockServer::script(vec![
        Response::sse(&transcript("tool_calls.sse"), 17),
        Response::sse(&transcript("text.sse"), 17),
    ])
    .await;
    let m = OpenAi::builder("gpt-4o-mini")
        .base_url(server.url("/v1"))
        .native_tools(true)
        .build()
        .unwrap();
    let tools = Toolbox::new(ToolRegistry::new().with(Calculator));
    let out = statewise_states::agent(Arc::new(m), tools)
        .run(Env::from_user("6*7 and 2+2?"))
        .await
        .unwrap();
    assert_eq!(out.answer.as_deref(), Some("The answer is 4."));
    let first = server.requests()[0].json();
    assert_eq!(first["tools"][0]["function"]["name"], "calculator");
    assert!(first.get("response_format").is_none());
    let second = server.requests()[1].json();
    let messages = second["messages"].as_array().unwrap();
    let assistant = &messages[messages.len() - 3];
    assert_eq!(assistant["tool_calls"][1]["id"], "call_b");
    assert_eq!(
        messages[messages.len() - 2],
        json!({"role": "tool", "content": "42", "tool_call_id": "call_a"})
    );
    assert_eq!(messages[messages.len() - 1]["content"], "4");
    assert_eq!(out.usage().total_tokens(), 110 + 17);
}

/// A server that answers the first request on a connection and keeps it
/// open, then reads the next request on it and closes it unanswered: what a
/// client sees when a server drops an idle kept-alive connection just as it
/// is reused. The provider sends once more, on a new connection.
#[tokio::test]
async fn a_reused_connection_closed_by_the_server_is_retried_on_a_new_one() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&connections);
    let body = std::fs::read_to_string(format!(
        "{}/tests/transcripts/openai/text.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                // First request: answer, keep the connection open.
                let _ = socket.read(&mut buf).await;
                let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", body.len());
                socket.write_all(head.as_bytes()).await.unwrap();
                socket.write_all(body.as_bytes()).await.unwrap();
                // Second request on it: read it, then close without a word.
                let _ = socket.read(&mut buf).await;
            });
        }
    });
    let m = OpenAi::builder("m")
        .base_url(format!("http://{addr}/v1"))
        .streaming(false)
        .build()
        .unwrap();
    for _ in 0..3 {
        let reply = m
            .complete(question())
            .await
            .expect("every request succeeds");
        assert_eq!(reply.text, "The answer is 4.");
    }
    // 1st and 2nd on connection 1 (2nd dropped, resent on 2), 3rd on 2 (dropped, resent on 3).
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 3);
}
