//! Why a model call failed: [`ModelError`], its [`ModelErrorKind`] (the
//! code traces, metrics and clients use), and what decides a retry
//! ([`ModelError::is_transient`]).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why a model call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
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
    /// A part standing in front of a provider, or in for one, refused the
    /// call without a model answering: a circuit breaker
    /// ([`CircuitOpen`](crate::layer::CircuitOpen)), a replay
    /// ([`NotRecorded`](crate::replay::NotRecorded)), a scripted model
    /// ([`ScriptExhausted`](crate::model::ScriptExhausted)). Each has its
    /// own error type; [`ModelError::refusal`] gives it back.
    #[error("{cause}")]
    Refused {
        /// Which part refused: [`ModelErrorKind::CircuitOpen`],
        /// [`ModelErrorKind::NotRecorded`] or [`ModelErrorKind::Script`].
        kind: ModelErrorKind,
        /// That part's own error.
        cause: Arc<dyn std::error::Error + Send + Sync>,
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

    /// A refusal of the part that made it: `Some` if this is
    /// [`ModelError::Refused`] with a cause of type `T`.
    ///
    /// ```
    /// use statewise::layer::CircuitOpen;
    /// use statewise::model::ModelError;
    /// use std::time::Duration;
    ///
    /// let err = ModelError::from(CircuitOpen { model: "m".into(), retry_in: Duration::from_secs(5) });
    /// assert_eq!(err.refusal::<CircuitOpen>().map(|c| c.retry_in), Some(Duration::from_secs(5)));
    /// ```
    pub fn refusal<T: std::error::Error + 'static>(&self) -> Option<&T> {
        match self {
            ModelError::Refused { cause, .. } => cause.downcast_ref::<T>(),
            _ => None,
        }
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
            ModelError::Config { .. } => ModelErrorKind::Config,
            ModelError::Request { .. } => ModelErrorKind::Request,
            ModelError::Backend { .. } => ModelErrorKind::Backend,
            ModelError::Scripted(_) => ModelErrorKind::Script,
            ModelError::Refused { kind, .. } => *kind,
            ModelError::Other(_) => ModelErrorKind::Other,
        }
    }

    /// The same error again, for each caller that waited on one call (the
    /// response cache's coalesced callers). [`ModelError::Other`] keeps its
    /// message, not its source's type.
    pub fn duplicate(&self) -> ModelError {
        use ModelError as E;
        match self {
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
            E::Refused { kind, cause } => E::Refused {
                kind: *kind,
                cause: Arc::clone(cause),
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
    /// A circuit breaker refused the call
    /// ([`CircuitOpen`](crate::layer::CircuitOpen)).
    CircuitOpen,
    /// [`ModelError::Config`].
    Config,
    /// [`ModelError::Request`].
    Request,
    /// [`ModelError::Backend`].
    Backend,
    /// [`ModelError::Scripted`], and a scripted model past its script
    /// ([`ScriptExhausted`](crate::model::ScriptExhausted)).
    Script,
    /// A replay has no recorded reply
    /// ([`NotRecorded`](crate::replay::NotRecorded)).
    NotRecorded,
    /// A budget of a [`Limit`](crate::layer::Limit) would not allow the
    /// call within its longest wait ([`QuotaExceeded`](crate::layer::QuotaExceeded)).
    Quota,
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
            ModelErrorKind::Quota => "quota",
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
