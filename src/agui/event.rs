//! The AG-UI events, as `@ag-ui/core` 1.0 defines them: one enum, tagged
//! by `type`, with the protocol's camelCase field names.
//!
//! Optional fields are left out when `None`: the reference client rejects
//! a `null` where a field is optional.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::input::{Message, RunAgentInput};

/// One AG-UI event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "SCREAMING_SNAKE_CASE",
    rename_all_fields = "camelCase"
)]
#[non_exhaustive]
pub enum AgUiEvent {
    /// A text message begins.
    TextMessageStart {
        /// The message's id.
        message_id: String,
        /// Who writes it (`assistant` if absent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<String>,
    },
    /// More of a text message.
    TextMessageContent {
        /// The message's id.
        message_id: String,
        /// The next piece of text (not empty).
        delta: String,
    },
    /// A text message is complete.
    TextMessageEnd {
        /// The message's id.
        message_id: String,
    },
    /// A text message's start, content and end in one shape (clients
    /// expand it).
    TextMessageChunk {
        /// The message's id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_id: Option<String>,
        /// Who writes it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<String>,
        /// The next piece of text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delta: Option<String>,
    },
    /// A tool call begins.
    ToolCallStart {
        /// The call's id.
        tool_call_id: String,
        /// The tool.
        tool_call_name: String,
        /// The assistant message that carries the call.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent_message_id: Option<String>,
    },
    /// More of a tool call's arguments, as JSON text.
    ToolCallArgs {
        /// The call's id.
        tool_call_id: String,
        /// The next piece of the arguments' text.
        delta: String,
    },
    /// A tool call's arguments are complete.
    ToolCallEnd {
        /// The call's id.
        tool_call_id: String,
    },
    /// A tool call's start, arguments and end in one shape.
    ToolCallChunk {
        /// The call's id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_call_id: Option<String>,
        /// The tool.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_call_name: Option<String>,
        /// The next piece of the arguments' text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delta: Option<String>,
    },
    /// A tool call's result, as a tool message.
    ToolCallResult {
        /// The tool message's id.
        message_id: String,
        /// The call it answers.
        tool_call_id: String,
        /// The result: text, or an array of content parts.
        content: Value,
        /// Always `tool` when present.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<String>,
    },
    /// The whole state.
    StateSnapshot {
        /// The state.
        snapshot: Value,
    },
    /// A change of the state, as a JSON Patch (RFC 6902).
    StateDelta {
        /// The patch's operations.
        delta: json_patch::Patch,
    },
    /// The whole conversation.
    MessagesSnapshot {
        /// Its messages.
        messages: Vec<Message>,
    },
    /// An activity message, whole.
    ActivitySnapshot {
        /// The activity message's id.
        message_id: String,
        /// What kind of activity.
        activity_type: String,
        /// Its content.
        content: Value,
        /// Whether it replaces an existing one (default true).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replace: Option<bool>,
    },
    /// A change of an activity message, as a JSON Patch.
    ActivityDelta {
        /// The activity message's id.
        message_id: String,
        /// What kind of activity.
        activity_type: String,
        /// The patch's operations.
        patch: json_patch::Patch,
    },
    /// A provider's event, passed through.
    Raw {
        /// The event.
        event: Value,
        /// Where it came from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
    },
    /// An application's own event.
    Custom {
        /// What it is.
        name: String,
        /// Its payload.
        value: Value,
    },
    /// A run begins; always the first event.
    RunStarted {
        /// The conversation.
        thread_id: String,
        /// The run.
        run_id: String,
        /// The protocol version this server speaks.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        protocol_version: Option<String>,
        /// The run that spawned this one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent_run_id: Option<String>,
        /// The request, echoed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input: Option<Box<RunAgentInput>>,
    },
    /// A run ended without failing: finished, paused or cancelled.
    RunFinished {
        /// The conversation.
        thread_id: String,
        /// The run.
        run_id: String,
        /// The run's result (the answer).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<Value>,
        /// Why it ended (success if absent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        outcome: Option<RunFinishedOutcome>,
        /// Tokens spent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<Vec<TokenUsage>>,
    },
    /// A run failed.
    RunError {
        /// What went wrong.
        message: String,
        /// The error's code (`statewise::MachineError::code`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        /// Tokens spent before it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<Vec<TokenUsage>>,
    },
    /// A step (a state) begins.
    StepStarted {
        /// The state's path (`plan/fork[1]/search`).
        step_name: String,
    },
    /// A step ends.
    StepFinished {
        /// The state's path.
        step_name: String,
    },
    /// Reasoning begins.
    ReasoningStart {
        /// The reasoning's id.
        message_id: String,
    },
    /// A reasoning message begins.
    ReasoningMessageStart {
        /// The message's id.
        message_id: String,
        /// Always `reasoning`.
        role: String,
    },
    /// More reasoning text.
    ReasoningMessageContent {
        /// The message's id.
        message_id: String,
        /// The next piece of text.
        delta: String,
    },
    /// A reasoning message is complete.
    ReasoningMessageEnd {
        /// The message's id.
        message_id: String,
    },
    /// A reasoning message's start, content and end in one shape.
    ReasoningMessageChunk {
        /// The message's id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_id: Option<String>,
        /// The next piece of text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delta: Option<String>,
    },
    /// Reasoning ends.
    ReasoningEnd {
        /// The reasoning's id.
        message_id: String,
    },
    /// Encrypted reasoning attached to a message or tool call.
    ReasoningEncryptedValue {
        /// `tool-call` or `message`.
        subtype: String,
        /// The message or tool call.
        entity_id: String,
        /// The provider's opaque value.
        encrypted_value: String,
    },
    /// A subagent's run begins within this run.
    SubagentStarted {
        /// The subagent's run.
        subagent_run_id: String,
        /// The subagent.
        name: String,
    },
    /// A subagent's run ended.
    SubagentFinished {
        /// The subagent's run.
        subagent_run_id: String,
        /// Its result.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<Value>,
    },
    /// A subagent's run failed.
    SubagentError {
        /// The subagent's run.
        subagent_run_id: String,
        /// What went wrong.
        message: String,
        /// The error's code.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
    },
}

impl AgUiEvent {
    /// Whether this event ends a run (`RUN_FINISHED` or `RUN_ERROR`).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            AgUiEvent::RunFinished { .. } | AgUiEvent::RunError { .. }
        )
    }
}

/// Why a run ended without failing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
#[non_exhaustive]
pub enum RunFinishedOutcome {
    /// It completed; client tool calls it made wait for their results in
    /// the next request's messages.
    Success {
        /// The client tool calls left unanswered.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pending_tool_call_ids: Vec<String>,
    },
    /// It paused: the next request's `resume` answers these.
    Interrupt {
        /// What it waits for (at least one).
        interrupts: Vec<Interrupt>,
    },
    /// It was stopped before it completed.
    Cancelled,
}

/// Something a paused run waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interrupt {
    /// What a resume entry answers.
    pub id: String,
    /// Why the run stopped (`tool_approval`, `input`).
    pub reason: String,
    /// The question, for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The tool call it concerns, for an approval of one call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// A JSON Schema (an object) of the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_schema: Option<Value>,
    /// Anything else (statewise puts the request's payload here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// Tokens one provider and model spent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsage {
    /// Every prompt token, cached ones included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    /// Every generated token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    /// The two summed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_tokens: Option<u64>,
    /// Of `input_tokens`, those read from a provider cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_tokens: Option<u64>,
    /// Of `input_tokens`, those written to a provider cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_input_tokens: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_have_the_wire_names_and_leave_out_what_is_absent() {
        let e = AgUiEvent::ToolCallStart {
            tool_call_id: "c1".into(),
            tool_call_name: "clock".into(),
            parent_message_id: None,
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"type": "TOOL_CALL_START", "toolCallId": "c1", "toolCallName": "clock"})
        );
        let done = AgUiEvent::RunFinished {
            thread_id: "t".into(),
            run_id: "r".into(),
            result: None,
            outcome: Some(RunFinishedOutcome::Success {
                pending_tool_call_ids: vec!["c1".into()],
            }),
            usage: None,
        };
        assert_eq!(
            serde_json::to_value(&done).unwrap(),
            json!({"type": "RUN_FINISHED", "threadId": "t", "runId": "r",
                   "outcome": {"type": "success", "pendingToolCallIds": ["c1"]}})
        );
        let delta: AgUiEvent = serde_json::from_value(json!({"type": "STATE_DELTA",
            "delta": [{"op": "replace", "path": "/step", "value": 2}]}))
        .unwrap();
        assert!(matches!(delta, AgUiEvent::StateDelta { ref delta } if delta.0.len() == 1));
        assert_eq!(
            serde_json::to_value(&RunFinishedOutcome::Cancelled).unwrap(),
            json!({"type": "cancelled"})
        );
    }
}
