//! OpenAI-compatible chat completions: OpenAI itself, and the servers that
//! speak its protocol (llama.cpp, vLLM, Ollama, DeepSeek, OpenRouter, ...).
//!
//! Streamed and non-streamed replies are turned into the same chunks, so
//! usage and tool calls come out identical either way. What compatible
//! servers do differently is tolerated: missing or extra fields, `null`
//! where a list belongs, `finish_reason: ""`, no usage chunk, usage repeated
//! on every chunk, keep-alive comments, `[DONE]` or a plain end of stream.

use std::sync::Arc;

use eventsource_stream::Eventsource;
use futures::future::BoxFuture;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::OnceCell;

use super::http::{endpoint_setters, error_chain, json_body, send, Api, Auth, Endpoint, Resolved};
use super::openai_body::{Body, Settings};
use super::window::{ask_server, openai_window};
use crate::env::Usage;
use crate::model::{
    Capabilities, ChatModel, ChatRequest, Chunk, ChunkStream, ContextWindow, FinishReason,
    ModelError, Reply, TokenCounter, ToolCallDelta,
};
use crate::redact::{redact, Secret};
use reqwest::header::CONTENT_TYPE;

const PROVIDER: &str = "openai";

/// OpenAI's own endpoint.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

/// A chat model behind an OpenAI-compatible `/chat/completions` endpoint.
///
/// ```no_run
/// use statewise::model::OpenAi;
///
/// // OPENAI_API_KEY and OPENAI_BASE_URL from the environment:
/// let gpt = OpenAi::from_env("gpt-4o-mini")?;
/// // A local llama.cpp server, no key:
/// let local = OpenAi::builder("smollm2").base_url("http://127.0.0.1:8080/v1").build()?;
/// # Ok::<(), statewise::model::ModelError>(())
/// ```
#[derive(Debug, Clone)]
pub struct OpenAi {
    client: reqwest::Client,
    url: String,
    key: Option<Secret>,
    model: String,
    name: String,
    streaming: bool,
    include_usage: bool,
    capabilities: Capabilities,
    connect_timeout: std::time::Duration,
    base: String,
    /// The window's tokens: set, from the table, or asked of the server
    /// on first need (shared by clones, so asked once).
    window: Arc<OnceCell<Option<u32>>>,
    counter: Option<Arc<dyn TokenCounter>>,
}

/// Configures an [`OpenAi`] model.
#[derive(Debug, Clone)]
pub struct OpenAiBuilder {
    model: String,
    endpoint: Endpoint,
    streaming: bool,
    include_usage: bool,
    native_tools: Option<bool>,
    json_schema: Option<bool>,
    context_window: Option<u32>,
}

impl OpenAi {
    /// Starts configuring a model named `model`.
    pub fn builder(model: impl Into<String>) -> OpenAiBuilder {
        OpenAiBuilder {
            model: model.into(),
            endpoint: Endpoint::default(),
            streaming: true,
            include_usage: true,
            native_tools: None,
            json_schema: None,
            context_window: None,
        }
    }

    /// `model` with `OPENAI_API_KEY` and `OPENAI_BASE_URL` from the environment.
    pub fn from_env(model: impl Into<String>) -> Result<Self, ModelError> {
        Self::builder(model).from_env().build()
    }

    fn body<'a>(&'a self, request: &'a ChatRequest) -> Body<'a> {
        let settings = Settings {
            model: &self.model,
            streaming: self.streaming,
            include_usage: self.include_usage,
            capabilities: self.capabilities,
        };
        Body::new(&settings, request)
    }
}

/// What the batch lane needs: the body of a call made whole, as a batch
/// line carries it, and the vendor's other endpoints.
impl OpenAi {
    pub(crate) fn whole_body(&self, request: &ChatRequest) -> Result<Value, ModelError> {
        let settings = Settings {
            model: &self.model,
            streaming: false,
            include_usage: false,
            capabilities: self.capabilities,
        };
        serde_json::to_value(Body::new(&settings, request)).map_err(|e| ModelError::Config {
            provider: PROVIDER.to_owned(),
            message: format!("the request cannot be written as JSON: {e}"),
        })
    }

    pub(crate) fn api(&self) -> Api {
        Api {
            provider: PROVIDER,
            client: self.client.clone(),
            base: self.base.clone(),
            key: self.key.clone(),
            auth: Auth::Bearer,
            connect_timeout: self.connect_timeout,
        }
    }
}

/// The reply in a whole chat completion's body (a batch result's).
pub(crate) fn completion_reply(body: Value) -> Result<Reply, ModelError> {
    let completion: Completion =
        serde_json::from_value(body).map_err(|e| protocol(0, e.to_string()))?;
    Ok(Reply::from_chunks(completion.into_chunks()))
}

impl OpenAiBuilder {
    endpoint_setters!(
        base_url: "The API's base URL, up to and including `/v1`.",
        from_env: "Fills what was not set explicitly from `OPENAI_API_KEY` and `OPENAI_BASE_URL`.",
    );

    /// Asks for the usage chunk when streaming (default on; some old
    /// servers reject `stream_options`).
    pub fn include_usage(mut self, on: bool) -> Self {
        self.include_usage = on;
        self
    }

    /// Whether to use native tool calling. Default: on for OpenAI itself,
    /// off for other servers, where small models follow JSON actions better.
    pub fn native_tools(mut self, on: bool) -> Self {
        self.native_tools = Some(on);
        self
    }

    /// Whether the server accepts `response_format: json_schema` (OpenAI,
    /// llama.cpp, vLLM, Ollama, LM Studio do; DeepSeek does not). Default on.
    pub fn json_schema(mut self, on: bool) -> Self {
        self.json_schema = Some(on);
        self
    }

    /// The model's context window in tokens. By default OpenAI's models
    /// are looked up in a table, and any other server is asked once, on
    /// first need (llama.cpp's `/props`, `/v1/models`).
    pub fn context_window(mut self, tokens: u32) -> Self {
        self.context_window = Some(tokens);
        self
    }

    /// Checks the configuration and builds the model.
    pub fn build(self) -> Result<OpenAi, ModelError> {
        let Resolved { base, key, client } = self.endpoint.resolve(
            PROVIDER,
            "OPENAI_BASE_URL",
            "OPENAI_API_KEY",
            OPENAI_BASE_URL,
        )?;
        let config = |message: &str| ModelError::Config {
            provider: PROVIDER.to_owned(),
            message: message.to_owned(),
        };
        let official = base == OPENAI_BASE_URL;
        if official && key.is_none() {
            return Err(config(
                "no API key: set OPENAI_API_KEY, or OPENAI_BASE_URL for a server that needs none",
            ));
        }
        if self.model.trim().is_empty() {
            return Err(config("the model name is empty"));
        }
        let window = match self.context_window {
            Some(tokens) => OnceCell::new_with(Some(Some(tokens))),
            None if official => OnceCell::new_with(Some(openai_window(&self.model))),
            None => OnceCell::new(),
        };
        #[cfg(feature = "tiktoken")]
        let counter = official
            .then(|| super::tiktoken::Tiktoken::for_model(&self.model))
            .flatten()
            .map(|t| Arc::new(t) as Arc<dyn TokenCounter>);
        #[cfg(not(feature = "tiktoken"))]
        let counter = None;
        Ok(OpenAi {
            client,
            url: format!("{base}/chat/completions"),
            base,
            window: Arc::new(window),
            counter,
            key,
            name: format!("{PROVIDER}:{}", self.model),
            model: self.model,
            streaming: self.streaming,
            include_usage: self.include_usage,
            connect_timeout: self.endpoint.connect_limit(),
            capabilities: Capabilities {
                native_tools: self.native_tools.unwrap_or(official),
                json_schema: self.json_schema.unwrap_or(true),
            },
        })
    }
}

impl ChatModel for OpenAi {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    fn context_window(&self) -> BoxFuture<'_, Option<ContextWindow>> {
        Box::pin(async move {
            let tokens = self
                .window
                .get_or_init(|| {
                    ask_server(&self.client, &self.base, self.key.as_ref(), &self.model)
                })
                .await;
            Some(ContextWindow {
                tokens: (*tokens)?,
                counter: self.counter.clone(),
            })
        })
    }

    fn token_counter(&self) -> Option<Arc<dyn TokenCounter>> {
        self.counter.clone()
    }

    fn stream(&self, request: ChatRequest) -> ChunkStream<'_> {
        // Serialized here, so the request (prompt, schema) is freed now
        // rather than held for the whole call.
        let body = json_body(PROVIDER, &self.body(&request));
        drop(request);
        Box::pin(async_stream::try_stream! {
            let body = body?;
            let make = || {
                let http = self
                    .client
                    .post(&self.url)
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone());
                match &self.key {
                    Some(key) => http.bearer_auth(key.expose()),
                    None => http,
                }
            };
            crate::model::span::record_server(&self.url);
            let response = send(make, PROVIDER, self.key.as_ref(), Some(self.connect_timeout)).await?;
            if !self.streaming {
                let body = response.bytes().await.map_err(|e| cut(0, &e, self.key.as_ref()))?;
                let completion: Completion = serde_json::from_slice(&body).map_err(|e| protocol(0, e.to_string()))?;
                for chunk in completion.into_chunks() {
                    yield chunk;
                }
                return;
            }

            let mut events = response.bytes_stream().eventsource();
            let mut sent = 0usize;
            let mut finished = false;
            let mut usage = None;
            let mut model_seen = false;
            while let Some(event) = events.next().await {
                let event = event.map_err(|e| cut(sent, &e, self.key.as_ref()))?;
                let data = event.data.trim();
                if data == "[DONE]" {
                    finished = true;
                    break;
                }
                if data.is_empty() {
                    continue;
                }
                let chunk: StreamChunk = serde_json::from_str(data)
                    .map_err(|e| protocol(sent, format!("{e} in {}", excerpt(data))))?;
                if let Some(error) = chunk.error {
                    Err(protocol(sent, redact(&super::http::error_message(&error.to_string()), self.key.as_ref())))?;
                }
                if let (Some(model), false) = (&chunk.model, model_seen) {
                    model_seen = true;
                    crate::model::span::record_response_model(model);
                }
                if let Some(u) = chunk.usage {
                    // Some servers repeat the running total on every chunk:
                    // keep the last and report it once.
                    u.record_reasoning();
                    usage = Some(u.into_usage());
                }
                for choice in chunk.choices.into_iter().filter(|c| c.index.unwrap_or(0) == 0) {
                    for piece in choice.delta.into_chunks() {
                        sent += 1;
                        yield piece;
                    }
                    if let Some(logprobs) = choice.logprobs.and_then(WireLogprobs::into_chunk) {
                        yield logprobs;
                    }
                    if let Some(reason) = finish_reason(choice.finish_reason) {
                        finished = true;
                        sent += 1;
                        yield Chunk::Finish(reason);
                    }
                }
            }
            if let Some(u) = usage {
                yield Chunk::Usage(u);
            }
            if !finished {
                Err(ModelError::StreamCut {
                    provider: PROVIDER.to_owned(),
                    chunks: sent,
                    message: "the stream ended without a finish reason or [DONE]".to_owned(),
                })?;
            }
        })
    }
}

fn cut(chunks: usize, error: &dyn std::error::Error, key: Option<&Secret>) -> ModelError {
    ModelError::StreamCut {
        provider: PROVIDER.to_owned(),
        chunks,
        message: redact(&error_chain(error), key),
    }
}

fn protocol(chunks: usize, message: String) -> ModelError {
    ModelError::Protocol {
        provider: PROVIDER.to_owned(),
        chunks,
        message,
    }
}

fn excerpt(text: &str) -> String {
    let cut: String = text.chars().take(120).collect();
    if cut.len() < text.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

fn finish_reason(reason: Option<String>) -> Option<FinishReason> {
    let reason = reason.filter(|r| !r.is_empty())?;
    Some(match reason.as_str() {
        "stop" | "end_turn" | "eos" => FinishReason::Stop,
        "length" | "max_tokens" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        _ => FinishReason::Other(reason),
    })
}

// Wire types: every field optional, unknown fields ignored.

#[derive(Deserialize, Default)]
#[serde(default)]
struct StreamChunk {
    model: Option<String>,
    choices: Vec<StreamChoice>,
    usage: Option<WireUsage>,
    error: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct StreamChoice {
    index: Option<u32>,
    delta: Delta,
    finish_reason: Option<String>,
    logprobs: Option<WireLogprobs>,
}

/// `choices[].logprobs`: one entry per generated token (llama.cpp's server
/// sends the same shape).
#[derive(Deserialize, Default)]
#[serde(default)]
struct WireLogprobs {
    content: Option<Vec<WireTokenLogprob>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireTokenLogprob {
    logprob: Option<f32>,
}

impl WireLogprobs {
    fn into_chunk(self) -> Option<Chunk> {
        let logprobs: Vec<f32> = self
            .content?
            .into_iter()
            .filter_map(|t| t.logprob)
            .filter(|l| l.is_finite())
            .collect();
        (!logprobs.is_empty()).then_some(Chunk::Logprobs(logprobs))
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Delta {
    content: Option<String>,
    reasoning_content: Option<String>,
    /// OpenRouter's name for `reasoning_content`.
    reasoning: Option<String>,
    tool_calls: Option<Vec<WireCall>>,
}

impl Delta {
    fn into_chunks(self) -> impl Iterator<Item = Chunk> {
        let reasoning = self
            .reasoning_content
            .or(self.reasoning)
            .filter(|r| !r.is_empty());
        let text = self.content.filter(|t| !t.is_empty());
        let calls = self
            .tool_calls
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, c)| c.into_delta(i));
        reasoning
            .map(Chunk::Reasoning)
            .into_iter()
            .chain(text.map(Chunk::Text))
            .chain(calls.map(Chunk::ToolCall))
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireCall {
    index: Option<usize>,
    id: Option<String>,
    function: Option<WireFunction>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireFunction {
    name: Option<String>,
    /// A string per the spec; some servers send the object itself.
    arguments: Option<Value>,
}

impl WireCall {
    fn into_delta(self, position: usize) -> ToolCallDelta {
        let function = self.function.unwrap_or_default();
        ToolCallDelta {
            index: self.index.unwrap_or(position),
            id: self.id.filter(|id| !id.is_empty()),
            name: function.name.filter(|n| !n.is_empty()),
            arguments: match function.arguments {
                Some(Value::String(s)) => s,
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            },
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<PromptDetails>,
    completion_tokens_details: Option<CompletionDetails>,
    /// DeepSeek's name for cached prompt tokens.
    prompt_cache_hit_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PromptDetails {
    cached_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CompletionDetails {
    reasoning_tokens: Option<u64>,
}

impl WireUsage {
    /// Puts the reasoning tokens, which [`Usage`] does not count apart, on
    /// the call's span.
    fn record_reasoning(&self) {
        if let Some(n) = self
            .completion_tokens_details
            .as_ref()
            .and_then(|d| d.reasoning_tokens)
        {
            crate::model::span::record_reasoning_tokens(n);
        }
    }

    fn into_usage(self) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens.unwrap_or(0),
            completion_tokens: self.completion_tokens.unwrap_or(0),
            cached_tokens: self
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .or(self.prompt_cache_hit_tokens)
                .unwrap_or(0),
            ..Usage::default()
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Completion {
    model: Option<String>,
    choices: Vec<CompletionChoice>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CompletionChoice {
    message: Delta,
    finish_reason: Option<String>,
    logprobs: Option<WireLogprobs>,
}

impl Completion {
    /// The whole reply as the same chunks a stream would have carried.
    fn into_chunks(self) -> Vec<Chunk> {
        if let Some(model) = &self.model {
            crate::model::span::record_response_model(model);
        }
        if let Some(usage) = &self.usage {
            usage.record_reasoning();
        }
        let mut chunks = Vec::new();
        if let Some(choice) = self.choices.into_iter().next() {
            chunks.extend(choice.message.into_chunks());
            chunks.extend(choice.logprobs.and_then(WireLogprobs::into_chunk));
            chunks.extend(finish_reason(choice.finish_reason).map(Chunk::Finish));
        }
        chunks.extend(self.usage.map(|u| Chunk::Usage(u.into_usage())));
        chunks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::{Message, ToolCall};
    use crate::model::Params;
    use crate::tool::ToolSpec;
    use serde_json::json;

    fn model() -> OpenAi {
        OpenAi::builder("m")
            .base_url("http://127.0.0.1:9/v1/")
            .build()
            .unwrap()
    }

    #[test]
    fn request_body() {
        let mut assistant = Message::assistant("");
        assistant.tool_calls = vec![ToolCall::new("c1", "calc", json!({"x": 1}))];
        let request = ChatRequest {
            messages: vec![Message::user("hi"), assistant, Message::tool("c1", "2")],
            tools: vec![ToolSpec {
                name: "calc".into(),
                description: "d".into(),
                parameters: json!({}),
            }],
            params: Params {
                temperature: Some(0.0),
                max_tokens: Some(5),
                seed: Some(7),
                logprobs: true,
                ..Params::default()
            },
            response_schema: Some(json!({"type": "object"})),
            tier: Some("large".into()),
        };
        let body = serde_json::to_value(model().body(&request)).unwrap();
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
        assert_eq!(body["messages"][1]["content"], Value::Null);
        assert_eq!(
            body["messages"][1]["tool_calls"][0]["function"]["arguments"],
            "{\"x\":1}"
        );
        assert_eq!(
            body["messages"][2],
            json!({"role": "tool", "content": "2", "tool_call_id": "c1"})
        );
        assert!(
            body.get("tools").is_none(),
            "no native tools for a compatible server by default"
        );
        assert_eq!(
            body["response_format"]["json_schema"]["schema"],
            json!({"type": "object"})
        );
        // An object with open keys cannot be strict.
        assert_eq!(body["response_format"]["json_schema"]["strict"], false);
        assert_eq!(
            (body["max_tokens"].clone(), body["seed"].clone()),
            (json!(5), json!(7))
        );
        assert_eq!(body["logprobs"], true);
        assert!(body.get("tier").is_none(), "the tier hint is not sent");
        assert_eq!(model().url, "http://127.0.0.1:9/v1/chat/completions");
    }

    #[test]
    fn official_endpoint_needs_a_key_and_calls_tools_natively() {
        let err = OpenAi::builder("gpt-4o-mini").build().unwrap_err();
        assert!(err.to_string().contains("OPENAI_API_KEY"), "{err}");
        let m = OpenAi::builder("gpt-4o-mini")
            .api_key("sk-test-key")
            .build()
            .unwrap();
        assert!(m.capabilities().native_tools);
        assert!(!format!("{m:?}").contains("sk-test-key"));
        assert!(OpenAi::builder("x").base_url("not a url").build().is_err());
    }

    #[test]
    fn logprobs_are_read_from_stream_chunks() {
        let chunk: StreamChunk = serde_json::from_str(
            r#"{"choices": [{"delta": {"content": "Hi"}, "logprobs": {"content": [{"token": "Hi", "logprob": -0.25, "bytes": [72, 105], "top_logprobs": []}]}}]}"#,
        )
        .unwrap();
        let choice = chunk.choices.into_iter().next().unwrap();
        assert_eq!(
            choice.logprobs.and_then(WireLogprobs::into_chunk),
            Some(Chunk::Logprobs(vec![-0.25]))
        );
        let none: StreamChunk =
            serde_json::from_str(r#"{"choices": [{"delta": {}, "logprobs": null}]}"#).unwrap();
        assert!(none.choices[0].logprobs.is_none());
    }

    #[test]
    fn tolerant_chunk_parsing() {
        let chunk: StreamChunk = serde_json::from_str(
            r#"{"choices": [{"delta": {"content": null, "tool_calls": null, "extra": 1}, "finish_reason": ""}], "usage": null, "x": []}"#,
        )
        .unwrap();
        assert_eq!(finish_reason(chunk.choices[0].finish_reason.clone()), None);
        let u: WireUsage =
            serde_json::from_str(r#"{"prompt_tokens": 5, "prompt_cache_hit_tokens": 3}"#).unwrap();
        assert_eq!((u.into_usage().cached_tokens, 5), (3, 5));
    }
}
