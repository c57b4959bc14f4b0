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

use crate::env::{Env, Journal, RunSettings};
use crate::guard::{CallScope, Guardrails, Principal, Tripwire};

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
    /// Who the run acts for: a tool needing scopes it lacks is refused.
    pub principal: Option<Arc<Principal>>,
    /// The machine's guardrails, whose tool checks run around the call.
    pub guardrails: Guardrails,
    /// Where the call reports a guardrail it tripped.
    pub tripwire: Tripwire,
    /// What the run knew when the call was made, for tool guardrails
    /// ([`ToolContext::for_call_in`]); empty unless the state set it.
    pub scope: Arc<CallScope>,
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
            principal: settings.principal.clone(),
            guardrails: settings.guardrails.clone(),
            tripwire: settings.tripwire.clone(),
            scope: Arc::default(),
        }
    }

    /// The context of call `call_id` in the run `env` holds, at its current
    /// step, with what tool guardrails need to know of the run
    /// ([`Env::call_scope`]). States running several calls build the
    /// scope once and use [`ToolContext::for_call`] and
    /// [`ToolContext::in_scope`].
    pub fn for_call_in(env: &Env, call_id: impl Into<String>) -> Self {
        Self::for_call(&env.settings, env.step, call_id).in_scope(Arc::new(env.call_scope()))
    }

    /// The same context, with `scope` for tool guardrails.
    pub fn in_scope(mut self, scope: Arc<CallScope>) -> Self {
        self.scope = scope;
        self
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
