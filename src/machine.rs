//! The [`Machine`]: states by name, an entry state, limits, and the loop
//! that runs them.
//!
//! [`Machine::stream`] is the one code path: [`Machine::run`] and
//! [`Machine::step`] consume the same event stream, so streamed and batch
//! runs cannot drift apart. Dropping the stream cancels the run.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};

use crate::env::Env;
use crate::event::{Event, EventKind, RunFailure, RunOutput};
use crate::state::{Next, State, StateError};

/// The default bound on states entered per run; see [`Machine::max_steps`].
pub const DEFAULT_MAX_STEPS: u32 = 50;

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
    /// clients: `unknown_state`, `max_steps`, `interrupted`, `model`,
    /// `action`, `precondition`, `scratch` or `custom`.
    pub fn kind(&self) -> &'static str {
        match self {
            MachineError::UnknownState { .. } => "unknown_state",
            MachineError::MaxSteps { .. } => "max_steps",
            MachineError::Interrupted => "interrupted",
            MachineError::State { source, .. } => match source {
                StateError::Model(_) => "model",
                StateError::Action { .. } => "action",
                StateError::Precondition { .. } => "precondition",
                StateError::Scratch(_) => "scratch",
                StateError::Custom(_) => "custom",
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
    max_steps: u32,
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine")
            .field("states", &self.states.keys().collect::<Vec<_>>())
            .field("entry", &self.entry)
            .field("max_steps", &self.max_steps)
            .finish()
    }
}

impl Machine {
    /// An empty machine whose runs start at the state named `entry`.
    pub fn new(entry: impl Into<String>) -> Self {
        Machine {
            states: Arc::default(),
            entry: entry.into(),
            max_steps: DEFAULT_MAX_STEPS,
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
        self.max_steps = limit;
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
        let max_steps = self.max_steps;
        let mut name: Arc<str> = Arc::from(start);
        async_stream::stream! {
            let mut env = env;
            let mut path: Vec<String> = Vec::new();
            let mut from: Option<String> = None;
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
                if env.step >= max_steps {
                    let step = env.step;
                    yield fail(MachineError::MaxSteps { limit: max_steps }, env, path, step, name);
                    return;
                }
                env.step += 1;
                let step = env.step;
                path.push(name.to_string());
                let event = |kind| Driven::Event(Event { step, state: name.clone(), kind });
                yield event(EventKind::StateEntered);

                let mut error = None;
                {
                    let mut emitted = state.run(&mut env);
                    while let Some(item) = emitted.next().await {
                        match item {
                            Ok(e) => yield event(EventKind::Emitted(e)),
                            Err(e) => {
                                error = Some(e);
                                break;
                            }
                        }
                    }
                }
                if let Some(source) = error {
                    let error = MachineError::State { state: name.to_string(), source };
                    yield fail(error, env, path, step, name.clone());
                    return;
                }

                let next = state.transition(&env);
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
