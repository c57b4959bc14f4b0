//! The model interface: [`ChatModel`] streams [`Chunk`]s for a [`ChatRequest`].
//!
//! Every provider (vendor APIs, local models, test doubles) implements this one
//! trait, and layers (retry, timeout, cache, ...) wrap it, so a state never
//! knows which model it talks to.

mod context;
mod error;
mod price;
pub(crate) mod provider;
mod reply;
mod route;
mod scripted;
mod span;

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};

use crate::env::{Message, Usage};
use crate::tool::ToolSpec;

pub use context::{
    fixed_tokens, message_tokens, request_tokens, ContextWindow, Estimate, Fitted, TokenCounter,
    MESSAGE_OVERHEAD, REQUEST_OVERHEAD,
};
pub use error::{ModelError, ModelErrorKind, TimeoutStage};
pub use price::{Price, PriceTable};
#[cfg(feature = "tiktoken")]
pub use provider::Tiktoken;
#[cfg(feature = "local")]
pub use provider::{default_model_path, LocalModel, LocalOptions, DEFAULT_MODEL_FILE};
#[cfg(feature = "http")]
pub use provider::{
    Anthropic, AnthropicBuilder, OpenAi, OpenAiBuilder, ANTHROPIC_BASE_URL, OPENAI_BASE_URL,
};
pub use reply::{split_words, ModelCall, Reply, ReplyBuilder, ReplyStream, Streamed};
pub use route::{confidence, RouteStep, Verdict};
pub use scripted::{FnModel, ScriptExhausted, Scripted, ScriptedModel};

/// A model shared between states and runs.
pub type SharedModel = Arc<dyn ChatModel>;

/// The stream a model returns: chunks until the reply is complete, or an error.
pub type ChunkStream<'a> = BoxStream<'a, Result<Chunk, ModelError>>;

/// Sampling parameters of a request. `None` leaves the provider's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Upper bound on generated tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sequences that end generation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// Seed for reproducible sampling, where the provider supports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Ask for each generated token's log-probability ([`Chunk::Logprobs`]),
    /// where the provider returns them (OpenAI-compatible servers, the
    /// llama.cpp server, the in-process model). A
    /// [`Cascade`](crate::layer::Cascade) with a confidence floor sets it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub logprobs: bool,
}

/// What is sent to a model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The conversation, system prompt first.
    pub messages: Vec<Message>,
    /// Tools the model may call natively (empty for JSON-action prompting).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolSpec>,
    /// Sampling parameters.
    #[serde(default)]
    pub params: Params,
    /// A JSON Schema the reply's text must follow, for models that can
    /// constrain their output ([`Capabilities::json_schema`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_schema: Option<serde_json::Value>,
    /// The tier the state would like to serve this request (`"small"`,
    /// `"large"`, ...): a hint a [`Router`](crate::layer::Router)'s
    /// [`Rules`](crate::layer::Rules) honour; other models ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
}

/// What a model can do beyond plain chat; states adapt their prompts to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// It calls tools natively (`ChatRequest::tools`, tool-call chunks).
    pub native_tools: bool,
    /// It can constrain its reply to `ChatRequest::response_schema`.
    pub json_schema: bool,
}

impl ChatRequest {
    /// A request holding these messages and default parameters.
    pub fn new(messages: Vec<Message>) -> Self {
        ChatRequest {
            messages,
            ..ChatRequest::default()
        }
    }
}

/// Why a model stopped generating.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A natural end or a stop sequence.
    Stop,
    /// The token limit was reached.
    Length,
    /// The model wants tools called.
    ToolCalls,
    /// The provider filtered the content.
    ContentFilter,
    /// Anything else the provider reported.
    Other(String),
}

/// A piece of a tool call as it streams; pieces with the same `index` form one call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    /// Position of the call within the reply.
    pub index: usize,
    /// The call's id, usually only on its first piece.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The tool name, usually only on its first piece.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A fragment of the arguments' JSON text.
    #[serde(default)]
    pub arguments: String,
}

/// One piece of a streamed reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Chunk {
    /// Answer text.
    Text(String),
    /// Reasoning text ("thinking"), kept apart from the answer.
    Reasoning(String),
    /// A fragment of a native tool call.
    ToolCall(ToolCallDelta),
    /// Token counts for the call (usually once, near the end).
    Usage(Usage),
    /// The reason generation ended.
    Finish(FinishReason),
    /// Natural-log probabilities of generated tokens, in order, when the
    /// request asked for them ([`Params::logprobs`]).
    Logprobs(Vec<f32>),
    /// How a router or cascade served (part of) the call: one step per
    /// model asked, sent when that model's part ends.
    Route(RouteStep),
}

/// A chat model: streams the reply to a request.
///
/// Implement [`stream`](ChatModel::stream); [`complete`](ChatModel::complete)
/// collects it, so streamed and non-streamed calls share one code path unless
/// a provider has a better non-streaming route.
///
/// ```
/// use statewise::model::{ChatModel, ChatRequest, FnModel, Reply};
/// use statewise::Message;
///
/// # futures::executor::block_on(async {
/// let echo = FnModel::new("echo", |req: &ChatRequest| {
///     let last = req.messages.last().map(|m| m.content.clone()).unwrap_or_default();
///     Ok(Reply::text(format!("you said: {last}")))
/// });
/// let reply = echo.complete(ChatRequest::new(vec![Message::user("hi")])).await?;
/// assert_eq!(reply.text, "you said: hi");
/// # Ok::<(), statewise::model::ModelError>(())
/// # }).unwrap();
/// ```
pub trait ChatModel: Send + Sync {
    /// The model's name, as it appears in traces and usage reports.
    fn name(&self) -> &str;

    /// What the model can do beyond plain chat.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// The model's context window, where it is known: from the model file,
    /// the server, a table of vendor models or configuration. States fit
    /// their requests to it ([`Fitter`](crate::fit::Fitter)). A provider
    /// that asks its server does so once and remembers the answer.
    fn context_window(&self) -> BoxFuture<'_, Option<ContextWindow>> {
        futures::future::ready(None).boxed()
    }

    /// The counter [`context_window`](Self::context_window) gives, known
    /// without asking anything (`None`: tokens are estimated). A layer that
    /// keeps the window's size elsewhere ([`Cache`](crate::layer::Cache))
    /// pairs it with this.
    fn token_counter(&self) -> Option<Arc<dyn TokenCounter>> {
        None
    }

    /// Streams the reply to `request`.
    fn stream(&self, request: ChatRequest) -> ChunkStream<'_>;

    /// The whole reply to `request`.
    fn complete(&self, request: ChatRequest) -> BoxFuture<'_, Result<Reply, ModelError>> {
        async move {
            let mut stream = self.stream(request);
            let mut reply = ReplyBuilder::default();
            while let Some(chunk) = stream.next().await {
                reply.push(chunk?);
            }
            Ok(reply.finish())
        }
        .boxed()
    }
}

impl<M: ChatModel + ?Sized> ChatModel for Arc<M> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }

    fn context_window(&self) -> BoxFuture<'_, Option<ContextWindow>> {
        (**self).context_window()
    }

    fn token_counter(&self) -> Option<Arc<dyn TokenCounter>> {
        (**self).token_counter()
    }

    fn stream(&self, request: ChatRequest) -> ChunkStream<'_> {
        (**self).stream(request)
    }

    fn complete(&self, request: ChatRequest) -> BoxFuture<'_, Result<Reply, ModelError>> {
        (**self).complete(request)
    }
}
