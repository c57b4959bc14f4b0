//! The Anthropic provider against a local server replaying wire-format
//! transcripts of the Messages API.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use crate::support::{MockServer, Response};
use futures::StreamExt;
use serde_json::json;
use statewise::model::{Anthropic, ChatModel, ChatRequest, Chunk, FinishReason, ModelError};
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::{Env, Message, ToolCall, Usage};
use statewise_states::tools::Calculator;

const KEY: &str = "sk-ant-api03-secretsecret";

fn transcript(name: &str) -> String {
    support::transcript("anthropic", name)
}

fn model(server: &MockServer, streaming: bool) -> Anthropic {
    Anthropic::builder("claude-sonnet-4-5")
        .base_url(server.url(""))
        .api_key(KEY)
        .streaming(streaming)
        .build()
        .unwrap()
}

fn question() -> ChatRequest {
    ChatRequest::new(vec![Message::system("Be brief."), Message::user("2+2?")])
}

/// Cache reads and writes are part of the prompt, as in OpenAI's counting.
const USAGE_TEXT: Usage = Usage {
    prompt_tokens: 170,
    completion_tokens: 12,
    cached_tokens: 50,
    cache_write_tokens: 100,
    cost: 0.0,
    cached_responses: 0,
    batched_requests: 0,
};

/// With `prompt_cache`, the wire request carries `cache_control`
/// breakpoints and the reply's cache reads and writes reach the usage.
#[tokio::test]
async fn prompt_cache_hints_go_out_and_cached_tokens_come_back() {
    let server = MockServer::script(vec![Response::sse(&transcript("text.sse"), 9)]).await;
    let m = Anthropic::builder("claude-sonnet-4-5")
        .base_url(server.url(""))
        .api_key(KEY)
        .prompt_cache(true)
        .build()
        .unwrap();
    let reply = m.complete(question()).await.unwrap();
    assert_eq!(
        (reply.usage.cached_tokens, reply.usage.cache_write_tokens),
        (50, 100)
    );
    let body = server.requests()[0].json();
    let mark = json!({"type": "ephemeral"});
    assert_eq!(
        body["system"],
        json!([{"type": "text", "text": "Be brief.", "cache_control": mark}])
    );
    assert_eq!(body["messages"][0]["content"][0]["cache_control"], mark);
}

#[tokio::test]
async fn streams_text_with_cache_token_counts() {
    let server = MockServer::script(vec![Response::sse(&transcript("text.sse"), 9)]).await;
    let m = model(&server, true);
    let chunks: Vec<Chunk> = m.stream(question()).map(|c| c.unwrap()).collect().await;
    let texts: Vec<&str> = chunks
        .iter()
        .filter_map(|c| match c {
            Chunk::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(texts, ["The", " answer", " is 4."]);
    assert!(chunks.contains(&Chunk::Finish(FinishReason::Stop)));
    assert!(chunks.contains(&Chunk::Usage(USAGE_TEXT)));

    let request = &server.requests()[0];
    assert_eq!(request.path, "/v1/messages");
    assert_eq!(request.header("x-api-key"), Some(KEY));
    assert_eq!(request.header("anthropic-version"), Some("2023-06-01"));
    let body = request.json();
    assert_eq!(body["system"], "Be brief.");
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "2+2?"}]}])
    );
    assert_eq!(
        (body["stream"].clone(), body["max_tokens"].clone()),
        (json!(true), json!(4096))
    );
}

#[tokio::test]
async fn parallel_tool_use_with_split_input_json() {
    let server = MockServer::script(vec![Response::sse(&transcript("tool_use.sse"), 21)]).await;
    let reply = model(&server, true).complete(question()).await.unwrap();
    assert_eq!(reply.reasoning, "Two sums.");
    assert_eq!(reply.text, "Let me calculate.");
    assert_eq!(
        reply.tool_calls,
        vec![
            ToolCall::new("toolu_a", "calculator", json!({"expression": "6*7"})),
            ToolCall::new("toolu_b", "calculator", json!({"expression": "2+2"})),
        ]
    );
    assert_eq!(reply.finish, Some(FinishReason::ToolCalls));
    assert_eq!(reply.usage.completion_tokens, 70);
}

#[tokio::test]
async fn streamed_and_whole_replies_are_identical() {
    for (sse, whole) in [("text.sse", "text.json"), ("tool_use.sse", "tool_use.json")] {
        let server = MockServer::script(vec![
            Response::sse(&transcript(sse), 15),
            Response::json(200, transcript(whole)),
        ])
        .await;
        let streamed = model(&server, true).complete(question()).await.unwrap();
        let whole_reply = model(&server, false).complete(question()).await.unwrap();
        assert_eq!(streamed, whole_reply, "{sse} vs {whole}");
        assert_eq!(server.requests()[1].json()["stream"], false);
    }
}

#[tokio::test]
async fn errors_are_typed_and_redacted() {
    let server = MockServer::script(vec![
        Response::json(
            401,
            format!(r#"{{"type": "error", "error": {{"type": "authentication_error", "message": "invalid x-api-key {KEY}"}}}}"#),
        ),
        Response::json(429, r#"{"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}"#)
            .header("retry-after", "7"),
        Response::json(529, r#"{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}"#),
        Response::sse(&transcript("error_event.sse"), 30),
    ])
    .await;
    let m = model(&server, true);
    let e = m.complete(question()).await.unwrap_err();
    assert_eq!(e.status(), Some(401));
    assert!(!format!("{e} {e:?}").contains("secretsecret"), "{e}");
    let e = m.complete(question()).await.unwrap_err();
    assert_eq!(
        (e.status(), e.retry_after()),
        (Some(429), Some(Duration::from_secs(7)))
    );
    let e = m.complete(question()).await.unwrap_err();
    assert!(
        e.to_string().contains("Overloaded (overloaded_error)"),
        "{e}"
    );
    let e = m.complete(question()).await.unwrap_err();
    assert!(
        matches!(&e, ModelError::Protocol { .. }) && e.to_string().contains("Overloaded"),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_stream_cut_midway_is_reported() {
    let server = MockServer::script(vec![
        Response::sse(&transcript("text.sse"), 50).cut_after(12)
    ])
    .await;
    let m = model(&server, true);
    let mut stream = m.stream(question());
    let mut sent = 0;
    let error = loop {
        match stream.next().await {
            Some(Ok(_)) => sent += 1,
            Some(Err(e)) => break e,
            None => panic!("a cut stream must end with an error"),
        }
    };
    assert!(
        matches!(error, ModelError::StreamCut { chunks, .. } if chunks == sent),
        "{error:?}"
    );
    assert!(error.emitted());
}

/// A whole agent run with native tool use: results go back as
/// `tool_result` blocks of a user turn.
#[tokio::test]
async fn the_agent_loop_with_native_tool_use() {
    let server = MockServer::script(vec![
        Response::sse(&transcript("tool_use.sse"), 33),
        Response::sse(&transcript("text.sse"), 33),
    ])
    .await;
    let tools = Toolbox::new(ToolRegistry::new().with(Calculator));
    let out = statewise_states::agent(Arc::new(model(&server, true)), tools)
        .run(Env::from_user("6*7 and 2+2?"))
        .await
        .unwrap();
    assert_eq!(out.answer.as_deref(), Some("The answer is 4."));
    assert_eq!(out.env.observations.len(), 2);
    let first = server.requests()[0].json();
    assert_eq!(first["tools"][0]["name"], "calculator");
    assert!(first["tools"][0]["input_schema"].is_object());
    let second = server.requests()[1].json();
    let turns = second["messages"].as_array().unwrap();
    assert_eq!(turns.len(), 3, "user, assistant, user: {turns:?}");
    assert_eq!(turns[1]["content"][1]["type"], "tool_use");
    assert_eq!(
        turns[2]["content"],
        json!([
            {"type": "tool_result", "tool_use_id": "toolu_a", "content": "42"},
            {"type": "tool_result", "tool_use_id": "toolu_b", "content": "4"}
        ])
    );
    let usage = out.usage();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.cached_tokens,
            usage.cache_write_tokens
        ),
        (340, 100, 200)
    );
}

/// A response schema goes as a forced `respond` tool, and that call's input
/// comes back as the reply's text, streamed or whole.
#[tokio::test]
async fn a_response_schema_goes_as_a_forced_tool_and_comes_back_as_text() {
    let schema = json!({
        "type": "object",
        "properties": {"name": {"type": "string"}, "email": {"type": ["string", "null"]}},
        "required": ["name", "email"],
        "additionalProperties": false
    });
    let request = ChatRequest {
        response_schema: Some(schema.clone()),
        ..question()
    };
    assert!(model_caps_json_schema());
    let server = MockServer::script(vec![
        Response::sse(&transcript("respond.sse"), 15),
        Response::json(200, transcript("respond.json")),
    ])
    .await;
    let streamed = model(&server, true)
        .complete(request.clone())
        .await
        .unwrap();
    let whole = model(&server, false).complete(request).await.unwrap();
    for reply in [&streamed, &whole] {
        let value: serde_json::Value = serde_json::from_str(&reply.text).unwrap();
        assert_eq!(value, json!({"name": "Ada Lovelace", "email": null}));
        assert!(reply.tool_calls.is_empty());
        assert_eq!(reply.finish, Some(FinishReason::Stop));
    }
    let sent = server.requests()[0].json();
    assert_eq!(sent["tools"][0]["name"], "respond");
    assert_eq!(sent["tools"][0]["input_schema"], schema);
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "tool", "name": "respond"})
    );
}

fn model_caps_json_schema() -> bool {
    let m = Anthropic::builder("claude").api_key(KEY).build().unwrap();
    m.capabilities().json_schema
}

/// With tools of its own, a request's schema is left to the prompt: a
/// forced tool would hide the model's real ones.
#[tokio::test]
async fn a_request_with_tools_keeps_them_unforced() {
    let server = MockServer::script(vec![Response::sse(&transcript("tool_use.sse"), 15)]).await;
    let tools = Toolbox::new(ToolRegistry::new().with(Calculator));
    let request = ChatRequest {
        tools: tools.specs().to_vec(),
        response_schema: Some(json!({"type": "object", "properties": {}})),
        ..question()
    };
    let reply = model(&server, true).complete(request).await.unwrap();
    assert_eq!(reply.tool_calls.len(), 2);
    let sent = server.requests()[0].json();
    assert!(sent.get("tool_choice").is_none());
    assert_eq!(sent["tools"][0]["name"], "calculator");
}
