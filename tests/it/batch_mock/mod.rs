//! Mock Batch APIs of OpenAI and Anthropic on a local port, with the
//! vendors' status transitions on a clock the test moves.
//!
//! A batch's life is [`phase`], a plain function of its requests and the
//! mock time since it was created: OpenAI's `validating` (1 min),
//! `in_progress` (until 10 min), `finalizing` (1 min), `completed`; a batch
//! holding a request told to stall runs until its 24-hour window closes and
//! ends `expired`; a cancelled one is `cancelling` for a minute, then
//! `cancelled`; one with an invalid line `failed` after validation.
//! Anthropic's batches are `in_progress` until they are `ended`. Results
//! come back in a shuffled order. The "model" behind both is
//! [`planner`]: it calls the calculator, then answers with its result.

pub mod anthropic;
pub mod openai;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Value};

/// The key the mocks accept.
pub const KEY: &str = "sk-mock-batch-key";

/// Mock time: minutes are enough to finish a batch, hours to expire one.
const MINUTE: Duration = Duration::from_secs(60);
const WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Where a batch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Validating,
    InProgress,
    Finalizing,
    Completed,
    Expired,
    Cancelling,
    Cancelled,
    Failed,
}

impl Phase {
    /// Whether results can be read.
    pub fn ended(self) -> bool {
        matches!(self, Phase::Completed | Phase::Expired | Phase::Cancelled)
    }
}

/// One batch as the mock keeps it.
#[derive(Debug, Clone)]
pub struct MockBatch {
    pub id: String,
    /// `custom_id` and the request body of each line.
    pub requests: Vec<(String, Value)>,
    pub created: Duration,
    pub cancelled: Option<Duration>,
    /// Why validation failed, if it did.
    pub invalid: Option<String>,
    /// Whether a request of it is told to stall until the window closes.
    pub stalls: bool,
}

/// The phase of `batch` at mock time `now`.
pub fn phase(batch: &MockBatch, now: Duration) -> Phase {
    let age = now.saturating_sub(batch.created);
    if age < MINUTE {
        return Phase::Validating;
    }
    if batch.invalid.is_some() {
        return Phase::Failed;
    }
    if let Some(at) = batch.cancelled {
        return match now.saturating_sub(at) < MINUTE {
            true => Phase::Cancelling,
            false => Phase::Cancelled,
        };
    }
    match age {
        _ if batch.stalls && age < WINDOW => Phase::InProgress,
        _ if batch.stalls => Phase::Expired,
        a if a < 10 * MINUTE => Phase::InProgress,
        a if a < 11 * MINUTE => Phase::Finalizing,
        _ => Phase::Completed,
    }
}

/// What became of one request of an ended batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Served {
    /// The planner's reply.
    Reply(Value),
    /// Told to fail: the vendor's 400.
    Rejected,
    Expired,
    Cancelled,
}

/// The calculator's result the planner's answer quotes.
pub const RESULT: &str = "42.5";

/// The mock model: calls the calculator unless the conversation holds its
/// result, then answers with it. `native` says whether tools go as native
/// tool calls (the request offers `tools`) or as a JSON action in text.
pub enum Planned {
    CallCalculator,
    Answer(String),
}

pub fn planner(messages: &Value) -> Planned {
    match messages.to_string().contains(RESULT) {
        true => Planned::Answer(format!("it is {RESULT}")),
        false => Planned::CallCalculator,
    }
}

/// The calculator's arguments the planner sends.
pub fn calculator_arguments() -> Value {
    json!({"expression": "6*7+0.5"})
}

/// What the test sets and reads, shared with the server's handlers.
#[derive(Default)]
pub struct Books {
    pub now: Duration,
    pub batches: Vec<MockBatch>,
    /// Every `custom_id` of every batch created, in order.
    pub submitted: Vec<String>,
    /// Requests never served: their batch expires.
    pub stall: HashSet<String>,
    /// Requests the vendor fails with a 400.
    pub reject: HashSet<String>,
    /// Fail the next batch created at validation (OpenAI's `failed`).
    pub fail_next: bool,
    /// Calls made in real time.
    pub realtime: usize,
    /// Polls of a batch's status.
    pub polls: usize,
    /// Uploaded and result files (OpenAI), by id.
    pub files: Vec<(String, Vec<u8>)>,
}

impl Books {
    /// Creates a batch of `requests` at the current mock time.
    pub fn create(
        &mut self,
        prefix: &str,
        requests: Vec<(String, Value)>,
        invalid: Option<String>,
    ) -> MockBatch {
        let stalls = requests.iter().any(|(id, _)| self.stall.contains(id));
        self.submitted
            .extend(requests.iter().map(|(id, _)| id.clone()));
        let batch = MockBatch {
            id: format!("{prefix}_{:03}", self.batches.len()),
            requests,
            created: self.now,
            cancelled: None,
            invalid,
            stalls,
        };
        self.batches.push(batch.clone());
        batch
    }

    pub fn batch(&self, id: &str) -> Option<&MockBatch> {
        self.batches.iter().find(|b| b.id == id)
    }

    /// Asks to cancel batch `id` now (once); the batch, if there is one.
    pub fn cancel(&mut self, id: &str) -> Option<MockBatch> {
        let now = self.now;
        let batch = self.batches.iter_mut().find(|b| b.id == id)?;
        batch.cancelled.get_or_insert(now);
        Some(batch.clone())
    }

    /// The outcome of each request of an ended batch, shuffled.
    pub fn served(
        &self,
        batch: &MockBatch,
        reply: impl Fn(&Value) -> Value,
    ) -> Vec<(String, Served)> {
        let phase = phase(batch, self.now);
        let mut out: Vec<(String, Served)> = batch
            .requests
            .iter()
            .map(|(id, body)| {
                let served = if self.reject.contains(id) {
                    Served::Rejected
                } else if phase == Phase::Cancelled {
                    Served::Cancelled
                } else if self.stall.contains(id) {
                    Served::Expired
                } else {
                    Served::Reply(reply(body))
                };
                (id.clone(), served)
            })
            .collect();
        fastrand::shuffle(&mut out);
        out
    }
}

/// A mock vendor's server and its books.
pub struct Mock {
    /// The base URL (OpenAI's includes `/v1`).
    pub url: String,
    books: Arc<Mutex<Books>>,
    _server: tokio::task::JoinHandle<()>,
}

impl Mock {
    async fn serve(router: axum::Router, books: Arc<Mutex<Books>>, suffix: &str) -> Mock {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}{suffix}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Mock {
            url,
            books,
            _server: server,
        }
    }

    pub fn books(&self) -> MutexGuard<'_, Books> {
        self.books.lock().unwrap()
    }

    /// Moves the mock clock on.
    pub fn advance(&self, by: Duration) {
        self.books().now += by;
    }

    /// Moves the clock on by `step` every 10 ms of real time, until dropped.
    pub fn run_clock(self: &Arc<Self>, step: Duration) -> ClockTask {
        let mock = Arc::clone(self);
        ClockTask(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                mock.advance(step);
            }
        }))
    }

    /// Waits (real time) until the mock holds `n` batches.
    pub async fn until_batches(&self, n: usize, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.books().batches.len() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{n} batches were not created within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self._server.abort();
    }
}

/// The mock clock running; stops when dropped.
pub struct ClockTask(tokio::task::JoinHandle<()>);

impl Drop for ClockTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Whether `headers` carry `value` in `name`.
fn has_header(headers: &axum::http::HeaderMap, name: &str, value: &str) -> bool {
    headers.get(name).and_then(|v| v.to_str().ok()) == Some(value)
}

/// The `(status, body)` of an error in the vendor's shape.
fn error(status: u16, kind: &str, message: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    let status = axum::http::StatusCode::from_u16(status).unwrap();
    (
        status,
        axum::Json(json!({"type": "error", "error": {"type": kind, "message": message}})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_move_through_the_vendors_phases() {
        let batch = MockBatch {
            id: "b".into(),
            requests: Vec::new(),
            created: MINUTE,
            cancelled: None,
            invalid: None,
            stalls: false,
        };
        let at = |b: &MockBatch, minutes: u64| phase(b, MINUTE + MINUTE * minutes as u32);
        let seen: Vec<Phase> = [0, 1, 9, 10, 11, 5000]
            .iter()
            .map(|&m| at(&batch, m))
            .collect();
        use Phase::*;
        assert_eq!(
            seen,
            [Validating, InProgress, InProgress, Finalizing, Completed, Completed]
        );
        let stalled = MockBatch {
            stalls: true,
            ..batch.clone()
        };
        assert_eq!(at(&stalled, 11), InProgress);
        assert_eq!(at(&stalled, 24 * 60), Expired);
        let invalid = MockBatch {
            invalid: Some("bad line".into()),
            ..batch.clone()
        };
        assert_eq!((at(&invalid, 0), at(&invalid, 1)), (Validating, Failed));
        let cancelled = MockBatch {
            cancelled: Some(MINUTE * 3),
            ..batch
        };
        assert_eq!(
            (at(&cancelled, 2), at(&cancelled, 3)),
            (Cancelling, Cancelled)
        );
    }
}
