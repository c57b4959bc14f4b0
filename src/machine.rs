//! The [`Machine`]: states by name, an entry state, limits, and the loop
//! that runs them.
//!
//! [`Machine::stream`] is the one code path: [`Machine::run`] and
//! [`Machine::step`] consume the same event stream, so streamed and batch
//! runs cannot drift apart. Dropping the stream cancels the run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::time::Instant;

use crate::env::{Env, ErrorRecord};
use crate::event::{Event, EventKind, RunFailure, RunOutput};
use crate::model::KeepCalls;
use crate::state::{Next, State, StateError};
use crate::store::{new_run_id, now_ms, Checkpoint, Store, StoreError};
use crate::trace::{EndRecord, RunRecord, StepTrace, TraceError, TraceRecord, TracedError, Tracer};
use tracing::Instrument;

/// The default bound on states entered per run; see [`Machine::max_steps`].
pub const DEFAULT_MAX_STEPS: u32 = 50;

/// The default number of restarts of a state cut off mid-stream; see
/// [`Machine::state_retries`].
pub const DEFAULT_STATE_RETRIES: u32 = 2;

/// What a budget limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    /// Prompt plus completion tokens.
    Tokens,
    /// Cost in US dollars.
    Cost,
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Resource::Tokens => "token",
            Resource::Cost => "cost",
        })
    }
}

/// Why a run stopped early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MachineError {
    /// A transition (or the entry) named a state that is not registered.
    #[error("no state named `{name}`{}; registered states: {}",
        .from.as_ref().map(|f| format!(" (reached from `{f}`)")).unwrap_or_default(),
        .known.join(", "))]
    UnknownState {
        /// The missing name.
        name: String,
        /// The state whose transition named it; `None` for the entry.
        from: Option<String>,
        /// The registered names.
        known: Vec<String>,
    },
    /// The run entered as many states as its limit allows and wanted another.
    #[error("step limit of {limit} reached before the run ended")]
    MaxSteps {
        /// The limit.
        limit: u32,
    },
    /// The run took longer than its deadline ([`Machine::deadline`]).
    #[error("run deadline of {after:?} passed")]
    Deadline {
        /// The deadline.
        after: Duration,
    },
    /// The run used more than its budget ([`Machine::max_tokens`], [`Machine::max_cost`]).
    #[error("{resource} budget exceeded: used {used}, limit {limit}")]
    Budget {
        /// What ran out.
        resource: Resource,
        /// The limit.
        limit: f64,
        /// What was used.
        used: f64,
    },
    /// The event stream ended without a `Finished` or `Failed` event (it was
    /// cut short before being handed to [`finish`]).
    #[error("the event stream ended before the run did")]
    Interrupted,
    /// A checkpoint could not be saved.
    #[error("checkpoint not saved: {0}")]
    Store(#[from] StoreError),
    /// A trace record could not be written.
    #[error("trace not written: {0}")]
    Trace(#[from] TraceError),
    /// A state failed.
    #[error("state `{state}` failed: {source}")]
    State {
        /// The state.
        state: String,
        /// Its error.
        #[source]
        source: StateError,
    },
}

impl MachineError {
    /// A short stable code for the kind of error, for logs, results files and
    /// clients: `unknown_state`, `max_steps`, `interrupted`, `deadline`,
    /// `budget`, `store`, `trace`, `model`, `action`, `precondition`, `scratch`, `custom` or
    /// `state_timeout`.
    pub fn kind(&self) -> &'static str {
        match self {
            MachineError::UnknownState { .. } => "unknown_state",
            MachineError::MaxSteps { .. } => "max_steps",
            MachineError::Interrupted => "interrupted",
            MachineError::Deadline { .. } => "deadline",
            MachineError::Budget { .. } => "budget",
            MachineError::Store(_) => "store",
            MachineError::Trace(_) => "trace",
            MachineError::State { source, .. } => match source {
                StateError::Model(_) => "model",
                StateError::Action { .. } => "action",
                StateError::Precondition { .. } => "precondition",
                StateError::Scratch(_) => "scratch",
                StateError::Custom(_) => "custom",
                StateError::TimedOut { .. } => "state_timeout",
            },
        }
    }
}

/// The stream of a run's events; its last item is `Finished` or `Failed`.
pub type EventStream = BoxStream<'static, Event>;

/// The outcome of running a single state with [`Machine::step`].
#[derive(Debug)]
pub struct StepOutcome {
    /// The env after the state ran.
    pub env: Env,
    /// Where the state's transition pointed.
    pub next: Next,
    /// The events of the step, from `StateEntered` to `StateExited`.
    pub events: Vec<Event>,
}

/// A state machine: states by name, an entry state and a step limit.
///
/// Cloning is cheap, and a clone is a snapshot: registering a state on one
/// does not change runs of the other, nor runs already under way.
///
/// ```
/// use statewise::{Env, Machine, Next, state::FnState};
///
/// # futures::executor::block_on(async {
/// let machine = Machine::new("greet").with_state(FnState::new(
///     "greet",
///     |env: &mut Env| { env.answer = Some("hello".into()); Ok(()) },
///     |_: &Env| Next::End,
/// ));
/// let out = machine.run(Env::new()).await?;
/// assert_eq!(out.answer.as_deref(), Some("hello"));
/// assert_eq!(out.path, ["greet"]);
/// # Ok::<(), statewise::RunFailure>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Machine {
    states: Arc<BTreeMap<String, Arc<dyn State>>>,
    entry: String,
    limits: Limits,
    store: Option<Arc<dyn Store>>,
    tracer: Option<Tracer>,
    record_calls: bool,
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine")
            .field("states", &self.states.keys().collect::<Vec<_>>())
            .field("entry", &self.entry)
            .field("limits", &self.limits)
            .field("store", &self.store.is_some())
            .field("tracer", &self.tracer)
            .finish()
    }
}

impl Machine {
    /// An empty machine whose runs start at the state named `entry`.
    pub fn new(entry: impl Into<String>) -> Self {
        Machine {
            states: Arc::default(),
            entry: entry.into(),
            limits: Limits {
                max_steps: DEFAULT_MAX_STEPS,
                state_retries: DEFAULT_STATE_RETRIES,
                state_timeout: None,
                deadline: None,
                max_tokens: None,
                max_cost: None,
            },
            store: None,
            tracer: None,
            record_calls: false,
        }
    }

    /// Adds `state` under its name.
    pub fn with_state(mut self, state: impl State + 'static) -> Self {
        self.register(state);
        self
    }

    /// Adds `state` under its name (between runs, too), returning the state
    /// it replaces.
    pub fn register(&mut self, state: impl State + 'static) -> Option<Arc<dyn State>> {
        let name = state.name().to_owned();
        Arc::make_mut(&mut self.states).insert(name, Arc::new(state))
    }

    /// Removes the state named `name`.
    pub fn unregister(&mut self, name: &str) -> Option<Arc<dyn State>> {
        Arc::make_mut(&mut self.states).remove(name)
    }

    /// Sets the most states a run may enter; the next one fails the run with
    /// [`MachineError::MaxSteps`]. Counted by [`Env::step`], so a resumed run
    /// keeps its count.
    pub fn max_steps(mut self, limit: u32) -> Self {
        self.limits.max_steps = limit;
        self
    }

    /// How often a state is restarted, from the env it started with, when a
    /// model call fails transiently after streaming part of its reply
    /// (default 2). The event stream marks each restart with
    /// `StateRetried`; what the cut attempt streamed is not kept in the env.
    pub fn state_retries(mut self, retries: u32) -> Self {
        self.limits.state_retries = retries;
        self
    }

    /// The longest one state may run; past it the state fails with
    /// [`StateError::TimedOut`] (which [`State::on_error`] may route).
    pub fn state_timeout(mut self, limit: Duration) -> Self {
        self.limits.state_timeout = Some(limit);
        self
    }

    /// The longest a whole run may take; past it the run fails with
    /// [`MachineError::Deadline`].
    pub fn deadline(mut self, limit: Duration) -> Self {
        self.limits.deadline = Some(limit);
        self
    }

    /// Ends the run with [`MachineError::Budget`] once it has used more
    /// than `tokens` (prompt plus completion).
    pub fn max_tokens(mut self, tokens: u64) -> Self {
        self.limits.max_tokens = Some(tokens);
        self
    }

    /// Ends the run with [`MachineError::Budget`] once it has cost more
    /// than `dollars`.
    pub fn max_cost(mut self, dollars: f64) -> Self {
        self.limits.max_cost = Some(dollars);
        self
    }

    /// Saves a [`Checkpoint`] to `store` before the first state and after
    /// every state, so runs can be resumed ([`Machine::resume`]) and forked
    /// ([`Machine::fork`]). A failed save fails the run
    /// ([`MachineError::Store`]).
    pub fn with_store(mut self, store: impl Store + 'static) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Writes a trace record per run start, step and run end
    /// ([`trace`](crate::trace)). A failed write fails the run
    /// ([`MachineError::Trace`]): a trace with holes would mislead.
    pub fn with_tracer(mut self, tracer: Tracer) -> Self {
        self.tracer = Some(tracer);
        self
    }

    /// Makes states that call models through
    /// [`ReplyStream::call`](crate::model::ReplyStream::call) emit
    /// [`Emit::ModelCall`](crate::Emit::ModelCall) (request and whole reply)
    /// after each call. A tracer turns it on; it is off otherwise, since it
    /// keeps a copy of each prompt while its call runs.
    pub fn record_model_calls(mut self, on: bool) -> Self {
        self.record_calls = on;
        self
    }

    /// Changes the entry state.
    pub fn with_entry(mut self, entry: impl Into<String>) -> Self {
        self.entry = entry.into();
        self
    }

    /// The entry state's name.
    pub fn entry(&self) -> &str {
        &self.entry
    }

    /// The state registered as `name`.
    pub fn state(&self, name: &str) -> Option<&Arc<dyn State>> {
        self.states.get(name)
    }

    /// The registered state names, sorted.
    pub fn state_names(&self) -> impl Iterator<Item = &str> {
        self.states.keys().map(String::as_str)
    }

    /// Runs from the entry state, streaming every event, under a new run
    /// id ([`new_run_id`]).
    pub fn stream(&self, env: Env) -> EventStream {
        self.stream_as(new_run_id(), env)
    }

    /// Runs from the entry state under the run id `run_id` (its checkpoints
    /// and trace records carry it).
    pub fn stream_as(&self, run_id: impl Into<Arc<str>>, env: Env) -> EventStream {
        events_only(self.drive(&self.entry, env, false, RunCtx::fresh(run_id)))
    }

    /// Runs from the state named `state`, under a new run id.
    pub fn stream_from(&self, state: &str, env: Env) -> EventStream {
        events_only(self.drive(state, env, false, RunCtx::fresh(new_run_id())))
    }

    /// Continues run `run_id` from its last checkpoint, after a crash or a
    /// deliberate stop. A run that had ended yields its result again.
    pub async fn resume(&self, run_id: &str) -> Result<EventStream, StoreError> {
        let store = self.store.as_ref().ok_or(StoreError::NoStore)?;
        let last = store
            .get(run_id, None)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                run_id: run_id.to_owned(),
                step: None,
            })?;
        Ok(self.continue_from(last))
    }

    /// Starts run `new_run_id` from `step` of run `run_id` and streams it:
    /// the old run is left as it was. Step 0 is the env the old run started
    /// with.
    pub async fn fork(
        &self,
        run_id: &str,
        step: u32,
        new_run_id: &str,
    ) -> Result<EventStream, StoreError> {
        let store = self.store.as_ref().ok_or(StoreError::NoStore)?;
        let fork = store.fork(run_id, step, new_run_id).await?;
        Ok(self.continue_from(fork))
    }

    /// Runs to the end under the run id `run_id`.
    pub async fn run_as(
        &self,
        run_id: impl Into<Arc<str>>,
        env: Env,
    ) -> Result<RunOutput, RunFailure> {
        finish(self.stream_as(run_id, env)).await
    }

    /// Runs to the end and returns the result.
    pub async fn run(&self, env: Env) -> Result<RunOutput, RunFailure> {
        finish(self.stream(env)).await
    }

    /// Runs only the state named `state`, then reports where it would go.
    /// The next state is not entered, not even looked up.
    pub async fn step(&self, state: &str, env: Env) -> Result<StepOutcome, RunFailure> {
        let mut driven = std::pin::pin!(self.drive(state, env, true, RunCtx::fresh("step")));
        let mut events = Vec::new();
        while let Some(d) = driven.next().await {
            match d {
                Driven::Paused { env, next } => return Ok(StepOutcome { env, next, events }),
                Driven::Event(e) => match e.kind {
                    EventKind::Failed(f) => return Err(*f),
                    EventKind::Finished(out) => {
                        return Ok(StepOutcome {
                            env: out.env,
                            next: Next::End,
                            events,
                        })
                    }
                    _ => events.push(e),
                },
            }
        }
        Err(interrupted())
    }

    fn drive(
        &self,
        start: &str,
        env: Env,
        single_step: bool,
        ctx: RunCtx,
    ) -> impl Stream<Item = Driven> + Send + 'static {
        let states = Arc::clone(&self.states);
        let limits = self.limits;
        // A single step (replaying, testing) is not part of any run's record.
        let store = self.store.clone().filter(|_| !single_step);
        let tracer = self.tracer.clone().filter(|_| !single_step);
        let record_calls = self.record_calls || tracer.is_some();
        let start: Arc<str> = Arc::from(start);
        async_stream::stream! {
            let RunCtx { run_id, mut path, resumed_at } = ctx;
            let run_span = tracing::info_span!("statewise.run", run_id = %run_id, start = %start);
            let run_started = std::time::Instant::now();
            let mut env = env;
            let mut name = Arc::clone(&start);
            let mut from: Option<String> = None;
            let run_deadline = limits.deadline.map(|d| (Instant::now() + d, d));

            // Boxed here and below, and only when a tracer or a store is
            // set: what only they need stays off the generator every run
            // carries (4.4 KB -> 2.8 KB), and a run with neither pays nothing.
            let opened: Result<(), MachineError> = if tracer.is_none() && store.is_none() {
                Ok(())
            } else {
                Box::pin(async {
                    if let Some(tracer) = &tracer {
                        let record = RunRecord {
                            run_id: run_id.to_string(),
                            start: start.to_string(),
                            started_ms: now_ms(),
                            resumed_at,
                            env: env.clone(),
                        };
                        tracer.write(&TraceRecord::Run(record)).await?;
                    }
                    // Step 0: the env the run starts with, so even a crash in
                    // the first state resumes, and forks can start anywhere.
                    if let (Some(store), None) = (&store, resumed_at) {
                        let first = checkpoint(&run_id, None, Next::to(start.to_string()), &env, &path);
                        store.put(&first).await?;
                    }
                    Ok(())
                })
                .await
            };

            // Every way out of the loop carries the outcome, so the end
            // record and the last event are written in one place below.
            let (outcome, step) = 'run: loop {
                if let Err(error) = opened {
                    // Only on the first pass: the run could not be recorded.
                    break 'run (Outcome::Failed(error, env), 0);
                }
                let Some(state) = states.get(&*name).cloned() else {
                    let error = MachineError::UnknownState {
                        name: name.to_string(),
                        from: from.clone(),
                        known: states.keys().cloned().collect(),
                    };
                    break 'run (Outcome::Failed(error, env), 0);
                };
                if env.step >= limits.max_steps {
                    let step = env.step;
                    break 'run (Outcome::Failed(MachineError::MaxSteps { limit: limits.max_steps }, env), step);
                }
                // The env as `Machine::step` takes it, to rerun this step.
                let mut trace = tracer
                    .as_ref()
                    .map(|_| Box::new(StepTrace::new(&run_id, env.step + 1, &name, env.clone())));
                env.step += 1;
                let step = env.step;
                path.push(name.to_string());
                let event = |kind| Driven::Event(Event { step, state: name.clone(), kind });
                let state_span = tracing::info_span!(
                    parent: &run_span,
                    "statewise.state",
                    state = %name,
                    step,
                    next = tracing::field::Empty,
                );
                yield event(EventKind::StateEntered);

                // A state cut off after streaming restarts from the env it
                // started with, so nothing it wrote is kept twice.
                let snapshot = (limits.state_retries > 0).then(|| Box::new(env.clone()));
                let mut attempt = 0;
                let failure = loop {
                    let state_deadline = limits.state_timeout.map(|d| (Instant::now() + d, d));
                    let mut failure = None;
                    {
                        let mut emitted = state.run(&mut env);
                        loop {
                            let next_item = KeepCalls { inner: emitted.next(), on: record_calls }
                                .instrument(state_span.clone());
                            let next = match earliest(state_deadline, run_deadline) {
                                Some((at, limit, is_run)) => match tokio::time::timeout_at(at, next_item).await {
                                    Ok(next) => next,
                                    Err(_) if is_run => {
                                        failure = Some(Failure::Deadline(limit));
                                        break;
                                    }
                                    Err(_) => Some(Err(StateError::TimedOut { after: limit })),
                                },
                                None => next_item.await,
                            };
                            match next {
                                Some(Ok(e)) => {
                                    if let Some(t) = &mut trace {
                                        t.observe(&e);
                                    }
                                    yield event(EventKind::Emitted(e));
                                }
                                Some(Err(e)) => {
                                    failure = Some(Failure::State(e));
                                    break;
                                }
                                None => break,
                            }
                        }
                    }
                    match (failure, &snapshot) {
                        (Some(Failure::State(StateError::Model(e))), Some(start))
                            if e.is_transient() && e.emitted() && attempt < limits.state_retries =>
                        {
                            attempt += 1;
                            env = Env::clone(start);
                            if let Some(t) = &mut trace {
                                t.restart(e.to_string());
                            }
                            yield event(EventKind::StateRetried { attempt, reason: e.to_string() });
                        }
                        (failure, _) => break failure,
                    }
                };
                // Where the run goes, or why it stops here, and the error
                // the step record shows (a routed error goes on to `next`).
                let (decided, routed): (Result<Next, MachineError>, Option<ErrorRecord>) = match failure {
                    None => (Ok(state.transition(&env)), None),
                    Some(Failure::Deadline(after)) => (Err(MachineError::Deadline { after }), None),
                    Some(Failure::State(source)) => match state.on_error(&source) {
                        // The state declared where to go on this error.
                        Some(next) => {
                            let record = ErrorRecord::new(step, &name, &source);
                            env.errors.push(record.clone());
                            yield event(EventKind::StateFailed { error: record.clone() });
                            (Ok(next), Some(record))
                        }
                        None => (Err(MachineError::State { state: name.to_string(), source }), None),
                    },
                };
                if let Ok(next) = &decided {
                    state_span.record("next", tracing::field::debug(next));
                }
                if let (Some(tracer), Some(t)) = (&tracer, trace.take()) {
                    let error = match (&decided, routed) {
                        (Err(e), _) => Some(TracedError::from(e)),
                        (Ok(_), routed) => routed.map(|r| TracedError { kind: r.kind, message: r.message }),
                    };
                    let record = TraceRecord::Step(Box::new(t.finish(&env, decided.as_ref().ok().cloned(), error)));
                    let written = Box::pin(tracer.write(&record)).await;
                    // A run failing anyway reports its own error, not the trace's.
                    if let (Err(e), Ok(_)) = (written, &decided) {
                        break 'run (Outcome::Failed(e.into(), env), step);
                    }
                }
                let next = match decided {
                    Ok(next) => next,
                    Err(error) => break 'run (Outcome::Failed(error, env), step),
                };
                if let Some(error) = limits.over_budget(&env) {
                    break 'run (Outcome::Failed(error, env), step);
                }
                // Saved before the next state is entered: a crash from here
                // on resumes at `next`, not at this state again.
                if let Some(store) = &store {
                    let saved = Box::pin(async {
                        store.put(&checkpoint(&run_id, Some(&name), next.clone(), &env, &path)).await
                    });
                    if let Err(e) = saved.await {
                        break 'run (Outcome::Failed(e.into(), env), step);
                    }
                }

                yield event(EventKind::StateExited { next: next.clone() });
                match next {
                    Next::End => break 'run (Outcome::Finished(env), step),
                    Next::To(_) if single_step => break 'run (Outcome::Paused(env, next), step),
                    Next::To(to) => {
                        from = Some(name.to_string());
                        name = Arc::from(&*to);
                    }
                }
            };

            let (env, error) = match outcome {
                Outcome::Paused(env, next) => {
                    yield Driven::Paused { env, next };
                    return;
                }
                Outcome::Finished(env) => (env, None),
                Outcome::Failed(error, env) => (env, Some(error)),
            };
            let mut error = error;
            if let Some(tracer) = &tracer {
                let record = EndRecord {
                    run_id: run_id.to_string(),
                    answer: env.answer.clone(),
                    path: path.clone(),
                    usage: env.usage,
                    elapsed_ms: run_started.elapsed().as_secs_f64() * 1e3,
                    error: error.as_ref().map(TracedError::from),
                };
                let record = Box::new(TraceRecord::End(record));
                if let Err(e) = tracer.write(&record).await {
                    // A finished run whose record is lost is reported; a failed
                    // run keeps its own error.
                    error.get_or_insert(e.into());
                }
            }
            let run_id = run_id.to_string();
            let kind = match error {
                None => EventKind::Finished(Box::new(RunOutput { answer: env.answer.clone(), path, env, run_id })),
                Some(error) => EventKind::Failed(Box::new(RunFailure { error, path, env, run_id })),
            };
            yield Driven::Event(Event { step, state: name, kind });
        }
    }

    /// Continues `checkpoint`'s run (or yields its result, if it had ended).
    fn continue_from(&self, checkpoint: Checkpoint) -> EventStream {
        let Checkpoint {
            run_id,
            step,
            state,
            next,
            env,
            path,
            ..
        } = checkpoint;
        match next {
            Next::End => {
                let out = RunOutput {
                    answer: env.answer.clone(),
                    path,
                    env,
                    run_id,
                };
                let event = Event {
                    step,
                    state: Arc::from(state.as_deref().unwrap_or_default()),
                    kind: EventKind::Finished(Box::new(out)),
                };
                futures::stream::once(async move { event }).boxed()
            }
            Next::To(to) => {
                let ctx = RunCtx {
                    run_id: Arc::from(run_id),
                    path,
                    resumed_at: Some(step),
                };
                events_only(self.drive(&to, env, false, ctx))
            }
        }
    }
}

/// How a run's loop ended.
enum Outcome {
    Finished(Env),
    Failed(MachineError, Env),
    Paused(Env, Next),
}

/// Who a run is, and what it did before this process took it up.
struct RunCtx {
    run_id: Arc<str>,
    path: Vec<String>,
    resumed_at: Option<u32>,
}

impl RunCtx {
    fn fresh(run_id: impl Into<Arc<str>>) -> Self {
        RunCtx {
            run_id: run_id.into(),
            path: Vec::new(),
            resumed_at: None,
        }
    }
}

fn checkpoint(
    run_id: &str,
    state: Option<&str>,
    next: Next,
    env: &Env,
    path: &[String],
) -> Checkpoint {
    Checkpoint {
        run_id: run_id.to_owned(),
        step: env.step,
        state: state.map(str::to_owned),
        next,
        env: env.clone(),
        path: path.to_vec(),
        parent: None,
        created_ms: now_ms(),
    }
}

fn events_only(driven: impl Stream<Item = Driven> + Send + 'static) -> EventStream {
    driven
        .filter_map(|d| async move {
            match d {
                Driven::Event(e) => Some(e),
                Driven::Paused { .. } => None,
            }
        })
        .boxed()
}

/// Why a state's run ended early.
enum Failure {
    State(StateError),
    Deadline(Duration),
}

/// The sooner of the state's and the run's deadlines, with its length and
/// whether it is the run's.
fn earliest(
    state: Option<(Instant, Duration)>,
    run: Option<(Instant, Duration)>,
) -> Option<(Instant, Duration, bool)> {
    match (state, run) {
        (Some((s, sd)), Some((r, rd))) => Some(if r <= s {
            (r, rd, true)
        } else {
            (s, sd, false)
        }),
        (Some((s, sd)), None) => Some((s, sd, false)),
        (None, Some((r, rd))) => Some((r, rd, true)),
        (None, None) => None,
    }
}

/// The limits a run is held to.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_steps: u32,
    state_retries: u32,
    state_timeout: Option<Duration>,
    deadline: Option<Duration>,
    max_tokens: Option<u64>,
    max_cost: Option<f64>,
}

impl Limits {
    fn over_budget(&self, env: &Env) -> Option<MachineError> {
        let used = env.usage.total_tokens();
        if let Some(limit) = self.max_tokens.filter(|l| used > *l) {
            return Some(MachineError::Budget {
                resource: Resource::Tokens,
                limit: limit as f64,
                used: used as f64,
            });
        }
        let cost = env.usage.cost;
        self.max_cost
            .filter(|l| cost > *l)
            .map(|limit| MachineError::Budget {
                resource: Resource::Cost,
                limit,
                used: cost,
            })
    }
}

/// What the driver loop yields: events, and for [`Machine::step`] the env
/// handed back before the next state is entered.
enum Driven {
    Event(Event),
    Paused { env: Env, next: Next },
}

/// Consumes an event stream to its result (what [`Machine::run`] does).
pub async fn finish(stream: impl Stream<Item = Event>) -> Result<RunOutput, RunFailure> {
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event.kind {
            EventKind::Finished(out) => return Ok(*out),
            EventKind::Failed(failure) => return Err(*failure),
            _ => {}
        }
    }
    Err(interrupted())
}

fn interrupted() -> RunFailure {
    RunFailure {
        run_id: String::new(),
        error: MachineError::Interrupted,
        path: Vec::new(),
        env: Env::default(),
    }
}
