//! [`Translator`]: a run's [`Event`]s as AG-UI events, in a plain function
//! of the events so far (no I/O, unit-tested), which the server streams.
//!
//! The mapping: each state is a step (its path names the branch), the
//! answer's text a text message, [`Emit::Reasoning`] a reasoning message,
//! tool call drafts and calls the `TOOL_CALL_*` events and their
//! observations `TOOL_CALL_RESULT`, [`EventKind::Snapshot`]s a state
//! snapshot and then JSON Patch deltas, and a typed output's partial
//! objects ([`Emit::PartialOutput`]) the state's [`OUTPUT`] in deltas too. A run paused on a person ends as
//! `RUN_FINISHED` with an interrupt outcome, one paused on client tools as
//! a success with the pending call ids (the AG-UI way for front-end
//! tools). Whatever the run leaves open (a message, a tool call, a step)
//! is closed before the run's last event, as clients require.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::event::{AgUiEvent, Interrupt, RunFinishedOutcome, TokenUsage};
use crate::env::{Action, Env, ErrorRecord, Usage};
use crate::machine::event::{Event, EventKind, RunOutput};
use crate::state::{ActionParsed, Emit, Next};
use crate::tool::client::{is_client_request, requested_call_ids};

/// The AG-UI version this crate speaks.
pub const PROTOCOL_VERSION: &str = "1.0";

/// The key of the shared state that holds a typed output as it is written.
pub const OUTPUT: &str = "output";

/// The reason of an AG-UI interrupt that asks to approve tool calls.
pub const TOOL_APPROVAL: &str = "tool_approval";

/// The reason of any other AG-UI interrupt.
pub const INPUT: &str = "input";

/// Turns one run's events into AG-UI events.
#[derive(Debug)]
pub struct Translator {
    thread_id: String,
    run_id: String,
    /// The answer's text message, while open.
    text: Option<String>,
    /// The reasoning message, while open.
    reasoning: Option<String>,
    /// Tool calls started and not yet ended.
    open_calls: BTreeSet<String>,
    /// Tool calls announced in this run or known from the request.
    known_calls: BTreeSet<String>,
    /// Steps started and not finished.
    open_steps: Vec<String>,
    /// The state as last sent.
    state: Option<Value>,
    ids: u64,
    ended: bool,
}

impl Translator {
    /// A translator for AG-UI run `run_id` of thread `thread_id`; the
    /// run's [`Emit::AnswerToken`]s are its text messages.
    pub fn new(thread_id: impl Into<String>, run_id: impl Into<String>) -> Self {
        Translator {
            thread_id: thread_id.into(),
            run_id: run_id.into(),
            text: None,
            reasoning: None,
            open_calls: BTreeSet::new(),
            known_calls: BTreeSet::new(),
            open_steps: Vec::new(),
            state: None,
            ids: 0,
            ended: false,
        }
    }

    /// Marks tool calls the client already has (from its request's
    /// messages): a resumed run does not announce them again.
    pub fn known_calls<'a>(mut self, ids: impl IntoIterator<Item = &'a str>) -> Self {
        self.known_calls.extend(ids.into_iter().map(str::to_owned));
        self
    }

    /// Starts from the client's state: the first snapshot is sent as a
    /// delta from it.
    pub fn with_state(mut self, state: Option<Value>) -> Self {
        self.state = state;
        self
    }

    /// Whether the run's last event was made.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The first event: `RUN_STARTED`.
    pub fn start(&self) -> AgUiEvent {
        AgUiEvent::RunStarted {
            thread_id: self.thread_id.clone(),
            run_id: self.run_id.clone(),
            protocol_version: Some(PROTOCOL_VERSION.to_owned()),
            parent_run_id: None,
            input: None,
        }
    }

    fn next_id(&mut self, kind: &str) -> String {
        self.ids += 1;
        format!("{}-{kind}{}", self.run_id, self.ids)
    }

    /// The AG-UI events `event` makes, appended to `out`.
    pub fn push(&mut self, event: &Event, out: &mut Vec<AgUiEvent>) {
        if self.ended {
            return;
        }
        let main_line = event.branch.is_none();
        match &event.kind {
            EventKind::StateEntered => {
                self.close_reasoning(out);
                let step_name = event.path();
                // A step entered again while open (a queued run resumed by
                // another worker repeats its step's events) is one step.
                if !self.open_steps.contains(&step_name) {
                    self.open_steps.push(step_name.clone());
                    out.push(AgUiEvent::StepStarted { step_name });
                }
            }
            EventKind::StateExited { .. } => {
                self.close_reasoning(out);
                let step_name = event.path();
                if let Some(i) = self.open_steps.iter().rposition(|s| *s == step_name) {
                    self.open_steps.remove(i);
                    out.push(AgUiEvent::StepFinished { step_name });
                }
            }
            EventKind::Snapshot(env) if main_line => self.snapshot(env, out),
            EventKind::Emitted(emit) => self.emitted(event, emit, out),
            EventKind::Finished(output) => {
                let result = output.answer.clone().map(Value::String);
                self.finish(
                    result,
                    RunFinishedOutcome::Success {
                        pending_tool_call_ids: Vec::new(),
                    },
                    &output.env,
                    out,
                );
            }
            EventKind::Interrupted(output) => {
                let outcome = match output.interrupt() {
                    Some(request) if is_client_request(request) => RunFinishedOutcome::Success {
                        pending_tool_call_ids: requested_call_ids(request),
                    },
                    Some(request) => RunFinishedOutcome::Interrupt {
                        interrupts: vec![interrupt_of(request)],
                    },
                    None => RunFinishedOutcome::Success {
                        pending_tool_call_ids: Vec::new(),
                    },
                };
                self.finish(None, outcome, &output.env, out);
            }
            EventKind::Failed(failure) => {
                self.close_all(out);
                self.ended = true;
                out.push(AgUiEvent::RunError {
                    message: failure.error.to_string(),
                    code: Some(failure.error.code()),
                    usage: Some(usage_of(&failure.env.usage)),
                });
            }
            EventKind::Snapshot(_)
            | EventKind::StateRetried { .. }
            | EventKind::StateFailed { .. } => {}
        }
    }

    /// The AG-UI events of a run's event as JSON, the way [`Event`]
    /// serializes (the Redis workers stream them so), appended to `out`.
    pub fn push_json(
        &mut self,
        event: &Value,
        out: &mut Vec<AgUiEvent>,
    ) -> Result<(), serde_json::Error> {
        let wire = WireEvent::deserialize(event)?;
        let kind = match wire.kind {
            WireKind::StateEntered => EventKind::StateEntered,
            WireKind::Emitted(emit) => EventKind::Emitted(emit),
            WireKind::StateRetried { attempt, reason } => {
                EventKind::StateRetried { attempt, reason }
            }
            WireKind::StateFailed { error } => EventKind::StateFailed { error },
            WireKind::StateExited { next } => EventKind::StateExited { next },
            WireKind::Snapshot(env) => EventKind::Snapshot(env),
            WireKind::Finished(output) => EventKind::Finished(output),
            WireKind::Interrupted(output) => EventKind::Interrupted(output),
            // A failure's error is only text and a code on the wire.
            WireKind::Failed(failure) => {
                if !self.ended {
                    self.close_all(out);
                    self.ended = true;
                    out.push(AgUiEvent::RunError {
                        message: failure.error,
                        code: Some(failure.kind),
                        usage: Some(usage_of(&failure.env.usage)),
                    });
                }
                return Ok(());
            }
        };
        let event = Event {
            step: wire.step,
            state: wire.state,
            branch: wire.branch,
            kind,
        };
        self.push(&event, out);
        Ok(())
    }

    /// The events that end a run stopped before its end: what is open is
    /// closed, then `RUN_FINISHED` with the cancelled outcome.
    pub fn cancel(&mut self, out: &mut Vec<AgUiEvent>) {
        if self.ended {
            return;
        }
        self.close_all(out);
        self.ended = true;
        out.push(AgUiEvent::RunFinished {
            thread_id: self.thread_id.clone(),
            run_id: self.run_id.clone(),
            result: None,
            outcome: Some(RunFinishedOutcome::Cancelled),
            usage: None,
        });
    }

    /// The events that end a run whose event stream ended without its
    /// last event (the machine's task died): `RUN_ERROR`.
    pub fn cut(&mut self, out: &mut Vec<AgUiEvent>) {
        if self.ended {
            return;
        }
        self.close_all(out);
        self.ended = true;
        out.push(AgUiEvent::RunError {
            message: "the run's event stream ended before the run did".to_owned(),
            code: Some("cut".to_owned()),
            usage: None,
        });
    }

    fn emitted(&mut self, event: &Event, emit: &Emit, out: &mut Vec<AgUiEvent>) {
        match emit {
            // A branch's or sub-machine's answer is not the run's.
            Emit::AnswerToken(t) if event.branch.is_none() => self.text(t, out),
            Emit::PartialOutput(partial) if event.branch.is_none() => {
                self.partial_output(partial, out)
            }
            Emit::Reasoning(t) if !t.is_empty() => {
                let id = match &self.reasoning {
                    Some(id) => id.clone(),
                    None => {
                        let id = self.next_id("reasoning");
                        out.push(AgUiEvent::ReasoningStart {
                            message_id: id.clone(),
                        });
                        out.push(AgUiEvent::ReasoningMessageStart {
                            message_id: id.clone(),
                            role: "reasoning".to_owned(),
                        });
                        self.reasoning = Some(id.clone());
                        id
                    }
                };
                out.push(AgUiEvent::ReasoningMessageContent {
                    message_id: id,
                    delta: t.clone(),
                });
            }
            Emit::ToolCallDraft(crate::env::ToolCallDraft::Named { call_id, tool }) => {
                self.start_call(call_id, tool, out);
            }
            Emit::ToolCallDraft(crate::env::ToolCallDraft::Arguments { call_id, delta })
                if self.open_calls.contains(call_id) && !delta.is_empty() =>
            {
                out.push(AgUiEvent::ToolCallArgs {
                    tool_call_id: call_id.clone(),
                    delta: delta.clone(),
                });
            }
            Emit::Custom(custom) => {
                if let Some(ActionParsed(Action::ToolCalls(calls))) = custom.decode() {
                    for call in &calls {
                        self.announce(call, out);
                    }
                }
                out.push(AgUiEvent::Custom {
                    name: custom.name.clone(),
                    value: custom.value.clone(),
                });
            }
            Emit::ToolCallStarted(call) => self.announce(call, out),
            Emit::Routed(step) => out.push(AgUiEvent::Custom {
                name: "statewise.route".to_owned(),
                value: serde_json::to_value(step).unwrap_or(Value::Null),
            }),
            Emit::Observation(observation) => {
                self.end_call(&observation.call_id, out);
                let message_id = self.next_id("tool");
                out.push(AgUiEvent::ToolCallResult {
                    message_id,
                    tool_call_id: observation.call_id.clone(),
                    content: Value::String(observation.render()),
                    role: Some("tool".to_owned()),
                });
            }
            _ => {}
        }
    }

    fn text(&mut self, t: &str, out: &mut Vec<AgUiEvent>) {
        if t.is_empty() {
            return;
        }
        self.close_reasoning(out);
        let id = match &self.text {
            Some(id) => id.clone(),
            None => {
                let id = self.next_id("msg");
                out.push(AgUiEvent::TextMessageStart {
                    message_id: id.clone(),
                    role: Some("assistant".to_owned()),
                });
                self.text = Some(id.clone());
                id
            }
        };
        out.push(AgUiEvent::TextMessageContent {
            message_id: id,
            delta: t.to_owned(),
        });
    }

    /// Starts a call's events unless the client knows it already.
    fn start_call(&mut self, call_id: &str, tool: &str, out: &mut Vec<AgUiEvent>) -> bool {
        if self.known_calls.contains(call_id) {
            return false;
        }
        self.close_reasoning(out);
        self.close_text(out);
        self.known_calls.insert(call_id.to_owned());
        self.open_calls.insert(call_id.to_owned());
        out.push(AgUiEvent::ToolCallStart {
            tool_call_id: call_id.to_owned(),
            tool_call_name: tool.to_owned(),
            parent_message_id: None,
        });
        true
    }

    /// A whole call: started with its arguments if it was not streamed,
    /// then ended.
    fn announce(&mut self, call: &crate::env::ToolCall, out: &mut Vec<AgUiEvent>) {
        if self.start_call(&call.id, &call.name, out) {
            out.push(AgUiEvent::ToolCallArgs {
                tool_call_id: call.id.clone(),
                delta: call.arguments.to_string(),
            });
        }
        self.end_call(&call.id, out);
    }

    fn end_call(&mut self, call_id: &str, out: &mut Vec<AgUiEvent>) {
        if self.open_calls.remove(call_id) {
            out.push(AgUiEvent::ToolCallEnd {
                tool_call_id: call_id.to_owned(),
            });
        }
    }

    /// A typed output so far, as the shared state's `output`.
    fn partial_output(&mut self, partial: &Value, out: &mut Vec<AgUiEvent>) {
        let mut now = self
            .state
            .clone()
            .unwrap_or_else(|| Value::Object(Default::default()));
        if let Some(state) = now.as_object_mut() {
            state.insert(OUTPUT.to_owned(), partial.clone());
        }
        self.send_state(now, out);
    }

    fn snapshot(&mut self, env: &Env, out: &mut Vec<AgUiEvent>) {
        let mut now = state_of(env);
        // The typed output streamed so far stays in the state.
        let output = self.state.as_ref().and_then(|s| s.get(OUTPUT));
        if let (Some(state), Some(output)) = (now.as_object_mut(), output) {
            state.insert(OUTPUT.to_owned(), output.clone());
        }
        self.send_state(now, out);
    }

    /// `now` as a snapshot the first time, then as the patch from the last.
    fn send_state(&mut self, now: Value, out: &mut Vec<AgUiEvent>) {
        match &self.state {
            None => out.push(AgUiEvent::StateSnapshot {
                snapshot: now.clone(),
            }),
            Some(before) => {
                let delta = json_patch::diff(before, &now);
                if !delta.0.is_empty() {
                    out.push(AgUiEvent::StateDelta { delta });
                }
            }
        }
        self.state = Some(now);
    }

    fn finish(
        &mut self,
        result: Option<Value>,
        outcome: RunFinishedOutcome,
        env: &Env,
        out: &mut Vec<AgUiEvent>,
    ) {
        self.close_all(out);
        self.snapshot(env, out);
        self.ended = true;
        out.push(AgUiEvent::RunFinished {
            thread_id: self.thread_id.clone(),
            run_id: self.run_id.clone(),
            result,
            outcome: Some(outcome),
            usage: Some(usage_of(&env.usage)),
        });
    }

    fn close_text(&mut self, out: &mut Vec<AgUiEvent>) {
        if let Some(message_id) = self.text.take() {
            out.push(AgUiEvent::TextMessageEnd { message_id });
        }
    }

    fn close_reasoning(&mut self, out: &mut Vec<AgUiEvent>) {
        if let Some(message_id) = self.reasoning.take() {
            out.push(AgUiEvent::ReasoningMessageEnd {
                message_id: message_id.clone(),
            });
            out.push(AgUiEvent::ReasoningEnd { message_id });
        }
    }

    fn close_all(&mut self, out: &mut Vec<AgUiEvent>) {
        self.close_reasoning(out);
        self.close_text(out);
        for call_id in std::mem::take(&mut self.open_calls) {
            out.push(AgUiEvent::ToolCallEnd {
                tool_call_id: call_id,
            });
        }
        while let Some(step_name) = self.open_steps.pop() {
            out.push(AgUiEvent::StepFinished { step_name });
        }
    }
}

/// An [`Event`] as it serializes.
#[derive(Deserialize)]
struct WireEvent {
    step: u32,
    state: Arc<str>,
    #[serde(default)]
    branch: Option<Arc<str>>,
    #[serde(flatten)]
    kind: WireKind,
}

/// [`EventKind`] as it serializes; a failure keeps only its text.
#[derive(Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
enum WireKind {
    StateEntered,
    Emitted(Emit),
    StateRetried { attempt: u32, reason: String },
    StateFailed { error: ErrorRecord },
    StateExited { next: Next },
    Snapshot(Box<Env>),
    Finished(Box<RunOutput>),
    Failed(Box<WireFailure>),
    Interrupted(Box<RunOutput>),
}

#[derive(Deserialize)]
struct WireFailure {
    kind: String,
    error: String,
    #[serde(default)]
    env: Env,
}

/// The AG-UI state of a run: its env without the conversation (which
/// travels as messages) and without the pending request.
pub fn state_of(env: &Env) -> Value {
    let mut state = serde_json::to_value(env).unwrap_or(Value::Null);
    if let Some(o) = state.as_object_mut() {
        o.remove("messages");
        o.remove("interrupt");
    }
    state
}

/// A statewise request as an AG-UI interrupt: approvals as
/// [`TOOL_APPROVAL`] (naming the call when there is one), the rest as
/// [`INPUT`]; the payload goes in `metadata`.
pub fn interrupt_of(request: &crate::env::Interrupt) -> Interrupt {
    let approval = request.id.starts_with("approve:");
    let calls = requested_call_ids(request);
    Interrupt {
        id: request.id.clone(),
        reason: if approval { TOOL_APPROVAL } else { INPUT }.to_owned(),
        message: Some(request.prompt.clone()),
        tool_call_id: match calls.as_slice() {
            [one] if approval => Some(one.clone()),
            _ => None,
        },
        response_schema: request.schema.is_object().then(|| request.schema.clone()),
        metadata: (!request.payload.is_null())
            .then(|| serde_json::json!({ "payload": request.payload })),
    }
}

fn usage_of(usage: &Usage) -> Vec<TokenUsage> {
    vec![TokenUsage {
        input_tokens: Some(usage.prompt_tokens),
        output_tokens: Some(usage.completion_tokens),
        total_tokens: Some(usage.prompt_tokens + usage.completion_tokens),
        cached_input_tokens: Some(usage.cached_tokens),
        cache_write_input_tokens: Some(usage.cache_write_tokens),
    }]
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::env::ToolCall;
    use crate::env::{Observation, ToolCallDraft};
    use crate::machine::event::RunOutput;
    use crate::state::Next;

    fn at(state: &str, kind: EventKind) -> Event {
        Event {
            step: 1,
            state: Arc::from(state),
            branch: None,
            kind,
        }
    }

    fn emit(state: &str, e: Emit) -> Event {
        at(state, EventKind::Emitted(e))
    }

    /// Call `call_id` drafted in `state`: its tool named.
    fn named(state: &str, call_id: &str, tool: &str) -> Event {
        let draft = ToolCallDraft::Named {
            call_id: call_id.into(),
            tool: tool.into(),
        };
        emit(state, Emit::ToolCallDraft(draft))
    }

    /// Call `call_id` drafted in `state`: a piece of its arguments' text.
    fn arguments(state: &str, call_id: &str, delta: &str) -> Event {
        let draft = ToolCallDraft::Arguments {
            call_id: call_id.into(),
            delta: delta.into(),
        };
        emit(state, Emit::ToolCallDraft(draft))
    }

    fn types(events: &[AgUiEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| {
                serde_json::to_value(e).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    fn output(answer: Option<&str>, env: Env) -> Box<RunOutput> {
        Box::new(RunOutput {
            answer: answer.map(str::to_owned),
            path: vec![],
            env,
            run_id: "r".into(),
        })
    }

    #[test]
    fn a_states_own_event_reaches_clients_as_custom() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Progress {
            done: u32,
        }
        impl crate::state::StateEvent for Progress {
            const NAME: &'static str = "progress";
        }
        let mut t = Translator::new("t", "r");
        let mut out = Vec::new();
        t.push(&emit("mine", Emit::custom(&Progress { done: 2 })), &mut out);
        let sent = serde_json::to_value(out.last().unwrap()).unwrap();
        assert_eq!(
            sent,
            json!({"type": "CUSTOM", "name": "progress", "value": {"done": 2}})
        );
    }

    #[test]
    fn a_route_step_reaches_clients_as_custom() {
        let step = crate::model::RouteStep {
            tier: "small".into(),
            model: "local:smol".into(),
            verdict: crate::model::Verdict::Rejected,
            reason: "confident: confidence 0.412 is below 0.600".into(),
            usage: crate::env::Usage::default(),
            confidence: Some(0.412),
        };
        let mut t = Translator::new("t", "r");
        let mut out = Vec::new();
        t.push(&emit("reasoning", Emit::Routed(step)), &mut out);
        let sent = serde_json::to_value(out.last().unwrap()).unwrap();
        assert_eq!(sent["type"], "CUSTOM");
        assert_eq!(sent["name"], "statewise.route");
        assert_eq!(sent["value"]["verdict"], "rejected");
        assert_eq!(sent["value"]["confidence"], 0.412);
    }

    #[test]
    fn a_tool_loop_maps_to_steps_calls_results_and_one_answer_message() {
        let (events, out) = tool_loop();
        assert_eq!(
            types(&out),
            [
                "RUN_STARTED",
                "STEP_STARTED",
                "TOOL_CALL_START",
                "TOOL_CALL_ARGS",
                "TOOL_CALL_END",
                "CUSTOM",
                "STATE_SNAPSHOT",
                "STEP_FINISHED",
                "STEP_STARTED",
                "TOOL_CALL_RESULT",
                "STEP_FINISHED",
                "STEP_STARTED",
                "TEXT_MESSAGE_START",
                "TEXT_MESSAGE_CONTENT",
                "STEP_FINISHED",
                "STEP_STARTED",
                "TEXT_MESSAGE_CONTENT",
                "TEXT_MESSAGE_END",
                "STEP_FINISHED",
                "STATE_DELTA",
                "RUN_FINISHED"
            ]
        );
        // The raw JSON the model wrote is not the answer's text.
        let text: String = out
            .iter()
            .filter_map(|e| match e {
                AgUiEvent::TextMessageContent { delta, .. } => Some(delta.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(text, "It is noon.");
        let AgUiEvent::StateDelta { delta } = &out[19] else {
            panic!("a delta")
        };
        let ops = serde_json::to_value(delta).unwrap();
        assert!(
            ops.as_array()
                .unwrap()
                .iter()
                .any(|op| op["path"] == "/answer"),
            "{ops}"
        );

        // The same events as JSON (as a Redis worker streams them) make
        // the same AG-UI events.
        let mut t = Translator::new("t", "r");
        let mut again = vec![t.start()];
        for e in &events {
            t.push_json(&serde_json::to_value(e).unwrap(), &mut again)
                .unwrap();
        }
        assert_eq!(again, out);
    }

    /// A typed output's partial objects are the shared state's `output`:
    /// a snapshot first, then patches that add each field as it completes.
    #[test]
    fn partial_outputs_are_state_deltas() {
        let mut t = Translator::new("t", "r");
        let mut out = Vec::new();
        for partial in [
            json!({"name": null}),
            json!({"name": "Ada"}),
            json!({"name": "Ada", "email": "ada@example.com"}),
        ] {
            t.push(&emit("answer", Emit::PartialOutput(partial)), &mut out);
        }
        let states: Vec<&AgUiEvent> = out
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    AgUiEvent::StateSnapshot { .. } | AgUiEvent::StateDelta { .. }
                )
            })
            .collect();
        assert_eq!(states.len(), 3, "{out:?}");
        let AgUiEvent::StateSnapshot { snapshot } = states[0] else {
            panic!("a snapshot first: {out:?}")
        };
        assert_eq!(snapshot, &json!({"output": {"name": null}}));
        let mut state = snapshot.clone();
        for delta in &states[1..] {
            let AgUiEvent::StateDelta { delta } = delta else {
                panic!("then deltas: {out:?}")
            };
            json_patch::patch(&mut state, delta).unwrap();
        }
        assert_eq!(
            state,
            json!({"output": {"name": "Ada", "email": "ada@example.com"}})
        );
    }

    /// A model's text before its tool call (native tool calling) is a text
    /// message of its own, ended before the call starts; the answer after
    /// the call is a second message. Nothing is shown twice.
    #[test]
    fn text_before_a_tool_call_is_a_message_then_the_call() {
        let mut t = Translator::new("t", "r");
        let mut out = Vec::new();
        for e in [
            emit("custom", Emit::AnswerToken("Let me ".into())),
            emit("custom", Emit::AnswerToken("check.".into())),
            named("custom", "c1", "clock"),
            arguments("custom", "c1", "{}"),
            emit("custom", Emit::AnswerToken("Noon.".into())),
        ] {
            t.push(&e, &mut out);
        }
        assert_eq!(
            types(&out),
            [
                "TEXT_MESSAGE_START",
                "TEXT_MESSAGE_CONTENT",
                "TEXT_MESSAGE_CONTENT",
                "TEXT_MESSAGE_END",
                "TOOL_CALL_START",
                "TOOL_CALL_ARGS",
                "TEXT_MESSAGE_START",
                "TEXT_MESSAGE_CONTENT",
            ]
        );
        let texts: Vec<&str> = out
            .iter()
            .filter_map(|e| match e {
                AgUiEvent::TextMessageContent { delta, .. } => Some(delta.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(texts, ["Let me ", "check.", "Noon."]);
    }

    #[test]
    fn a_failure_as_json_is_a_run_error_with_its_code() {
        let failure = crate::machine::event::RunFailure {
            error: crate::machine::MachineError::Cut,
            path: vec![],
            env: Env::new(),
            run_id: "r".into(),
        };
        let code = failure.error.code();
        let event = serde_json::to_value(at("s", EventKind::Failed(Box::new(failure)))).unwrap();
        let mut t = Translator::new("t", "r");
        let mut out = Vec::new();
        t.push_json(&event, &mut out).unwrap();
        assert!(
            matches!(&out[..], [AgUiEvent::RunError { code: Some(c), .. }] if *c == code),
            "{out:?}"
        );
        assert!(t.push_json(&json!({"step": "x"}), &mut out).is_err());
    }

    /// The events of a tool loop, and the AG-UI events they make.
    fn tool_loop() -> (Vec<Event>, Vec<AgUiEvent>) {
        let mut t = Translator::new("t", "r");
        let call = ToolCall::new("c1", "clock", json!({}));
        let mut out = vec![t.start()];
        let mut events = Vec::new();
        let mut env = Env::from_user("time?");
        for e in [
            at("reasoning", EventKind::StateEntered),
            emit("reasoning", Emit::Token("{\"tool_calls\"".into())),
            named("reasoning", "c1", "clock"),
            arguments("reasoning", "c1", "{}"),
            emit(
                "reasoning",
                Emit::custom(&ActionParsed(Action::ToolCalls(vec![call.clone()]))),
            ),
            at("reasoning", EventKind::Snapshot(Box::new(env.clone()))),
            at(
                "reasoning",
                EventKind::StateExited {
                    next: Next::to("tools"),
                },
            ),
            at("tools", EventKind::StateEntered),
            emit("tools", Emit::ToolCallStarted(call.clone())),
            emit(
                "tools",
                Emit::Observation(Observation {
                    call_id: "c1".into(),
                    tool: "clock".into(),
                    content: json!("12:00"),
                    is_error: false,
                }),
            ),
            at(
                "tools",
                EventKind::StateExited {
                    next: Next::to("reasoning"),
                },
            ),
            at("reasoning", EventKind::StateEntered),
            emit("reasoning", Emit::AnswerToken("It is ".into())),
            at(
                "reasoning",
                EventKind::StateExited {
                    next: Next::to("answer"),
                },
            ),
            at("answer", EventKind::StateEntered),
            emit("answer", Emit::AnswerToken("noon.".into())),
        ] {
            t.push(&e, &mut out);
            events.push(e);
        }
        env.answer = Some("It is noon.".into());
        env.step = 4;
        let end = at(
            "answer",
            EventKind::Finished(output(Some("It is noon."), env)),
        );
        t.push(&end, &mut out);
        events.push(end);
        assert!(t.ended());
        (events, out)
    }

    #[test]
    fn a_pause_for_approval_is_an_interrupt_and_one_for_client_tools_a_success_with_pending_calls()
    {
        let call = ToolCall::new("c7", "send_email", json!({"to": "a@b.c"}));
        let mut env = Env::new();
        env.interrupt = Some(Box::new(crate::tool::approval::approval_request(&[&call])));
        let mut t = Translator::new("t", "r");
        let mut out = Vec::new();
        t.push(&at("tools", EventKind::StateEntered), &mut out);
        t.push(
            &at("tools", EventKind::Interrupted(output(None, env))),
            &mut out,
        );
        let Some(AgUiEvent::RunFinished {
            outcome: Some(RunFinishedOutcome::Interrupt { interrupts }),
            ..
        }) = out.last()
        else {
            panic!("{out:?}")
        };
        assert_eq!(interrupts[0].reason, TOOL_APPROVAL);
        assert_eq!(interrupts[0].tool_call_id.as_deref(), Some("c7"));
        assert_eq!(
            types(&out)[1],
            "STEP_FINISHED",
            "the open step is closed first"
        );

        let mut env = Env::new();
        env.interrupt = Some(Box::new(crate::tool::client::client_request(&[&call])));
        let mut t = Translator::new("t", "r");
        let mut out = Vec::new();
        t.push(
            &at("tools", EventKind::Interrupted(output(None, env))),
            &mut out,
        );
        let Some(AgUiEvent::RunFinished {
            outcome:
                Some(RunFinishedOutcome::Success {
                    pending_tool_call_ids,
                }),
            ..
        }) = out.last()
        else {
            panic!("{out:?}")
        };
        assert_eq!(pending_tool_call_ids, &["c7"]);
    }

    #[test]
    fn reasoning_text_is_a_reasoning_message_and_a_cancel_closes_what_is_open() {
        let mut t = Translator::new("t", "r").known_calls(["old"]);
        let mut out = Vec::new();
        t.push(&at("think", EventKind::StateEntered), &mut out);
        t.push(&at("think", EventKind::StateEntered), &mut out);
        t.push(&emit("think", Emit::Reasoning("hmm".into())), &mut out);
        t.push(&emit("think", Emit::AnswerToken("Yes".into())), &mut out);
        // A call the client already has is not announced again.
        t.push(
            &emit(
                "think",
                Emit::ToolCallStarted(ToolCall::new("old", "x", json!({}))),
            ),
            &mut out,
        );
        t.cancel(&mut out);
        t.push(&emit("think", Emit::AnswerToken("late".into())), &mut out);
        assert_eq!(
            types(&out),
            [
                "STEP_STARTED",
                "REASONING_START",
                "REASONING_MESSAGE_START",
                "REASONING_MESSAGE_CONTENT",
                "REASONING_MESSAGE_END",
                "REASONING_END",
                "TEXT_MESSAGE_START",
                "TEXT_MESSAGE_CONTENT",
                "TEXT_MESSAGE_END",
                "STEP_FINISHED",
                "RUN_FINISHED"
            ]
        );
    }
}
