//! The Answer state: stream the final answer.

use futures::StreamExt;
use statewise::fit::Fitter;
use statewise::model::{ChatRequest, Params, SharedModel};
use statewise::output::Output;
use statewise::{Action, Emit, EmitStream, Env, Message, Next, Role, State, StateError};

use crate::ground::Grounding;
use crate::{prompt, ANSWER};

const DEFAULT_INSTRUCTIONS: &str =
    "Write the final answer to the user's last request, using the observations above. \
     Answer directly, in plain text.";

/// What a typed output is asked for with, before its schema.
const OUTPUT_INSTRUCTIONS: &str =
    "Give what the user's last request asks for as data, taken from the conversation and the \
     observations above. Copy each value as it is written there; use null only for a field \
     they do not give.";

/// Gives the final answer: streams it as [`Emit::AnswerToken`]s into
/// `env.answer`, then ends the run.
///
/// [`Answer::new`] gives the answer the Reasoning state chose, unless that
/// state already gave it (streamed it and wrote `env.answer`, as the stock
/// Reasoning does); [`Answer::with_model`] writes it with its own model
/// call (say, a small fast model after a large reasoning one).
///
/// When the run asks for a typed output ([`Machine::output`](statewise::Machine::output)),
/// the answer is a JSON object of that schema, written by its model
/// ([`Answer::with_model`]'s, else [`Answer::output_model`]'s): the reply
/// streams as [`Emit::Token`]s, is repaired and checked, and the model is
/// asked again with the problems, at most
/// [`Output::max_retries`](statewise::output::Output::max_retries) times;
/// the object that fits is then the answer, sent as one
/// [`Emit::AnswerToken`]. After the last retry the state fails with
/// [`OutputError::Invalid`](statewise::output::OutputError::Invalid),
/// which holds the last reply (also kept in `env.messages`).
#[derive(Clone)]
pub struct Answer {
    name: String,
    model: Option<SharedModel>,
    output_model: Option<SharedModel>,
    apology: Option<String>,
    instructions: String,
    params: Params,
    tier: Option<String>,
    fitter: Fitter,
    compact: bool,
    grounded: bool,
    shots: Vec<(String, String)>,
    then: Option<String>,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer")
            .field("name", &self.name)
            .field("model", &self.model.as_ref().map(|m| m.name().to_owned()))
            .finish_non_exhaustive()
    }
}

impl Default for Answer {
    fn default() -> Self {
        Self::new()
    }
}

impl Answer {
    /// Gives the final answer already chosen by Reasoning (nothing to send
    /// when Reasoning gave it).
    pub fn new() -> Self {
        Answer {
            name: ANSWER.to_owned(),
            model: None,
            output_model: None,
            apology: None,
            instructions: DEFAULT_INSTRUCTIONS.to_owned(),
            params: Params::default(),
            tier: None,
            fitter: Fitter::default(),
            compact: false,
            grounded: false,
            shots: Vec::new(),
            then: None,
        }
    }

    /// Goes on to the state `state` once the answer is given, instead of
    /// ending the run (e.g. [`Memorize`](crate::Memorize), which stores
    /// what was learnt off the answer's path).
    pub fn then(mut self, state: impl Into<String>) -> Self {
        self.then = Some(state.into());
        self
    }

    fn next(&self) -> Next {
        match &self.then {
            Some(state) => Next::To(state.clone().into()),
            None => Next::End,
        }
    }

    /// Writes the answer with its own call to `model`.
    pub fn with_model(model: SharedModel) -> Self {
        Answer {
            model: Some(model),
            ..Self::new()
        }
    }

    /// The model that writes a typed output when the run asks for one and
    /// this state has no model of its own ([`Answer::with_model`]); the
    /// stock [`agent`](crate::agent) passes its model here.
    pub fn output_model(mut self, model: SharedModel) -> Self {
        self.output_model = Some(model);
        self
    }

    /// Renames the state.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The answer to give when a state before failed and routed here
    /// ([`Env::errors`]) with no answer pending, e.g. "Sorry, the model is
    /// unavailable right now."
    pub fn apology(mut self, text: impl Into<String>) -> Self {
        self.apology = Some(text.into());
        self
    }

    /// Replaces the system prompt of the model call.
    pub fn instructions(mut self, instructions: impl Into<String>) -> Self {
        self.instructions = instructions.into();
        self
    }

    /// Sets the sampling parameters of the model call.
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

    /// How [`Answer::with_model`]'s requests are fitted to the model's
    /// context window (default: [`Trim`](statewise::fit::Trim); the draft
    /// answer is always kept).
    pub fn fitter(mut self, fitter: Fitter) -> Self {
        self.fitter = fitter;
        self
    }

    /// Asks [`Answer::with_model`]'s model in one message holding the
    /// user's last question and the tool results since (`What is 7 * 8?`,
    /// `(The calculator says: 56)`), instead of the whole conversation; with
    /// no tool results, that is the question as the user asked it. Small
    /// models answer this well and echo a conversation's tool messages
    /// otherwise.
    pub fn compact(mut self, on: bool) -> Self {
        self.compact = on;
        self
    }

    /// Holds [`Answer::with_model`]'s answer to the tool results it is
    /// given (default off): an answer that leaves out a number of a short
    /// result (`134` from the calculator; the day, year and time from the
    /// clock) is replaced by the results themselves, since a small model
    /// sometimes writes a greeting or another number instead. An answer
    /// after tool calls is held back (its pieces stream as
    /// [`Emit::Token`]s) until its completed words keep them, then sent as
    /// one [`Emit::AnswerToken`] and streamed live from there; one without
    /// tool results streams as usual.
    pub fn grounded(mut self, on: bool) -> Self {
        self.grounded = on;
        self
    }

    /// Worked exchanges (question, answer) put before the question of an
    /// [`Answer::compact`] request with no tool results, as earlier turns
    /// of the conversation: a small model answers in their manner (one
    /// plain sentence) where it rambles or drifts into another language
    /// without them. Pick questions unlike the ones your users ask, so no
    /// answer is copied.
    pub fn shots<Q: Into<String>, A: Into<String>>(
        mut self,
        shots: impl IntoIterator<Item = (Q, A)>,
    ) -> Self {
        self.shots = shots
            .into_iter()
            .map(|(q, a)| (q.into(), a.into()))
            .collect();
        self
    }

    /// The request [`Answer::with_model`] sends for `env`, before fitting;
    /// a draft answer from Reasoning is passed along, last. When the run
    /// asks for a typed output, the instructions ask for it: by its field
    /// names when the model constrains its reply to the request's
    /// `response_schema` (then set), else by the whole schema.
    pub fn request(&self, env: &Env) -> ChatRequest {
        let output = env.settings.output.as_deref();
        let constrained = self.writer().is_some_and(|m| m.capabilities().json_schema);
        let instructions = match output {
            Some(output) => format!(
                "{OUTPUT_INSTRUCTIONS}\n{}",
                output.instructions(constrained)
            ),
            None => self.instructions.clone(),
        };
        let mut messages = match self.compact {
            true => {
                let mut messages = vec![Message::system(instructions)];
                let (question, with_results) = compact_question(env);
                if !with_results {
                    for (q, a) in &self.shots {
                        messages.push(Message::user(q.clone()));
                        messages.push(Message::assistant(a.clone()));
                    }
                }
                messages.push(Message::user(question));
                messages
            }
            false => prompt::conversation(instructions, env),
        };
        if let Some(Action::FinalAnswer(draft)) = &env.action {
            let ask = match output {
                Some(output) => format!("Write the {} as one JSON object.", output.name()),
                None => "Write the final answer.".to_owned(),
            };
            messages.push(Message::user(format!("Draft answer: {draft}\n{ask}")));
        }
        ChatRequest {
            messages,
            tools: Vec::new(),
            params: self.params.clone(),
            tier: self.tier.clone(),
            // The provider's own constraint where it has one; else the
            // instructions carry the whole schema.
            response_schema: output.filter(|_| constrained).map(Output::request_schema),
        }
    }
}

impl Answer {
    /// The model that writes a typed output, if any.
    pub(crate) fn writer(&self) -> Option<&SharedModel> {
        self.model.as_ref().or(self.output_model.as_ref())
    }

    pub(crate) fn fitting(&self) -> &Fitter {
        &self.fitter
    }
}

impl State for Answer {
    fn name(&self) -> &str {
        &self.name
    }

    fn run<'a>(&'a self, env: &'a mut Env) -> EmitStream<'a> {
        if let Some(output) = env.settings.output.clone() {
            return crate::output::write(self, output, env);
        }
        Box::pin(statewise::try_stream! {
            let apologize = !env.errors.is_empty() && !matches!(env.action, Some(Action::FinalAnswer(_)));
            let model = match (&self.model, &self.apology) {
                (_, Some(_)) if apologize => None,
                (model, _) => model.as_ref(),
            };
            let Some(model) = model else {
                let answer = match (env.action.take(), &self.apology) {
                    (_, Some(apology)) if apologize => apology.clone(),
                    // Given already: streamed and written by the state
                    // that chose it.
                    (Some(Action::FinalAnswer(answer)), _) if env.answer.as_ref() == Some(&answer) => return,
                    (Some(Action::FinalAnswer(answer)), _) => answer,
                    (other, _) => {
                        env.action = other;
                        Err(StateError::Precondition {
                            state: self.name.clone(),
                            missing: "no final answer in env.action (use Answer::with_model to write one)".to_owned(),
                        })?;
                        return;
                    }
                };
                yield Emit::AnswerToken(answer.clone());
                env.answer = Some(answer);
                return;
            };
            let draft = usize::from(matches!(env.action, Some(Action::FinalAnswer(_))));
            let grounding = Grounding::new(match self.grounded {
                true => results_since_question(env),
                false => Vec::new(),
            });
            // Held back (as plain tokens) until it keeps the results.
            let mut held = !grounding.is_empty();
            let mut written = String::new();
            let snapshot: &Env = env;
            let mut call = self.fitter.call(&**model, draft, &snapshot.settings, || self.request(snapshot));
            while let Some(streamed) = call.next().await {
                match Emit::from(streamed?) {
                    Emit::Token(t) if held => {
                        written.push_str(&t);
                        // Only a token that ends a word can complete a
                        // number or name, so only then is the text checked
                        // again (the check reads all of it).
                        let ends_word = t.contains(|c: char| !c.is_alphanumeric());
                        yield Emit::Token(t);
                        if ends_word && grounding.holds(&written, false) {
                            held = false;
                            yield Emit::AnswerToken(written.clone());
                        }
                    }
                    Emit::Token(t) => yield Emit::AnswerToken(t),
                    emit => yield emit,
                }
            }
            let reply = call.finish();
            reply.charge(env);
            let answer = match held {
                false => reply.text,
                true => {
                    let answer = match grounding.holds(&reply.text, true) {
                        true => reply.text,
                        false => grounding.fallback(),
                    };
                    yield Emit::AnswerToken(answer.clone());
                    answer
                }
            };
            env.action = None;
            env.messages.push(Message::assistant(answer.clone()));
            env.answer = Some(answer);
        })
    }

    fn targets(&self) -> Option<Vec<Next>> {
        Some(vec![self.next()])
    }

    fn transition(&self, _env: &Env) -> Next {
        self.next()
    }
}

/// The tool results since the user's last question, with their tools.
fn results_since_question(env: &Env) -> Vec<(String, String)> {
    let asked = env
        .messages
        .iter()
        .rposition(|m| m.role == Role::User)
        .unwrap_or(0);
    env.messages[asked..]
        .iter()
        .filter(|m| m.role == Role::Tool && !failed(env, m))
        .map(|m| (prompt::tool_of(env, m).to_owned(), m.content.clone()))
        .collect()
}

/// Whether tool message `m` holds a failed call's error: a small model
/// reads it as the answer, so a compact request leaves it out (and the
/// question is answered as if no tool had run).
fn failed(env: &Env, m: &Message) -> bool {
    env.observations
        .iter()
        .any(|o| o.is_error && m.tool_call_id.as_deref() == Some(o.call_id.as_str()))
}

/// The user's last question with the tool results that came after it, in
/// one message (`What is 7 * 8?\n(The calculator says: 56)`), and whether
/// there were any; the question alone when there are none. A 135M model
/// answers from results given this way far more often than from a
/// `Question: ... Tool result: ...` form, which it takes for a new topic.
fn compact_question(env: &Env) -> (String, bool) {
    let asked = env
        .messages
        .iter()
        .rposition(|m| m.role == Role::User)
        .unwrap_or(0);
    let question = env
        .messages
        .get(asked)
        .map(|m| m.content.as_str())
        .unwrap_or_default();
    let results: Vec<String> = env.messages[asked..]
        .iter()
        .filter(|m| m.role == Role::Tool && !failed(env, m))
        .map(|m| format!("(The {} says: {})", prompt::tool_of(env, m), m.content))
        .collect();
    if results.is_empty() {
        return (question.to_owned(), false);
    }
    (format!("{question}\n{}", results.join("\n")), true)
}
