//! The model interface: [`ChatModel`] streams [`Chunk`]s for a [`ChatRequest`].
//!
//! Every provider (vendor APIs, local models, test doubles) implements this one
//! trait, and layers (retry, timeout, cache, ...) wrap it, so a state never
//! knows which model it talks to.

#[cfg(feature = "http")]
mod anthropic;
mod context;
#[cfg(feature = "http")]
pub(crate) mod http;
#[cfg(feature = "local")]
mod local;
#[cfg(feature = "http")]
mod openai;
#[cfg(feature = "http")]
mod openai_body;
mod price;
mod reply;
mod scripted;
mod span;
#[cfg(feature = "tiktoken")]
mod tiktoken;
#[cfg(feature = "http")]
mod window;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};

use crate::env::{Message, Usage};
use crate::tool::ToolSpec;

#[cfg(feature = "http")]
pub(crate) use anthropic::message_reply;
#[cfg(feature = "http")]
pub use anthropic::{Anthropic, AnthropicBuilder, ANTHROPIC_BASE_URL};
pub use context::{
    fixed_tokens, message_tokens, request_tokens, ContextWindow, Estimate, Fitted, TokenCounter,
    MESSAGE_OVERHEAD, REQUEST_OVERHEAD,
};
#[cfg(feature = "local")]
pub use local::{default_model_path, LocalModel, LocalOptions, DEFAULT_MODEL_FILE};
#[cfg(feature = "http")]
pub(crate) use openai::completion_reply;
#[cfg(feature = "http")]
pub use openai::{OpenAi, OpenAiBuilder, OPENAI_BASE_URL};
pub use price::{Price, PriceTable, Priced};
pub use reply::{split_words, ModelCall, Reply, ReplyBuilder, ReplyStream, Streamed};
pub use scripted::{FnModel, Scripted, ScriptedModel};
#[cfg(feature = "tiktoken")]
pub use tiktoken::Tiktoken;

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
}

/// Why a model call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A [`ScriptedModel`] was called more often than it has replies.
    #[error(
        "scripted model `{model}` got call #{call} but its script held only {scripted} replies"
    )]
    ScriptExhausted {
        /// The model's name.
        model: String,
        /// The 1-based number of the call that found the script empty.
        call: usize,
        /// How many replies the script held in all.
        scripted: usize,
    },
    /// An error written into a test script.
    #[error("scripted error: {0}")]
    Scripted(String),
    /// The provider answered with an error status. `message` is its error
    /// body with credentials redacted.
    #[error("{provider} answered HTTP {status}: {message}")]
    Http {
        /// The provider (`openai`, `anthropic`, ...).
        provider: String,
        /// The HTTP status.
        status: u16,
        /// What the provider said, credentials redacted.
        message: String,
        /// How long the provider asked to wait before retrying.
        retry_after: Option<Duration>,
    },
    /// The request is longer than the model's context window. Fit it
    /// ([`Fitter`](crate::fit::Fitter)) or shorten the conversation.
    #[error("{provider}: the request does not fit the model's context window{}: {message}", overflow_figures(*.prompt_tokens, *.window))]
    ContextOverflow {
        /// The provider.
        provider: String,
        /// The prompt's tokens, where the provider said.
        prompt_tokens: Option<u32>,
        /// The window's tokens, where the provider said.
        window: Option<u32>,
        /// What the provider said, credentials redacted.
        message: String,
    },
    /// The request got no answer: connection refused, DNS, TLS, ...
    #[error("{provider}: no answer: {message}")]
    Connect {
        /// The provider.
        provider: String,
        /// What failed.
        message: String,
    },
    /// The reply stream ended or broke before the reply was complete.
    #[error("{provider}: the reply stream was cut after {chunks} chunks: {message}")]
    StreamCut {
        /// The provider.
        provider: String,
        /// Chunks already delivered; 0 means nothing reached the caller.
        chunks: usize,
        /// What happened.
        message: String,
    },
    /// The provider sent something that is not its protocol, or reported
    /// an error inside the stream.
    #[error("{provider}: bad response after {chunks} chunks: {message}")]
    Protocol {
        /// The provider.
        provider: String,
        /// Chunks already delivered.
        chunks: usize,
        /// What was wrong.
        message: String,
    },
    /// The model is not usable as configured (missing API key, bad URL, ...).
    #[error("{provider}: {message}")]
    Config {
        /// The provider.
        provider: String,
        /// What to fix.
        message: String,
    },
    /// The request cannot be served as given: too long for the context, a
    /// schema that yields no grammar, ... Retrying the same request fails
    /// the same way.
    #[error("{provider}: cannot serve this request: {message}")]
    Request {
        /// The provider.
        provider: String,
        /// What is wrong with the request.
        message: String,
    },
    /// The model's backend failed while generating (an in-process model).
    #[error("{provider}: backend failure: {message}")]
    Backend {
        /// The provider.
        provider: String,
        /// What failed.
        message: String,
    },
    /// A time limit passed (see [`crate::layer::Timeouts`]).
    #[error("{model}: no {stage} within {after:?} (after {chunks} chunks)")]
    Timeout {
        /// The model.
        model: String,
        /// Which limit.
        stage: TimeoutStage,
        /// The limit.
        after: Duration,
        /// Chunks delivered before it passed.
        chunks: usize,
    },
    /// The model's circuit breaker is open after repeated failures: the call
    /// was refused without being sent (see [`crate::layer::CircuitBreaker`]).
    #[error("{model}: circuit open after repeated failures; next probe in {retry_in:?}")]
    CircuitOpen {
        /// The model.
        model: String,
        /// When the breaker lets a probe through.
        retry_in: Duration,
    },
    /// A replayed model ([`RecordedModel`](crate::replay::RecordedModel))
    /// has no recorded reply for this request: the prompt, the env or the
    /// tools differ from the recording.
    #[error("{model}: no recorded reply for this request (it differs from every recorded one); {recorded} recorded calls")]
    NotRecorded {
        /// The model.
        model: String,
        /// How many calls the recording holds.
        recorded: usize,
    },
    /// Any other failure of a provider.
    #[error("{0}")]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

/// " (N tokens, the window holds M)" with what is known of the two.
fn overflow_figures(prompt_tokens: Option<u32>, window: Option<u32>) -> String {
    match (prompt_tokens, window) {
        (Some(p), Some(w)) => format!(" ({p} tokens; the window holds {w})"),
        (Some(p), None) => format!(" ({p} tokens)"),
        (None, Some(w)) => format!(" (the window holds {w} tokens)"),
        (None, None) => String::new(),
    }
}

/// Which time limit a [`ModelError::Timeout`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutStage {
    /// Connecting to the provider (`connect_timeout` of its builder).
    Connect,
    /// Waiting for the first chunk (connecting and the request included).
    FirstToken,
    /// Waiting between two chunks.
    Idle,
    /// The whole call.
    Call,
}

impl std::fmt::Display for TimeoutStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TimeoutStage::Connect => "connection",
            TimeoutStage::FirstToken => "first token",
            TimeoutStage::Idle => "next chunk",
            TimeoutStage::Call => "complete reply",
        })
    }
}

impl ModelError {
    /// The HTTP status, for [`ModelError::Http`].
    pub fn status(&self) -> Option<u16> {
        match self {
            ModelError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// How long the provider asked to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ModelError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether any chunk of the reply had reached the caller before the
    /// failure (so a retry must discard what was streamed).
    pub fn emitted(&self) -> bool {
        match self {
            ModelError::StreamCut { chunks, .. }
            | ModelError::Protocol { chunks, .. }
            | ModelError::Timeout { chunks, .. } => *chunks > 0,
            _ => false,
        }
    }

    /// Whether the failure is transient, so the same request may succeed
    /// later: 408, 409, 425, 429 and 5xx statuses, no answer, a cut or
    /// stalled stream, a malformed reply. Not: bad requests, auth, config,
    /// an open circuit (a fallback acts on that), script errors.
    pub fn is_transient(&self) -> bool {
        match self {
            ModelError::Http { status, .. } => matches!(status, 408 | 409 | 425 | 429 | 500..=599),
            ModelError::Connect { .. }
            | ModelError::StreamCut { .. }
            | ModelError::Protocol { .. }
            | ModelError::Timeout { .. } => true,
            _ => false,
        }
    }

    /// Whether the same request may be sent again right away: transient and
    /// nothing streamed yet (after tokens, the state must restart instead).
    pub fn is_retryable(&self) -> bool {
        self.is_transient() && !self.emitted()
    }

    /// Whether the request was too long for the model's context window.
    pub fn is_context_overflow(&self) -> bool {
        matches!(self, ModelError::ContextOverflow { .. })
    }

    /// The kind of failure, typed.
    pub fn kind(&self) -> ModelErrorKind {
        match self {
            ModelError::Http { .. } => ModelErrorKind::Http,
            ModelError::ContextOverflow { .. } => ModelErrorKind::ContextOverflow,
            ModelError::Connect { .. } => ModelErrorKind::Connect,
            ModelError::StreamCut { .. } => ModelErrorKind::StreamCut,
            ModelError::Protocol { .. } => ModelErrorKind::Protocol,
            ModelError::Timeout { .. } => ModelErrorKind::Timeout,
            ModelError::CircuitOpen { .. } => ModelErrorKind::CircuitOpen,
            ModelError::Config { .. } => ModelErrorKind::Config,
            ModelError::Request { .. } => ModelErrorKind::Request,
            ModelError::Backend { .. } => ModelErrorKind::Backend,
            ModelError::ScriptExhausted { .. } | ModelError::Scripted(_) => ModelErrorKind::Script,
            ModelError::NotRecorded { .. } => ModelErrorKind::NotRecorded,
            ModelError::Other(_) => ModelErrorKind::Other,
        }
    }

    /// The same error again, for each caller that waited on one call (the
    /// response cache's coalesced callers). [`ModelError::Other`] keeps its
    /// message, not its source's type.
    pub fn duplicate(&self) -> ModelError {
        use ModelError as E;
        match self {
            E::ScriptExhausted {
                model,
                call,
                scripted,
            } => E::ScriptExhausted {
                model: model.clone(),
                call: *call,
                scripted: *scripted,
            },
            E::Scripted(m) => E::Scripted(m.clone()),
            E::Http {
                provider,
                status,
                message,
                retry_after,
            } => E::Http {
                provider: provider.clone(),
                status: *status,
                message: message.clone(),
                retry_after: *retry_after,
            },
            E::ContextOverflow {
                provider,
                prompt_tokens,
                window,
                message,
            } => E::ContextOverflow {
                provider: provider.clone(),
                prompt_tokens: *prompt_tokens,
                window: *window,
                message: message.clone(),
            },
            E::Connect { provider, message } => E::Connect {
                provider: provider.clone(),
                message: message.clone(),
            },
            E::StreamCut {
                provider,
                chunks,
                message,
            } => E::StreamCut {
                provider: provider.clone(),
                chunks: *chunks,
                message: message.clone(),
            },
            E::Protocol {
                provider,
                chunks,
                message,
            } => E::Protocol {
                provider: provider.clone(),
                chunks: *chunks,
                message: message.clone(),
            },
            E::Config { provider, message } => E::Config {
                provider: provider.clone(),
                message: message.clone(),
            },
            E::Request { provider, message } => E::Request {
                provider: provider.clone(),
                message: message.clone(),
            },
            E::Backend { provider, message } => E::Backend {
                provider: provider.clone(),
                message: message.clone(),
            },
            E::Timeout {
                model,
                stage,
                after,
                chunks,
            } => E::Timeout {
                model: model.clone(),
                stage: *stage,
                after: *after,
                chunks: *chunks,
            },
            E::CircuitOpen { model, retry_in } => E::CircuitOpen {
                model: model.clone(),
                retry_in: *retry_in,
            },
            E::NotRecorded { model, recorded } => E::NotRecorded {
                model: model.clone(),
                recorded: *recorded,
            },
            E::Other(source) => E::Other(source.to_string().into()),
        }
    }

    /// A short stable code: the kind, with the status for HTTP errors
    /// (`http_429`, `context_overflow`, `stream_cut`, ...).
    pub fn code(&self) -> String {
        match self {
            ModelError::Http { status, .. } => format!("http_{status}"),
            other => other.kind().as_str().to_owned(),
        }
    }
}

/// The kinds of [`ModelError`], serialized in snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ModelErrorKind {
    /// An error status ([`ModelError::Http`]).
    Http,
    /// [`ModelError::ContextOverflow`].
    ContextOverflow,
    /// [`ModelError::Connect`].
    Connect,
    /// [`ModelError::StreamCut`].
    StreamCut,
    /// [`ModelError::Protocol`].
    Protocol,
    /// [`ModelError::Timeout`].
    Timeout,
    /// [`ModelError::CircuitOpen`].
    CircuitOpen,
    /// [`ModelError::Config`].
    Config,
    /// [`ModelError::Request`].
    Request,
    /// [`ModelError::Backend`].
    Backend,
    /// [`ModelError::Scripted`] and [`ModelError::ScriptExhausted`].
    Script,
    /// [`ModelError::NotRecorded`].
    NotRecorded,
    /// [`ModelError::Other`].
    Other,
}

impl ModelErrorKind {
    /// The snake_case name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelErrorKind::Http => "http",
            ModelErrorKind::ContextOverflow => "context_overflow",
            ModelErrorKind::Connect => "connect",
            ModelErrorKind::StreamCut => "stream_cut",
            ModelErrorKind::Protocol => "protocol",
            ModelErrorKind::Timeout => "timeout",
            ModelErrorKind::CircuitOpen => "circuit_open",
            ModelErrorKind::Config => "config",
            ModelErrorKind::Request => "request",
            ModelErrorKind::Backend => "backend",
            ModelErrorKind::Script => "script",
            ModelErrorKind::NotRecorded => "not_recorded",
            ModelErrorKind::Other => "other",
        }
    }
}

impl std::fmt::Display for ModelErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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

    fn stream(&self, request: ChatRequest) -> ChunkStream<'_> {
        (**self).stream(request)
    }

    fn complete(&self, request: ChatRequest) -> BoxFuture<'_, Result<Reply, ModelError>> {
        (**self).complete(request)
    }
}
