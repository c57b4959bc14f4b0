//! Guardrails and permissions: checks on a run's input, its answer and its
//! tool calls that pass, rewrite or trip before harm is done, and the
//! [`Principal`] a run acts for.
//!
//! Key design decision: a guardrail is a value the machine or a toolbox
//! holds and calls at fixed points (the run's input, each answer piece
//! before it leaves, each tool call before and after it runs), never a
//! state the model could route around; and it sees plain data (text, a
//! tool's name and JSON arguments), so this module sits below the env and
//! a guardrail is tested without a run. A guardrail that trips says so as
//! a [`Trip`]; tool calls report theirs through the run's [`Tripwire`],
//! which the machine reads after every event, so a custom state that runs
//! tools through a toolbox is guarded exactly as the stock one.

mod check;
mod domains;
mod limits;
mod pii;
mod planted;
mod principal;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use check::{CallCheck, Check, OutputCheck, ResultCheck};
pub use domains::Domains;
pub use limits::{DenyList, InputSize};
pub use pii::{Found, PersonalData, PersonalKind};
pub use planted::ResultsAsData;
pub use principal::Principal;

/// Where in a run a guardrail looked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Stage {
    /// The run's input, before or alongside the first model call.
    Input,
    /// The answer, before it leaves the run.
    Output,
    /// A tool call, before it runs.
    ToolCall,
    /// A tool's result, before the model reads it.
    ToolResult,
}

impl Stage {
    /// The stage in snake_case: the `stage` label of the trip metric.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Input => "input",
            Stage::Output => "output",
            Stage::ToolCall => "tool_call",
            Stage::ToolResult => "tool_result",
        }
    }
}

/// A guardrail that tripped: which one, where, why, and whether the run
/// stops (a rejected tool call goes on: the model is told why).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trip {
    /// The guardrail's name.
    pub guardrail: String,
    /// Where it looked.
    pub stage: Stage,
    /// Why, in words safe to show: a guardrail names what it found, never
    /// the data itself.
    pub reason: String,
    /// Whether the run stops here.
    pub stops: bool,
}

impl Trip {
    /// A trip of `guardrail` at `stage` that stops the run.
    pub fn new(guardrail: impl Into<String>, stage: Stage, reason: impl Into<String>) -> Self {
        Trip {
            guardrail: guardrail.into(),
            stage,
            reason: reason.into(),
            stops: true,
        }
    }

    /// The same trip, not stopping the run.
    pub fn going_on(mut self) -> Self {
        self.stops = false;
        self
    }
}

impl std::fmt::Display for Trip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "guardrail `{}` tripped on the {}: {}",
            self.guardrail,
            self.stage.as_str().replace('_', " "),
            self.reason
        )
    }
}

/// Where tool calls report the guardrails they tripped, for the machine to
/// read after each event: clones share one list.
#[derive(Debug, Clone, Default)]
pub struct Tripwire(Arc<Wire>);

#[derive(Debug, Default)]
struct Wire {
    /// Set while trips wait: the machine reads it after every event, so
    /// an empty wire costs one load, not a lock.
    pending: AtomicBool,
    trips: Mutex<Vec<Trip>>,
}

impl Tripwire {
    /// Records `trip`.
    pub fn record(&self, trip: Trip) {
        // A poisoned lock only means a panic elsewhere while recording;
        // the list itself is whole.
        self.0
            .trips
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(trip);
        self.0.pending.store(true, Ordering::Release);
    }

    /// The trips recorded since the last call, oldest first.
    pub fn drain(&self) -> Vec<Trip> {
        if !self.0.pending.swap(false, Ordering::Acquire) {
            return Vec::new();
        }
        std::mem::take(
            &mut *self
                .0
                .trips
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// A check on the run's input: the user's words the run starts from.
pub trait InputGuardrail: Send + Sync {
    /// The name trips carry.
    fn name(&self) -> &str;
    /// Judges `input`; may ask a model (it runs alongside the first state).
    fn check<'a>(&'a self, input: &'a str) -> BoxFuture<'a, Check>;
}

/// A check on answer text before it leaves the run: pass, rewrite or block.
pub trait OutputGuardrail: Send + Sync {
    /// The name trips carry.
    fn name(&self) -> &str;
    /// Judges `text`: the whole answer, or a settled piece of it while it
    /// streams (see [`OutputGuardrail::settled`]).
    fn check<'a>(&'a self, text: &'a str) -> BoxFuture<'a, OutputCheck>;
    /// How many bytes at the start of `text` (answer text not yet let out)
    /// it can judge now, because nothing that arrives later changes its
    /// verdict on them; those stream as soon as they are judged. The
    /// default, 0, holds the answer until it is whole.
    fn settled(&self, text: &str) -> usize {
        let _ = text;
        0
    }
}

/// A check on tool calls: before one runs (allow, reject with a message
/// the model sees, or stop the run) and on its result (keep, replace, or
/// stop the run).
pub trait ToolGuardrail: Send + Sync {
    /// The name trips carry.
    fn name(&self) -> &str;
    /// Judges a call of tool `tool` with `arguments` in `scope`.
    fn before<'a>(
        &'a self,
        tool: &'a str,
        arguments: &'a Value,
        scope: &'a CallScope,
    ) -> BoxFuture<'a, CallCheck> {
        let _ = (tool, arguments, scope);
        Box::pin(std::future::ready(CallCheck::Allow))
    }
    /// Judges the `result` of a call of `tool`.
    fn after<'a>(
        &'a self,
        tool: &'a str,
        result: &'a Value,
        scope: &'a CallScope,
    ) -> BoxFuture<'a, ResultCheck> {
        let _ = (tool, result, scope);
        Box::pin(std::future::ready(ResultCheck::Keep))
    }
}

/// What a tool guardrail knows of the run a call is made in: the user's
/// words and the tool results the model has read.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct CallScope {
    /// Every user message of the run, joined by newlines.
    pub input: String,
    /// The content of every earlier tool result, as the model read it.
    pub results: Vec<String>,
    /// Who the run acts for, if the caller said.
    pub principal: Option<Principal>,
}

impl CallScope {
    /// A scope of `input` and earlier `results`.
    pub fn new(input: impl Into<String>, results: Vec<String>) -> Self {
        CallScope {
            input: input.into(),
            results,
            principal: None,
        }
    }

    /// The same scope, acting for `principal`.
    pub fn acting_for(mut self, principal: Option<Principal>) -> Self {
        self.principal = principal;
        self
    }
}

/// The guardrails a machine runs: on the input, on the answer, and on
/// every tool call its states make through a toolbox. Clones share them.
///
/// ```
/// use statewise::guard::{Guardrails, InputSize, PersonalData};
///
/// let guardrails = Guardrails::new()
///     .input(InputSize::chars(4_000))
///     .output(PersonalData::redacting());
/// assert_eq!(guardrails.output_guardrails().len(), 1);
/// ```
#[derive(Clone, Default)]
pub struct Guardrails {
    input: Arc<Vec<Arc<dyn InputGuardrail>>>,
    input_first: Arc<Vec<Arc<dyn InputGuardrail>>>,
    output: Arc<Vec<Arc<dyn OutputGuardrail>>>,
    tool: Arc<Vec<Arc<dyn ToolGuardrail>>>,
}

impl std::fmt::Debug for Guardrails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |v: Vec<&str>| v.join(", ");
        f.debug_struct("Guardrails")
            .field(
                "input",
                &names(self.input.iter().map(|g| g.name()).collect()),
            )
            .field(
                "input_first",
                &names(self.input_first.iter().map(|g| g.name()).collect()),
            )
            .field(
                "output",
                &names(self.output.iter().map(|g| g.name()).collect()),
            )
            .field("tool", &names(self.tool.iter().map(|g| g.name()).collect()))
            .finish()
    }
}

impl Guardrails {
    /// None.
    pub fn new() -> Self {
        Guardrails::default()
    }

    /// Checks the run's input alongside the first state: its events are
    /// held until the check passes, and its model call is cancelled when
    /// it trips, so nothing it produced reaches a consumer.
    pub fn input(mut self, guardrail: impl InputGuardrail + 'static) -> Self {
        Arc::make_mut(&mut self.input).push(Arc::new(guardrail));
        self
    }

    /// Checks the run's input before the first state starts: slower than
    /// [`Guardrails::input`], but no model call is made for input it
    /// refuses.
    pub fn input_first(mut self, guardrail: impl InputGuardrail + 'static) -> Self {
        Arc::make_mut(&mut self.input_first).push(Arc::new(guardrail));
        self
    }

    /// Checks answer text before it leaves the run.
    pub fn output(mut self, guardrail: impl OutputGuardrail + 'static) -> Self {
        Arc::make_mut(&mut self.output).push(Arc::new(guardrail));
        self
    }

    /// Checks every tool call made through a toolbox, and its result.
    pub fn tool(mut self, guardrail: impl ToolGuardrail + 'static) -> Self {
        Arc::make_mut(&mut self.tool).push(Arc::new(guardrail));
        self
    }

    /// The input guardrails that run alongside the first state.
    pub fn input_guardrails(&self) -> &[Arc<dyn InputGuardrail>] {
        &self.input
    }

    /// The input guardrails that run before the first state.
    pub fn input_first_guardrails(&self) -> &[Arc<dyn InputGuardrail>] {
        &self.input_first
    }

    /// The output guardrails, in the order they run.
    pub fn output_guardrails(&self) -> &[Arc<dyn OutputGuardrail>] {
        &self.output
    }

    /// The tool guardrails, in the order they run.
    pub fn tool_guardrails(&self) -> &[Arc<dyn ToolGuardrail>] {
        &self.tool
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.input.is_empty()
            && self.input_first.is_empty()
            && self.output.is_empty()
            && self.tool.is_empty()
    }
}

/// Runs `guardrails` on `input` one after another, returning the first
/// trip.
pub async fn check_input(guardrails: &[Arc<dyn InputGuardrail>], input: &str) -> Option<Trip> {
    for guardrail in guardrails {
        if let Check::Trip(reason) = guardrail.check(input).await {
            return Some(Trip::new(guardrail.name(), Stage::Input, reason));
        }
    }
    None
}

/// Runs `guardrails` on answer `text` in order, each on what the last let
/// out: the text to let out, or the trip of the one that blocked it.
pub async fn check_output(
    guardrails: &[Arc<dyn OutputGuardrail>],
    text: &str,
) -> Result<String, Trip> {
    let mut text = text.to_owned();
    for guardrail in guardrails {
        match guardrail.check(&text).await {
            OutputCheck::Pass => {}
            OutputCheck::Rewrite(rewritten) => text = rewritten,
            OutputCheck::Block(reason) => {
                return Err(Trip::new(guardrail.name(), Stage::Output, reason))
            }
        }
    }
    Ok(text)
}

/// How many bytes at the start of `text` every guardrail can judge now
/// (a char boundary).
pub fn settled(guardrails: &[Arc<dyn OutputGuardrail>], text: &str) -> usize {
    let mut at = guardrails
        .iter()
        .map(|g| g.settled(text).min(text.len()))
        .min()
        .unwrap_or(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// A guardrail made of a name and a function, for checks that need no
/// state of their own.
///
/// ```
/// use statewise::guard::{CallCheck, FnGuardrail, Guardrails};
///
/// let no_deletes = FnGuardrail::new("no_deletes", |tool: &str, _args: &serde_json::Value| {
///     if tool.starts_with("delete_") {
///         CallCheck::Reject("deleting is not allowed in this agent".into())
///     } else {
///         CallCheck::Allow
///     }
/// });
/// let guardrails = Guardrails::new().tool(no_deletes);
/// assert_eq!(guardrails.tool_guardrails().len(), 1);
/// ```
pub struct FnGuardrail<F> {
    name: String,
    check: F,
}

impl<F> FnGuardrail<F> {
    /// A guardrail named `name` that judges with `check`.
    pub fn new(name: impl Into<String>, check: F) -> Self {
        FnGuardrail {
            name: name.into(),
            check,
        }
    }
}

impl<F> InputGuardrail for FnGuardrail<F>
where
    F: Fn(&str) -> Check + Send + Sync,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn check<'a>(&'a self, input: &'a str) -> BoxFuture<'a, Check> {
        Box::pin(std::future::ready((self.check)(input)))
    }
}

impl<F> ToolGuardrail for FnGuardrail<F>
where
    F: Fn(&str, &Value) -> CallCheck + Send + Sync,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn before<'a>(
        &'a self,
        tool: &'a str,
        arguments: &'a Value,
        _scope: &'a CallScope,
    ) -> BoxFuture<'a, CallCheck> {
        Box::pin(std::future::ready((self.check)(tool, arguments)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Upper;

    impl OutputGuardrail for Upper {
        fn name(&self) -> &str {
            "upper"
        }
        fn check<'a>(&'a self, text: &'a str) -> BoxFuture<'a, OutputCheck> {
            Box::pin(std::future::ready(OutputCheck::Rewrite(
                text.to_uppercase(),
            )))
        }
        fn settled(&self, text: &str) -> usize {
            text.rfind(' ').map_or(0, |i| i + 1)
        }
    }

    #[tokio::test]
    async fn output_guardrails_run_in_order_and_the_first_block_wins() {
        let blocker: Arc<dyn OutputGuardrail> = Arc::new(DenyList::new(["SECRET"]));
        let upper: Arc<dyn OutputGuardrail> = Arc::new(Upper);
        assert_eq!(
            check_output(&[Arc::clone(&upper)], "a b").await,
            Ok("A B".into())
        );
        let trip = check_output(&[upper, blocker], "the secret plan")
            .await
            .unwrap_err();
        assert_eq!(trip.guardrail, "deny_list");
        assert_eq!(trip.stage, Stage::Output);
    }

    #[test]
    fn the_settled_prefix_is_the_least_every_guardrail_can_judge() {
        let upper: Arc<dyn OutputGuardrail> = Arc::new(Upper);
        assert_eq!(settled(&[Arc::clone(&upper)], "one two"), 4);
        assert_eq!(settled(&[], "one two"), 7);
        let holding: Arc<dyn OutputGuardrail> = Arc::new(DenyList::new(["x"]));
        assert_eq!(settled(&[upper, holding], "one two"), 4);
    }

    #[test]
    fn a_tripwire_hands_each_trip_out_once() {
        let wire = Tripwire::default();
        wire.clone()
            .record(Trip::new("g", Stage::ToolCall, "r").going_on());
        let trips = wire.drain();
        assert_eq!(trips.len(), 1);
        assert!(!trips[0].stops);
        assert!(wire.drain().is_empty());
    }
}
