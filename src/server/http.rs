//! The HTTP routes: AG-UI's `POST /agent`, background runs under `/runs`,
//! the page and the metrics.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{Stream, StreamExt};
use serde_json::json;

use super::{RunLog, Server, ServerError};
use crate::agui::RunAgentInput;
use crate::machine::MachineErrorKind;

impl Server {
    /// The server's routes, to serve or to merge into an app of your own.
    pub fn router(&self) -> Router {
        let mut router = Router::new()
            .route("/agent", post(agent))
            .route("/runs", post(start_background))
            .route("/runs/{id}", get(status).delete(cancel))
            .route("/runs/{id}/events", get(events))
            .route("/ws", get(super::ws::upgrade));
        if self.page.is_some() {
            router = router.route("/", get(page));
        }
        if self.metrics.is_some() {
            router = router.route("/metrics", get(metrics));
        }
        router.with_state(self.clone())
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
        };
        (
            status,
            Json(json!({"error": self.to_string(), "code": self.code()})),
        )
            .into_response()
    }
}

/// A request's `RunAgentInput`, or a typed error naming what is wrong.
fn input_of(body: &[u8]) -> Result<RunAgentInput, ServerError> {
    serde_json::from_slice(body).map_err(|e| ServerError::BadInput(e.to_string()))
}

/// The span a request's run runs in: with feature `otel`, it continues the
/// caller's trace from its W3C `traceparent` header.
fn request_span(headers: &HeaderMap) -> tracing::Span {
    let span = tracing::info_span!("statewise.request");
    #[cfg(feature = "otel")]
    if let Some(parent) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
        crate::otel::continue_trace(&span, parent);
    }
    #[cfg(not(feature = "otel"))]
    let _ = headers;
    span
}

async fn agent(
    State(server): State<Server>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ServerError> {
    let input = input_of(&body)?;
    let span = request_span(&headers);
    let stop = server.direct_stops_when_unread;
    let log = tracing::Instrument::instrument(server.start(input, stop), span).await?;
    Ok(sse(&log, 0).into_response())
}

async fn start_background(
    State(server): State<Server>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ServerError> {
    let input = input_of(&body)?;
    let thread_id = input.thread_id.clone();
    let span = request_span(&headers);
    let log = tracing::Instrument::instrument(server.start_background(input), span).await?;
    let body = json!({"runId": log.run_id(), "threadId": thread_id});
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/runs/{}", log.run_id()))],
        Json(body),
    )
        .into_response())
}

async fn status(
    State(server): State<Server>,
    Path(id): Path<String>,
) -> Result<Response, ServerError> {
    Ok(Json(server.run(&id).await?.info()).into_response())
}

async fn cancel(
    State(server): State<Server>,
    Path(id): Path<String>,
) -> Result<Response, ServerError> {
    Ok((StatusCode::ACCEPTED, Json(server.cancel(&id).await?)).into_response())
}

async fn events(
    State(server): State<Server>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ServerError> {
    let log = server.run(&id).await?;
    Ok(sse(&log, resume_from(&headers)).into_response())
}

/// Where a reconnecting client goes on: after the `Last-Event-ID` it
/// names (the index of the last event it got), else from the start.
fn resume_from(headers: &HeaderMap) -> usize {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(0, |last| last + 1)
}

/// The log's events from `from` on, one `data:` line each, with its index
/// as the event id.
fn sse(log: &Arc<RunLog>, from: usize) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let stream = log
        .events(from)
        .map(|(i, json)| Ok(SseEvent::default().id(i.to_string()).data(&*json)));
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

async fn page(State(server): State<Server>) -> Response {
    Html(server.page.as_deref().unwrap_or_default().to_owned()).into_response()
}

async fn metrics(State(server): State<Server>) -> Response {
    let body = server
        .metrics
        .as_ref()
        .map(|render| render())
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconnecting_client_goes_on_after_the_last_event_it_got() {
        let mut headers = HeaderMap::new();
        assert_eq!(resume_from(&headers), 0);
        headers.insert("last-event-id", "41".parse().unwrap());
        assert_eq!(resume_from(&headers), 42);
        headers.insert("last-event-id", "nonsense".parse().unwrap());
        assert_eq!(resume_from(&headers), 0);
    }
}
