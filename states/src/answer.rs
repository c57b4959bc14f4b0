//! The Answer state: stream the final answer.

use futures::StreamExt;
use statewise::fit::Fitter;
use statewise::model::{split_words, ChatRequest, Params, SharedModel};
use statewise::{Action, Emit, EmitStream, Env, Message, Next, Role, State, StateError};

use crate::{prompt, ANSWER, STREAMED_ANSWER};

const DEFAULT_INSTRUCTIONS: &str =
    "Write the final answer to the user's last request, using the observations above. \
     Answer directly, in plain text.";

/// Streams the final answer into `env.answer`, then ends the run.
///
/// [`Answer::new`] streams the answer the Reasoning state already gave;
/// [`Answer::with_model`] writes it with its own model call (say, a small
/// fast model after a large reasoning one).
#[derive(Clone)]
pub struct Answer {
    name: String,
    model: Option<SharedModel>,
    apology: Option<String>,
    instructions: String,
    params: Params,
    fitter: Fitter,
    compact: bool,
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
    /// Streams the final answer already chosen by Reasoning.
    pub fn new() -> Self {
        Answer {
            name: ANSWER.to_owned(),
            model: None,
            apology: None,
            instructions: DEFAULT_INSTRUCTIONS.to_owned(),
            params: Params::default(),
            fitter: Fitter::default(),
            compact: false,
        }
    }

    /// Writes the answer with its own call to `model`.
    pub fn with_model(model: SharedModel) -> Self {
        Answer {
            model: Some(model),
            ..Self::new()
        }
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

    /// How [`Answer::with_model`]'s requests are fitted to the model's
    /// context window (default: [`Trim`](statewise::fit::Trim); the draft
    /// answer is always kept).
    pub fn fitter(mut self, fitter: Fitter) -> Self {
        self.fitter = fitter;
        self
    }

    /// Asks [`Answer::with_model`]'s model in one message holding the
    /// user's last question and the tool results since (`Question: ...`,
    /// `Tool result (clock): ...`), instead of the whole conversation; with
    /// no tool results, that is the question as the user asked it. Small
    /// models answer this well and echo a conversation's tool messages
    /// otherwise.
    pub fn compact(mut self, on: bool) -> Self {
        self.compact = on;
        self
    }

    /// The request [`Answer::with_model`] sends for `env`, before fitting;
    /// a draft answer from Reasoning is passed along, last.
    pub fn request(&self, env: &Env) -> ChatRequest {
        let mut messages = match self.compact {
            true => {
                let (question, with_results) = compact_question(env);
                let system = match with_results {
                    true => format!("{} {COMPACT_RESULTS_NOTE}", self.instructions),
                    false => self.instructions.clone(),
                };
                vec![Message::system(system), Message::user(question)]
            }
            false => prompt::conversation(self.instructions.clone(), env),
        };
        if let Some(Action::FinalAnswer(draft)) = &env.action {
            messages.push(Message::user(format!(
                "Draft answer: {draft}\nWrite the final answer."
            )));
        }
        ChatRequest {
            messages,
            tools: Vec::new(),
            params: self.params.clone(),
            response_schema: None,
        }
    }
}

impl State for Answer {
    fn name(&self) -> &str {
        &self.name
    }

    fn run<'a>(&'a self, env: &'a mut Env) -> EmitStream<'a> {
        Box::pin(statewise::try_stream! {
            let apologize = !env.errors.is_empty() && !matches!(env.action, Some(Action::FinalAnswer(_)));
            let model = match (&self.model, &self.apology) {
                (_, Some(_)) if apologize => None,
                (model, _) => model.as_ref(),
            };
            let Some(model) = model else {
                // What Reasoning already streamed of it is not sent again.
                let streamed = env.scratch.get(&STREAMED_ANSWER)?.unwrap_or_default();
                env.scratch.remove(&STREAMED_ANSWER);
                let (answer, sent) = match (env.action.take(), &self.apology) {
                    (_, Some(apology)) if apologize => (apology.clone(), 0),
                    (Some(Action::FinalAnswer(answer)), _) => {
                        // A repaired answer that differs from what streamed
                        // is not sent again either: it cannot be taken back.
                        let sent = if answer.starts_with(&streamed) { streamed.len() } else { answer.len() };
                        (answer, sent)
                    }
                    (other, _) => {
                        env.action = other;
                        Err(StateError::Precondition {
                            state: self.name.clone(),
                            missing: "no final answer in env.action (use Answer::with_model to write one)".to_owned(),
                        })?;
                        return;
                    }
                };
                for word in split_words(&answer[sent..]) {
                    yield Emit::Token(word.to_owned());
                }
                env.answer = Some(answer);
                return;
            };
            let draft = usize::from(matches!(env.action, Some(Action::FinalAnswer(_))));
            let snapshot: &Env = env;
            let mut call = self.fitter.call(&**model, draft, &snapshot.settings, || self.request(snapshot));
            while let Some(streamed) = call.next().await {
                yield Emit::from(streamed?);
            }
            let reply = call.finish();
            env.usage.add(&reply.usage);
            env.action = None;
            env.messages.push(Message::assistant(reply.text.clone()));
            env.answer = Some(reply.text);
        })
    }

    fn targets(&self) -> Option<Vec<Next>> {
        Some(vec![Next::End])
    }

    fn transition(&self, _env: &Env) -> Next {
        Next::End
    }
}

/// Added to the instructions of a [`Answer::compact`] request with tool
/// results: without it a small model takes the message for a new topic.
const COMPACT_RESULTS_NOTE: &str = "If a tool's result is shown, base the answer on it.";

/// The user's last question with the tool results that came after it, in
/// one message, and whether there were any; the question alone when there
/// are none.
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
        .filter(|m| m.role == Role::Tool)
        .map(|m| format!("Tool result ({}): {}", prompt::tool_of(env, m), m.content))
        .collect();
    if results.is_empty() {
        return (question.to_owned(), false);
    }
    let message = format!(
        "Question: {question}\n{}\nAnswer the question in one sentence.",
        results.join("\n")
    );
    (message, true)
}
