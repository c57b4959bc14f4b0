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
use crate::state::{Next, State, StateError};

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
    /// `budget`, `model`, `action`, `precondition`, `scratch`, `custom` or
    /// `state_timeout`.
    pub fn kind(&self) -> &'static str {
        match self {
            MachineError::UnknownState { .. } => "unknown_state",
            MachineError::MaxSteps { .. } => "max_steps",
            MachineError::Interrupted => "interrupted",
            MachineError::Deadline { .. } => "deadline",
            MachineError::Budget { .. } => "budget",
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
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine")
            .field("states", &self.states.keys().collect::<Vec<_>>())
            .field("entry", &self.entry)
            .field("limits", &self.limits)
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

    /// Runs from the entry state, streaming every event.
    pub fn stream(&self, env: Env) -> EventStream {
        self.stream_from(&self.entry.clone(), env)
    }

    /// Runs from the state named `state` (to resume or fork a run).
    pub fn stream_from(&self, state: &str, env: Env) -> EventStream {
        self.drive(state, env, false)
            .filter_map(|d| async move {
                match d {
                    Driven::Event(e) => Some(e),
                    Driven::Paused { .. } => None,
                }
            })
            .boxed()
    }

    /// Runs to the end and returns the result.
    pub async fn run(&self, env: Env) -> Result<RunOutput, RunFailure> {
        finish(self.stream(env)).await
    }

    /// Runs only the state named `state`, then reports where it would go.
    /// The next state is not entered, not even looked up.
    pub async fn step(&self, state: &str, env: Env) -> Result<StepOutcome, RunFailure> {
        let mut driven = std::pin::pin!(self.drive(state, env, true));
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
    ) -> impl Stream<Item = Driven> + Send + 'static {
        let states = Arc::clone(&self.states);
        let limits = self.limits;
        let mut name: Arc<str> = Arc::from(start);
        async_stream::stream! {
            let mut env = env;
            let mut path: Vec<String> = Vec::new();
            let mut from: Option<String> = None;
            let run_deadline = limits.deadline.map(|d| (Instant::now() + d, d));
            loop {
                let fail = |error: MachineError, env: Env, path: Vec<String>, step: u32, state: Arc<str>| {
                    Driven::Event(Event { step, state, kind: EventKind::Failed(Box::new(RunFailure { error, path, env })) })
                };
                let Some(state) = states.get(&*name).cloned() else {
                    let error = MachineError::UnknownState {
                        name: name.to_string(),
                        from: from.clone(),
                        known: states.keys().cloned().collect(),
                    };
                    yield fail(error, env, path, 0, name);
                    return;
                };
                if env.step >= limits.max_steps {
                    let step = env.step;
                    yield fail(MachineError::MaxSteps { limit: limits.max_steps }, env, path, step, name);
                    return;
                }
                env.step += 1;
                let step = env.step;
                path.push(name.to_string());
                let event = |kind| Driven::Event(Event { step, state: name.clone(), kind });
                yield event(EventKind::StateEntered);

                // A state cut off after streaming restarts from the env it
                // started with, so nothing it wrote is kept twice.
                let snapshot = (limits.state_retries > 0).then(|| env.clone());
                let mut attempt = 0;
                let failure = loop {
                    let state_deadline = limits.state_timeout.map(|d| (Instant::now() + d, d));
                    let mut failure = None;
                    {
                        let mut emitted = state.run(&mut env);
                        loop {
                            let next = match earliest(state_deadline, run_deadline) {
                                Some((at, limit, is_run)) => match tokio::time::timeout_at(at, emitted.next()).await {
                                    Ok(next) => next,
                                    Err(_) if is_run => {
                                        failure = Some(Failure::Deadline(limit));
                                        break;
                                    }
                                    Err(_) => Some(Err(StateError::TimedOut { after: limit })),
                                },
                                None => emitted.next().await,
                            };
                            match next {
                                Some(Ok(e)) => yield event(EventKind::Emitted(e)),
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
                            env = start.clone();
                            yield event(EventKind::StateRetried { attempt, reason: e.to_string() });
                        }
                        (failure, _) => break failure,
                    }
                };
                let next = match failure {
                    None => state.transition(&env),
                    Some(Failure::Deadline(after)) => {
                        yield fail(MachineError::Deadline { after }, env, path, step, name.clone());
                        return;
                    }
                    Some(Failure::State(source)) => match state.on_error(&source) {
                        // The state declared where to go on this error.
                        Some(next) => {
                            let record = ErrorRecord::new(step, &name, &source);
                            env.errors.push(record.clone());
                            yield event(EventKind::StateFailed { error: record });
                            next
                        }
                        None => {
                            let error = MachineError::State { state: name.to_string(), source };
                            yield fail(error, env, path, step, name.clone());
                            return;
                        }
                    },
                };
                if let Some(error) = limits.over_budget(&env) {
                    yield fail(error, env, path, step, name.clone());
                    return;
                }

                yield event(EventKind::StateExited { next: next.clone() });
                match next {
                    Next::End => {
                        let answer = env.answer.clone();
                        yield event(EventKind::Finished(Box::new(RunOutput { answer, path, env })));
                        return;
                    }
                    Next::To(_) if single_step => {
                        yield Driven::Paused { env, next };
                        return;
                    }
                    Next::To(to) => {
                        from = Some(name.to_string());
                        name = Arc::from(&*to);
                    }
                }
            }
        }
    }
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
        error: MachineError::Interrupted,
        path: Vec::new(),
        env: Env::default(),
    }
}
