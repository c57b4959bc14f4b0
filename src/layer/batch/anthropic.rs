//! [`AnthropicBatch`]: Anthropic's Message Batches API
//! (`/v1/messages/batches`) as a [`BatchVendor`].
//!
//! Each request carries the `params` the [`Anthropic`] model would send for
//! the call, without streaming. Reading the vendor's answers is plain
//! functions, tested without a server.

use futures::future::BoxFuture;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::vendor::{BatchLimits, BatchRequest, BatchState, BatchVendor, ItemOutcome};
use crate::model::provider::http::{error_message, Api};
use crate::model::provider::message_reply;
use crate::model::{Anthropic, ModelError};

/// Anthropic's Message Batches API, reached like `model`: the requests go
/// in one `POST`, the batch is polled until `ended`, and the lines at its
/// `results_url` read.
#[derive(Debug, Clone)]
pub struct AnthropicBatch {
    model: Anthropic,
    api: Api,
}

impl AnthropicBatch {
    /// The Message Batches API of `model`'s endpoint, with its key and
    /// client; the requests are the ones `model` would send.
    pub fn new(model: &Anthropic) -> Self {
        AnthropicBatch {
            api: model.api(),
            model: model.clone(),
        }
    }

    async fn batch(&self, batch_id: &str) -> Result<WireBatch, ModelError> {
        let url = format!("{}/v1/messages/batches/{batch_id}", self.api.base);
        self.api.json(|| self.api.request(Method::GET, &url)).await
    }
}

impl BatchVendor for AnthropicBatch {
    fn name(&self) -> &str {
        self.api.provider
    }

    /// 100,000 requests and 256 MB a batch, Anthropic's limits.
    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_requests: 100_000,
            max_bytes: 256 << 20,
        }
    }

    fn submit<'a>(
        &'a self,
        requests: &'a [BatchRequest],
    ) -> BoxFuture<'a, Result<String, ModelError>> {
        Box::pin(async move {
            let requests: Vec<Value> = requests
                .iter()
                .map(|r| json!({"custom_id": r.custom_id, "params": self.model.whole_body(&r.request)}))
                .collect();
            let body = json!({ "requests": requests });
            let url = format!("{}/v1/messages/batches", self.api.base);
            let created: WireBatch = self
                .api
                .json(|| self.api.request(Method::POST, &url).json(&body))
                .await?;
            Ok(created.id)
        })
    }

    fn state<'a>(&'a self, batch_id: &'a str) -> BoxFuture<'a, Result<BatchState, ModelError>> {
        Box::pin(async move {
            Ok(
                match self.batch(batch_id).await?.processing_status.as_str() {
                    "ended" => BatchState::Ended,
                    // in_progress, canceling, and any status added later.
                    _ => BatchState::Running,
                },
            )
        })
    }

    fn results<'a>(
        &'a self,
        batch_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, ItemOutcome)>, ModelError>> {
        Box::pin(async move {
            let batch = self.batch(batch_id).await?;
            let url = batch.results_url.ok_or_else(|| ModelError::Protocol {
                provider: self.api.provider.to_owned(),
                chunks: 0,
                message: format!("batch {batch_id} ended without a results_url"),
            })?;
            let response = self
                .api
                .send(|| self.api.request(Method::GET, &url))
                .await?;
            let body = self.api.bytes(response).await?;
            result_lines(&String::from_utf8_lossy(&body))
        })
    }
}

/// The fields of a message batch that matter here.
#[derive(Deserialize, Default)]
#[serde(default)]
struct WireBatch {
    id: String,
    processing_status: String,
    results_url: Option<String>,
}

#[derive(Deserialize)]
struct WireLine {
    custom_id: String,
    result: WireResult,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireResult {
    Succeeded {
        message: Value,
    },
    Errored {
        #[serde(default)]
        error: Value,
    },
    Canceled,
    Expired,
}

/// The status an errored request's error type stands for, as the API
/// would have answered it in real time.
fn status_of(kind: &str) -> Option<u16> {
    Some(match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "api_error" => 500,
        "overloaded_error" => 529,
        _ => return None,
    })
}

/// The outcomes in a results file's lines.
fn result_lines(text: &str) -> Result<Vec<(String, ItemOutcome)>, ModelError> {
    let mut outcomes = Vec::new();
    for line in super::vendor::jsonl::<WireLine>("anthropic", text)? {
        let outcome = match line.result {
            WireResult::Succeeded { message } => ItemOutcome::Succeeded {
                reply: message_reply(message)?,
            },
            WireResult::Errored { error } => {
                // `{"type": "error", "error": {"type": ..., "message": ...}}`
                let inner = error.get("error").unwrap_or(&error);
                ItemOutcome::Errored {
                    status: inner
                        .get("type")
                        .and_then(Value::as_str)
                        .and_then(status_of),
                    message: error_message(&error.to_string()),
                }
            }
            WireResult::Canceled => ItemOutcome::Canceled,
            WireResult::Expired => ItemOutcome::Expired,
        };
        outcomes.push((line.custom_id, outcome));
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_become_outcomes() {
        let text = [
            json!({"custom_id": "ok", "result": {"type": "succeeded", "message": {
                "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
                "content": [{"type": "text", "text": "4"}], "stop_reason": "end_turn",
                "usage": {"input_tokens": 10, "output_tokens": 1}}}}),
            json!({"custom_id": "bad", "result": {"type": "errored", "error": {
                "type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: too large"}}}}),
            json!({"custom_id": "late", "result": {"type": "expired"}}),
            json!({"custom_id": "stopped", "result": {"type": "canceled"}}),
        ]
        .map(|v| v.to_string())
        .join("\n");
        let outcomes = result_lines(&text).unwrap();
        match &outcomes[0] {
            (id, ItemOutcome::Succeeded { reply }) => {
                assert_eq!((id.as_str(), reply.text.as_str()), ("ok", "4"));
                assert_eq!(reply.usage.completion_tokens, 1);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            outcomes[1].1,
            ItemOutcome::Errored {
                status: Some(400),
                message: "max_tokens: too large (invalid_request_error)".into()
            }
        );
        assert_eq!(outcomes[2].1, ItemOutcome::Expired);
        assert_eq!(outcomes[3].1, ItemOutcome::Canceled);
        assert!(matches!(
            result_lines(r#"{"custom_id": "x", "result": {"type": "unheard_of"}}"#),
            Err(ModelError::Protocol { .. })
        ));
    }
}
