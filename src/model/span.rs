//! The `chat {model}` span of a model call, after the OpenTelemetry GenAI
//! conventions: what is known when the call starts is set at once, the
//! reply's usage and finish reason (or the error's type) when it ends.
//!
//! Message content goes on the span only when the run opted in
//! ([`RunSettings::span_content`]), and then through its redactor: a
//! prompt holds what users typed.

use serde_json::{json, Value};
use tracing::field::Empty;

use super::{ChatModel, ChatRequest, FinishReason, ModelError, Reply};
use crate::env::{Message, Role, RunSettings};
use crate::redact::Redactor;
use crate::semconv::{self as sc, provider_and_model};

/// The span of a call of `model` with `request`, opened now.
pub(super) fn chat_span(
    model: &dyn ChatModel,
    request: &ChatRequest,
    settings: &RunSettings,
) -> tracing::Span {
    let (provider, model_id) = provider_and_model(model.name());
    let span = tracing::info_span!(
        "chat",
        { sc::OTEL_NAME } = %format_args!("chat {model_id}"),
        { sc::OTEL_KIND } = "client",
        { sc::GEN_AI_OPERATION_NAME } = "chat",
        { sc::GEN_AI_PROVIDER_NAME } = provider,
        { sc::GEN_AI_REQUEST_MODEL } = model_id,
        { sc::GEN_AI_REQUEST_MAX_TOKENS } = request.params.max_tokens,
        { sc::GEN_AI_REQUEST_TEMPERATURE } = request.params.temperature,
        { sc::GEN_AI_RESPONSE_MODEL } = Empty,
        { sc::GEN_AI_RESPONSE_FINISH_REASONS } = Empty,
        { sc::GEN_AI_USAGE_INPUT_TOKENS } = Empty,
        { sc::GEN_AI_USAGE_OUTPUT_TOKENS } = Empty,
        { sc::GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS } = Empty,
        { sc::GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS } = Empty,
        { sc::GEN_AI_USAGE_REASONING_OUTPUT_TOKENS } = Empty,
        { sc::SERVER_ADDRESS } = Empty,
        { sc::SERVER_PORT } = Empty,
        { sc::GEN_AI_INPUT_MESSAGES } = Empty,
        { sc::GEN_AI_OUTPUT_MESSAGES } = Empty,
        { sc::ERROR_TYPE } = Empty,
        statewise.cached = Empty,
        statewise.batched = Empty,
        statewise.route = Empty,
    );
    if let Some(redactor) = &settings.span_content {
        let messages = Value::Array(request.messages.iter().map(message).collect());
        span.record(
            sc::GEN_AI_INPUT_MESSAGES,
            redactor.apply(&messages.to_string()),
        );
    }
    span
}

/// Records on the current span (a call's `chat` span while its provider
/// streams) the server the provider calls, from its URL.
#[cfg(feature = "http")]
pub(crate) fn record_server(url: &str) {
    let Ok(url) = reqwest::Url::parse(url) else {
        return;
    };
    let span = tracing::Span::current();
    if let Some(host) = url.host_str() {
        span.record(sc::SERVER_ADDRESS, host);
    }
    if let Some(port) = url.port_or_known_default() {
        span.record(sc::SERVER_PORT, port);
    }
}

/// Records on the current span the model that answered, as the provider
/// named it.
#[cfg(feature = "http")]
pub(crate) fn record_response_model(model: &str) {
    tracing::Span::current().record(sc::GEN_AI_RESPONSE_MODEL, model);
}

/// Records on the current span the output tokens spent on reasoning.
#[cfg(feature = "http")]
pub(crate) fn record_reasoning_tokens(tokens: u64) {
    tracing::Span::current().record(sc::GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, tokens);
}

/// Records how the call ended with `reply`.
pub(super) fn record_reply(span: &tracing::Span, reply: &Reply, content: Option<&Redactor>) {
    let usage = &reply.usage;
    span.record(sc::GEN_AI_USAGE_INPUT_TOKENS, usage.prompt_tokens);
    span.record(sc::GEN_AI_USAGE_OUTPUT_TOKENS, usage.completion_tokens);
    if usage.cached_tokens > 0 {
        span.record(
            sc::GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
            usage.cached_tokens,
        );
    }
    if usage.cache_write_tokens > 0 {
        span.record(
            sc::GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
            usage.cache_write_tokens,
        );
    }
    if let Some(finish) = &reply.finish {
        span.record(sc::GEN_AI_RESPONSE_FINISH_REASONS, finish_reason(finish));
    }
    span.record("statewise.cached", usage.cached_responses > 0);
    span.record("statewise.batched", usage.batched_requests > 0);
    if !reply.route.is_empty() {
        record_route(span, &reply.route);
    }
    if let Some(redactor) = content {
        let mut parts: Vec<Value> = Vec::new();
        if !reply.reasoning.is_empty() {
            parts.push(json!({"type": "reasoning", "content": reply.reasoning}));
        }
        if !reply.text.is_empty() {
            parts.push(json!({"type": "text", "content": reply.text}));
        }
        parts.extend(reply.tool_calls.iter().map(
            |c| json!({"type": "tool_call", "id": c.id, "name": c.name, "arguments": c.arguments}),
        ));
        let mut output = json!({"role": "assistant", "parts": parts});
        if let Some(finish) = &reply.finish {
            output["finish_reason"] = json!(finish_reason(finish));
        }
        span.record(
            sc::GEN_AI_OUTPUT_MESSAGES,
            redactor.apply(&json!([output]).to_string()),
        );
    }
}

/// Records that the call failed with `error`.
pub(super) fn record_error(span: &tracing::Span, error: &ModelError) {
    span.record(sc::ERROR_TYPE, error.code());
}

/// The conventions' words: `stop`, `length`, `tool_call`, `content_filter`.
fn finish_reason(finish: &FinishReason) -> &str {
    match finish {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_call",
        FinishReason::ContentFilter => "content_filter",
        FinishReason::Other(other) => other,
    }
}

/// A message in the conventions' shape: a role and its parts.
fn message(m: &Message) -> Value {
    let role = match m.role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    };
    let mut parts = Vec::new();
    match (&m.role, &m.tool_call_id) {
        (Role::Tool, Some(id)) => {
            parts.push(json!({"type": "tool_call_response", "id": id, "result": m.content}))
        }
        _ if !m.content.is_empty() => parts.push(json!({"type": "text", "content": m.content})),
        _ => {}
    }
    parts.extend(m.tool_calls.iter().map(
        |c| json!({"type": "tool_call", "id": c.id, "name": c.name, "arguments": c.arguments}),
    ));
    json!({"role": role, "parts": parts})
}

/// Records the model a router or cascade chose as the request's model
/// (`gen_ai.request.model`: the span opened with the router's name) and
/// the whole route as `statewise.route`.
fn record_route(span: &tracing::Span, route: &[super::RouteStep]) {
    if let Some(model) = served_by(route) {
        span.record(sc::GEN_AI_REQUEST_MODEL, provider_and_model(model).1);
    }
    let steps: Vec<String> = route
        .iter()
        .map(|s| format!("{} {}", s.tier, s.verdict.as_str()))
        .collect();
    span.record("statewise.route", steps.join(" → "));
}

/// The innermost model whose reply was kept. Nested steps come before the
/// step of the tier holding them, so a rejected (or failed) tier's step
/// discards those before it, and the first kept step after that is the
/// leaf that served.
fn served_by(route: &[super::RouteStep]) -> Option<&str> {
    use super::Verdict;
    let mut served = None;
    for step in route {
        match step.verdict {
            Verdict::Rejected | Verdict::Failed => served = None,
            _ => {
                served.get_or_insert(step.model.as_str());
            }
        }
    }
    served
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_take_the_conventions_shape() {
        let mut call = Message::assistant("");
        call.tool_calls = vec![crate::env::ToolCall::new("c1", "calc", json!({"x": 1}))];
        assert_eq!(
            message(&call),
            json!({"role": "assistant", "parts": [{"type": "tool_call", "id": "c1", "name": "calc", "arguments": {"x": 1}}]})
        );
        assert_eq!(
            message(&Message::tool("c1", "2")),
            json!({"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "result": "2"}]})
        );
    }
}
