//! [`Env`]: everything a run produces, in one serializable value.
//!
//! States hold configuration only; every fact a run learns lives here, so a
//! run can be checkpointed, inspected and replayed from any step.

mod background;
mod branch;
mod interrupt;
mod journal;
mod scratch;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use background::Background;
pub use branch::BranchOutcome;
pub use interrupt::Interrupt;
pub use journal::{Journal, JournalError, MemoryJournal};
pub use scratch::{Scratch, ScratchError, ScratchKey, ScratchName};

/// Who wrote a [`Message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions that frame the conversation.
    System,
    /// The person (or program) the agent works for.
    User,
    /// The model.
    Assistant,
    /// The result of a tool call, answering the call named by `tool_call_id`.
    Tool,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Its text.
    pub content: String,
    /// Tool calls the assistant made in this message (native tool calling).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For [`Role::Tool`]: the id of the call this message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    fn new(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }

    /// A tool result answering the call `call_id`.
    pub fn tool(call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Message {
            tool_call_id: Some(call_id.into()),
            ..Self::new(Role::Tool, content)
        }
    }
}

/// One call of a tool, as the model asked for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Identifies the call within a run; observations refer to it.
    pub id: String,
    /// The tool's registered name.
    pub name: String,
    /// The arguments, as JSON.
    pub arguments: Value,
}

impl ToolCall {
    /// A call with the given id, tool name and arguments.
    pub fn new(id: impl Into<String>, name: impl Into<String>, arguments: Value) -> Self {
        ToolCall {
            id: id.into(),
            name: name.into(),
            arguments,
        }
    }

    /// The tool and its arguments as one string, with every object's keys
    /// in sorted order: two calls of one tool with the same arguments have
    /// the same signature whatever order the model wrote the keys in (the
    /// id is not part of it).
    ///
    /// ```
    /// use serde_json::json;
    /// use statewise::ToolCall;
    ///
    /// let a = ToolCall::new("c0", "search", json!({"q": "rust", "n": 3}));
    /// let b = ToolCall::new("c1", "search", serde_json::from_str(r#"{"n": 3, "q": "rust"}"#)?);
    /// assert_eq!(a.signature(), b.signature());
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn signature(&self) -> String {
        let mut out = self.name.clone();
        out.push('\u{0}');
        write_sorted(&self.arguments, &mut out);
        out
    }
}

/// `value` as JSON text with object keys sorted, recursively.
fn write_sorted(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut fields: Vec<(&String, &Value)> = map.iter().collect();
            fields.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in fields.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_sorted(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sorted(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// A tool call as the model writes it, before the call is complete: a
/// web client shows it live. Never retracted; the parsed
/// [`Action`] says what was finally asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum ToolCallDraft {
    /// The call's tool name is complete.
    Named {
        /// The id the parsed [`ToolCall`] will carry.
        call_id: String,
        /// The tool's name.
        tool: String,
    },
    /// More of the call's arguments: raw JSON text as the model wrote it
    /// (concatenated, the deltas are the whole arguments' text).
    Arguments {
        /// The call's id.
        call_id: String,
        /// The next piece of the arguments' text.
        delta: String,
    },
}

/// What the model decided to do next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Run these tools (one or several, run concurrently), then think again.
    ToolCalls(Vec<ToolCall>),
    /// Stop and give this answer.
    FinalAnswer(String),
}

/// The result of one tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// The [`ToolCall::id`] this answers.
    pub call_id: String,
    /// The tool that was called.
    pub tool: String,
    /// The tool's output, or a description of the failure.
    pub content: Value,
    /// Whether the call failed (unknown tool, bad arguments, tool error).
    pub is_error: bool,
}

impl Observation {
    /// The content as text, the way it is shown to a model.
    pub fn render(&self) -> String {
        match &self.content {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

/// Token counts and cost, per call or summed over a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    /// Tokens sent to the model.
    pub prompt_tokens: u64,
    /// Tokens the model generated.
    pub completion_tokens: u64,
    /// Of `prompt_tokens`, those read from the provider's prompt cache.
    #[serde(default)]
    pub cached_tokens: u64,
    /// Of `prompt_tokens`, those written to the provider's prompt cache.
    #[serde(default)]
    pub cache_write_tokens: u64,
    /// Cost in US dollars, where a price is known.
    #[serde(default)]
    pub cost: f64,
    /// Replies served by a response cache
    /// ([`Cache`](crate::layer::Cache)). Their tokens count as prompt and
    /// completion tokens as when first made (prompt tokens all as cached),
    /// so budgets behave the same; they cost nothing.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cached_responses: u64,
    /// Calls served on a vendor's batch lane (its Batch API), priced at its
    /// batch price ([`Price::batch_factor`](crate::model::Price::batch_factor)).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub batched_requests: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Usage {
    /// Prompt plus completion tokens.
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Usage) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.cached_tokens += other.cached_tokens;
        self.cache_write_tokens += other.cache_write_tokens;
        self.cost += other.cost;
        self.cached_responses += other.cached_responses;
        self.batched_requests += other.batched_requests;
    }

    /// What was used since `earlier` (a reading of the same counters).
    pub fn since(&self, earlier: &Usage) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens.saturating_sub(earlier.prompt_tokens),
            completion_tokens: self
                .completion_tokens
                .saturating_sub(earlier.completion_tokens),
            cached_tokens: self.cached_tokens.saturating_sub(earlier.cached_tokens),
            cache_write_tokens: self
                .cache_write_tokens
                .saturating_sub(earlier.cache_write_tokens),
            cost: (self.cost - earlier.cost).max(0.0),
            cached_responses: self
                .cached_responses
                .saturating_sub(earlier.cached_responses),
            batched_requests: self
                .batched_requests
                .saturating_sub(earlier.batched_requests),
        }
    }
}

/// The shared state of one run.
///
/// Build one for a test in a line or two:
///
/// ```
/// use statewise::{Action, Env, ToolCall};
/// use serde_json::json;
///
/// let env = Env::new()
///     .with_user("What is 2 + 2?")
///     .with_action(Action::ToolCalls(vec![ToolCall::new("c1", "calculator", json!({"expr": "2+2"}))]));
/// assert_eq!(env.messages.len(), 1);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Env {
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// The action chosen by the last reasoning step and not yet carried out.
    pub action: Option<Action>,
    /// Every tool result of the run, in call order.
    pub observations: Vec<Observation>,
    /// The final answer, once given.
    pub answer: Option<String>,
    /// How many states have run (the machine counts it).
    pub step: u32,
    /// Tokens and cost of every model call of the run.
    pub usage: Usage,
    /// Each model's share of `usage` where a router or cascade served a
    /// call ([`Reply::charge`](crate::model::Reply::charge)), by model
    /// name: what each tier cost.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub usage_by_model: BTreeMap<String, Usage>,
    /// Free space for custom states.
    pub scratch: Scratch,
    /// Errors states recovered from through [`State::on_error`](crate::State::on_error).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ErrorRecord>,
    /// A fork branch's own input ([`Fork::branch`](crate::state::Fork::branch));
    /// `None` outside branches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// What each branch of the last fork produced, in branch order, for the
    /// join state to read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub branches: Vec<BranchOutcome>,
    /// The request the run is paused on, if it is waiting for a person.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupt: Option<Box<Interrupt>>,
    /// Who the run acts for, set by the caller
    /// ([`Env::with_principal`]); saved with the run, so a resumed run acts
    /// for the same principal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<crate::guard::Principal>,
    /// People's responses to interrupts, by [`Interrupt::id`].
    #[serde(skip_serializing_if = "BTreeMap::is_empty", alias = "replies")]
    pub responses: BTreeMap<String, Value>,
    /// How the machine runs the state now running: set before each state
    /// runs and cleared after, never saved. A state passes it on to the
    /// model calls it makes ([`ReplyStream::call`](crate::model::ReplyStream::call)).
    #[serde(skip)]
    pub settings: RunSettings,
}

/// The machine's settings for the state that is running, handed to it in
/// [`Env::settings`] (explicitly, so a state that moves work to another
/// task takes them along).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RunSettings {
    /// Whether model calls end with the whole request and reply
    /// ([`Streamed::Call`](crate::model::Streamed::Call)), for traces and
    /// replays ([`Machine::record_model_calls`](crate::Machine::record_model_calls)).
    pub record_model_calls: bool,
    /// The run's id (a branch's own id inside a fork).
    pub run_id: std::sync::Arc<str>,
    /// When the run or the state running must end (the machine's deadline
    /// and state time limit), if either is set.
    pub deadline: Option<tokio::time::Instant>,
    /// Cancelled once the run is dropped or ends: work a state started
    /// outside its stream (a tool's spawned task) stops when it fires.
    pub cancel: tokio_util::sync::CancellationToken,
    /// Where completed tool calls are recorded, so a resumed run answers
    /// them from the record instead of calling again
    /// ([`Machine::with_journal`](crate::Machine::with_journal)).
    pub journal: Option<std::sync::Arc<dyn Journal>>,
    /// Whether spans carry message content (prompts, replies, tool
    /// arguments and results), redacted with this
    /// ([`Machine::span_content`](crate::Machine::span_content)); off by
    /// default.
    pub span_content: Option<std::sync::Arc<crate::redact::Redactor>>,
    /// Where a state hands off work it does not wait for (a notification,
    /// a log line): errors are logged and counted, never lost silently
    /// ([`Machine::with_background`](crate::Machine::with_background)).
    pub background: Background,
    /// The typed output the run must end with, if it asks for one
    /// ([`Machine::output`](crate::Machine::output)): the state that writes
    /// the answer writes it in this shape.
    pub output: Option<std::sync::Arc<crate::output::Output>>,
    /// Who the run acts for ([`Env::principal`]): a toolbox offers and runs
    /// only the tools it holds the scopes of.
    pub principal: Option<std::sync::Arc<crate::guard::Principal>>,
    /// The machine's guardrails ([`Machine::with_guardrails`](crate::Machine::with_guardrails)):
    /// a toolbox runs their tool checks on every call.
    pub guardrails: crate::guard::Guardrails,
    /// Where tool calls report the guardrails they tripped, for the machine
    /// to act on.
    pub tripwire: crate::guard::Tripwire,
}

/// Equal when they describe the same run the same way; the cancellation
/// signal and the journal are not compared (they have no identity to
/// compare).
impl PartialEq for RunSettings {
    fn eq(&self, other: &Self) -> bool {
        self.record_model_calls == other.record_model_calls
            && self.run_id == other.run_id
            && self.deadline == other.deadline
            && self.span_content.is_some() == other.span_content.is_some()
            && self.output.as_ref().map(|o| o.schema()) == other.output.as_ref().map(|o| o.schema())
            && self.principal == other.principal
    }
}

impl RunSettings {
    /// Settings that record model calls (`on`) or not.
    pub fn recording(on: bool) -> Self {
        RunSettings {
            record_model_calls: on,
            ..RunSettings::default()
        }
    }
}

/// An error a state failed with and the run recovered from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorRecord {
    /// The step it happened in.
    pub step: u32,
    /// The state that failed.
    pub state: String,
    /// Its code ([`StateError::code`](crate::StateError::code)).
    pub kind: String,
    /// The error, as text.
    pub message: String,
}

impl Env {
    /// An empty env.
    pub fn new() -> Self {
        Env::default()
    }

    /// An env holding one user message: the usual start of a run.
    pub fn from_user(question: impl Into<String>) -> Self {
        Env::new().with_user(question)
    }

    /// Appends a system message.
    pub fn with_system(mut self, content: impl Into<String>) -> Self {
        self.messages.push(Message::system(content));
        self
    }

    /// Appends a user message.
    pub fn with_user(mut self, content: impl Into<String>) -> Self {
        self.messages.push(Message::user(content));
        self
    }

    /// Appends an assistant message.
    pub fn with_assistant(mut self, content: impl Into<String>) -> Self {
        self.messages.push(Message::assistant(content));
        self
    }

    /// Acts for `principal`: the tools it may use are the only ones offered
    /// and run.
    pub fn with_principal(mut self, principal: crate::guard::Principal) -> Self {
        self.principal = Some(principal);
        self
    }

    /// What tool guardrails know of this run: its user messages, the tool
    /// results so far and the principal.
    pub fn call_scope(&self) -> crate::guard::CallScope {
        let input: Vec<&str> = self
            .messages
            .iter()
            .filter(|m| m.role == Role::User)
            .map(|m| m.content.as_str())
            .collect();
        let results = self
            .observations
            .iter()
            .map(|o| match &o.content {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        crate::guard::CallScope::new(input.join("\n"), results).acting_for(self.principal.clone())
    }

    /// The input a run starting from this env answers: its last user
    /// messages (after the last message of any other role), and a branch's
    /// own input, for input guardrails.
    pub fn run_input(&self) -> String {
        let start = self
            .messages
            .iter()
            .rposition(|m| m.role != Role::User)
            .map_or(0, |i| i + 1);
        let mut parts: Vec<String> = self.messages[start..]
            .iter()
            .map(|m| m.content.clone())
            .collect();
        if let Some(input) = &self.input {
            parts.push(input.to_string());
        }
        parts.join("\n")
    }

    /// Sets the pending action.
    pub fn with_action(mut self, action: Action) -> Self {
        self.action = Some(action);
        self
    }

    /// Appends an observation.
    pub fn with_observation(mut self, observation: Observation) -> Self {
        self.observations.push(observation);
        self
    }

    /// Sets the final answer.
    pub fn with_answer(mut self, answer: impl Into<String>) -> Self {
        self.answer = Some(answer.into());
        self
    }

    /// Stores a scratch value (see [`Scratch::set`]).
    pub fn with_scratch<T: Serialize + ?Sized>(
        mut self,
        key: &str,
        value: &T,
    ) -> Result<Self, ScratchError> {
        self.scratch.set(key, value)?;
        Ok(self)
    }

    /// The pending tool calls, if the pending action is to call tools.
    pub fn pending_calls(&self) -> Option<&[ToolCall]> {
        match &self.action {
            Some(Action::ToolCalls(calls)) => Some(calls),
            _ => None,
        }
    }

    /// The response to the interrupt `id`, once a person gave one.
    pub fn response(&self, id: &str) -> Option<&Value> {
        self.responses.get(id)
    }

    /// The text of the last user message.
    pub fn last_user_message(&self) -> Option<&str> {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(|m| m.content.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scratch_keeps_keys_sorted_and_serializes_as_an_object() {
        let mut scratch = Scratch::default();
        scratch.set("b", &2).unwrap();
        scratch.set("a", &1).unwrap();
        scratch.set("c", &3).unwrap();
        scratch.set("b", &20).unwrap();
        assert_eq!(scratch.get::<u32>("b").unwrap(), Some(20));
        assert_eq!(
            serde_json::to_string(&scratch).unwrap(),
            r#"{"a":1,"b":20,"c":3}"#
        );
        assert_eq!(scratch.remove("a"), Some(Value::from(1)));
        assert!(!scratch.contains("a") && scratch.contains("c"));
        assert_eq!(scratch.remove("a"), None);
    }

    #[test]
    fn scratch_read_from_any_key_order_equals_the_same_entries() {
        let read: Scratch = serde_json::from_str(r#"{"z": true, "m": [1], "a": null}"#).unwrap();
        let mut built = Scratch::default();
        for (k, v) in [("m", json!([1])), ("a", Value::Null), ("z", json!(true))] {
            built.set(k, &v).unwrap();
        }
        assert_eq!(read, built);
        assert_eq!(read.raw("m"), Some(&json!([1])));
    }
}
