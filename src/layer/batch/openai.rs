//! [`OpenAiBatch`]: OpenAI's Batch API (`/v1/files` and `/v1/batches`) as a
//! [`BatchVendor`].
//!
//! Each batch line carries the body the [`OpenAi`] model would send for the
//! call, made whole, so the lane and real time ask the same thing. Reading
//! the vendor's answers (batch status, result lines) is plain functions,
//! tested without a server.

use futures::future::BoxFuture;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::vendor::{BatchLimits, BatchRequest, BatchState, BatchVendor, ItemOutcome};
use crate::model::provider::completion_reply;
use crate::model::provider::http::{error_message, Api};
use crate::model::{ModelError, OpenAi};

/// The endpoint every line of a batch calls.
const ENDPOINT: &str = "/v1/chat/completions";

/// OpenAI's Batch API (or a compatible server's), reached like `model`:
/// the JSONL of requests is uploaded as a file (purpose `batch`), the batch
/// created with a 24-hour window, and its output and error files read.
#[derive(Debug, Clone)]
pub struct OpenAiBatch {
    model: OpenAi,
    api: Api,
}

impl OpenAiBatch {
    /// The Batch API of `model`'s server, with its key and client; the
    /// requests are the ones `model` would send.
    pub fn new(model: &OpenAi) -> Self {
        OpenAiBatch {
            api: model.api(),
            model: model.clone(),
        }
    }

    /// The JSONL file of `requests`, one line each.
    fn file(&self, requests: &[BatchRequest]) -> Result<Vec<u8>, ModelError> {
        let mut file = Vec::new();
        for r in requests {
            let line = json!({
                "custom_id": r.custom_id,
                "method": "POST",
                "url": ENDPOINT,
                "body": self.model.whole_body(&r.request)?,
            });
            serde_json::to_writer(&mut file, &line).map_err(|e| ModelError::Config {
                provider: self.api.provider.to_owned(),
                message: format!("a batch line cannot be written: {e}"),
            })?;
            file.push(b'\n');
        }
        Ok(file)
    }

    async fn batch(&self, batch_id: &str) -> Result<WireBatch, ModelError> {
        let url = format!("{}/batches/{batch_id}", self.api.base);
        self.api.json(|| self.api.request(Method::GET, &url)).await
    }

    async fn lines(&self, file_id: &str) -> Result<Vec<(String, ItemOutcome)>, ModelError> {
        let url = format!("{}/files/{file_id}/content", self.api.base);
        let response = self
            .api
            .send(|| self.api.request(Method::GET, &url))
            .await?;
        let body = self.api.bytes(response).await?;
        result_lines(&String::from_utf8_lossy(&body))
    }
}

impl BatchVendor for OpenAiBatch {
    fn name(&self) -> &str {
        self.api.provider
    }

    /// 50,000 requests and 200 MB a batch, OpenAI's limits.
    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_requests: 50_000,
            max_bytes: 200 << 20,
        }
    }

    fn submit<'a>(
        &'a self,
        requests: &'a [BatchRequest],
    ) -> BoxFuture<'a, Result<String, ModelError>> {
        Box::pin(async move {
            let file = bytes::Bytes::from(self.file(requests)?);
            let files_url = format!("{}/files", self.api.base);
            let uploaded: WireFile = self
                .api
                .json(|| {
                    let part = reqwest::multipart::Part::stream_with_length(
                        reqwest::Body::from(file.clone()),
                        file.len() as u64,
                    )
                    .file_name("batch.jsonl");
                    let form = reqwest::multipart::Form::new()
                        .text("purpose", "batch")
                        .part("file", part);
                    self.api.request(Method::POST, &files_url).multipart(form)
                })
                .await?;
            let batches_url = format!("{}/batches", self.api.base);
            let body = json!({
                "input_file_id": uploaded.id,
                "endpoint": ENDPOINT,
                "completion_window": "24h",
            });
            let created: WireBatch = self
                .api
                .json(|| self.api.request(Method::POST, &batches_url).json(&body))
                .await?;
            Ok(created.id)
        })
    }

    fn state<'a>(&'a self, batch_id: &'a str) -> BoxFuture<'a, Result<BatchState, ModelError>> {
        Box::pin(async move { Ok(self.batch(batch_id).await?.state()) })
    }

    fn results<'a>(
        &'a self,
        batch_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, ItemOutcome)>, ModelError>> {
        Box::pin(async move {
            let batch = self.batch(batch_id).await?;
            let mut outcomes = Vec::new();
            for file in [&batch.output_file_id, &batch.error_file_id]
                .into_iter()
                .flatten()
            {
                outcomes.extend(self.lines(file).await?);
            }
            Ok(outcomes)
        })
    }
}

#[derive(Deserialize)]
struct WireFile {
    id: String,
}

/// The fields of a batch object that matter here.
#[derive(Deserialize, Default)]
#[serde(default)]
struct WireBatch {
    id: String,
    status: String,
    output_file_id: Option<String>,
    error_file_id: Option<String>,
    errors: Option<WireErrors>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireErrors {
    data: Vec<WireError>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireError {
    code: Option<String>,
    message: Option<String>,
}

impl WireBatch {
    /// `completed`, `expired` and `cancelled` batches have result files
    /// (what was served before the end); `failed` ones were never run.
    fn state(&self) -> BatchState {
        match self.status.as_str() {
            "completed" | "expired" | "cancelled" => BatchState::Ended,
            "failed" => {
                let errors = self.errors.as_ref().map(|e| e.data.as_slice());
                let message: Vec<String> = errors
                    .unwrap_or_default()
                    .iter()
                    .map(|e| match (&e.code, &e.message) {
                        (Some(code), Some(m)) => format!("{m} ({code})"),
                        (code, m) => m.clone().or(code.clone()).unwrap_or_default(),
                    })
                    .collect();
                BatchState::Failed(match message.is_empty() {
                    true => "the vendor gave no reason".to_owned(),
                    false => message.join("; "),
                })
            }
            // validating, in_progress, finalizing, cancelling, and any
            // status added later: not done yet.
            _ => BatchState::Running,
        }
    }
}

/// One line of an output or error file.
#[derive(Deserialize)]
struct WireLine {
    custom_id: String,
    #[serde(default)]
    response: Option<WireResponse>,
    #[serde(default)]
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct WireResponse {
    status_code: u16,
    #[serde(default)]
    body: Value,
}

/// The outcomes in an output or error file's lines.
fn result_lines(text: &str) -> Result<Vec<(String, ItemOutcome)>, ModelError> {
    let mut outcomes = Vec::new();
    for line in super::vendor::jsonl::<WireLine>("openai", text)? {
        let outcome = match (line.error, line.response) {
            (Some(error), _) if error.code.as_deref() == Some("batch_expired") => {
                ItemOutcome::Expired
            }
            (Some(error), _) if error.code.as_deref() == Some("batch_cancelled") => {
                ItemOutcome::Canceled
            }
            (_, Some(r)) if (200..300).contains(&r.status_code) => ItemOutcome::Succeeded {
                reply: completion_reply(r.body)?,
            },
            (_, Some(r)) => ItemOutcome::Errored {
                status: Some(r.status_code),
                message: error_message(&r.body.to_string()),
            },
            (Some(error), None) => ItemOutcome::Errored {
                status: None,
                message: error.message.or(error.code).unwrap_or_default(),
            },
            (None, None) => ItemOutcome::Errored {
                status: None,
                message: "the result line has neither a response nor an error".to_owned(),
            },
        };
        outcomes.push((line.custom_id, outcome));
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_states() {
        let batch = |status: &str| WireBatch {
            status: status.to_owned(),
            ..WireBatch::default()
        };
        for running in ["validating", "in_progress", "finalizing", "cancelling"] {
            assert_eq!(batch(running).state(), BatchState::Running);
        }
        for ended in ["completed", "expired", "cancelled"] {
            assert_eq!(batch(ended).state(), BatchState::Ended);
        }
        let failed: WireBatch = serde_json::from_value(json!({
            "id": "batch_1", "status": "failed",
            "errors": {"object": "list", "data": [{"code": "invalid_json_line", "message": "line 3 is not JSON", "line": 3}]}
        }))
        .unwrap();
        assert_eq!(
            failed.state(),
            BatchState::Failed("line 3 is not JSON (invalid_json_line)".into())
        );
    }

    #[test]
    fn result_lines_become_outcomes() {
        let text = [
            json!({"id": "r1", "custom_id": "ok", "response": {"status_code": 200, "body": {
                "choices": [{"message": {"role": "assistant", "content": "4"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 1}}}, "error": null}),
            json!({"id": "r2", "custom_id": "bad", "response": {"status_code": 400, "body": {
                "error": {"message": "bad model", "type": "invalid_request_error"}}}, "error": null}),
            json!({"id": "r3", "custom_id": "late", "response": null,
                "error": {"code": "batch_expired", "message": "This request could not be executed before the completion window expired."}}),
            json!({"id": "r4", "custom_id": "stopped", "response": null,
                "error": {"code": "batch_cancelled", "message": "cancelled"}}),
        ]
        .map(|v| v.to_string())
        .join("\n");
        let outcomes = result_lines(&text).unwrap();
        match &outcomes[0] {
            (id, ItemOutcome::Succeeded { reply }) => {
                assert_eq!((id.as_str(), reply.text.as_str()), ("ok", "4"));
                assert_eq!(reply.usage.prompt_tokens, 10);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            outcomes[1].1,
            ItemOutcome::Errored {
                status: Some(400),
                message: "bad model (invalid_request_error)".into()
            }
        );
        assert_eq!(outcomes[2].1, ItemOutcome::Expired);
        assert_eq!(outcomes[3].1, ItemOutcome::Canceled);
        assert!(matches!(
            result_lines("not json"),
            Err(ModelError::Protocol { .. })
        ));
    }
}
