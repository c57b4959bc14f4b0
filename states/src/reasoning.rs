//! The Reasoning state: ask the model for an action.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use serde_json::Value;
use statewise::action::{action_schema, ActionReader, ParseError, Progress, RepairError};
use statewise::fit::Fitter;
use statewise::model::{message_tokens, ChatRequest, Estimate, Params, SharedModel, TokenCounter};
use statewise::state::{ActionParsed, ActionRepaired, StateEvent};
use statewise::tool::{ToolSpec, Toolbox};
use statewise::{
    Action, Emit, EmitStream, Env, Message, Next, ScratchKey, State, StateError, ToolCall,
};

use crate::memories::{Memories, MemoriesRecalled, Recollected};
use crate::{prompt, ANSWER, REASONING, TOOLS};

/// Told to a model whose tools were withdrawn for a repeated call.
const REPEATED_CALL_NOTE: &str = "You made the same tool call again. No more tools: \
     answer the user now, from the observations above, with a final answer.";

const DEFAULT_INSTRUCTIONS: &str =
    "You are a helpful assistant. Think about the user's request, use tools when they help, \
     and answer accurately and briefly.";

/// Asks the model for the next action, streams its tokens, then repairs and
/// parses the reply into the env's pending [`Action`].
///
/// Routing: tool calls go to `tools`, a final answer to `answer`. A reply
/// with no JSON in it at all is the final answer (`prose_is_answer`, on by
/// default: models often answer in plain prose after a tool's observation).
/// A reply with JSON that cannot be read as an action is sent back to the
/// model with the parse error as feedback and Reasoning runs again; once a
/// run's unreadable replies exceed `max_parse_retries`, counted over the
/// whole run, it fails with [`StateError::Action`]. An unreadable reply and
/// its feedback are shown to the model until it gives a readable one, then
/// leave the conversation.
///
/// Each request is fitted to the model's context window first (see
/// [`Reasoning::fitter`]), and sent once more, fitted tighter, if the
/// provider still reports an overflow.
#[derive(Clone)]
pub struct Reasoning {
    name: String,
    model: SharedModel,
    tools: Toolbox,
    instructions: String,
    params: Params,
    tier: Option<String>,
    max_parse_retries: u32,
    prose_is_answer: bool,
    max_repeated_calls: u32,
    max_calls_per_step: usize,
    max_tool_rounds: Option<u32>,
    stream_answer: bool,
    on_model_error: Option<String>,
    on_tool_calls: String,
    on_answer: String,
    fitter: Fitter,
    memories: Option<Memories>,
    keys: Keys,
    /// Built on first use, and again when the toolbox's tools change (a
    /// live source's): they depend only on the settings above and the
    /// tools.
    prompts: Arc<Mutex<Option<BuiltPrompts>>>,
}

/// What a Reasoning state keeps in the env's scratch, under its own name
/// (`reasoning.parse_failures`, ...), so two Reasoning states keep apart.
#[derive(Debug, Clone)]
struct Keys {
    /// Unreadable replies in the run.
    failures: ScratchKey<u32>,
    /// The unreadable replies since the last readable one, with feedback.
    feedback: ScratchKey<Vec<Message>>,
    /// Rounds of tool calls made.
    rounds: ScratchKey<u32>,
    /// How often each call (tool and arguments) was made.
    calls: ScratchKey<BTreeMap<String, u32>>,
    /// Present once tools were withdrawn for a repeated call.
    withdrawn: ScratchKey<bool>,
    /// The memories recalled, and the index of the question they answer.
    recalled: ScratchKey<(usize, Option<Recollected>)>,
}

impl Keys {
    fn for_state(name: &str) -> Self {
        Keys {
            failures: ScratchKey::named(format!("{name}.parse_failures")),
            feedback: ScratchKey::named(format!("{name}.feedback")),
            rounds: ScratchKey::named(format!("{name}.tool_rounds")),
            calls: ScratchKey::named(format!("{name}.call_counts")),
            withdrawn: ScratchKey::named(format!("{name}.tools_withdrawn")),
            recalled: ScratchKey::named(format!("{name}.memories")),
        }
    }
}

/// The prompts, and the tool specs they were built from.
type BuiltPrompts = (Arc<[ToolSpec]>, Arc<Prompts>);

/// What every request of a Reasoning state repeats, built once.
#[derive(Clone)]
struct Prompts {
    /// System prompts for a JSON-action model: with the tools, and without.
    json: [String; 2],
    /// The matching action schemas.
    schema: [Value; 2],
    /// The system prompt for a model with native tool calling.
    native: String,
}

impl std::fmt::Debug for Reasoning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reasoning")
            .field("name", &self.name)
            .field("model", &self.model.name())
            .field("tools", &self.tools.names())
            .finish_non_exhaustive()
    }
}

impl Reasoning {
    /// Reasoning with `model`, offering the tools of `tools`.
    pub fn new(model: SharedModel, tools: Toolbox) -> Self {
        Reasoning {
            name: REASONING.to_owned(),
            model,
            tools,
            instructions: DEFAULT_INSTRUCTIONS.to_owned(),
            params: Params::default(),
            tier: None,
            max_parse_retries: 2,
            prose_is_answer: true,
            max_repeated_calls: 2,
            max_calls_per_step: 8,
            max_tool_rounds: None,
            stream_answer: true,
            on_model_error: None,
            on_tool_calls: TOOLS.to_owned(),
            on_answer: ANSWER.to_owned(),
            fitter: Fitter::default(),
            memories: None,
            keys: Keys::for_state(REASONING),
            prompts: Arc::default(),
        }
    }

    /// Renames the state (to run several Reasoning states in one machine).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self.keys = Keys::for_state(&self.name);
        self
    }

    /// Replaces the opening of the system prompt; the tool list and the
    /// action format are always appended.
    pub fn instructions(mut self, instructions: impl Into<String>) -> Self {
        self.instructions = instructions.into();
        self.prompts = Arc::default();
        self
    }

    /// Sets the sampling parameters.
    pub fn params(mut self, params: Params) -> Self {
        self.params = params;
        self
    }

    /// The tier its requests ask a [`Router`](statewise::layer::Router)
    /// for ([`ChatRequest::tier`]): `"large"` for the state that needs
    /// the strong model.
    pub fn tier(mut self, tier: impl Into<String>) -> Self {
        self.tier = Some(tier.into());
        self
    }

    /// How many unreadable replies a run may have, in all: each is fed
    /// back, and the one after the last retry fails the run. The count is
    /// not reset by a good reply, so a model alternating between tool calls
    /// and unreadable replies cannot loop until the step limit.
    pub fn max_parse_retries(mut self, retries: u32) -> Self {
        self.max_parse_retries = retries;
        self
    }

    /// After the same tool call (same tool, same arguments) was made this
    /// many times in a run (default 2), offer no more tools and ask the
    /// model to answer from the observations it has; the state emits
    /// a [`RepeatedCall`] event. Should the model call a tool all the same,
    /// the last observation is taken as the answer. Small models repeat a
    /// call round after round otherwise.
    pub fn max_repeated_calls(mut self, times: u32) -> Self {
        self.max_repeated_calls = times.max(1);
        self
    }

    /// Whether a reply with no JSON object or array in it at all is the
    /// final answer (default on). Off, it is fed back as unreadable like
    /// broken JSON is.
    pub fn prose_is_answer(mut self, on: bool) -> Self {
        self.prose_is_answer = on;
        self
    }

    /// The most tool calls one action may hold (default 8). Models that
    /// constrain their output get it in the action schema; a reply with more
    /// is fed back as an error.
    pub fn max_calls_per_step(mut self, calls: usize) -> Self {
        self.max_calls_per_step = calls.max(1);
        self.prompts = Arc::default();
        self
    }

    /// After this many rounds of tool calls, offer no more tools: the model
    /// must answer from what it has (default: no limit but the machine's
    /// step limit). Small models that loop on tools need it.
    pub fn max_tool_rounds(mut self, rounds: u32) -> Self {
        self.max_tool_rounds = Some(rounds);
        self
    }

    /// Whether this state gives the answer itself (default on): the
    /// answer's text streams to the caller as [`Emit::AnswerToken`]s as the
    /// model writes it (decoded from a JSON action, or a native reply's
    /// text as it arrives), and a final answer is written to `env.answer`,
    /// so the stock [`Answer`](crate::Answer) has nothing left to send.
    /// Turn it off when the answer state rewrites the draft
    /// ([`Answer::with_model`](crate::Answer::with_model)), so the caller
    /// does not see both; the reply's text then streams as
    /// [`Emit::Token`]s. It is off by itself when the run asks for a typed
    /// output ([`Machine::output`](statewise::Machine::output)): the answer
    /// state writes that.
    pub fn stream_answer(mut self, on: bool) -> Self {
        self.stream_answer = on;
        self
    }

    /// Where to go when the model fails for good (retries spent, circuit
    /// open): e.g. an [`Answer`](crate::Answer) with an apology. By default
    /// the run fails.
    pub fn on_model_error(mut self, state: impl Into<String>) -> Self {
        self.on_model_error = Some(state.into());
        self
    }

    /// The state to go to when the model calls tools (default `tools`).
    pub fn on_tool_calls(mut self, state: impl Into<String>) -> Self {
        self.on_tool_calls = state.into();
        self
    }

    /// The state to go to on a final answer (default `answer`).
    pub fn on_answer(mut self, state: impl Into<String>) -> Self {
        self.on_answer = state.into();
        self
    }

    /// How requests are fitted to the model's context window (default:
    /// [`Trim`](statewise::fit::Trim) to the window the model reports). The
    /// system prompt, the user's last turn, the latest tool round and this
    /// state's notes to the model (parse feedback, the repeated-call note)
    /// are always kept. [`Fitter::off`] sends the conversation as it is.
    pub fn fitter(mut self, fitter: Fitter) -> Self {
        self.fitter = fitter;
        self
    }

    /// Puts the principal's memories that best match the user's question in
    /// the prompt, as a second system message within their own token budget
    /// (see [`Memories`]). They are searched once per question, and the
    /// fitter keeps them whole, trimming older turns instead.
    pub fn memories(mut self, memories: Memories) -> Self {
        self.memories = Some(memories);
        self
    }

    /// Searches the memories for the user's question unless this question's
    /// are already in the env, and says what went in.
    async fn recollect(&self, env: &mut Env) -> Option<MemoriesRecalled> {
        let memories = self.memories.as_ref()?;
        let question = env
            .messages
            .iter()
            .rposition(|m| m.role == statewise::Role::User && m.tool_call_id.is_none())?;
        let known: Option<(usize, Option<Recollected>)> =
            env.scratch.get(&self.keys.recalled).ok().flatten();
        if known.is_some_and(|(at, _)| at == question) {
            return None;
        }
        let counter = self.model.context_window().await.and_then(|w| w.counter);
        let counter: &dyn TokenCounter = match &counter {
            Some(c) => c.as_ref(),
            None => &Estimate,
        };
        let (recalled, event) = match memories.recall(env, counter).await {
            Ok(recalled) => {
                let event = MemoriesRecalled {
                    memories: recalled.as_ref().map_or(0, |r| r.memories),
                    tokens: recalled
                        .as_ref()
                        .map_or(0, |r| message_tokens(&r.message, counter)),
                    error: None,
                };
                (recalled, event)
            }
            Err(e) => {
                let event = MemoriesRecalled {
                    memories: 0,
                    tokens: 0,
                    error: Some(e.to_string()),
                };
                (None, event)
            }
        };
        env.scratch
            .set(&self.keys.recalled, &(question, recalled))
            .ok()?;
        Some(event)
    }

    /// The memories in the prompt for `env`'s current question.
    fn recalled(&self, env: &Env) -> Option<Message> {
        self.memories.as_ref()?;
        let (_, recalled): (usize, Option<Recollected>) =
            env.scratch.get(&self.keys.recalled).ok().flatten()?;
        recalled.map(|r| r.message)
    }

    /// The tools offered for `env`: none once the tool-round budget is spent.
    fn offered(&self, env: &Env) -> Arc<[ToolSpec]> {
        if self.withdrawn(env) {
            return Arc::from([]);
        }
        let rounds = env
            .scratch
            .get(&self.keys.rounds)
            .ok()
            .flatten()
            .unwrap_or(0);
        match self.max_tool_rounds {
            Some(max) if rounds >= max => Arc::from([]),
            _ => self.tools.specs_for(env.principal.as_ref()),
        }
    }

    /// Whether this state calls tools natively with its model for `env`:
    /// when the model supports it and tools are offered; otherwise it
    /// prompts for JSON actions.
    pub fn native_tools(&self, env: &Env) -> bool {
        self.model.capabilities().native_tools && !self.offered(env).is_empty()
    }

    /// The request this state sends for `env`, before fitting: the
    /// conversation, then this state's notes for this call (see
    /// [`notes`](Self::notes)).
    pub fn request(&self, env: &Env) -> ChatRequest {
        let specs = self.offered(env);
        let capabilities = self.model.capabilities();
        let prompts = self.prompts(env);
        let notes = self.notes(env);
        let recalled = self.recalled(env);
        if capabilities.native_tools && !specs.is_empty() {
            let mut messages = prompt::native_conversation(prompts.native.clone(), env);
            messages.splice(1..1, recalled);
            messages.extend(notes);
            return ChatRequest {
                messages,
                tools: specs.to_vec(),
                params: self.params.clone(),
                tier: self.tier.clone(),
                response_schema: None,
            };
        }
        let which = usize::from(specs.is_empty());
        let mut messages = prompt::conversation(prompts.json[which].clone(), env);
        messages.splice(1..1, recalled);
        messages.extend(notes);
        ChatRequest {
            messages,
            tools: Vec::new(),
            params: self.params.clone(),
            tier: self.tier.clone(),
            response_schema: capabilities
                .json_schema
                .then(|| prompts.schema[which].clone()),
        }
    }

    /// What this state tells the model for the next call only, after the
    /// conversation: the unreadable replies since the last readable one with
    /// their feedback, and the note that tools are withdrawn.
    pub fn notes(&self, env: &Env) -> Vec<Message> {
        let mut notes = env
            .scratch
            .get(&self.keys.feedback)
            .ok()
            .flatten()
            .unwrap_or_default();
        if self.withdrawn(env) {
            notes.push(Message::user(REPEATED_CALL_NOTE));
        }
        notes
    }

    fn prompts(&self, env: &Env) -> Arc<Prompts> {
        // A principal's tools are a list of their own each time: compared
        // by content, so the prompts are built once per set of tools.
        let all = self.tools.specs_for(env.principal.as_ref());
        let mut cached = self.prompts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((specs, prompts)) = &*cached {
            if Arc::ptr_eq(specs, &all) || specs[..] == all[..] {
                return Arc::clone(prompts);
            }
        }
        let json = |specs: &[ToolSpec]| {
            format!("{}\n\n{}", self.instructions, prompt::action_format(specs))
        };
        let prompts = Arc::new(Prompts {
            json: [json(&all), json(&[])],
            schema: [
                action_schema(&all, self.max_calls_per_step),
                action_schema(&[], self.max_calls_per_step),
            ],
            native: format!("{}\n\n{}", self.instructions, prompt::NATIVE_TOOLS_GUIDE),
        });
        *cached = Some((all, Arc::clone(&prompts)));
        prompts
    }

    /// Whether tools were withdrawn for a repeated call.
    fn withdrawn(&self, env: &Env) -> bool {
        env.scratch.contains(&self.keys.withdrawn)
    }

    /// Counts `calls` among the run's calls; the first that has now been
    /// made `max_repeated_calls` times, with its count.
    fn count_calls(
        &self,
        env: &mut Env,
        calls: &[ToolCall],
    ) -> Result<Option<(ToolCall, u32)>, StateError> {
        let key = &self.keys.calls;
        let mut counts = env.scratch.get(key)?.unwrap_or_default();
        let mut repeated = None;
        for call in calls {
            let n = counts.entry(call.signature()).or_default();
            *n += 1;
            if *n >= self.max_repeated_calls && repeated.is_none() {
                repeated = Some((call.clone(), *n));
            }
        }
        env.scratch.set(key, &counts)?;
        Ok(repeated)
    }
}

impl State for Reasoning {
    fn name(&self) -> &str {
        &self.name
    }

    fn run<'a>(&'a self, env: &'a mut Env) -> EmitStream<'a> {
        Box::pin(statewise::try_stream! {
            // A new round: no action chosen and no answer given yet.
            env.action = None;
            env.answer = None;
            if let Some(recalled) = self.recollect(env).await {
                yield Emit::custom(&recalled);
            }
            let native = self.native_tools(env);
            // A typed output is the answer state's to write: what this
            // state decides is its draft.
            let stream_answer = self.stream_answer && env.settings.output.is_none();
            let notes = self.notes(env).len();
            let snapshot: &Env = env;
            let mut call = self.fitter.call(&*self.model, notes, &snapshot.settings, || self.request(snapshot));
            // One pass over a JSON action's text: what it is, the answer's
            // text as it is written, its tool calls as drafts (native ones
            // come drafted).
            let prefix = call_id_prefix(env);
            let mut reader = ActionReader::new(prefix.clone());
            // The answer's text the caller has seen from this call.
            let mut streamed = String::new();
            while let Some(piece) = call.next().await {
                let emit = match Emit::from(piece?) {
                    // A native reply's text is the answer, or the model's
                    // message before its tool calls: the caller sees it as
                    // it arrives, either way.
                    Emit::Token(t) if native && stream_answer => {
                        streamed.push_str(&t);
                        Emit::AnswerToken(t)
                    }
                    emit => emit,
                };
                let progress = match &emit {
                    Emit::Token(t) if !native => reader.push(t),
                    _ => Progress::default(),
                };
                yield emit;
                if let Some(partial) = progress.partial {
                    yield Emit::custom(&partial);
                }
                if stream_answer && !progress.answer.is_empty() {
                    streamed.push_str(&progress.answer);
                    yield Emit::AnswerToken(progress.answer);
                }
                for draft in progress.drafts {
                    yield Emit::ToolCallDraft(draft);
                }
            }
            let reply = call.finish();
            reply.charge(env);

            let parsed = if !reply.tool_calls.is_empty() {
                Ok(Action::ToolCalls(reply.tool_calls.clone()))
            } else if native {
                // With native tools, a reply without tool calls is the answer.
                match reply.text.trim() {
                    "" => Err(ParseError::Repair(RepairError::Empty)),
                    text => Ok(Action::FinalAnswer(text.to_owned())),
                }
            } else {
                match reader.finish() {
                    Ok(parsed) => {
                        yield Emit::custom(&ActionRepaired(parsed.repaired));
                        Ok(renumber(parsed.action, &prefix))
                    }
                    Err(ParseError::Repair(RepairError::NoJson { .. })) if self.prose_is_answer => {
                        Ok(Action::FinalAnswer(reply.text.trim().to_owned()))
                    }
                    Err(e) => Err(e),
                }
            };
            let parsed = parsed.and_then(|action| match &action {
                Action::ToolCalls(calls) if calls.len() > self.max_calls_per_step => Err(ParseError::TooManyCalls {
                    found: calls.len(),
                    max: self.max_calls_per_step,
                }),
                _ => Ok(action),
            });
            // Tools were withdrawn for a repeated call and the model calls one
            // all the same: what the tools already said is the answer.
            let parsed = parsed.map(|action| match action {
                Action::ToolCalls(_) if self.withdrawn(env) => {
                    // Not the text that streamed: that was the model's
                    // message before its call.
                    streamed.clear();
                    Action::FinalAnswer(env.observations.last().map(|o| o.render()).unwrap_or_default())
                }
                action => action,
            });
            let key = &self.keys.failures;
            let mut repeated = None;
            let mut message = Message::assistant(reply.text);
            match parsed {
                Ok(action) => {
                    env.scratch.remove(&self.keys.feedback);
                    if let (Action::FinalAnswer(text), true) = (&action, stream_answer) {
                        // The rest of the answer the caller has not seen
                        // (all of a prose reply); given, so the answer
                        // state has nothing to send.
                        if let Some(rest) = unsent(text, &streamed) {
                            yield Emit::AnswerToken(rest.to_owned());
                        }
                        env.answer = Some(text.clone());
                    }
                    if let Action::ToolCalls(calls) = &action {
                        if !reply.tool_calls.is_empty() {
                            message.tool_calls = calls.clone();
                        }
                        let rounds = env.scratch.get(&self.keys.rounds)?.unwrap_or(0);
                        env.scratch.set(&self.keys.rounds, &(rounds + 1))?;
                        repeated = self.count_calls(env, calls)?;
                        if repeated.is_some() {
                            env.scratch.set(&self.keys.withdrawn, &true)?;
                        }
                    }
                    env.messages.push(message);
                    env.action = Some(action.clone());
                    yield Emit::custom(&ActionParsed(action));
                    if let Some((call, times)) = repeated {
                        yield Emit::custom(&RepeatedCall { tool: call.name, arguments: call.arguments, times });
                    }
                }
                Err(error) => {
                    let failures = env.scratch.get(key)?.unwrap_or(0) + 1;
                    if failures > self.max_parse_retries {
                        Err(StateError::Action { attempts: failures, last: error })?;
                    } else {
                        env.scratch.set(key, &failures)?;
                        let mut feedback = env
                            .scratch
                            .get(&self.keys.feedback)?
                            .unwrap_or_default();
                        feedback.push(message);
                        feedback.push(Message::user(format!(
                            "Your reply could not be read as an action: {error}. \
                             Reply again with exactly one JSON object in the required format."
                        )));
                        env.scratch.set(&self.keys.feedback, &feedback)?;
                    }
                }
            }
        })
    }

    fn on_error(&self, error: &StateError) -> Option<Next> {
        match error {
            StateError::Model(_) => self.on_model_error.clone().map(Next::to),
            _ => None,
        }
    }

    /// Its own name (an unreadable reply), the answer state, the tool
    /// state when it has tools, and the error route when one is set.
    fn targets(&self) -> Option<Vec<Next>> {
        let mut targets = vec![
            Next::to(self.name.clone()),
            Next::to(self.on_answer.clone()),
        ];
        if !self.tools.specs().is_empty() {
            targets.push(Next::to(self.on_tool_calls.clone()));
        }
        targets.extend(self.on_model_error.clone().map(Next::to));
        Some(targets)
    }

    fn transition(&self, env: &Env) -> Next {
        match &env.action {
            Some(Action::ToolCalls(_)) => Next::to(self.on_tool_calls.clone()),
            Some(Action::FinalAnswer(_)) => Next::to(self.on_answer.clone()),
            None => Next::to(self.name.clone()),
        }
    }
}

/// The part of `answer` the caller has not seen when `streamed` went out:
/// all of it when nothing did, the rest when `streamed` begins it, and
/// nothing when what streamed differs (repair changed it, or a native
/// reply's whitespace was trimmed): streamed text cannot be taken back,
/// and sending the answer again would show it twice.
fn unsent<'a>(answer: &'a str, streamed: &str) -> Option<&'a str> {
    let rest = match answer.strip_prefix(streamed) {
        Some(rest) => rest,
        None if streamed.trim().is_empty() => answer,
        None => return None,
    };
    (!rest.is_empty()).then_some(rest)
}

/// Gives JSON-action calls ids unique within the conversation, so every
/// observation points at exactly one call.
fn renumber(action: Action, prefix: &str) -> Action {
    match action {
        Action::ToolCalls(calls) => Action::ToolCalls(
            calls
                .into_iter()
                .enumerate()
                .map(|(i, mut c)| {
                    c.id = format!("{prefix}{i}");
                    c
                })
                .collect(),
        ),
        answer => answer,
    }
}

/// What the ids of a step's JSON-action calls begin with: `call_{step}_`,
/// unless an earlier run of the conversation (a web client's thread, say)
/// already used it; then the message count makes it unique.
pub(crate) fn call_id_prefix(env: &Env) -> String {
    let plain = format!("call_{}_", env.step);
    let used = env
        .messages
        .iter()
        .flat_map(|m| {
            m.tool_calls
                .iter()
                .map(|c| c.id.as_str())
                .chain(m.tool_call_id.as_deref())
        })
        .any(|id| id.starts_with(&plain));
    if used {
        format!("call_{}_{}_", env.step, env.messages.len())
    } else {
        plain
    }
}

/// A [`Reasoning`] state's event ([`Emit::Custom`]): the model made the
/// same tool call (same tool, same arguments) `times` times in this run,
/// so the state stops offering tools and asks for an answer from the
/// observations so far ([`Reasoning::max_repeated_calls`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RepeatedCall {
    /// The tool.
    pub tool: String,
    /// Its arguments.
    pub arguments: Value,
    /// How often the call was made.
    pub times: u32,
}

impl StateEvent for RepeatedCall {
    const NAME: &'static str = "repeated_call";
}
