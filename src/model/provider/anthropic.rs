//! Anthropic's Messages API, streamed or whole, with native tool use and
//! prompt-cache token counts.

use std::collections::HashMap;

use eventsource_stream::Eventsource;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use serde_json::{json, Value};

use super::anthropic_wire::{
    finish, force_respond, mark_cache_breakpoints, responds, wire_messages, StreamEvent,
    WireMessage, RESPOND,
};
use super::http::{
    endpoint_setters, error_chain, error_message, json_body, send, Api, Auth, Endpoint, Resolved,
};
use super::window::anthropic_window;
use crate::env::{Role, Usage};
use crate::model::{
    Capabilities, ChatModel, ChatRequest, Chunk, ChunkStream, ContextWindow, ModelError, Reply,
    ToolCallDelta,
};
use crate::redact::{redact, Secret};
use reqwest::header::CONTENT_TYPE;

const PROVIDER: &str = "anthropic";

/// Anthropic's own endpoint.
pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";

const API_VERSION: &str = "2023-06-01";

/// The reply budget when the request sets none (the API requires one).
const DEFAULT_MAX_TOKENS: u32 = 4096;

/// A Claude model behind the Messages API.
///
/// ```no_run
/// use statewise::model::Anthropic;
///
/// let claude = Anthropic::from_env("claude-sonnet-4-5")?; // ANTHROPIC_API_KEY
/// # Ok::<(), statewise::model::ModelError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Anthropic {
    client: reqwest::Client,
    url: String,
    key: Secret,
    model: String,
    name: String,
    streaming: bool,
    prompt_cache: bool,
    connect_timeout: std::time::Duration,
    context_window: Option<u32>,
}

/// Configures an [`Anthropic`] model.
#[derive(Debug, Clone)]
pub struct AnthropicBuilder {
    model: String,
    endpoint: Endpoint,
    streaming: bool,
    prompt_cache: bool,
    context_window: Option<u32>,
}

impl Anthropic {
    /// Starts configuring a model named `model`.
    pub fn builder(model: impl Into<String>) -> AnthropicBuilder {
        AnthropicBuilder {
            model: model.into(),
            endpoint: Endpoint::default(),
            streaming: true,
            prompt_cache: false,
            context_window: None,
        }
    }

    /// `model` with `ANTHROPIC_API_KEY` (and `ANTHROPIC_BASE_URL`) from the environment.
    pub fn from_env(model: impl Into<String>) -> Result<Self, ModelError> {
        Self::builder(model).from_env().build()
    }

    fn body(&self, request: &ChatRequest) -> Value {
        let system: Vec<&str> = request
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.as_str())
            .collect();
        let p = &request.params;
        let mut body = json!({
            "model": self.model,
            "max_tokens": p.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            "messages": wire_messages(&request.messages),
            "stream": self.streaming,
        });
        if !system.is_empty() {
            body["system"] = json!(system.join("\n\n"));
        }
        if !request.tools.is_empty() {
            body["tools"] = request
                .tools
                .iter()
                .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
                .collect();
        }
        if self.prompt_cache {
            mark_cache_breakpoints(&mut body);
        }
        if let (Some(schema), true) = (&request.response_schema, responds(request)) {
            force_respond(&mut body, schema);
        }
        if let Some(t) = p.temperature {
            body["temperature"] = json!(t);
        }
        if !p.stop.is_empty() {
            body["stop_sequences"] = json!(p.stop);
        }
        body
    }
}

/// What the batch lane needs: a call's `params` as a batch request carries
/// them, and the vendor's other endpoints.
impl Anthropic {
    pub(crate) fn whole_body(&self, request: &ChatRequest) -> Value {
        let mut body = self.body(request);
        if let Some(fields) = body.as_object_mut() {
            // Batch requests may not stream.
            fields.remove("stream");
        }
        body
    }

    pub(crate) fn api(&self) -> Api {
        Api {
            provider: PROVIDER,
            client: self.client.clone(),
            base: self.url.trim_end_matches("/v1/messages").to_owned(),
            key: Some(self.key.clone()),
            auth: Auth::Anthropic(API_VERSION),
            connect_timeout: self.connect_timeout,
        }
    }
}

/// The reply in a whole Messages API message (a batch result's).
pub(crate) fn message_reply(message: Value) -> Result<Reply, ModelError> {
    let message: WireMessage =
        serde_json::from_value(message).map_err(|e| protocol(0, e.to_string()))?;
    Ok(Reply::from_chunks(message.into_chunks(false)))
}

impl AnthropicBuilder {
    endpoint_setters!(
        base_url: "The API's base URL (without `/v1`).",
        from_env: "Fills what was not set explicitly from `ANTHROPIC_API_KEY` and `ANTHROPIC_BASE_URL`.",
    );

    /// Asks Anthropic to cache the prompt prefix (`cache_control`
    /// breakpoints on the system prompt, the tools and the conversation so
    /// far), so each step of a run pays the cached rate for what the step
    /// before sent. Reads and writes are reported as
    /// [`Usage::cached_tokens`] and [`Usage::cache_write_tokens`].
    pub fn prompt_cache(mut self, on: bool) -> Self {
        self.prompt_cache = on;
        self
    }

    /// The model's context window in tokens (default 200,000 for Claude
    /// models; set it for a larger beta window or another model).
    pub fn context_window(mut self, tokens: u32) -> Self {
        self.context_window = Some(tokens);
        self
    }

    /// Checks the configuration and builds the model.
    pub fn build(self) -> Result<Anthropic, ModelError> {
        let Resolved { base, key, client } = self.endpoint.resolve(
            PROVIDER,
            "ANTHROPIC_BASE_URL",
            "ANTHROPIC_API_KEY",
            ANTHROPIC_BASE_URL,
        )?;
        let config = |message: &str| ModelError::Config {
            provider: PROVIDER.to_owned(),
            message: message.to_owned(),
        };
        let base = base.trim_end_matches("/v1").to_owned();
        let key = key.ok_or_else(|| config("no API key: set ANTHROPIC_API_KEY"))?;
        if self.model.trim().is_empty() {
            return Err(config("the model name is empty"));
        }
        let context_window = self
            .context_window
            .or_else(|| anthropic_window(&self.model));
        Ok(Anthropic {
            client,
            url: format!("{base}/v1/messages"),
            key,
            name: format!("{PROVIDER}:{}", self.model),
            model: self.model,
            streaming: self.streaming,
            prompt_cache: self.prompt_cache,
            connect_timeout: self.endpoint.connect_limit(),
            context_window,
        })
    }
}

impl ChatModel for Anthropic {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            native_tools: true,
            // Through a forced tool (`anthropic_wire`).
            json_schema: true,
        }
    }

    fn context_window(&self) -> BoxFuture<'_, Option<ContextWindow>> {
        futures::future::ready(self.context_window.map(ContextWindow::new)).boxed()
    }

    fn stream(&self, request: ChatRequest) -> ChunkStream<'_> {
        // Serialized here, so the request (prompt, schema) is freed now
        // rather than held for the whole call.
        let body = json_body(PROVIDER, &self.body(&request));
        let respond = responds(&request);
        drop(request);
        Box::pin(async_stream::try_stream! {
            let body = body?;
            let make = || {
                self.client
                    .post(&self.url)
                    .header(CONTENT_TYPE, "application/json")
                    .header("x-api-key", self.key.expose())
                    .header("anthropic-version", API_VERSION)
                    .body(body.clone())
            };
            crate::model::span::record_server(&self.url);
            let response = send(make, PROVIDER, Some(&self.key), Some(self.connect_timeout)).await?;
            if !self.streaming {
                let body = response.bytes().await.map_err(|e| cut(0, &e, &self.key))?;
                let message: WireMessage = serde_json::from_slice(&body).map_err(|e| protocol(0, e.to_string()))?;
                for chunk in message.into_chunks(respond) {
                    yield chunk;
                }
                return;
            }

            let mut events = response.bytes_stream().eventsource();
            let mut sent = 0usize;
            let mut finished = false;
            let mut usage = Usage::default();
            // Content-block index -> position among this reply's tool calls.
            let mut tool_index: HashMap<u64, usize> = HashMap::new();
            while let Some(event) = events.next().await {
                let event = event.map_err(|e| cut(sent, &e, &self.key))?;
                if event.data.trim().is_empty() {
                    continue;
                }
                let data: StreamEvent = serde_json::from_str(&event.data)
                    .map_err(|e| protocol(sent, format!("{e} in event {:?}", event.event)))?;
                let piece = match data.kind.as_str() {
                    "message_start" => {
                        if let Some(model) = data.message.as_ref().and_then(|m| m.model.as_deref()) {
                            crate::model::span::record_response_model(model);
                        }
                        if let Some(u) = data.message.and_then(|m| m.usage) {
                            usage = u.into_usage();
                        }
                        None
                    }
                    "content_block_start" => match data.content_block {
                        // The forced call's input is the reply's text.
                        Some(block) if respond && block.name.as_deref() == Some(RESPOND) => None,
                        Some(block) if block.kind == "tool_use" => {
                            let n = tool_index.len();
                            tool_index.insert(data.index.unwrap_or(0), n);
                            Some(Chunk::ToolCall(ToolCallDelta { index: n, id: block.id, name: block.name, arguments: String::new() }))
                        }
                        Some(block) => block.text.filter(|t| !t.is_empty()).map(Chunk::Text),
                        None => None,
                    },
                    "content_block_delta" => data.delta.and_then(|d| match d.kind.as_deref() {
                        Some("text_delta") => d.text.map(Chunk::Text),
                        Some("thinking_delta") => d.thinking.map(Chunk::Reasoning),
                        Some("input_json_delta") if respond && tool_index.is_empty() => d.partial_json.map(Chunk::Text),
                        Some("input_json_delta") => {
                            let index = tool_index.get(&data.index.unwrap_or(0)).copied().unwrap_or(0);
                            d.partial_json.map(|arguments| Chunk::ToolCall(ToolCallDelta { index, id: None, name: None, arguments }))
                        }
                        _ => None,
                    }),
                    "message_delta" => {
                        if let Some(out) = data.usage.as_ref().and_then(|u| u.output_tokens) {
                            // Output tokens are a running total: keep the last.
                            usage.completion_tokens = out;
                        }
                        data.delta.and_then(|d| d.stop_reason).map(|r| Chunk::Finish(finish(&r, respond)))
                    }
                    "message_stop" => {
                        finished = true;
                        None
                    }
                    "error" => {
                        let detail = data.error.map(|e| e.to_string()).unwrap_or_default();
                        Err(protocol(sent, redact(&error_message(&detail), Some(&self.key))))?
                    }
                    _ => None, // ping, content_block_stop, and events added later
                };
                if let Some(piece) = piece {
                    sent += 1;
                    yield piece;
                }
            }
            if usage != Usage::default() {
                yield Chunk::Usage(usage);
            }
            if !finished {
                Err(ModelError::StreamCut {
                    provider: PROVIDER.to_owned(),
                    chunks: sent,
                    message: "the stream ended before message_stop".to_owned(),
                })?;
            }
        })
    }
}

fn cut(chunks: usize, error: &dyn std::error::Error, key: &Secret) -> ModelError {
    ModelError::StreamCut {
        provider: PROVIDER.to_owned(),
        chunks,
        message: redact(&error_chain(error), Some(key)),
    }
}

fn protocol(chunks: usize, message: String) -> ModelError {
    ModelError::Protocol {
        provider: PROVIDER.to_owned(),
        chunks,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::{Message, ToolCall};

    #[test]
    fn turns_alternate_and_tool_results_are_user_blocks() {
        let mut assistant = Message::assistant("Let me check.");
        assistant.tool_calls = vec![ToolCall::new("t1", "calc", json!({"x": 1}))];
        let turns = wire_messages(&[
            Message::system("be brief"),
            Message::user("hi"),
            Message::user("2+2?"),
            assistant,
            Message::tool("t1", "4"),
        ]);
        assert_eq!(turns.len(), 3);
        assert_eq!(turns[0]["content"].as_array().unwrap().len(), 2);
        assert_eq!(
            turns[1]["content"][1],
            json!({"type": "tool_use", "id": "t1", "name": "calc", "input": {"x": 1}})
        );
        assert_eq!(turns[2]["content"][0]["type"], "tool_result");
        let m = Anthropic::builder("claude")
            .api_key("k-123456")
            .build()
            .unwrap();
        let body = m.body(&ChatRequest::new(vec![
            Message::system("be brief"),
            Message::user("hi"),
        ]));
        assert_eq!(
            (body["system"].clone(), body["max_tokens"].clone()),
            (json!("be brief"), json!(4096))
        );
    }

    #[test]
    fn prompt_cache_marks_system_tools_and_the_last_turn() {
        let tools = vec![crate::tool::ToolSpec {
            name: "calc".into(),
            description: "adds".into(),
            parameters: json!({"type": "object"}),
        }];
        let request = ChatRequest {
            tools,
            ..ChatRequest::new(vec![Message::system("be brief"), Message::user("hi")])
        };
        let plain = Anthropic::builder("claude")
            .api_key("k-123456")
            .build()
            .unwrap();
        assert!(!plain.body(&request).to_string().contains("cache_control"));
        let cached = Anthropic::builder("claude")
            .api_key("k-123456")
            .prompt_cache(true)
            .build()
            .unwrap();
        let body = cached.body(&request);
        let mark = json!({"type": "ephemeral"});
        assert_eq!(body["system"][0]["text"], "be brief");
        assert_eq!(body["system"][0]["cache_control"], mark);
        assert_eq!(body["tools"][0]["cache_control"], mark);
        assert_eq!(body["messages"][0]["content"][0]["cache_control"], mark);
    }

    #[test]
    fn a_key_is_required() {
        let err = Anthropic::builder("claude").build().unwrap_err();
        assert!(err.to_string().contains("ANTHROPIC_API_KEY"));
    }
}
