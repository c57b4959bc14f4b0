//! The records a trace is made of, and the builder that collects a step's.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::env::{Action, Env, ToolCall, Usage};
use crate::fit::Fitted;
use crate::model::ModelCall;
use crate::model::RouteStep;
use crate::state::{ActionParsed, ActionRepaired, Emit, Next};

/// One line of a trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TraceRecord {
    /// A run started (or resumed).
    Run(Box<RunRecord>),
    /// A state ran.
    Step(Box<StepRecord>),
    /// A run ended.
    End(EndRecord),
}

impl TraceRecord {
    /// The run the record belongs to.
    pub fn run_id(&self) -> &str {
        match self {
            TraceRecord::Run(r) => &r.run_id,
            TraceRecord::Step(s) => &s.run_id,
            TraceRecord::End(e) => &e.run_id,
        }
    }

    /// The step, for step records.
    pub fn step(&self) -> Option<u32> {
        match self {
            TraceRecord::Step(s) => Some(s.step),
            _ => None,
        }
    }

    /// `run`, `step` or `end`.
    pub fn kind(&self) -> &'static str {
        match self {
            TraceRecord::Run(_) => "run",
            TraceRecord::Step(_) => "step",
            TraceRecord::End(_) => "end",
        }
    }
}

/// The start of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run.
    pub run_id: String,
    /// The state it starts (or resumes) at.
    pub start: String,
    /// When, in ms since the Unix epoch.
    pub started_ms: u64,
    /// The step it resumes after, for a resumed or forked run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_at: Option<u32>,
    /// The env it starts with.
    pub env: Env,
    /// The run it is a child of (a fork's branch, a sub-machine), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Where it sits under its parent, as in
    /// [`Event::branch`](crate::Event::branch) (`plan/fork[2]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

/// An error a step or run ended with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TracedError {
    /// Its kind (`model:http_503`, `action`, `max_steps`, ...).
    pub kind: String,
    /// The error, as text.
    pub message: String,
}

/// One tool call of a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolRecord {
    /// The call: id, tool, arguments.
    pub call: ToolCall,
    /// The tool's output (or its error).
    #[serde(default)]
    pub output: Option<Value>,
    /// Whether it failed.
    #[serde(default)]
    pub is_error: bool,
    /// How long it ran, in milliseconds.
    #[serde(default)]
    pub elapsed_ms: f64,
}

/// Everything one state did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The run.
    pub run_id: String,
    /// The step number (`env.step` while the state ran).
    pub step: u32,
    /// The state.
    pub state: String,
    /// When it started, in ms since the Unix epoch.
    pub started_ms: u64,
    /// How long it ran, in milliseconds.
    pub elapsed_ms: f64,
    /// The env the state started with: rerunning the step starts here.
    pub env_before: Env,
    /// Each model call: model, request, whole reply, timings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model_calls: Vec<ModelCall>,
    /// Each request shortened to fit the model's context window: what was
    /// left out or cut.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fitted: Vec<Fitted>,
    /// Each router or cascade step of the state's model calls: which model
    /// served, what became of each reply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteStep>,
    /// The raw text streamed by the state.
    #[serde(default)]
    pub text: String,
    /// Reasoning text streamed by the state.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reasoning: String,
    /// The JSON the state recovered from the streamed text, when it says
    /// so ([`ActionRepaired`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repaired: Option<Value>,
    /// The action the state decided on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Tool calls, in the order they started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolRecord>,
    /// Tokens and cost of this step.
    #[serde(default)]
    pub usage: Usage,
    /// Why the state was restarted, once per restart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retries: Vec<String>,
    /// The error the state failed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<TracedError>,
    /// Where the run went next; `None` if the run failed here.
    #[serde(default)]
    pub next: Option<Next>,
    /// The answer in the env after the step, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

/// The end of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndRecord {
    /// The run.
    pub run_id: String,
    /// The final answer.
    #[serde(default)]
    pub answer: Option<String>,
    /// The states run, in order.
    pub path: Vec<String>,
    /// Tokens and cost of the whole run.
    pub usage: Usage,
    /// How long the run took, in milliseconds (this process's part of it).
    pub elapsed_ms: f64,
    /// The error the run failed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<TracedError>,
}

/// Collects one step's record from what the state emits.
pub(crate) struct StepTrace {
    record: StepRecord,
    started: std::time::Instant,
}

impl StepTrace {
    pub(crate) fn new(run_id: &str, step: u32, state: &str, env_before: Env) -> Self {
        StepTrace {
            record: StepRecord {
                run_id: run_id.to_owned(),
                step,
                state: state.to_owned(),
                started_ms: crate::backend::now_ms(),
                elapsed_ms: 0.0,
                env_before,
                model_calls: Vec::new(),
                fitted: Vec::new(),
                routes: Vec::new(),
                text: String::new(),
                reasoning: String::new(),
                repaired: None,
                action: None,
                tools: Vec::new(),
                usage: Usage::default(),
                retries: Vec::new(),
                error: None,
                next: None,
                answer: None,
            },
            started: std::time::Instant::now(),
        }
    }

    pub(crate) fn observe(&mut self, emit: &Emit) {
        let r = &mut self.record;
        match emit {
            Emit::Token(t) => r.text.push_str(t),
            Emit::Reasoning(t) => r.reasoning.push_str(t),
            Emit::ModelCall(call) => r.model_calls.push((**call).clone()),
            Emit::ContextFitted(f) => r.fitted.push(f.clone()),
            Emit::Routed(step) => r.routes.push(step.clone()),
            Emit::Custom(custom) => {
                if let Some(ActionParsed(action)) = custom.decode() {
                    r.action = Some(action);
                } else if let Some(ActionRepaired(value)) = custom.decode() {
                    r.repaired = Some(value);
                }
            }
            Emit::ToolCallStarted(call) => r.tools.push(ToolRecord {
                call: call.clone(),
                output: None,
                is_error: false,
                elapsed_ms: 0.0,
            }),
            Emit::ToolCallFinished {
                call_id,
                is_error,
                elapsed,
                ..
            } => {
                if let Some(t) = r.tools.iter_mut().find(|t| &t.call.id == call_id) {
                    t.is_error = *is_error;
                    t.elapsed_ms = ms(*elapsed);
                }
            }
            Emit::Observation(o) => {
                if let Some(t) = r.tools.iter_mut().find(|t| t.call.id == o.call_id) {
                    t.output = Some(o.content.clone());
                    t.is_error = o.is_error;
                }
            }
            // A pause shows in the step's `next`.
            Emit::PartialOutput(_)
            | Emit::Interrupt(_)
            // Decoded from the raw text the tokens already hold, or the
            // reply's tool calls, recorded whole with the model call.
            | Emit::AnswerToken(_)
            | Emit::ToolCallDraft(_) => {}
        }
    }

    /// The state restarts: what the cut attempt streamed is dropped, as it
    /// is from the env.
    pub(crate) fn restart(&mut self, reason: String) {
        let r = &mut self.record;
        r.retries.push(reason);
        r.model_calls.clear();
        r.text.clear();
        r.reasoning.clear();
        r.action = None;
        r.repaired = None;
        r.tools.clear();
    }

    pub(crate) fn finish(
        mut self,
        env_after: &Env,
        next: Option<Next>,
        error: Option<TracedError>,
    ) -> StepRecord {
        let r = &mut self.record;
        r.elapsed_ms = ms(self.started.elapsed());
        r.usage = env_after.usage.since(&r.env_before.usage);
        r.next = next;
        r.error = error;
        r.answer = env_after.answer.clone();
        self.record
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
