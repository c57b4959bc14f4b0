//! Replays from traces: rerun one recorded step (with the recorded model or
//! another), replay a whole run offline, turn a step into a test fixture.
//!
//! A [`Recording`] is one run of a trace ([`crate::trace`]). Its
//! [`RecordedModel`] answers each request with the reply recorded for it,
//! with no network, so a machine built with it reruns the run exactly as
//! long as the states send the same requests; a changed prompt shows up as
//! [`NotRecorded`] at the step where it first differs.
//!
//! ```no_run
//! use std::sync::Arc;
//! use statewise::replay::Recording;
//! use statewise::tool::{ToolRegistry, Toolbox};
//! # async fn f(agent: impl Fn(statewise::model::SharedModel) -> statewise::Machine) -> Result<(), Box<dyn std::error::Error>> {
//! let recording = Recording::from_jsonl("trace.jsonl", None)?;
//! // The whole run, offline: same answer, same path?
//! let replay = recording.replay(&agent(Arc::new(recording.model()))).await;
//! assert!(replay.matches(), "{replay}");
//! // Step 1 with another model: what changes?
//! let step = recording.step(1).unwrap();
//! # let other_model: statewise::model::SharedModel = Arc::new(statewise::model::ScriptedModel::new());
//! let diff = statewise::replay::replay_step(&agent(other_model), step).await;
//! println!("{diff}");
//! # Ok(()) }
//! ```

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Mutex;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use serde_json::json;

use crate::env::{Action, Env};
use crate::layer::cache_key;
use crate::machine::event::{EventKind, RunFailure, RunOutput};
use crate::machine::{finish, Machine};
use crate::model::{
    Capabilities, ChatModel, ChatRequest, ChunkStream, ContextWindow, ModelError, ModelErrorKind,
    Reply, Scripted,
};
use crate::state::{ActionParsed, Emit, Next};
use crate::testkit::{Expected, StepFixture};
use crate::trace::{
    read_jsonl, EndRecord, RunRecord, StepRecord, TraceError, TraceRecord, TracedError,
};

/// Why a recording could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The trace could not be read.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// The trace has no run with this id (or no run at all).
    #[error("the trace has no run{}; runs in it: {}",
        .run_id.as_ref().map(|r| format!(" `{r}`")).unwrap_or_default(),
        if .available.is_empty() { "none".to_owned() } else { .available.join(", ") })]
    NoSuchRun {
        /// The run asked for.
        run_id: Option<String>,
        /// The runs the trace holds.
        available: Vec<String>,
    },
}

/// One recorded run: how it started, its steps, how it ended.
#[derive(Debug, Clone)]
pub struct Recording {
    /// The run's start.
    pub start: RunRecord,
    /// Its steps, in order.
    pub steps: Vec<StepRecord>,
    /// Its end, if it got there.
    pub end: Option<EndRecord>,
    /// The steps of its child runs (fork branches, sub-machines, and
    /// theirs), whose model calls [`Recording::model`] answers too.
    pub children: Vec<StepRecord>,
}

impl Recording {
    /// The run `run_id` of `records` (for `None`, the last run started that
    /// is not a child of another: a fork's branches and sub-machines have
    /// runs of their own). A run resumed after a crash has several starts;
    /// it replays from the first, through the steps of every process that
    /// ran it.
    pub fn from_records(
        records: &[TraceRecord],
        run_id: Option<&str>,
    ) -> Result<Self, ReplayError> {
        let starts: Vec<&RunRecord> = records
            .iter()
            .filter_map(|r| match r {
                TraceRecord::Run(r) => Some(&**r),
                _ => None,
            })
            .collect();
        let top = starts.iter().rev().find(|r| r.parent.is_none());
        let id = run_id.or(top.map(|r| r.run_id.as_str()));
        let start = starts.iter().find(|r| Some(r.run_id.as_str()) == id);
        let Some(start) = start.map(|s| (*s).clone()) else {
            let mut available: Vec<String> = starts.iter().map(|r| r.run_id.clone()).collect();
            available.dedup();
            return Err(ReplayError::NoSuchRun {
                run_id: run_id.map(str::to_owned),
                available,
            });
        };
        let mut steps: Vec<StepRecord> = Vec::new();
        let mut end = None;
        for record in records.iter().filter(|r| r.run_id() == start.run_id) {
            match record {
                TraceRecord::Step(s) => {
                    // A step run again after a resume replaces the first try.
                    steps.retain(|old| old.step != s.step);
                    steps.push((**s).clone());
                }
                TraceRecord::End(e) => end = Some(e.clone()),
                TraceRecord::Run(_) => {}
            }
        }
        steps.sort_by_key(|s| s.step);
        // Runs descend from this one through their parents.
        let mut family = std::collections::HashSet::from([start.run_id.as_str()]);
        let mut grew = true;
        while grew {
            grew = false;
            for r in &starts {
                if r.parent.as_deref().is_some_and(|p| family.contains(p)) {
                    grew |= family.insert(r.run_id.as_str());
                }
            }
        }
        let children = records
            .iter()
            .filter_map(|r| match r {
                TraceRecord::Step(s)
                    if s.run_id != start.run_id && family.contains(s.run_id.as_str()) =>
                {
                    Some((**s).clone())
                }
                _ => None,
            })
            .collect();
        Ok(Recording {
            start,
            steps,
            end,
            children,
        })
    }

    /// The run `run_id` (or the last) of the JSONL trace at `path`.
    pub fn from_jsonl(path: impl AsRef<Path>, run_id: Option<&str>) -> Result<Self, ReplayError> {
        Self::from_records(&read_jsonl(path)?, run_id)
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.start.run_id
    }

    /// The record of step `step` (1-based, as numbered in the trace).
    pub fn step(&self, step: u32) -> Option<&StepRecord> {
        self.steps.iter().find(|s| s.step == step)
    }

    /// A model answering every request of this run with its recorded reply.
    ///
    /// When the run fitted requests to a context window, the model reports
    /// that window, so states fit their requests as they did; a fit counted
    /// by a model's own tokenizer replays alike only with that counter
    /// ([`RecordedModel::with_context_window`]).
    pub fn model(&self) -> RecordedModel {
        let model = RecordedModel::new(
            self.steps
                .iter()
                .chain(&self.children)
                .flat_map(|s| &s.model_calls)
                .map(|c| (&c.request, &c.reply)),
        );
        let window = self
            .steps
            .iter()
            .flat_map(|s| &s.fitted)
            .filter(|f| !f.tighter)
            .map(|f| f.window)
            .min();
        match window {
            Some(tokens) => model.with_context_window(ContextWindow::new(tokens)),
            None => model,
        }
    }

    /// Runs `machine` from the recorded start and compares its answer and
    /// path with the recorded ones. Build `machine` with [`Recording::model`]
    /// for an offline, deterministic rerun.
    pub async fn replay(&self, machine: &Machine) -> RunReplay {
        let stream = machine.stream_from(&self.start.start, self.start.env.clone());
        RunReplay {
            recorded_answer: self.end.as_ref().and_then(|e| e.answer.clone()),
            recorded_path: self.recorded_path(),
            outcome: finish(stream).await,
        }
    }

    /// The states the recorded run went through, from its start.
    fn recorded_path(&self) -> Vec<String> {
        let after = self.start.resumed_at.unwrap_or(0);
        self.steps
            .iter()
            .filter(|s| s.step > after)
            .map(|s| s.state.clone())
            .collect()
    }
}

/// The outcome of [`Recording::replay`].
#[derive(Debug)]
pub struct RunReplay {
    /// The recorded answer.
    pub recorded_answer: Option<String>,
    /// The recorded path.
    pub recorded_path: Vec<String>,
    /// What the rerun did.
    pub outcome: Result<RunOutput, RunFailure>,
}

impl RunReplay {
    /// Whether the rerun finished with the recorded answer and path.
    pub fn matches(&self) -> bool {
        matches!(&self.outcome, Ok(out) if out.answer == self.recorded_answer && out.path == self.recorded_path)
    }
}

impl std::fmt::Display for RunReplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.outcome {
            Ok(out) if self.matches() => write!(
                f,
                "same answer and path ({} steps): {}",
                out.path.len(),
                out.answer.as_deref().unwrap_or("(no answer)")
            ),
            Ok(out) => {
                if out.answer != self.recorded_answer {
                    writeln!(
                        f,
                        "answer differs:\n  recorded: {:?}\n  replayed: {:?}",
                        self.recorded_answer, out.answer
                    )?;
                }
                if out.path != self.recorded_path {
                    writeln!(
                        f,
                        "path differs:\n  recorded: {}\n  replayed: {}",
                        self.recorded_path.join(" → "),
                        out.path.join(" → ")
                    )?;
                }
                Ok(())
            }
            Err(failure) => write!(
                f,
                "the rerun failed at step {} ({}): {}",
                failure.env.step,
                failure.path.last().map_or("?", String::as_str),
                failure.error
            ),
        }
    }
}

/// A [`RecordedModel`] has no recorded reply for a request: the prompt,
/// the env or the tools differ from the recording. Reaches callers as
/// [`ModelError::Refused`] (kind `not_recorded`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{model}: no recorded reply for this request (it differs from every recorded one); {recorded} recorded calls")]
pub struct NotRecorded {
    /// The model.
    pub model: String,
    /// How many calls the recording holds.
    pub recorded: usize,
}

impl From<NotRecorded> for ModelError {
    fn from(refusal: NotRecorded) -> Self {
        ModelError::Refused {
            kind: ModelErrorKind::NotRecorded,
            cause: std::sync::Arc::new(refusal),
        }
    }
}

/// A model that plays back recorded replies: each request gets the reply
/// recorded for an identical request ([`cache_key`], model name aside), in
/// recorded order when one request was sent several times. It never touches
/// a network.
///
/// Its capabilities are read from the recorded requests (tools sent
/// natively, a response schema), so states build the requests they built
/// when recording.
#[derive(Debug)]
pub struct RecordedModel {
    name: String,
    capabilities: Capabilities,
    window: Option<ContextWindow>,
    recorded: usize,
    replies: Mutex<HashMap<String, VecDeque<Reply>>>,
}

impl RecordedModel {
    /// Plays back these request/reply pairs.
    pub fn new<'a>(calls: impl IntoIterator<Item = (&'a ChatRequest, &'a Reply)>) -> Self {
        let mut replies: HashMap<String, VecDeque<Reply>> = HashMap::new();
        let mut capabilities = Capabilities::default();
        let mut recorded = 0;
        for (request, reply) in calls {
            capabilities.native_tools |= !request.tools.is_empty();
            capabilities.json_schema |= request.response_schema.is_some();
            replies
                .entry(cache_key("", request))
                .or_default()
                .push_back(reply.clone());
            recorded += 1;
        }
        RecordedModel {
            name: "recorded".to_owned(),
            capabilities,
            window: None,
            recorded,
            replies: Mutex::new(replies),
        }
    }

    /// Renames it (as models appear in usage and traces).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets what it claims to support, when the recording cannot tell.
    pub fn with_capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// Sets the context window it reports, as the recorded model did.
    pub fn with_context_window(mut self, window: ContextWindow) -> Self {
        self.window = Some(window);
        self
    }
}

impl ChatModel for RecordedModel {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    fn context_window(&self) -> BoxFuture<'_, Option<ContextWindow>> {
        futures::future::ready(self.window.clone()).boxed()
    }

    fn stream(&self, request: ChatRequest) -> ChunkStream<'_> {
        let key = cache_key("", &request);
        let reply = self
            .replies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&key)
            .and_then(VecDeque::pop_front);
        match reply {
            Some(reply) => futures::stream::iter(reply.to_chunks().into_iter().map(Ok)).boxed(),
            None => {
                futures::stream::once(futures::future::ready(Err(ModelError::from(NotRecorded {
                    model: self.name.clone(),
                    recorded: self.recorded,
                }))))
                .boxed()
            }
        }
    }
}

/// What a step produced, as [`StepReplay`] compares it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepView {
    /// The streamed text.
    pub text: String,
    /// The action decided on.
    pub action: Option<Action>,
    /// Where the run would go; `None` if the step failed.
    pub next: Option<Next>,
    /// The answer in the env after it.
    pub answer: Option<String>,
    /// The error it failed with.
    pub error: Option<String>,
}

/// A recorded step next to its rerun.
#[derive(Debug, Clone)]
pub struct StepReplay {
    /// The step number.
    pub step: u32,
    /// The state.
    pub state: String,
    /// What the recording says.
    pub recorded: StepView,
    /// What the rerun did.
    pub replayed: StepView,
    /// The env after the rerun.
    pub env: Option<Env>,
}

impl StepReplay {
    /// Whether the rerun produced what was recorded.
    pub fn same(&self) -> bool {
        self.recorded == self.replayed
    }

    /// The fields that differ: (field, recorded, replayed).
    pub fn differences(&self) -> Vec<(&'static str, String, String)> {
        let (r, p) = (&self.recorded, &self.replayed);
        let mut out = Vec::new();
        let mut cmp = |field, a: String, b: String| {
            if a != b {
                out.push((field, a, b));
            }
        };
        cmp("text", r.text.clone(), p.text.clone());
        cmp("action", show(&r.action), show(&p.action));
        cmp("next", show(&r.next), show(&p.next));
        cmp("answer", show(&r.answer), show(&p.answer));
        cmp("error", show(&r.error), show(&p.error));
        out
    }
}

fn show<T: serde::Serialize>(value: &Option<T>) -> String {
    match value {
        Some(v) => serde_json::to_string(v).unwrap_or_default(),
        None => "none".to_owned(),
    }
}

impl std::fmt::Display for StepReplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let differences = self.differences();
        if differences.is_empty() {
            return write!(
                f,
                "step {} ({}): same output and next state",
                self.step, self.state
            );
        }
        writeln!(
            f,
            "step {} ({}): {} field(s) differ",
            self.step,
            self.state,
            differences.len()
        )?;
        for (field, recorded, replayed) in differences {
            writeln!(f, "  {field}:\n    - {recorded}\n    + {replayed}")?;
        }
        Ok(())
    }
}

/// Reruns `step` on its recorded input env in `machine` (with the recorded
/// model, another model, another prompt) and sets the result beside the
/// recording.
pub async fn replay_step(machine: &Machine, step: &StepRecord) -> StepReplay {
    let recorded = StepView {
        text: step.text.clone(),
        action: step.action.clone(),
        next: step.next.clone(),
        answer: step.answer.clone(),
        error: step.error.as_ref().map(|e| e.kind.clone()),
    };
    let (replayed, env) = match machine.step(&step.state, step.env_before.clone()).await {
        Ok(outcome) => {
            let mut text = String::new();
            let mut action = None;
            for e in &outcome.events {
                match &e.kind {
                    EventKind::Emitted(Emit::Token(t)) => text.push_str(t),
                    EventKind::Emitted(Emit::Custom(c)) if c.is::<ActionParsed>() => {
                        action = c.decode::<ActionParsed>().map(|ActionParsed(a)| a)
                    }
                    _ => {}
                }
            }
            let error = outcome.env.errors.iter().find(|e| e.step == step.step);
            let view = StepView {
                text,
                action,
                next: Some(outcome.next),
                answer: outcome.env.answer.clone(),
                error: error.map(|e| e.kind.clone()),
            };
            (view, Some(outcome.env))
        }
        Err(failure) => {
            let view = StepView {
                text: String::new(),
                action: None,
                next: None,
                answer: failure.env.answer.clone(),
                error: Some(TracedError::from(&failure.error).kind),
            };
            (view, None)
        }
    };
    StepReplay {
        step: step.step,
        state: step.state.clone(),
        recorded,
        replayed,
        env,
    }
}

impl StepRecord {
    /// This step as a JSON step fixture for the test kit: its input env, its
    /// model replies as the script, and its outcome as the expectation
    /// (next state, action, answer, observations; or the error kind).
    /// Record a failing step, save the fixture, and it is a regression test.
    pub fn to_fixture(&self, name: impl Into<String>) -> StepFixture {
        let mut replies: Vec<Scripted> = self
            .model_calls
            .iter()
            .map(|c| Scripted::Reply(c.reply.clone()))
            .collect();
        // A call that failed left no reply; the fixture fails it again.
        if let (None, Some(error)) = (&self.next, &self.error) {
            if error.kind.starts_with("model") {
                replies.push(Scripted::Error(error.message.clone()));
            }
        }
        let mut env = serde_json::Map::new();
        if let Some(action) = &self.action {
            env.insert("action".into(), json!(action));
        }
        if let Some(answer) = &self.answer {
            env.insert("answer".into(), json!(answer));
        }
        let observations: Vec<_> = self
            .tools
            .iter()
            .filter_map(|t| t.output.as_ref())
            .map(|o| json!({"content": o}))
            .collect();
        if !observations.is_empty() {
            let before = self.env_before.observations.len();
            let mut all: Vec<_> = (0..before).map(|_| json!({})).collect();
            all.extend(observations);
            env.insert("observations".into(), json!(all));
        }
        let expect = match (&self.next, &self.error) {
            (None, Some(error)) => Expected {
                next: None,
                env: None,
                error: Some(error.kind.split(':').next().unwrap_or_default().to_owned()),
            },
            (next, _) => Expected {
                next: next.clone(),
                env: (!env.is_empty()).then(|| serde_json::Value::Object(env)),
                error: None,
            },
        };
        StepFixture {
            name: name.into(),
            state: self.state.clone(),
            env: self.env_before.clone(),
            replies,
            expect,
        }
    }
}
