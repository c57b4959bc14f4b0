//! The [`State`] trait: what a state does to the [`Env`], and where it goes next.
//!
//! A state is stateless: it holds configuration (prompt, model, tools) and
//! keeps every result in the `Env`. [`State::run`] does the work and streams
//! what it produces; [`State::transition`] is a pure function of the `Env`
//! that names the next state, so routing is unit-tested without any I/O.

mod custom;
mod fork;

use std::borrow::Cow;
use std::time::Duration;

use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::action::ParseError;
use crate::env::{Env, ErrorRecord, Interrupt, Observation, ScratchError, ToolCall};
use crate::model::ModelError;
use crate::output::OutputError;

pub use custom::{ActionParsed, ActionRepaired, Custom, StateEvent};
pub use fork::{Branch, Fork, OnBranchFailure};

/// Where a run goes after a state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Next {
    /// Run the state with this name.
    To(Cow<'static, str>),
    /// The run is over.
    End,
    /// Run the fork's branches concurrently, then go on at its join state.
    Fork(Box<Fork>),
    /// Pause the run until a person answers `request`
    /// ([`Machine::resume_with`](crate::Machine::resume_with)), then go on
    /// at `then`. The run ends as interrupted, with a checkpoint saved.
    Interrupt {
        /// What the person is asked.
        request: Box<Interrupt>,
        /// Where the run goes once the response is in.
        then: Box<Next>,
    },
}

impl Next {
    /// Go to the state named `name`.
    pub fn to(name: impl Into<Cow<'static, str>>) -> Self {
        Next::To(name.into())
    }

    /// Run `fork`'s branches, then its join state.
    pub fn fork(fork: Fork) -> Self {
        Next::Fork(Box::new(fork))
    }

    /// Ask a person `request`, then go on at `then`.
    pub fn interrupt(request: Interrupt, then: Next) -> Self {
        Next::Interrupt {
            request: Box::new(request),
            then: Box::new(then),
        }
    }

    /// The states this can lead to directly: the target, or every branch
    /// target and the join of a fork, or where an interrupt goes on.
    pub fn states(&self) -> Vec<&str> {
        match self {
            Next::To(name) => vec![name],
            Next::End => Vec::new(),
            Next::Fork(fork) => fork
                .branches
                .iter()
                .map(|b| &*b.target)
                .chain([&*fork.join])
                .collect(),
            Next::Interrupt { then, .. } => then.states(),
        }
    }
}

/// What a state streams while it runs. The machine tags each with the
/// state's name and the step, turning it into an [`Event`](crate::Event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Emit {
    /// Generated text that is not the answer's: a JSON action's raw text, a
    /// draft another state rewrites.
    Token(String),
    /// Reasoning ("thinking") text, kept apart from tokens.
    Reasoning(String),
    /// A piece of the answer's text, the moment it is produced, from
    /// whichever state writes it (the stock Reasoning decodes it from a
    /// JSON action with [`ActionReader`](crate::action::ActionReader), or
    /// passes a native reply's text on as it arrives); never retracted.
    /// The console, the AG-UI translator and the server show the answer
    /// from these alone, so a custom state that emits them streams its
    /// answer exactly as the stock ones do. Text a model writes before its
    /// tool calls arrives the same way: it is the model's message before
    /// the calls (AG-UI: a text message, then the calls).
    AnswerToken(String),
    /// What is known of a typed output while its reply still streams
    /// ([`Machine::output`](crate::Machine::output)): the reply so far,
    /// repaired ([`repair_prefix`](crate::action::repair_prefix)), so each
    /// value in it is whole; a key whose value is still arriving is `null`.
    /// Each one holds the last; a retry starts again from the first field.
    /// The AG-UI translator sends it as the shared state's `output`, so a
    /// form fills in live.
    PartialOutput(serde_json::Value),
    /// A tool call as the model writes it: its name once complete, then
    /// its arguments' text as it arrives. From native tool calls
    /// ([`Streamed::ToolCallDraft`](crate::model::Streamed)) and JSON
    /// actions alike (the stock Reasoning reads them with
    /// [`ActionReader`](crate::action::ActionReader)).
    ToolCallDraft(crate::env::ToolCallDraft),
    /// A tool call began.
    ToolCallStarted(ToolCall),
    /// A tool call ended (in the order calls finish).
    ToolCallFinished {
        /// The call's id.
        call_id: String,
        /// The tool.
        tool: String,
        /// Whether it failed.
        is_error: bool,
        /// How long it ran.
        elapsed: Duration,
    },
    /// A tool result was recorded in the env (in call order).
    Observation(Observation),
    /// A state's own event ([`StateEvent`]), on the channel stock and
    /// custom states share: the stock states send [`ActionParsed`] and
    /// [`PartialAction`](crate::action::PartialAction) this way. The AG-UI
    /// translator passes each on as a `CUSTOM` event; the verbose console
    /// prints it.
    Custom(Custom),
    /// The request was shortened to fit the model's context window
    /// ([`Fitter`](crate::fit::Fitter)): what was left out or cut, and the
    /// token counts before and after.
    ContextFitted(crate::model::Fitted),
    /// The state asks a person and stops here: the run ends as interrupted
    /// with this request. Once the response is in
    /// ([`Env::response`](crate::Env::response)), the state runs again from the
    /// env as it was when it asked, so what it did before asking is not
    /// done twice.
    Interrupt(Box<Interrupt>),
    /// A model call ended: its request and whole reply, for traces and
    /// replays ([`ReplyStream::call`](crate::model::ReplyStream::call)
    /// emits it after the call's tokens).
    ModelCall(Box<crate::model::ModelCall>),
    /// A router or cascade's step ([`Router`](crate::layer::Router),
    /// [`Cascade`](crate::layer::Cascade)): which model served (part of) a
    /// call and what became of its reply. The verbose console prints it;
    /// the AG-UI translator sends it as a `CUSTOM` event named
    /// `statewise.route`.
    Routed(crate::model::RouteStep),
}

impl Emit {
    /// `event` on the states' own channel ([`Emit::Custom`]).
    pub fn custom<E: StateEvent>(event: &E) -> Self {
        Emit::Custom(Custom::new(event))
    }
}

impl From<crate::model::Streamed> for Emit {
    fn from(streamed: crate::model::Streamed) -> Self {
        use crate::model::Streamed;
        match streamed {
            Streamed::Token(t) => Emit::Token(t),
            Streamed::Reasoning(t) => Emit::Reasoning(t),
            Streamed::ToolCallDraft(d) => Emit::ToolCallDraft(d),
            Streamed::Fitted(f) => Emit::ContextFitted(f),
            Streamed::Call(call) => Emit::ModelCall(call),
            Streamed::Route(step) => Emit::Routed(step),
        }
    }
}

/// Why a state could not finish its work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// A model call failed.
    #[error("model call failed: {0}")]
    Model(#[from] ModelError),
    /// The model's reply could not be read as an action, even after retries.
    #[error("no valid action after {attempts} attempts; last problem: {last}")]
    Action {
        /// How many replies were tried.
        attempts: u32,
        /// What was wrong with the last one.
        last: ParseError,
    },
    /// The env lacks what this state needs (usually a wiring mistake).
    #[error("{state} cannot run: {missing}")]
    Precondition {
        /// The state.
        state: String,
        /// What it needed and did not find.
        missing: String,
    },
    /// A scratch value had the wrong type.
    #[error(transparent)]
    Scratch(#[from] ScratchError),
    /// A custom state's own failure.
    #[error(transparent)]
    Custom(Box<dyn std::error::Error + Send + Sync>),
    /// The state ran longer than the machine's state timeout.
    #[error("the state ran longer than {after:?}")]
    TimedOut {
        /// The limit.
        after: std::time::Duration,
    },
    /// The run's typed output could not be had
    /// ([`Machine::output`](crate::Machine::output)); the error holds the
    /// last reply.
    #[error(transparent)]
    Output(#[from] OutputError),
}

impl StateError {
    /// The kind of error, typed.
    pub fn kind(&self) -> StateErrorKind {
        match self {
            StateError::Model(_) => StateErrorKind::Model,
            StateError::Action { .. } => StateErrorKind::Action,
            StateError::Precondition { .. } => StateErrorKind::Precondition,
            StateError::Scratch(_) => StateErrorKind::Scratch,
            StateError::Custom(_) => StateErrorKind::Custom,
            StateError::TimedOut { .. } => StateErrorKind::StateTimeout,
            StateError::Output(_) => StateErrorKind::Output,
        }
    }

    /// The failure's code, the one every record of it uses: the model
    /// error's code as `model:http_503`, else the kind (`action`,
    /// `precondition`, `scratch`, `custom`, `state_timeout`, `output`).
    pub fn code(&self) -> String {
        match self {
            StateError::Model(e) => format!("model:{}", e.code()),
            other => other.kind().as_str().to_owned(),
        }
    }
}

/// The kinds of [`StateError`], serialized in snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StateErrorKind {
    /// [`StateError::Model`].
    Model,
    /// [`StateError::Action`].
    Action,
    /// [`StateError::Precondition`].
    Precondition,
    /// [`StateError::Scratch`].
    Scratch,
    /// [`StateError::Custom`].
    Custom,
    /// [`StateError::TimedOut`].
    StateTimeout,
    /// [`StateError::Output`].
    Output,
}

impl StateErrorKind {
    /// The snake_case name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            StateErrorKind::Model => "model",
            StateErrorKind::Action => "action",
            StateErrorKind::Precondition => "precondition",
            StateErrorKind::Scratch => "scratch",
            StateErrorKind::Custom => "custom",
            StateErrorKind::StateTimeout => "state_timeout",
            StateErrorKind::Output => "output",
        }
    }
}

impl std::fmt::Display for StateErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl StateError {
    /// Wraps any error of a custom state.
    pub fn custom(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StateError::Custom(error.into())
    }

    /// The record of this error in `state` at `step`, as the env keeps it
    /// when a state recovers ([`Env::errors`](crate::env::Env::errors)).
    pub fn record(&self, step: u32, state: &str) -> ErrorRecord {
        ErrorRecord {
            step,
            state: state.to_owned(),
            kind: self.code(),
            message: self.to_string(),
        }
    }
}

/// What [`State::run`] returns: a stream of emitted items, ending at the
/// first error. It borrows the state and the env for as long as it runs.
pub type EmitStream<'a> = BoxStream<'a, Result<Emit, StateError>>;

/// One node of a [`Machine`](crate::Machine).
///
/// A state that emits nothing still returns a stream; [`crate::try_stream!`]
/// makes both cases short:
///
/// ```
/// use statewise::{Emit, EmitStream, Env, Next, State};
///
/// /// Counts the observations so far and says so.
/// struct Tally;
///
/// impl State for Tally {
///     fn name(&self) -> &str { "tally" }
///
///     fn run<'a>(&'a self, env: &'a mut Env) -> EmitStream<'a> {
///         Box::pin(statewise::try_stream! {
///             let n = env.observations.len();
///             env.scratch.set("tally", &n)?;
///             yield Emit::Token(format!("{n} observations"));
///         })
///     }
///
///     fn transition(&self, _env: &Env) -> Next { Next::End }
/// }
/// ```
pub trait State: Send + Sync {
    /// The name transitions use to reach this state.
    fn name(&self) -> &str;

    /// Does the state's work on `env`, streaming what it produces.
    fn run<'a>(&'a self, env: &'a mut Env) -> EmitStream<'a>;

    /// Names the next state. Must be pure: it reads `env` and nothing else.
    fn transition(&self, env: &Env) -> Next;

    /// Where to go when [`run`](State::run) fails with `error`, or `None`
    /// (the default) to fail the run. When it names a state, the machine
    /// records the error in [`Env::errors`] and goes on there.
    fn on_error(&self, error: &StateError) -> Option<Next> {
        let _ = error;
        None
    }

    /// Every place this state can send the run ([`Next::End`] included,
    /// and the targets of [`on_error`](State::on_error)), if it declares
    /// them. [`Machine::validate`](crate::Machine::validate) (run before a
    /// run's first state) rejects a declared target that is not registered,
    /// and [`Machine::mermaid`](crate::Machine::mermaid) draws them. `None`
    /// (the default) declares nothing and is not checked.
    fn targets(&self) -> Option<Vec<Next>> {
        None
    }
}

impl<S: State + ?Sized> State for std::sync::Arc<S> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn run<'a>(&'a self, env: &'a mut Env) -> EmitStream<'a> {
        (**self).run(env)
    }

    fn transition(&self, env: &Env) -> Next {
        (**self).transition(env)
    }

    fn on_error(&self, error: &StateError) -> Option<Next> {
        (**self).on_error(error)
    }

    fn targets(&self) -> Option<Vec<Next>> {
        (**self).targets()
    }
}

type RunFn = dyn Fn(&mut Env) -> Result<(), StateError> + Send + Sync;
type TransitionFn = dyn Fn(&Env) -> Next + Send + Sync;

/// A state made of two closures, for small synchronous steps that stream
/// nothing (bookkeeping, guards, routing).
///
/// ```
/// use statewise::{Env, Next, State, state::FnState};
///
/// let guard = FnState::new(
///     "guard",
///     |env: &mut Env| { env.messages.retain(|m| !m.content.is_empty()); Ok(()) },
///     |env: &Env| if env.answer.is_some() { Next::End } else { Next::to("reasoning") },
/// );
/// assert_eq!(guard.transition(&Env::new()), Next::to("reasoning"));
/// ```
pub struct FnState {
    name: String,
    run: Box<RunFn>,
    transition: Box<TransitionFn>,
    targets: Option<Vec<Next>>,
}

impl FnState {
    /// A state named `name` that runs `run`, then routes with `transition`.
    pub fn new(
        name: impl Into<String>,
        run: impl Fn(&mut Env) -> Result<(), StateError> + Send + Sync + 'static,
        transition: impl Fn(&Env) -> Next + Send + Sync + 'static,
    ) -> Self {
        FnState {
            name: name.into(),
            run: Box::new(run),
            transition: Box::new(transition),
            targets: None,
        }
    }

    /// Declares where its transition can go ([`State::targets`]).
    pub fn with_targets(mut self, targets: impl IntoIterator<Item = Next>) -> Self {
        self.targets = Some(targets.into_iter().collect());
        self
    }
}

impl std::fmt::Debug for FnState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnState")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl State for FnState {
    fn name(&self) -> &str {
        &self.name
    }

    fn run<'a>(&'a self, env: &'a mut Env) -> EmitStream<'a> {
        let result = (self.run)(env);
        Box::pin(futures::stream::iter(result.err().map(Err)))
    }

    fn transition(&self, env: &Env) -> Next {
        (self.transition)(env)
    }

    fn targets(&self) -> Option<Vec<Next>> {
        self.targets.clone()
    }
}
