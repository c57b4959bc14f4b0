//! Traces: a structured record of every step of a run, written as it
//! happens, with secrets redacted.
//!
//! Give a machine a [`Tracer`] ([`Machine::with_tracer`](crate::Machine::with_tracer))
//! and each run writes a [`TraceRecord::Run`] when it starts, a
//! [`TraceRecord::Step`] per state (the env before it, every model call with
//! its request and raw reply, the streamed text, the repaired JSON, the parsed
//! action, tool inputs and outputs, timings, usage, errors, the next state),
//! and a [`TraceRecord::End`]. Sinks: a JSONL file ([`JsonlSink`]) and SQLite
//! ([`SqliteSink`]); [`read_jsonl`] reads a file back for
//! [`replay`](crate::replay) and viewers.
//!
//! Before anything is written, the record's JSON is passed through a
//! [`Redactor`]: the values of environment variables named like secrets
//! (`*_API_KEY`, `*_TOKEN`, `*_SECRET`, `*_PASSWORD`), secrets you add,
//! and bearer tokens and `sk-` keys wherever they appear.
//!
//! The engine also emits `tracing` spans, with or without a `Tracer`,
//! after the OpenTelemetry GenAI conventions ([`crate::semconv`]):
//! `invoke_agent` for a run (machine name, run id, outcome),
//! `statewise.state` (state, step, next), `chat` for a model call
//! (provider, model, token counts, finish reason, error type) and
//! `execute_tool` for a tool call. Message content goes on them only with
//! [`Machine::span_content`](crate::Machine::span_content), redacted.
//!
//! ```no_run
//! use statewise::trace::Tracer;
//! # fn machine() -> statewise::Machine { statewise::Machine::new("x") }
//! let tracer = Tracer::jsonl("trace.jsonl")?.redact("my-database-password");
//! let machine = machine().with_tracer(tracer);
//! # Ok::<(), statewise::trace::TraceError>(())
//! ```

mod jsonl;
mod record;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;

pub use crate::redact::Redactor;
pub use jsonl::{read_jsonl, JsonlSink};
pub(crate) use record::StepTrace;
pub use record::{EndRecord, RunRecord, StepRecord, ToolRecord, TraceRecord, TracedError};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteSink;

/// Why a trace could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// Writing or reading a file failed.
    #[error("trace file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A line of a trace file is not a trace record.
    #[error("{path}, line {line}: not a trace record: {source}")]
    Format {
        /// The file.
        path: String,
        /// The 1-based line.
        line: usize,
        /// What was wrong.
        #[source]
        source: serde_json::Error,
    },
    /// The record could not be turned into JSON.
    #[error("cannot encode a trace record: {0}")]
    Encode(#[source] serde_json::Error),
    /// The SQLite sink failed.
    #[error("trace database: {0}")]
    Backend(#[from] crate::backend::BackendError),
}

/// One record, encoded and redacted, as a sink receives it.
#[derive(Debug, Clone)]
pub struct Line {
    /// The run it belongs to.
    pub run_id: String,
    /// The step, for step records.
    pub step: Option<u32>,
    /// `run`, `step` or `end`.
    pub kind: &'static str,
    /// The record as one line of JSON.
    pub json: String,
}

/// Where trace records go.
pub trait TraceSink: Send + Sync {
    /// Writes one record. The machine waits for it, so a record is on its
    /// way to disk before the run moves on.
    fn write<'a>(&'a self, line: &'a Line) -> BoxFuture<'a, Result<(), TraceError>>;
}

/// Encodes, redacts and writes trace records to its sinks.
#[derive(Clone, Default)]
pub struct Tracer {
    sinks: Vec<Arc<dyn TraceSink>>,
    redactor: Redactor,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("sinks", &self.sinks.len())
            .finish_non_exhaustive()
    }
}

impl Tracer {
    /// A tracer with no sinks yet, redacting secrets found in the
    /// environment ([`Redactor::from_env`]).
    pub fn new() -> Self {
        Tracer {
            sinks: Vec::new(),
            redactor: Redactor::from_env(),
        }
    }

    /// A tracer appending to the JSONL file at `path`.
    pub fn jsonl(path: impl AsRef<Path>) -> Result<Self, TraceError> {
        Ok(Self::new().with_sink(JsonlSink::append(path)?))
    }

    /// A tracer writing to the SQLite database at `path` (feature `sqlite`).
    #[cfg(feature = "sqlite")]
    pub fn sqlite(path: impl AsRef<Path>) -> Result<Self, TraceError> {
        Ok(Self::new().with_sink(SqliteSink::open(path)?))
    }

    /// Adds a sink.
    pub fn with_sink(mut self, sink: impl TraceSink + 'static) -> Self {
        self.sinks.push(Arc::new(sink));
        self
    }

    /// Also redacts `secret` wherever it appears.
    pub fn redact(mut self, secret: impl Into<String>) -> Self {
        self.redactor.add(secret);
        self
    }

    /// Replaces the redactor.
    pub fn with_redactor(mut self, redactor: Redactor) -> Self {
        self.redactor = redactor;
        self
    }

    /// Encodes, redacts and writes `record` to every sink.
    pub async fn write(&self, record: &TraceRecord) -> Result<(), TraceError> {
        if self.sinks.is_empty() {
            return Ok(());
        }
        let json = serde_json::to_string(record).map_err(TraceError::Encode)?;
        let line = Line {
            run_id: record.run_id().to_owned(),
            step: record.step(),
            kind: record.kind(),
            json: self.redactor.apply(&json),
        };
        for sink in &self.sinks {
            sink.write(&line).await?;
        }
        Ok(())
    }
}
