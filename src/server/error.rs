//! [`ServerError`]: why a request was refused, and the response each kind
//! gets. A client's mistake is answered in words that say what to change;
//! a failure inside the server is answered with its code only, the
//! details going to the server's log, never to the caller.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::auth::AuthError;
use crate::machine::{MachineError, MachineErrorKind};
use crate::store::StoreError;

/// Why a request could not start a run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Resume entries came for a thread that is not paused.
    #[error("thread {thread_id} has no paused run to resume; send the request without `resume`")]
    NothingToResume {
        /// The thread.
        thread_id: String,
    },
    /// The resume entries do not answer what the run waits for.
    #[error("the run waits for interrupt {waiting:?}, and the resume entries answer {answered:?}")]
    UnknownInterrupt {
        /// The ids the entries answer.
        answered: Vec<String>,
        /// The id the run waits for.
        waiting: String,
    },
    /// A run of that id is under way.
    #[error("run {run_id} is already running; start a new run with a new runId")]
    RunExists {
        /// The run.
        run_id: String,
    },
    /// No run of that id is known (it never was, or was forgotten).
    #[error("no run {run_id}; runs are kept for {kept_secs} s after they end")]
    UnknownRun {
        /// The run.
        run_id: String,
        /// How long ended runs are kept.
        kept_secs: u64,
    },
    /// The run is on the Redis queue; its worker cannot be stopped from
    /// here.
    #[error("run {run_id} runs on a queue worker and cannot be cancelled from the server")]
    NotCancellable {
        /// The run.
        run_id: String,
    },
    /// The Redis queue refused the run.
    #[cfg(feature = "redis")]
    #[error(transparent)]
    Queue(#[from] crate::worker::QueueError),
    /// The request was not a valid `RunAgentInput`.
    #[error("the request is not an AG-UI RunAgentInput: {0}")]
    BadInput(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Where paused threads are kept ([`Server::with_threads`](super::Server::with_threads)) failed.
    #[error("looking up the thread's paused run failed: {0}")]
    Threads(#[source] crate::backend::BackendError),
    /// The shared run logs ([`Server::with_logs`](super::Server::with_logs)) failed.
    #[error("reading or writing the shared run logs failed: {0}")]
    Logs(#[source] crate::backend::BackendError),
    /// The machine could not resume the run (it is not paused, or the
    /// server's machine has no store).
    #[error(transparent)]
    Machine(#[from] MachineError),
    /// The request carries no credentials, or credentials the server does
    /// not accept ([`Server::with_auth`](super::Server::with_auth)).
    #[error("{0}")]
    Unauthorized(#[from] AuthError),
    /// The run belongs to another principal.
    #[error("run {run_id} belongs to another principal")]
    Forbidden {
        /// The run (or the thread's paused run).
        run_id: String,
    },
    /// The principal sent more requests than its limit allows
    /// ([`Server::rate_limit`](super::Server::rate_limit)).
    #[error("too many requests; try again in {retry_after_secs} s")]
    TooManyRequests {
        /// When the next request is allowed.
        retry_after_secs: u64,
    },
}

impl ServerError {
    /// The error's kind, as a short code (for the response's `code`).
    pub fn code(&self) -> &'static str {
        match self {
            ServerError::NothingToResume { .. } => "nothing_to_resume",
            ServerError::UnknownInterrupt { .. } => "unknown_interrupt",
            ServerError::RunExists { .. } => "run_exists",
            ServerError::UnknownRun { .. } => "unknown_run",
            ServerError::NotCancellable { .. } => "not_cancellable",
            #[cfg(feature = "redis")]
            ServerError::Queue(_) => "queue",
            ServerError::BadInput(_) => "bad_input",
            ServerError::Store(_) => "store",
            ServerError::Threads(_) => "threads",
            ServerError::Logs(_) => "logs",
            ServerError::Machine(_) => "machine",
            ServerError::Unauthorized(_) => "unauthorized",
            ServerError::Forbidden { .. } => "forbidden",
            ServerError::TooManyRequests { .. } => "too_many_requests",
        }
    }
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let status = match &self {
            ServerError::NothingToResume { .. }
            | ServerError::UnknownInterrupt { .. }
            | ServerError::RunExists { .. }
            | ServerError::NotCancellable { .. } => StatusCode::CONFLICT,
            ServerError::UnknownRun { .. } => StatusCode::NOT_FOUND,
            ServerError::BadInput(_) => StatusCode::BAD_REQUEST,
            ServerError::Machine(e) if e.kind() == MachineErrorKind::NotPaused => {
                StatusCode::CONFLICT
            }
            ServerError::Store(_) | ServerError::Machine(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ServerError::Threads(_) | ServerError::Logs(_) => StatusCode::SERVICE_UNAVAILABLE,
            #[cfg(feature = "redis")]
            ServerError::Queue(_) => StatusCode::SERVICE_UNAVAILABLE,
            ServerError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ServerError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ServerError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        };
        // What failed inside (a store, a backend) is the server's to know:
        // it goes to the log, and the caller gets its code.
        let message = match status.is_server_error() {
            true => {
                tracing::error!(code = self.code(), error = %self, "request failed");
                format!(
                    "the server could not complete the request ({}); its log has the details",
                    self.code()
                )
            }
            false => {
                tracing::info!(code = self.code(), error = %self, "request refused");
                self.to_string()
            }
        };
        let mut response =
            (status, Json(json!({"error": message, "code": self.code()}))).into_response();
        if let ServerError::TooManyRequests { retry_after_secs } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after_secs.into());
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
