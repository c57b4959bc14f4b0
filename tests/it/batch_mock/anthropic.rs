//! Anthropic's Message Batches API, mocked: `POST /v1/messages/batches`
//! (validated when created, as the API does), `GET
//! /v1/messages/batches/{id}`, `POST /v1/messages/batches/{id}/cancel` and
//! the `results_url` it gives once `ended`.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{
    calculator_arguments, error, has_header, phase, planner, Books, Mock, MockBatch, Phase,
    Planned, Served, KEY,
};

/// The books and the server's own URL (for `results_url`).
#[derive(Clone)]
struct Shared {
    books: Arc<Mutex<Books>>,
    url: Arc<Mutex<String>>,
}

/// Starts the mock; its URL has no `/v1`, as `ANTHROPIC_BASE_URL`.
pub async fn start() -> Mock {
    let books: Arc<Mutex<Books>> = Arc::default();
    let shared = Shared {
        books: Arc::clone(&books),
        url: Arc::default(),
    };
    let router = Router::new()
        .route("/v1/messages/batches", post(create))
        .route("/v1/messages/batches/{id}", get(retrieve))
        .route("/v1/messages/batches/{id}/cancel", post(cancel))
        .route("/v1/messages/batches/{id}/results", get(results))
        .with_state(shared.clone());
    let mock = Mock::serve(router, books, "").await;
    *shared.url.lock().unwrap() = mock.url.clone();
    mock
}

/// The refusal of a request without the right key, if it lacks it.
fn refused(headers: &HeaderMap) -> Option<Response> {
    if !has_header(headers, "anthropic-version", "2023-06-01") {
        return Some(error(
            400,
            "invalid_request_error",
            "anthropic-version header is required",
        ));
    }
    match has_header(headers, "x-api-key", KEY) {
        true => None,
        false => Some(error(401, "authentication_error", "invalid x-api-key")),
    }
}

/// A message answering `params` as the planner would.
pub fn message(params: &Value) -> Value {
    let native = params["tools"].as_array().is_some_and(|t| !t.is_empty());
    let (content, stop) = match (planner(&params["messages"]), native) {
        (Planned::CallCalculator, true) => (
            json!([{"type": "tool_use", "id": format!("toolu_{}", fastrand::u32(..)),
                "name": "calculator", "input": calculator_arguments()}]),
            "tool_use",
        ),
        (Planned::CallCalculator, false) => (
            json!([{"type": "text",
                "text": json!({"name": "calculator", "arguments": calculator_arguments()}).to_string()}]),
            "end_turn",
        ),
        (Planned::Answer(text), true) => (json!([{"type": "text", "text": text}]), "end_turn"),
        (Planned::Answer(text), false) => (
            json!([{"type": "text", "text": json!({"final_answer": text}).to_string()}]),
            "end_turn",
        ),
    };
    json!({
        "id": format!("msg_{}", fastrand::u32(..)),
        "type": "message",
        "role": "assistant",
        "model": params["model"],
        "content": content,
        "stop_reason": stop,
        "usage": {"input_tokens": 1000, "output_tokens": 100},
    })
}

/// Why `requests` would be refused, as the API checks them.
fn invalid(requests: &[Value]) -> Option<String> {
    let mut seen = std::collections::HashSet::new();
    for r in requests {
        let id = r["custom_id"].as_str().unwrap_or_default();
        let well_formed = (1..=64).contains(&id.len())
            && id
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
        if !well_formed {
            return Some(format!(
                "requests.custom_id: {id:?} does not match ^[a-zA-Z0-9_-]{{1,64}}$"
            ));
        }
        if !seen.insert(id) {
            return Some(format!("requests: custom_id {id} is not unique"));
        }
        let p = &r["params"];
        if !p["model"].is_string() || !p["max_tokens"].is_u64() || !p["messages"].is_array() {
            return Some(format!(
                "requests.{id}.params: model, max_tokens and messages are required"
            ));
        }
        if p["stream"] == true {
            return Some(format!(
                "requests.{id}.params.stream: not supported in a batch"
            ));
        }
    }
    None
}

async fn create(State(s): State<Shared>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Some(refusal) = refused(&headers) {
        return refusal;
    }
    let requests = body["requests"].as_array().cloned().unwrap_or_default();
    if requests.is_empty() {
        return error(
            400,
            "invalid_request_error",
            "requests: at least one is required",
        );
    }
    if let Some(why) = invalid(&requests) {
        return error(400, "invalid_request_error", &why);
    }
    let requests = requests
        .into_iter()
        .map(|r| {
            (
                r["custom_id"].as_str().unwrap_or_default().to_owned(),
                r["params"].clone(),
            )
        })
        .collect();
    let mut books = s.books.lock().unwrap();
    let batch = books.create("msgbatch", requests, None);
    Json(object(&books, &batch, &s.url.lock().unwrap())).into_response()
}

async fn retrieve(State(s): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(refusal) = refused(&headers) {
        return refusal;
    }
    let mut books = s.books.lock().unwrap();
    books.polls += 1;
    match books.batch(&id) {
        Some(batch) => Json(object(&books, batch, &s.url.lock().unwrap())).into_response(),
        None => error(404, "not_found_error", &format!("no batch {id}")),
    }
}

async fn cancel(State(s): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(refusal) = refused(&headers) {
        return refusal;
    }
    let mut books = s.books.lock().unwrap();
    let Some(batch) = books.cancel(&id) else {
        return error(404, "not_found_error", &format!("no batch {id}"));
    };
    Json(object(&books, &batch, &s.url.lock().unwrap())).into_response()
}

async fn results(State(s): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(refusal) = refused(&headers) {
        return refusal;
    }
    let books = s.books.lock().unwrap();
    let Some(batch) = books.batch(&id).filter(|b| phase(b, books.now).ended()) else {
        return error(
            404,
            "not_found_error",
            &format!("no results for batch {id}"),
        );
    };
    let mut lines = String::new();
    for (custom_id, served) in books.served(batch, message) {
        let result = match served {
            Served::Reply(message) => json!({"type": "succeeded", "message": message}),
            Served::Rejected => json!({"type": "errored", "error": {"type": "error",
                "error": {"type": "invalid_request_error", "message": "messages: roles must alternate"}}}),
            Served::Expired => json!({"type": "expired"}),
            Served::Cancelled => json!({"type": "canceled"}),
        };
        lines.push_str(&json!({"custom_id": custom_id, "result": result}).to_string());
        lines.push('\n');
    }
    lines.into_response()
}

/// The message batch object.
fn object(books: &Books, batch: &MockBatch, url: &str) -> Value {
    let phase = phase(batch, books.now);
    let status = match phase {
        Phase::Cancelling => "canceling",
        p if p.ended() => "ended",
        _ => "in_progress",
    };
    let ended = phase.ended();
    json!({
        "id": batch.id,
        "type": "message_batch",
        "processing_status": status,
        "request_counts": {
            "processing": if ended { 0 } else { batch.requests.len() },
            "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0,
        },
        "created_at": batch.created.as_secs(),
        "ended_at": if ended { json!(books.now.as_secs()) } else { Value::Null },
        "results_url": if ended { json!(format!("{url}/v1/messages/batches/{}/results", batch.id)) } else { Value::Null },
    })
}
