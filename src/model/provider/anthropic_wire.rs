//! The Messages API's wire format: the conversation as turns, the forced
//! `respond` tool that carries a response schema, and the reply's events.
//!
//! Anthropic has no response-format field: a schema goes as a tool the
//! model must call, and that call's input comes back as the reply's text,
//! so states see the same text any other provider gives.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::env::{Message, Role, Usage};
use crate::model::{ChatRequest, Chunk, FinishReason, ToolCallDelta};

/// The forced tool that carries a response schema.
pub(super) const RESPOND: &str = "respond";

/// Whether `request`'s response schema goes as the forced `respond` tool:
/// it has one, it is an object schema (the tool input must be an object),
/// and there are no tools of its own (a forced tool would hide them; the
/// prompt carries the schema then).
pub(super) fn responds(request: &ChatRequest) -> bool {
    request.tools.is_empty()
        && request
            .response_schema
            .as_ref()
            .is_some_and(|s| s.get("type") == Some(&json!("object")))
}

/// Adds the forced `respond` tool for `schema` to `body`.
pub(super) fn force_respond(body: &mut Value, schema: &Value) {
    body["tools"] = json!([{
        "name": RESPOND,
        "description": "Give your reply in this form.",
        "input_schema": schema,
    }]);
    body["tool_choice"] = json!({"type": "tool", "name": RESPOND});
}

/// Why the reply ended; with `respond`, the forced call is its natural end.
pub(super) fn finish(reason: &str, respond: bool) -> FinishReason {
    match reason {
        "tool_use" if respond => FinishReason::Stop,
        other => stop_reason(other),
    }
}

fn stop_reason(reason: &str) -> FinishReason {
    match reason {
        "end_turn" | "stop_sequence" => FinishReason::Stop,
        "max_tokens" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

/// Marks the ends of the system prompt, the tool list and the conversation
/// as cache breakpoints (three of the four the API allows): a request that
/// extends the last one reads everything up to its last breakpoint from the
/// cache.
pub(super) fn mark_cache_breakpoints(body: &mut Value) {
    let ephemeral = json!({"type": "ephemeral"});
    if let Some(system) = body.get("system").and_then(Value::as_str) {
        body["system"] = json!([{"type": "text", "text": system, "cache_control": ephemeral}]);
    }
    if let Some(tool) = body
        .get_mut("tools")
        .and_then(Value::as_array_mut)
        .and_then(|t| t.last_mut())
    {
        tool["cache_control"] = ephemeral.clone();
    }
    if let Some(block) = body
        .get_mut("messages")
        .and_then(Value::as_array_mut)
        .and_then(|m| m.last_mut())
        .and_then(|m| m.get_mut("content"))
        .and_then(Value::as_array_mut)
        .and_then(|c| c.last_mut())
    {
        block["cache_control"] = ephemeral;
    }
}

/// The conversation as Messages API turns: system messages go to the
/// `system` field, tool results become `tool_result` blocks of a user turn,
/// and consecutive turns of one role are merged (the API wants them to
/// alternate).
pub(super) fn wire_messages(messages: &[Message]) -> Vec<Value> {
    let mut turns: Vec<(&str, Vec<Value>)> = Vec::new();
    for m in messages {
        let (role, blocks) = match m.role {
            Role::System => continue,
            Role::User => ("user", vec![json!({"type": "text", "text": m.content})]),
            Role::Tool => (
                "user",
                vec![
                    json!({"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}),
                ],
            ),
            Role::Assistant => {
                let mut blocks = Vec::new();
                if !m.content.is_empty() {
                    blocks.push(json!({"type": "text", "text": m.content}));
                }
                for c in &m.tool_calls {
                    let input = match &c.arguments {
                        Value::Object(_) => c.arguments.clone(),
                        other => json!({ "input": other }),
                    };
                    blocks.push(
                        json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input}),
                    );
                }
                ("assistant", blocks)
            }
        };
        match turns.last_mut() {
            Some((last, content)) if *last == role => content.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect()
}

// Wire types: every field optional, unknown fields ignored.

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct StreamEvent {
    #[serde(rename = "type")]
    pub(super) kind: String,
    pub(super) index: Option<u64>,
    pub(super) message: Option<WireMessage>,
    pub(super) content_block: Option<Block>,
    pub(super) delta: Option<Delta>,
    pub(super) usage: Option<WireUsage>,
    pub(super) error: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Block {
    #[serde(rename = "type")]
    pub(super) kind: String,
    pub(super) id: Option<String>,
    pub(super) name: Option<String>,
    pub(super) text: Option<String>,
    pub(super) thinking: Option<String>,
    pub(super) input: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Delta {
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    pub(super) text: Option<String>,
    pub(super) thinking: Option<String>,
    pub(super) partial_json: Option<String>,
    pub(super) stop_reason: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct WireUsage {
    pub(super) input_tokens: Option<u64>,
    pub(super) output_tokens: Option<u64>,
    pub(super) cache_creation_input_tokens: Option<u64>,
    pub(super) cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Anthropic counts cached prompt tokens apart from `input_tokens`; ours
    /// are part of `prompt_tokens`, as in OpenAI's API.
    pub(super) fn into_usage(self) -> Usage {
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let write = self.cache_creation_input_tokens.unwrap_or(0);
        Usage {
            prompt_tokens: self.input_tokens.unwrap_or(0) + read + write,
            completion_tokens: self.output_tokens.unwrap_or(0),
            cached_tokens: read,
            cache_write_tokens: write,
            ..Usage::default()
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct WireMessage {
    pub(super) model: Option<String>,
    pub(super) content: Vec<Block>,
    pub(super) stop_reason: Option<String>,
    pub(super) usage: Option<WireUsage>,
}

impl WireMessage {
    /// The whole reply as the same chunks a stream would have carried;
    /// with `respond` (the request forced the `respond` tool), that call's
    /// input is the reply's text.
    pub(super) fn into_chunks(self, respond: bool) -> Vec<Chunk> {
        if let Some(model) = &self.model {
            crate::model::span::record_response_model(model);
        }
        let mut chunks = Vec::new();
        let mut tools = 0;
        for block in self.content {
            match block.kind.as_str() {
                "text" => chunks.extend(block.text.filter(|t| !t.is_empty()).map(Chunk::Text)),
                "thinking" => chunks.extend(block.thinking.map(Chunk::Reasoning)),
                "tool_use" if respond && block.name.as_deref() == Some(RESPOND) => {
                    let input = block.input.unwrap_or(Value::Object(Map::new()));
                    chunks.push(Chunk::Text(input.to_string()));
                }
                "tool_use" => {
                    chunks.push(Chunk::ToolCall(ToolCallDelta {
                        index: tools,
                        id: block.id,
                        name: block.name,
                        arguments: block.input.unwrap_or(Value::Object(Map::new())).to_string(),
                    }));
                    tools += 1;
                }
                _ => {}
            }
        }
        chunks.extend(self.stop_reason.map(|r| Chunk::Finish(finish(&r, respond))));
        chunks.extend(self.usage.map(|u| Chunk::Usage(u.into_usage())));
        chunks
    }
}
