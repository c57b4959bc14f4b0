//! The body of an OpenAI chat completions request, written straight from a
//! [`ChatRequest`] by borrowing it.
//!
//! A `serde_json::Value` tree would allocate every key and string again and
//! deep-copy the tool parameters and response schema (`json!` serializes
//! what it embeds) on every call; on the hot path of a run that was the
//! largest share of the client's CPU time.

use serde::Serialize;
use serde_json::Value;

use crate::env::{Message, Role, ToolCall};
use crate::model::{Capabilities, ChatRequest};

/// What `POST /chat/completions` takes; absent options are left out.
#[derive(Serialize)]
pub(super) struct Body<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<ResponseFormat<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    logprobs: bool,
}

/// How the provider is set up to call the API.
pub(super) struct Settings<'a> {
    pub(super) model: &'a str,
    pub(super) streaming: bool,
    pub(super) include_usage: bool,
    pub(super) capabilities: Capabilities,
}

impl<'a> Body<'a> {
    pub(super) fn new(settings: &Settings<'a>, request: &'a ChatRequest) -> Self {
        let caps = settings.capabilities;
        let tools = match caps.native_tools {
            true => request
                .tools
                .iter()
                .map(|t| WireTool {
                    kind: "function",
                    function: WireFunction {
                        name: &t.name,
                        description: &t.description,
                        parameters: &t.parameters,
                    },
                })
                .collect(),
            false => Vec::new(),
        };
        let response_format = match (&request.response_schema, caps.json_schema) {
            (Some(schema), true) => Some(ResponseFormat {
                kind: "json_schema",
                json_schema: JsonSchema {
                    name: "response",
                    schema,
                    // OpenAI's strict mode where the schema allows it
                    // (`output::strict` leaves such a schema as it is).
                    strict: crate::output::strict(schema).as_ref() == Some(schema),
                },
            }),
            _ => None,
        };
        let p = &request.params;
        Body {
            model: settings.model,
            messages: request.messages.iter().map(WireMessage::new).collect(),
            stream: settings.streaming,
            stream_options: (settings.streaming && settings.include_usage).then_some(
                StreamOptions {
                    include_usage: true,
                },
            ),
            tools,
            response_format,
            temperature: p.temperature,
            max_tokens: p.max_tokens,
            stop: &p.stop,
            seed: p.seed,
            logprobs: p.logprobs,
        }
    }
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Serialize)]
struct WireTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunction<'a>,
}

#[derive(Serialize)]
struct WireFunction<'a> {
    name: &'a str,
    description: &'a str,
    parameters: &'a Value,
}

#[derive(Serialize)]
struct ResponseFormat<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    json_schema: JsonSchema<'a>,
}

#[derive(Serialize)]
struct JsonSchema<'a> {
    name: &'static str,
    schema: &'a Value,
    strict: bool,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    /// `null` for an assistant turn that only calls tools.
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<WireCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

impl<'a> WireMessage<'a> {
    fn new(m: &'a Message) -> Self {
        let role = match m.role {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        };
        let calls_only = !m.tool_calls.is_empty() && m.content.is_empty();
        WireMessage {
            role,
            content: (!calls_only).then_some(m.content.as_str()),
            tool_calls: m.tool_calls.iter().map(WireCall::new).collect(),
            // Only the tool role carries it on the wire; a user message
            // holding a result for a JSON-action model keeps it to itself.
            tool_call_id: m.tool_call_id.as_deref().filter(|_| m.role == Role::Tool),
        }
    }
}

#[derive(Serialize)]
struct WireCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireCallFunction<'a>,
}

impl<'a> WireCall<'a> {
    fn new(c: &'a ToolCall) -> Self {
        WireCall {
            id: &c.id,
            kind: "function",
            function: WireCallFunction {
                name: &c.name,
                // The API takes the arguments as a JSON string.
                arguments: c.arguments.to_string(),
            },
        }
    }
}

#[derive(Serialize)]
struct WireCallFunction<'a> {
    name: &'a str,
    arguments: String,
}
