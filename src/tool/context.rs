//! [`ToolContext`]: what a tool is told about the call it is serving.
//!
//! The context is plain data built from the env by the state that runs the
//! tools ([`ToolContext::for_call`]); nothing is read from task-locals, so a
//! tool that hands work to another task takes its context along. The
//! idempotency key is made of what a retry or a resume repeats exactly (run
//! id, step, call id), so a tool with effects outside (a payment, an email)
//! can pass it on and have a second delivery ignored.

use std::sync::Arc;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::env::{Journal, RunSettings};

/// What a tool call knows of where it runs.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ToolContext {
    /// The call's id ([`ToolCall::id`](crate::ToolCall::id)).
    pub call_id: String,
    /// The run's id (a branch's or sub-machine's own id inside a fork).
    pub run_id: Arc<str>,
    /// The step of the run that made the call.
    pub step: u32,
    /// `run_id/step/call_id`: the same for every retry of the call and
    /// after the run resumes from a checkpoint, different for any other
    /// call. Pass it to outside services that deduplicate requests.
    pub idempotency_key: String,
    /// When the call must be done by: the run's deadline or the tool's
    /// time limit ([`ToolPolicy::timeout`](super::ToolPolicy::timeout)),
    /// whichever comes first.
    pub deadline: Option<Instant>,
    /// Cancelled when the call's result is no longer wanted: the run was
    /// dropped or ran out of time, or this attempt hit its time limit. A
    /// tool doing work outside its future (a spawned task, a blocking
    /// thread) stops when it fires.
    pub cancel: CancellationToken,
    /// Where the call's observation is recorded once it completes, and
    /// looked up before it is made ([`crate::env::Journal`]).
    pub journal: Option<Arc<dyn Journal>>,
    /// Whether the call's span carries its arguments and result, redacted
    /// with this ([`RunSettings::span_content`]).
    pub span_content: Option<Arc<crate::redact::Redactor>>,
}

impl ToolContext {
    /// The context of call `call_id`, made at `step` of the run `settings`
    /// describe ([`Env::settings`](crate::Env::settings)).
    pub fn for_call(settings: &RunSettings, step: u32, call_id: impl Into<String>) -> Self {
        let call_id = call_id.into();
        ToolContext {
            idempotency_key: format!("{}/{step}/{call_id}", settings.run_id),
            call_id,
            run_id: Arc::clone(&settings.run_id),
            step,
            deadline: settings.deadline,
            cancel: settings.cancel.child_token(),
            journal: settings.journal.clone(),
            span_content: settings.span_content.clone(),
        }
    }

    /// The context of one attempt at the call, limited to `limit` from now:
    /// its deadline is the earlier one, and its signal also fires when the
    /// attempt is abandoned.
    pub(super) fn attempt(&self, limit: Option<std::time::Duration>) -> Self {
        let deadline = match (self.deadline, limit.map(|l| Instant::now() + l)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        ToolContext {
            deadline,
            cancel: self.cancel.child_token(),
            ..self.clone()
        }
    }

    /// Whether the call's result is no longer wanted.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Time left before the deadline, if there is one.
    pub fn remaining(&self) -> Option<std::time::Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }
}
