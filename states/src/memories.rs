//! Memory the agent uses without being asked: [`Memories`] finds the
//! principal's memories that best match the user's question and puts them
//! in [`Reasoning`](crate::Reasoning)'s prompt, and [`Memorize`] stores
//! what a run taught as background work once the answer is given.
//!
//! The memories go in as a second leading system message: the fitter keeps
//! leading system messages whole and trims the history around them, so
//! they are chosen within a budget of their own ([`Memories::budget`])
//! that the fitter then counts like the rest of the prompt.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use statewise::action::repair;
use statewise::memory::{content_key, indexed_text, Item, MemoryStore, PutOptions, Search};
use statewise::model::{message_tokens, ChatRequest, SharedModel, TokenCounter};
use statewise::state::{EmitStream, Next, State, StateEvent};
use statewise::{Env, Message, Role};

use crate::memory_tools::{scoped, MemoryToolError};

/// What heads the memories in the prompt.
const HEADER: &str = "What you remember about this user from earlier conversations \
(use it when it helps; it may be out of date):";

/// Where and how much to recall into the prompt; given to
/// [`Reasoning::memories`](crate::Reasoning::memories).
#[derive(Clone)]
pub struct Memories {
    store: Arc<dyn MemoryStore>,
    prefix: Vec<String>,
    budget: usize,
    top: usize,
}

impl std::fmt::Debug for Memories {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memories")
            .field("prefix", &self.prefix)
            .field("budget", &self.budget)
            .field("top", &self.top)
            .finish_non_exhaustive()
    }
}

impl Memories {
    /// Recalls from `store`, under `["memories", <principal id>]` (where
    /// [`Remember`](crate::Remember) keeps them), at most 5 memories in
    /// 256 tokens.
    pub fn new(store: Arc<dyn MemoryStore>) -> Self {
        Memories {
            store,
            prefix: vec!["memories".into()],
            budget: 256,
            top: 5,
        }
    }

    /// Reads memories under `prefix` + the principal's id.
    pub fn prefix<S: Into<String>>(mut self, prefix: impl IntoIterator<Item = S>) -> Self {
        self.prefix = prefix.into_iter().map(Into::into).collect();
        self
    }

    /// The most tokens the memories take in the prompt, header included.
    pub fn budget(mut self, tokens: usize) -> Self {
        self.budget = tokens;
        self
    }

    /// The store recalled from.
    pub fn store(&self) -> Arc<dyn MemoryStore> {
        Arc::clone(&self.store)
    }

    /// The prefix before the principal's id.
    pub fn namespace_prefix(&self) -> &[String] {
        &self.prefix
    }

    /// The most memories searched for.
    pub fn top(mut self, memories: usize) -> Self {
        self.top = memories.max(1);
        self
    }

    /// The system message with the memories that best match the user's
    /// last question, within the budget as `counter` counts; `None` when
    /// the run acts for no one, asks nothing, or nothing matches.
    pub async fn recall(
        &self,
        env: &Env,
        counter: &dyn TokenCounter,
    ) -> Result<Option<Recollected>, MemoryToolError> {
        let (Some(principal), Some(question)) = (env.principal.as_ref(), last_question(env)) else {
            return Ok(None);
        };
        let namespace = scoped(&self.prefix, Some(principal))?;
        let search = Search::under(namespace).query(question).page(self.top, 0);
        let hits = self.store.search(&search).await?;
        Ok(within_budget(&hits, self.budget, counter))
    }
}

/// The user's last question: the last user message that carries no tool
/// result.
pub(crate) fn last_question(env: &Env) -> Option<&str> {
    env.messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User && m.tool_call_id.is_none())
        .map(|m| m.content.as_str())
}

/// Memories recalled into the prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recollected {
    /// The system message that lists them.
    pub message: Message,
    /// How many it lists.
    pub memories: usize,
}

/// What [`Reasoning`](crate::Reasoning) tells about the memories it put in
/// its prompt for a question (on the states' own channel, so traces and
/// AG-UI clients see it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoriesRecalled {
    /// How many memories went in.
    pub memories: usize,
    /// Their tokens, header included.
    pub tokens: usize,
    /// Why none could be searched, when the store failed (the run goes on
    /// without them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl StateEvent for MemoriesRecalled {
    const NAME: &'static str = "memories_recalled";
}

/// A system message listing `hits` best first, as many as fit in `budget`
/// tokens as `counter` counts the whole message; `None` if not even the
/// first fits. A plain function of its arguments.
pub fn within_budget(
    hits: &[Item],
    budget: usize,
    counter: &dyn TokenCounter,
) -> Option<Recollected> {
    let mut text = HEADER.to_owned();
    let mut kept = 0;
    for hit in hits {
        let memory = indexed_text(&hit.value, None);
        let memory = memory.trim();
        if memory.is_empty() {
            continue;
        }
        let longer = format!("{text}\n- {}", memory.replace('\n', " "));
        if message_tokens(&Message::system(longer.clone()), counter) > budget {
            // Later hits may be shorter, but the order is the ranking:
            // a worse memory never takes a better one's place.
            break;
        }
        text = longer;
        kept += 1;
    }
    (kept > 0).then(|| Recollected {
        message: Message::system(text),
        memories: kept,
    })
}

/// What [`Memorize`] asks its model.
const EXTRACT: &str = "From the conversation below, list the facts about the user \
that are worth remembering in later conversations (who they are, what they have, \
like, plan or decided). Write each as a short sentence that makes sense on its own. \
Reply with a JSON array of strings, and [] when there is nothing to remember.";

/// Stores what a run taught about the user: after the answer, it asks
/// `model` for the lasting facts in the user's turn and stores each one
/// that is not a near-duplicate of a memory already there (cosine
/// similarity at or above [`Memorize::threshold`]).
///
/// All of it runs as background work ([`Env::settings`]'s `background`):
/// the state itself only starts the task, so the answer is never held up
/// by the extraction call or the writes. Failures are counted and logged
/// by the background tasks, never raised in the run.
#[derive(Clone)]
pub struct Memorize {
    name: String,
    store: Arc<dyn MemoryStore>,
    model: SharedModel,
    prefix: Vec<String>,
    threshold: f64,
}

impl std::fmt::Debug for Memorize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memorize")
            .field("name", &self.name)
            .field("prefix", &self.prefix)
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

/// The default name of the [`Memorize`] state.
pub const MEMORIZE: &str = "memorize";

impl Memorize {
    /// Extracts with `model` into `store`, under `["memories", <principal
    /// id>]`, skipping facts at cosine 0.9 or closer to a stored one.
    pub fn new(store: Arc<dyn MemoryStore>, model: SharedModel) -> Self {
        Memorize {
            name: MEMORIZE.to_owned(),
            store,
            model,
            prefix: vec!["memories".into()],
            threshold: 0.9,
        }
    }

    /// Renames the state.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Keeps memories under `prefix` + the principal's id.
    pub fn prefix<S: Into<String>>(mut self, prefix: impl IntoIterator<Item = S>) -> Self {
        self.prefix = prefix.into_iter().map(Into::into).collect();
        self
    }

    /// The cosine similarity from which a fact counts as already known.
    pub fn threshold(mut self, similarity: f64) -> Self {
        self.threshold = similarity;
        self
    }
}

/// The user's question and the answer given, as the extraction reads
/// them (tool results and drafts stay out).
fn transcript(env: &Env) -> Option<String> {
    let question = last_question(env)?.trim();
    Some(match env.answer.as_deref().map(str::trim) {
        Some(answer) if !answer.is_empty() => format!("User: {question}\nAssistant: {answer}\n"),
        _ => format!("User: {question}\n"),
    })
}

/// The facts in an extraction reply: a JSON array of strings, repaired
/// when it is almost one; anything else is no facts.
pub fn extracted_facts(reply: &str) -> Vec<String> {
    let start = reply.find('[').unwrap_or(0);
    let Ok(value) = repair(&reply[start..]) else {
        return Vec::new();
    };
    let items = match value {
        Value::Array(items) => items,
        Value::Object(mut o) => match o.remove("facts") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    items
        .into_iter()
        .filter_map(|v| Some(v.as_str()?.trim().to_owned()))
        .filter(|f| !f.is_empty())
        .collect()
}

/// Asks for the facts in `transcript` and stores the new ones; returns
/// how many were stored.
async fn memorize(
    store: Arc<dyn MemoryStore>,
    model: SharedModel,
    namespace: Vec<String>,
    transcript: String,
    threshold: f64,
) -> Result<usize, MemorizeError> {
    let request = ChatRequest::new(vec![Message::system(EXTRACT), Message::user(transcript)]);
    let reply = model.complete(request).await?;
    let mut stored = 0;
    for fact in extracted_facts(&reply.text) {
        let nearest = Search::under(namespace.clone())
            .query(fact.clone())
            .mode(statewise::memory::SearchMode::Vector)
            .page(1, 0);
        let known = store.search(&nearest).await?;
        if known
            .first()
            .and_then(|hit| hit.score)
            .is_some_and(|score| score >= threshold)
        {
            continue;
        }
        let key = content_key("memorize", &fact);
        store
            .put(
                &namespace,
                &key,
                json!({ "text": fact }),
                PutOptions::default(),
            )
            .await?;
        stored += 1;
    }
    Ok(stored)
}

/// Why a background extraction failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemorizeError {
    /// The extraction call failed.
    #[error("extracting memories: {0}")]
    Model(#[from] statewise::model::ModelError),
    /// The store failed.
    #[error("storing memories: {0}")]
    Store(#[from] statewise::memory::MemoryError),
}

impl State for Memorize {
    fn name(&self) -> &str {
        &self.name
    }

    fn run<'a>(&'a self, env: &'a mut Env) -> EmitStream<'a> {
        // Started here and not awaited: the run ends while the extraction
        // and the writes go on in the background.
        let namespace = scoped(&self.prefix, env.principal.as_ref()).ok();
        if let (Some(namespace), Some(transcript)) = (namespace, transcript(env)) {
            let task = memorize(
                Arc::clone(&self.store),
                Arc::clone(&self.model),
                namespace,
                transcript,
                self.threshold,
            );
            env.settings
                .background
                .spawn(&self.name, async move { task.await.map(drop) });
        }
        Box::pin(futures::stream::empty())
    }

    fn targets(&self) -> Option<Vec<Next>> {
        Some(vec![Next::End])
    }

    fn transition(&self, _env: &Env) -> Next {
        Next::End
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use statewise::model::Estimate;

    fn hit(text: &str) -> Item {
        Item {
            namespace: vec!["m".into()],
            key: text.into(),
            value: json!({ "text": text }),
            created_ms: 0,
            updated_ms: 0,
            score: Some(1.0),
        }
    }

    #[test]
    fn memories_are_kept_best_first_within_the_budget() {
        let hits = [
            hit("The user's dog is called Rex."),
            hit("The user lives in Lisbon and works as a nurse at the central hospital."),
            hit("Short."),
        ];
        let all = within_budget(&hits, 10_000, &Estimate).unwrap();
        assert_eq!(all.memories, 3);
        assert!(all.message.content.contains("Rex") && all.message.content.contains("Short."));
        let first = within_budget(&hits[..1], 10_000, &Estimate).unwrap();
        let first = message_tokens(&first.message, &Estimate);
        // A budget for the first only: the second does not fit, and the
        // third, though short, does not jump the ranking.
        let one = within_budget(&hits, first, &Estimate).unwrap();
        assert_eq!(one.memories, 1);
        assert!(one.message.content.contains("Rex"));
        assert!(!one.message.content.contains("Lisbon"));
        assert!(message_tokens(&one.message, &Estimate) <= first);
        assert!(within_budget(&hits, first - 1, &Estimate).is_none());
        assert!(within_budget(&[], 10_000, &Estimate).is_none());
    }

    #[test]
    fn facts_are_read_from_almost_json_arrays() {
        assert_eq!(
            extracted_facts("Here you go: [\"The user has a dog.\", \"They live in Lisbon\",]"),
            ["The user has a dog.", "They live in Lisbon"]
        );
        assert_eq!(extracted_facts(r#"{"facts": ["A"]}"#), ["A"]);
        assert!(extracted_facts("nothing to remember").is_empty());
        assert!(extracted_facts("[]").is_empty());
        assert!(extracted_facts("[1, \"  \"]").is_empty());
    }
}
