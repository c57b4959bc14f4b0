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

impl Server {
    /// The server's routes, to serve or to merge into an app of your own.
    pub fn router(&self) -> Router {
        let mut router = Router::new()
            .route("/agent", post(agent))
            .route("/runs", post(start_background))
            .route("/runs/{id}", get(status).delete(cancel))
            .route("/runs/{id}/events", get(events))
            .route("/ws", get(super::ws::upgrade))
            .layer(axum::extract::DefaultBodyLimit::max(self.access.max_body));
        if self.page.is_some() {
            router = router.route("/", get(page));
        }
        if self.metrics.is_some() {
            router = router.route("/metrics", get(metrics));
        }
        let router = router.with_state(self.clone());
        match self.cors() {
            Some(cors) => router.layer(cors),
            None => router,
        }
    }

    /// The CORS layer for the origins allowed, if any is.
    fn cors(&self) -> Option<tower_http::cors::CorsLayer> {
        use axum::http::{HeaderName, HeaderValue, Method};
        let origins: Vec<HeaderValue> = self
            .access
            .origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        if origins.is_empty() {
            return None;
        }
        Some(
            tower_http::cors::CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([Method::GET, Method::POST, Method::DELETE])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    HeaderName::from_static("last-event-id"),
                    HeaderName::from_static("x-api-key"),
                ]),
        )
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
    let caller = server.caller(&headers).await?;
    let input = input_of(&body)?;
    let span = request_span(&headers);
    let stop = server.direct_stops_when_unread;
    let started = server.start_as(input, stop, false, caller);
    let log = tracing::Instrument::instrument(started, span).await?;
    Ok(sse(&log, 0).into_response())
}

async fn start_background(
    State(server): State<Server>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ServerError> {
    let caller = server.caller(&headers).await?;
    let input = input_of(&body)?;
    let thread_id = input.thread_id.clone();
    let span = request_span(&headers);
    let stop = server.background_stops_when_unread;
    let started = server.start_as(input, stop, true, caller);
    let log = tracing::Instrument::instrument(started, span).await?;
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
    headers: HeaderMap,
) -> Result<Response, ServerError> {
    let caller = server.caller(&headers).await?;
    Ok(Json(server.run_for(&id, caller.as_ref()).await?.info()).into_response())
}

async fn cancel(
    State(server): State<Server>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ServerError> {
    let caller = server.caller(&headers).await?;
    let info = server.cancel_for(&id, caller.as_ref()).await?;
    Ok((StatusCode::ACCEPTED, Json(info)).into_response())
}

async fn events(
    State(server): State<Server>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ServerError> {
    let caller = server.caller(&headers).await?;
    let log = server.run_for(&id, caller.as_ref()).await?;
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

/// The page is the app's own shell, served without credentials: it asks
/// for nothing but what a browser loads.
async fn page(State(server): State<Server>) -> Response {
    Html(server.page.as_deref().unwrap_or_default().to_owned()).into_response()
}

async fn metrics(
    State(server): State<Server>,
    headers: HeaderMap,
) -> Result<Response, ServerError> {
    server.caller(&headers).await?;
    let body = server
        .metrics
        .as_ref()
        .map(|render| render())
        .unwrap_or_default();
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
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
