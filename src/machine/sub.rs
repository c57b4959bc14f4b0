//! [`SubMachine`]: a whole machine used as one node of another.
//!
//! A sub-machine runs as a child run (its own run id, checkpoints and
//! limits, the parent's deadline and budgets), on an env mapped in from
//! the parent's, and its result is mapped back out. It may be built at run
//! time from the env, so a plan the model wrote can become a graph; a
//! resume builds it again from the same env, so the plan must be in the
//! env, not in the builder's captures.

use std::sync::Arc;

use super::event::RunOutput;
use super::Machine;
use crate::env::{Env, Usage};
use crate::state::{Next, StateError};

type BuildFn = dyn Fn(&Env) -> Result<Machine, StateError> + Send + Sync;
type InputFn = dyn Fn(&Env) -> Env + Send + Sync;
type OutputFn = dyn Fn(&mut Env, &RunOutput) + Send + Sync;
type TransitionFn = dyn Fn(&Env) -> Next + Send + Sync;

/// A machine run as a node of another machine
/// ([`Machine::with_machine`]); its events arrive nested under its name
/// ([`Event::branch`](crate::Event::branch)).
///
/// By default the child starts on a copy of the parent's env (its own
/// step count, usage and replies), and the parent takes back the child's
/// answer and the observations it added; its usage is always added to
/// the parent's. After it, the run goes where
/// [`transition`](Self::transition) says (by default, it ends).
///
/// ```
/// use statewise::{Env, Machine, Next, machine::SubMachine, state::FnState};
///
/// # futures::executor::block_on(async {
/// let research = Machine::new("look").with_state(FnState::new(
///     "look",
///     |env: &mut Env| { env.answer = Some("found it".into()); Ok(()) },
///     |_: &Env| Next::End,
/// ));
/// let machine = Machine::new("research").with_machine(
///     SubMachine::new("research", research).transition(|_: &Env| Next::End),
/// );
/// let out = machine.run(Env::new()).await?;
/// assert_eq!(out.answer.as_deref(), Some("found it"));
/// # Ok::<(), statewise::RunFailure>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct SubMachine {
    name: String,
    fixed: Option<Machine>,
    build: Arc<BuildFn>,
    input: Option<Arc<InputFn>>,
    output: Option<Arc<OutputFn>>,
    transition: Option<Arc<TransitionFn>>,
    targets: Option<Vec<Next>>,
}

impl std::fmt::Debug for SubMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubMachine")
            .field("name", &self.name)
            .field("machine", &self.fixed)
            .finish_non_exhaustive()
    }
}

impl SubMachine {
    /// `machine`, run as the node `name`.
    pub fn new(name: impl Into<String>, machine: Machine) -> Self {
        let fixed = machine.clone();
        SubMachine {
            fixed: Some(machine),
            ..SubMachine::build(name, move |_: &Env| Ok(fixed.clone()))
        }
    }

    /// A node `name` whose machine `build` makes from the env each time the
    /// node is entered (or resumed); an error fails the node like a state's.
    pub fn build(
        name: impl Into<String>,
        build: impl Fn(&Env) -> Result<Machine, StateError> + Send + Sync + 'static,
    ) -> Self {
        SubMachine {
            name: name.into(),
            fixed: None,
            build: Arc::new(build),
            input: None,
            output: None,
            transition: None,
            targets: None,
        }
    }

    /// Sets the env the child starts with, made from the parent's.
    pub fn input(mut self, input: impl Fn(&Env) -> Env + Send + Sync + 'static) -> Self {
        self.input = Some(Arc::new(input));
        self
    }

    /// Sets what the parent takes from the child's result.
    pub fn output(mut self, output: impl Fn(&mut Env, &RunOutput) + Send + Sync + 'static) -> Self {
        self.output = Some(Arc::new(output));
        self
    }

    /// Sets where the run goes after the sub-machine (pure, like
    /// [`State::transition`](crate::State::transition)).
    pub fn transition(mut self, next: impl Fn(&Env) -> Next + Send + Sync + 'static) -> Self {
        self.transition = Some(Arc::new(next));
        self
    }

    /// Declares where [`transition`](Self::transition) can go
    /// ([`State::targets`](crate::State::targets)).
    pub fn with_targets(mut self, targets: impl IntoIterator<Item = Next>) -> Self {
        self.targets = Some(targets.into_iter().collect());
        self
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The machine, if it is fixed rather than built at run time.
    pub fn fixed(&self) -> Option<&Machine> {
        self.fixed.as_ref()
    }

    /// The declared targets.
    pub fn targets(&self) -> Option<&[Next]> {
        self.targets.as_deref()
    }

    pub(super) fn machine(&self, env: &Env) -> Result<Machine, StateError> {
        (self.build)(env)
    }

    /// The env the child starts with: the input mapping's, with the
    /// bookkeeping that is the child's own reset.
    pub(super) fn child_env(&self, parent: &Env) -> Env {
        let mut env = match &self.input {
            Some(input) => input(parent),
            None => parent.clone(),
        };
        env.step = 0;
        env.usage = Usage::default();
        env.branches.clear();
        env.interrupt = None;
        env.responses.clear();
        env
    }

    /// Takes the child's result `out` into `env` and adds its usage;
    /// returns that usage.
    pub(super) fn finish(&self, env: &mut Env, out: &RunOutput) -> Usage {
        match &self.output {
            Some(output) => output(env, out),
            None => {
                env.answer.clone_from(&out.answer);
                let known = env.observations.len();
                env.observations
                    .extend(out.env.observations.iter().skip(known).cloned());
            }
        }
        let used = out.env.usage;
        env.usage.add(&used);
        used
    }

    pub(super) fn next(&self, env: &Env) -> Next {
        self.transition.as_ref().map_or(Next::End, |t| t(env))
    }
}
