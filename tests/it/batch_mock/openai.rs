//! OpenAI's Batch API, mocked: `POST /v1/files` (multipart, purpose
//! `batch`), `POST /v1/batches`, `GET /v1/batches/{id}`,
//! `POST /v1/batches/{id}/cancel`, `GET /v1/files/{id}/content`, and
//! `POST /v1/chat/completions` for the calls made in real time.

use std::sync::{Arc, Mutex};

use axum::extract::{Multipart, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{
    calculator_arguments, error, has_header, phase, planner, Books, Mock, MockBatch, Phase,
    Planned, Served, KEY,
};

type Shared = Arc<Mutex<Books>>;

const ENDPOINT: &str = "/v1/chat/completions";

/// Starts the mock; its URL ends in `/v1`, as `OPENAI_BASE_URL` does.
pub async fn start() -> Mock {
    let books: Shared = Arc::default();
    let router = Router::new()
        .route("/v1/files", post(upload))
        .route("/v1/files/{id}/content", get(content))
        .route("/v1/batches", post(create))
        .route("/v1/batches/{id}", get(retrieve))
        .route("/v1/batches/{id}/cancel", post(cancel))
        .route("/v1/chat/completions", post(realtime))
        .with_state(Arc::clone(&books));
    Mock::serve(router, books, "/v1").await
}

/// The refusal of a request without the right key, if it lacks it.
fn refused(headers: &HeaderMap) -> Option<Response> {
    match has_header(headers, "authorization", &format!("Bearer {KEY}")) {
        true => None,
        false => Some(error(
            401,
            "invalid_request_error",
            "Incorrect API key provided",
        )),
    }
}

/// A chat completion answering `body` as the planner would.
pub fn completion(body: &Value) -> Value {
    let native = body["tools"].as_array().is_some_and(|t| !t.is_empty());
    let (message, finish) = match (planner(&body["messages"]), native) {
        (Planned::CallCalculator, true) => (
            json!({"role": "assistant", "content": null, "tool_calls": [{
                "id": format!("call_{}", fastrand::u32(..)), "type": "function",
                "function": {"name": "calculator", "arguments": calculator_arguments().to_string()}}]}),
            "tool_calls",
        ),
        (Planned::CallCalculator, false) => (
            json!({"role": "assistant",
                "content": json!({"name": "calculator", "arguments": calculator_arguments()}).to_string()}),
            "stop",
        ),
        (Planned::Answer(text), true) => (json!({"role": "assistant", "content": text}), "stop"),
        (Planned::Answer(text), false) => (
            json!({"role": "assistant", "content": json!({"final_answer": text}).to_string()}),
            "stop",
        ),
    };
    json!({
        "id": format!("chatcmpl-{}", fastrand::u32(..)),
        "object": "chat.completion",
        "model": body["model"],
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100},
    })
}

async fn upload(State(books): State<Shared>, headers: HeaderMap, mut form: Multipart) -> Response {
    if let Some(refusal) = refused(&headers) {
        return refusal;
    }
    let (mut purpose, mut file) = (None, None);
    while let Ok(Some(field)) = form.next_field().await {
        let name = field.name().unwrap_or_default().to_owned();
        let bytes = field.bytes().await.unwrap_or_default().to_vec();
        match name.as_str() {
            "purpose" => purpose = Some(String::from_utf8_lossy(&bytes).into_owned()),
            "file" => file = Some(bytes),
            _ => {}
        }
    }
    let (Some("batch"), Some(file)) = (purpose.as_deref(), file) else {
        return error(
            400,
            "invalid_request_error",
            "a file and purpose 'batch' are required",
        );
    };
    let mut books = books.lock().unwrap();
    let id = format!("file-{:03}", books.files.len());
    let bytes = file.len();
    books.files.push((id.clone(), file));
    Json(json!({"id": id, "object": "file", "purpose": "batch", "bytes": bytes, "filename": "batch.jsonl"}))
        .into_response()
}

async fn content(
    State(books): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(refusal) = refused(&headers) {
        return refusal;
    }
    let books = books.lock().unwrap();
    match books.files.iter().find(|(f, _)| *f == id) {
        Some((_, bytes)) => bytes.clone().into_response(),
        None => error(
            404,
            "invalid_request_error",
            &format!("No such File object: {id}"),
        ),
    }
}

/// The lines of an uploaded file, or why the batch fails validation.
fn lines(file: &[u8]) -> Result<Vec<(String, Value)>, String> {
    let mut seen = std::collections::HashSet::new();
    let mut requests = Vec::new();
    for (n, line) in String::from_utf8_lossy(file).lines().enumerate() {
        let line: Value = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", n + 1))?;
        let id = line["custom_id"]
            .as_str()
            .ok_or(format!("line {}: no custom_id", n + 1))?;
        if line["method"] != "POST" || line["url"] != ENDPOINT || !line["body"].is_object() {
            return Err(format!("line {}: method, url or body is wrong", n + 1));
        }
        if line["body"]["stream"] == true {
            return Err(format!(
                "line {}: streaming is not supported in a batch",
                n + 1
            ));
        }
        if !seen.insert(id.to_owned()) {
            return Err(format!("line {}: custom_id {id} is not unique", n + 1));
        }
        requests.push((id.to_owned(), line["body"].clone()));
    }
    Ok(requests)
}

async fn create(
    State(books): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(refusal) = refused(&headers) {
        return refusal;
    }
    if body["endpoint"] != ENDPOINT || body["completion_window"] != "24h" {
        return error(
            400,
            "invalid_request_error",
            "endpoint or completion_window is not supported",
        );
    }
    let mut books = books.lock().unwrap();
    let input = body["input_file_id"].as_str().unwrap_or_default();
    let Some((_, file)) = books.files.iter().find(|(id, _)| id == input) else {
        return error(
            400,
            "invalid_request_error",
            &format!("No such File object: {input}"),
        );
    };
    let (requests, mut invalid) = match lines(file) {
        Ok(requests) => (requests, None),
        Err(why) => (Vec::new(), Some(why)),
    };
    if std::mem::take(&mut books.fail_next) {
        invalid = Some("the batch was refused at validation".to_owned());
    }
    let batch = books.create("batch", requests, invalid);
    Json(object(&mut books, &batch, input)).into_response()
}

async fn retrieve(
    State(books): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(refusal) = refused(&headers) {
        return refusal;
    }
    let mut books = books.lock().unwrap();
    books.polls += 1;
    match books.batch(&id).cloned() {
        Some(batch) => Json(object(&mut books, &batch, "")).into_response(),
        None => error(
            404,
            "invalid_request_error",
            &format!("No such batch: {id}"),
        ),
    }
}

async fn cancel(
    State(books): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(refusal) = refused(&headers) {
        return refusal;
    }
    let mut books = books.lock().unwrap();
    let Some(batch) = books.cancel(&id) else {
        return error(
            404,
            "invalid_request_error",
            &format!("No such batch: {id}"),
        );
    };
    Json(object(&mut books, &batch, "")).into_response()
}

async fn realtime(
    State(books): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(refusal) = refused(&headers) {
        return refusal;
    }
    if body["stream"] == true {
        return error(
            400,
            "invalid_request_error",
            "this mock answers whole completions only",
        );
    }
    books.lock().unwrap().realtime += 1;
    Json(completion(&body)).into_response()
}

/// The batch object, writing its output and error files once it ended.
fn object(books: &mut Books, batch: &MockBatch, input: &str) -> Value {
    let phase = phase(batch, books.now);
    let status = match phase {
        Phase::Validating => "validating",
        Phase::InProgress => "in_progress",
        Phase::Finalizing => "finalizing",
        Phase::Completed => "completed",
        Phase::Expired => "expired",
        Phase::Cancelling => "cancelling",
        Phase::Cancelled => "cancelled",
        Phase::Failed => "failed",
    };
    let (mut output_file_id, mut error_file_id) = (Value::Null, Value::Null);
    let (mut completed, mut failed) = (0, 0);
    if phase.ended() {
        let (out_id, err_id) = (
            format!("file-out-{}", batch.id),
            format!("file-err-{}", batch.id),
        );
        if !books.files.iter().any(|(id, _)| *id == out_id) {
            let (mut out, mut err) = (String::new(), String::new());
            for (n, (custom_id, served)) in books.served(batch, completion).into_iter().enumerate()
            {
                let (response, error, ok) = match served {
                    Served::Reply(body) => (
                        json!({"status_code": 200, "request_id": format!("req_{n}"), "body": body}),
                        Value::Null,
                        true,
                    ),
                    Served::Rejected => (
                        json!({"status_code": 400, "request_id": format!("req_{n}"),
                            "body": {"error": {"message": "Invalid 'messages'", "type": "invalid_request_error"}}}),
                        Value::Null,
                        false,
                    ),
                    Served::Expired => (
                        Value::Null,
                        json!({"code": "batch_expired", "message": "This request could not be executed before the completion window expired."}),
                        false,
                    ),
                    Served::Cancelled => (
                        Value::Null,
                        json!({"code": "batch_cancelled", "message": "This request was cancelled."}),
                        false,
                    ),
                };
                let line = json!({"id": format!("batch_req_{n}"), "custom_id": custom_id, "response": response, "error": error});
                let file = if ok { &mut out } else { &mut err };
                file.push_str(&line.to_string());
                file.push('\n');
            }
            books.files.push((out_id.clone(), out.into_bytes()));
            books.files.push((err_id.clone(), err.into_bytes()));
        }
        let size = |id: &str| {
            books
                .files
                .iter()
                .find(|(f, _)| f == id)
                .map_or(0, |(_, b)| b.len())
        };
        if size(&out_id) > 0 {
            output_file_id = json!(out_id);
        }
        if size(&err_id) > 0 {
            error_file_id = json!(err_id);
        }
        let lines = |id: &str| {
            books
                .files
                .iter()
                .find(|(f, _)| f == id)
                .map_or(0, |(_, b)| b.iter().filter(|&&c| c == b'\n').count())
        };
        (completed, failed) = (lines(&out_id), lines(&err_id));
    }
    let errors = match &batch.invalid {
        Some(why) => {
            json!({"object": "list", "data": [{"code": "invalid_request", "message": why, "line": null}]})
        }
        None => Value::Null,
    };
    json!({
        "id": batch.id,
        "object": "batch",
        "endpoint": ENDPOINT,
        "errors": errors,
        "input_file_id": input,
        "completion_window": "24h",
        "status": status,
        "output_file_id": output_file_id,
        "error_file_id": error_file_id,
        "created_at": batch.created.as_secs(),
        "request_counts": {"total": batch.requests.len(), "completed": completed, "failed": failed},
        "metadata": null,
    })
}
