//! The [`Machine`]: states by name, an entry state, limits, and the loop
//! that runs them.
//!
//! [`Machine::stream`] is the one code path: [`Machine::run`] and
//! [`Machine::step`] consume the same event stream, so streamed and batch
//! runs cannot drift apart. Dropping the stream cancels the run.
//!
//! The files: `error.rs` (why a run stops), `decide.rs` (every decision of
//! the run loop, as plain functions with unit tests), `driver.rs` (the
//! async loop that polls states and does the I/O), `child.rs` (forks'
//! branches and sub-machines, run as child runs), `record.rs` (the one
//! hook for checkpoints and trace records), `sub.rs` (the sub-machine
//! node), `diagram.rs` (Mermaid and `Debug`), `guarding.rs` (guardrails in
//! a run), and this one (the builder and the ways
//! to start, resume and finish a run).

mod attempt;
mod child;
mod decide;
mod diagram;
mod driver;
mod error;
pub mod event;
mod guarding;
mod record;
mod remote;
mod resume;
mod step;
mod sub;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};

use tokio::time::Instant;

use crate::env::{Env, Journal};
use crate::state::{Next, State};
use crate::store::{new_run_id, Store};
use crate::trace::Tracer;
use event::{Event, EventKind, RunFailure, RunOutput};

use child::Spent;
use decide::Limits;
pub use error::{MachineError, MachineErrorKind, Resource};
pub use remote::{waiting_for, ChildRun, Dispatch, WAITING_FOR_CHILDREN};
pub use sub::SubMachine;

/// The default bound on states entered per run; see [`Machine::max_steps`].
pub const DEFAULT_MAX_STEPS: u32 = 50;

/// The default number of restarts of a state cut off mid-stream; see
/// [`Machine::state_retries`].
pub const DEFAULT_STATE_RETRIES: u32 = 2;

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
    subs: Arc<BTreeMap<String, Arc<SubMachine>>>,
    entry: String,
    limits: Limits,
    store: Option<Arc<dyn Store>>,
    journal: Option<Arc<dyn Journal>>,
    tracer: Option<Tracer>,
    record_calls: bool,
    snapshots: bool,
    background: crate::env::Background,
    name: Arc<str>,
    span_content: Option<Arc<crate::redact::Redactor>>,
    output: Option<Arc<crate::output::Output>>,
    /// Set once the declared edges were found registered; cleared by
    /// every change of the states.
    edges_checked: Arc<OnceLock<()>>,
    dispatch: Option<Arc<dyn remote::Dispatch>>,
    guardrails: crate::guard::Guardrails,
}

impl Machine {
    /// An empty machine whose runs start at the state named `entry`.
    pub fn new(entry: impl Into<String>) -> Self {
        Machine {
            states: Arc::default(),
            subs: Arc::default(),
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
            journal: None,
            tracer: None,
            record_calls: false,
            snapshots: false,
            background: crate::env::Background::new(),
            name: Arc::from("agent"),
            span_content: None,
            output: None,
            edges_checked: Arc::default(),
            dispatch: None,
            guardrails: crate::guard::Guardrails::default(),
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
        self.edges_checked = Arc::default();
        Arc::make_mut(&mut self.states).insert(name, Arc::new(state))
    }

    /// Removes the state named `name`.
    pub fn unregister(&mut self, name: &str) -> Option<Arc<dyn State>> {
        self.edges_checked = Arc::default();
        Arc::make_mut(&mut self.states).remove(name)
    }

    /// Adds a whole machine as the node `sub.name()`
    /// ([`SubMachine`]): entering it runs the child machine to its end,
    /// its events nested under the name. A state of the same name wins.
    pub fn with_machine(mut self, sub: SubMachine) -> Self {
        self.edges_checked = Arc::default();
        Arc::make_mut(&mut self.subs).insert(sub.name().to_owned(), Arc::new(sub));
        self
    }

    /// The sub-machine registered as `name`.
    pub fn sub_machine(&self, name: &str) -> Option<&Arc<SubMachine>> {
        self.subs.get(name)
    }

    /// This machine as a child of `parent`: it saves to the parent's store
    /// and writes to its tracer, so the parent's resume finds it.
    fn under(mut self, parent: &Machine) -> Machine {
        self.store.clone_from(&parent.store);
        self.journal.clone_from(&parent.journal);
        self.background.clone_from(&parent.background);
        self.tracer.clone_from(&parent.tracer);
        self.record_calls |= parent.record_calls;
        self
    }

    /// Checks the graph without running it: the entry state and every
    /// target a state declares ([`State::targets`]) are registered. A run
    /// checks the declared targets itself before its first state (once per
    /// machine as built), so a wiring mistake fails it before any model is
    /// called; a single [`step`](Self::step) does not check.
    pub fn validate(&self) -> Result<(), MachineError> {
        if !self.has(&self.entry) {
            return Err(self.unknown(&self.entry, None));
        }
        self.validate_edges()
    }

    fn has(&self, name: &str) -> bool {
        self.states.contains_key(name) || self.subs.contains_key(name)
    }

    /// Every declared target is registered, here and in fixed
    /// sub-machines (whose own entries too).
    fn validate_edges(&self) -> Result<(), MachineError> {
        let declared = self
            .states
            .iter()
            .map(|(name, state)| (name, state.targets()))
            .chain(
                self.subs
                    .iter()
                    .map(|(name, sub)| (name, sub.targets().map(<[Next]>::to_vec))),
            );
        for (name, targets) in declared {
            for target in targets.into_iter().flatten() {
                for to in target.states() {
                    if !self.has(to) {
                        return Err(self.unknown(to, Some(name)));
                    }
                }
            }
        }
        for sub in self.subs.values() {
            if let Some(inner) = sub.fixed() {
                inner.validate()?;
            }
        }
        Ok(())
    }

    /// [`validate_edges`](Self::validate_edges), remembered once it passed.
    fn check_edges(&self) -> Result<(), MachineError> {
        if self.edges_checked.get().is_none() {
            self.validate_edges()?;
            let _ = self.edges_checked.set(());
        }
        Ok(())
    }

    fn unknown(&self, name: &str, from: Option<&str>) -> MachineError {
        MachineError::UnknownState {
            name: name.to_owned(),
            from: from.map(str::to_owned),
            known: decide::known_names(&self.states, &self.subs),
        }
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
    /// [`StateError::TimedOut`](crate::StateError::TimedOut) (which [`State::on_error`] may route).
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

    /// Saves a [`Checkpoint`](crate::store::Checkpoint) to `store` before the first state and after
    /// every state, so runs can be resumed ([`Machine::resume`]) and forked
    /// ([`Machine::rerun`]). A failed save fails the run
    /// ([`MachineError::Store`]).
    pub fn with_store(mut self, store: impl Store + 'static) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Records every completed tool call in `journal` as it finishes, so a
    /// run resumed after a crash answers those calls from the record
    /// instead of calling the tools again (the toolbox reads it through
    /// [`ToolContext::journal`](crate::tool::ToolContext::journal)).
    /// Checkpoints alone are written between states, and a state can make
    /// several calls.
    pub fn with_journal(mut self, journal: impl Journal + 'static) -> Self {
        self.journal = Some(Arc::new(journal));
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

    /// Makes each state end with [`EventKind::Snapshot`]: the env as the
    /// state left it, for clients that show a run's state as it changes
    /// (an AG-UI server's `STATE_DELTA`). Off by default, as each one is a
    /// copy of the env.
    pub fn snapshots(mut self, on: bool) -> Self {
        self.snapshots = on;
        self
    }

    /// Hands states `background` for the work they do not wait for
    /// ([`RunSettings::background`](crate::RunSettings::background)); a
    /// server shares one across its machines and waits for it on shutdown.
    /// By default each machine has its own.
    pub fn with_background(mut self, background: crate::env::Background) -> Self {
        self.background = background;
        self
    }

    /// The tracker of the machine's background work.
    pub fn background(&self) -> &crate::env::Background {
        &self.background
    }

    /// Names the machine (`agent` by default): its runs are
    /// `invoke_agent {name}` spans.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Arc::from(name.into());
        self
    }

    /// The machine's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Makes spans carry message content: a model call's prompt and reply
    /// (`gen_ai.input.messages`, `gen_ai.output.messages`) and a tool
    /// call's arguments and result, with `redactor`'s secrets removed. Off
    /// by default: prompts hold what users typed.
    pub fn span_content(mut self, redactor: crate::trace::Redactor) -> Self {
        self.span_content = Some(Arc::new(redactor));
        self
    }

    /// Makes runs end with a `T` as their answer: the state that writes
    /// the answer (the stock Answer, or yours through
    /// [`RunSettings::output`](crate::env::RunSettings::output)) asks for
    /// `T`'s schema, checks the reply and asks again on problems; read it
    /// back with [`RunOutput::output`].
    pub fn output<T: serde::de::DeserializeOwned + schemars::JsonSchema + 'static>(self) -> Self {
        self.with_output(crate::output::Output::of::<T>())
    }

    /// Makes runs end with `output` (a schema from a file, validators,
    /// retries): see [`Machine::output`].
    pub fn with_output(mut self, output: crate::output::Output) -> Self {
        self.output = Some(Arc::new(output));
        self
    }

    /// The typed output runs end with, if one was asked for.
    pub fn typed_output(&self) -> Option<&crate::output::Output> {
        self.output.as_deref()
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
        events_only(self.drive(
            Next::to(self.entry.clone()),
            env,
            false,
            RunCtx::fresh(run_id),
        ))
    }

    /// Runs from the state named `state`, under a new run id.
    pub fn stream_from(&self, state: &str, env: Env) -> EventStream {
        events_only(self.drive(
            Next::to(state.to_owned()),
            env,
            false,
            RunCtx::fresh(new_run_id()),
        ))
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
        let mut driven = std::pin::pin!(self.drive(
            Next::to(state.to_owned()),
            env,
            true,
            RunCtx::fresh("step")
        ));
        let mut events = Vec::new();
        while let Some(d) = driven.next().await {
            match d {
                Driven::Stopped(stopped) => {
                    let (env, next) = *stopped;
                    return Ok(StepOutcome { env, next, events });
                }
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
}

/// Who a run is, where it sits under a parent, and what it did before this
/// process took it up.
struct RunCtx {
    run_id: Arc<str>,
    /// The parent run, for a child run.
    parent: Option<Arc<str>>,
    path: Vec<String>,
    resumed_at: Option<u32>,
    /// The state that sent the run where it starts (a resumed fork's
    /// forking state).
    from: Option<String>,
    /// The branch its events are tagged with; `None` for a top-level run.
    branch: Option<Arc<str>>,
    /// The run tree's tally, for a child.
    spent: Option<Arc<Spent>>,
    /// The run tree's deadline, for a child.
    deadline: Option<(Instant, Duration)>,
    /// Whether a failure is saved as the run's end (a branch the join
    /// sees failed), so a resume does not run it again.
    keep_failure: bool,
}

impl RunCtx {
    fn fresh(run_id: impl Into<Arc<str>>) -> Self {
        RunCtx {
            run_id: run_id.into(),
            parent: None,
            path: Vec::new(),
            resumed_at: None,
            from: None,
            branch: None,
            spent: None,
            deadline: None,
            keep_failure: false,
        }
    }

    /// A child run `run_id` of `parent` at `branch`, sharing its parent's
    /// tally and deadline.
    fn child(
        run_id: String,
        parent: &str,
        branch: Arc<str>,
        spent: &Arc<Spent>,
        deadline: Option<(Instant, Duration)>,
    ) -> Self {
        RunCtx {
            parent: Some(Arc::from(parent)),
            branch: Some(branch),
            spent: Some(Arc::clone(spent)),
            deadline,
            ..RunCtx::fresh(run_id)
        }
    }
}

fn events_only(driven: impl Stream<Item = Driven> + Send + 'static) -> EventStream {
    driven
        .filter_map(|d| async move {
            match d {
                Driven::Event(e) => Some(e),
                Driven::Stopped(_) => None,
            }
        })
        .boxed()
}

/// What the driver loop yields: events, and for [`Machine::step`] the env
/// handed back before the next state is entered.
enum Driven {
    Event(Event),
    Stopped(Box<(Env, Next)>),
}

/// Consumes an event stream to its result (what [`Machine::run`] does).
pub async fn finish(stream: impl Stream<Item = Event>) -> Result<RunOutput, RunFailure> {
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event.kind {
            EventKind::Finished(out) | EventKind::Interrupted(out) => return Ok(*out),
            EventKind::Failed(failure) => return Err(*failure),
            _ => {}
        }
    }
    Err(interrupted())
}

fn interrupted() -> RunFailure {
    RunFailure {
        run_id: String::new(),
        error: MachineError::Cut,
        path: Vec::new(),
        env: Env::default(),
    }
}
