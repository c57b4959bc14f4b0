//! [`Classify`]: a routing policy that asks a (cheap) model which tier a
//! request needs, in one word.

use futures::future::BoxFuture;

use super::router::{Choice, Policy};
use super::Tier;
use crate::env::{Message, Role};
use crate::model::{ChatRequest, ModelError, Params, SharedModel};

/// Asks `model` to label the request with one of a few words (`simple`,
/// `hard`), each standing for a tier, and routes there; an answer that is
/// none of them goes to the fallback tier (the last label's, by default:
/// when unsure, the stronger model). The classifier sees the system prompt
/// and the last user message, and its call's cost is the route's.
///
/// ```
/// use statewise::layer::Classify;
/// use statewise::model::{ScriptedModel, SharedModel};
/// use std::sync::Arc;
///
/// let cheap: SharedModel = Arc::new(ScriptedModel::new());
/// let policy = Classify::new(cheap, [("simple", "small"), ("hard", "large")]);
/// ```
#[derive(Clone)]
pub struct Classify {
    model: SharedModel,
    labels: Vec<(String, String)>,
    fallback: Option<String>,
}

impl std::fmt::Debug for Classify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classify")
            .field("model", &self.model.name())
            .field("labels", &self.labels)
            .finish()
    }
}

impl Classify {
    /// Classifies with `model` into `labels`: pairs of the word the model
    /// answers and the tier it stands for.
    pub fn new<L: Into<String>, T: Into<String>>(
        model: SharedModel,
        labels: impl IntoIterator<Item = (L, T)>,
    ) -> Self {
        Classify {
            model,
            labels: labels
                .into_iter()
                .map(|(l, t)| (l.into(), t.into()))
                .collect(),
            fallback: None,
        }
    }

    /// The tier an answer that is none of the words goes to.
    pub fn fallback(mut self, tier: impl Into<String>) -> Self {
        self.fallback = Some(tier.into());
        self
    }

    /// The classifier's request for `request`.
    pub fn prompt(&self, request: &ChatRequest) -> ChatRequest {
        let words: Vec<&str> = self.labels.iter().map(|(l, _)| l.as_str()).collect();
        let asked = request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map_or("", |m| m.content.as_str());
        let task = request
            .messages
            .iter()
            .find(|m| m.role == Role::System)
            .map_or(String::new(), |m| {
                format!("The assistant's instructions: {}\n\n", m.content)
            });
        let mut req = ChatRequest::new(vec![
            Message::system(format!(
                "Classify how hard the user's request is to answer well. Reply with exactly one word: {}.",
                words.join(" or ")
            )),
            Message::user(format!("{task}The request: {asked}\n\nOne word ({}):", words.join(", "))),
        ]);
        req.params = Params {
            temperature: Some(0.0),
            max_tokens: Some(4),
            ..Params::default()
        };
        req
    }

    /// The tier position `answer` (the classifier's reply) stands for,
    /// among tiers labelled `tiers`: a plain function.
    pub fn decide(&self, answer: &str, tiers: &[&str]) -> Result<Choice, ModelError> {
        let word: String = answer
            .trim()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '-' || *c == '_')
            .collect::<String>()
            .to_lowercase();
        let hit = self
            .labels
            .iter()
            .find(|(l, _)| !word.is_empty() && l.to_lowercase().starts_with(&word));
        let (tier, reason) = match hit {
            Some((label, tier)) => (tier.as_str(), format!("classified as `{label}`")),
            None => {
                let fallback = self
                    .fallback
                    .as_deref()
                    .or(self.labels.last().map(|(_, t)| t.as_str()))
                    .unwrap_or_default();
                (
                    fallback,
                    format!("the classifier said {answer:?}: the fallback"),
                )
            }
        };
        let i = super::position(tiers, tier, "the classifier")?;
        Ok(Choice::new(i, reason))
    }
}

impl Policy for Classify {
    fn choose<'a>(
        &'a self,
        request: &'a ChatRequest,
        tiers: &'a [Tier],
    ) -> BoxFuture<'a, Result<Choice, ModelError>> {
        Box::pin(async move {
            let reply = self.model.complete(self.prompt(request)).await?;
            let labels: Vec<&str> = tiers.iter().map(Tier::label).collect();
            let mut choice = self.decide(&reply.text, &labels)?;
            choice.usage = reply.usage;
            Ok(choice)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn policy() -> Classify {
        let model: SharedModel = Arc::new(crate::model::ScriptedModel::new());
        Classify::new(model, [("simple", "small"), ("hard", "large")])
    }

    #[test]
    fn the_first_word_picks_the_tier() {
        let tiers = ["small", "large"];
        let p = policy();
        assert_eq!(p.decide("Simple.", &tiers).unwrap().tier, 0);
        assert_eq!(p.decide("  hard", &tiers).unwrap().tier, 1);
        // A cut-off word still counts; nonsense goes to the fallback.
        assert_eq!(p.decide("sim", &tiers).unwrap().tier, 0);
        let unsure = p.decide("I cannot tell", &tiers).unwrap();
        assert_eq!(unsure.tier, 1);
        assert!(unsure.reason.contains("fallback"));
        assert_eq!(p.fallback("small").decide("", &tiers).unwrap().tier, 0);
    }

    #[test]
    fn the_prompt_carries_the_request_and_the_words() {
        let req = ChatRequest::new(vec![
            Message::system("You answer questions."),
            Message::user("What is 2+2?"),
        ]);
        let asked = policy().prompt(&req);
        let text = &asked.messages[1].content;
        assert!(
            text.contains("What is 2+2?") && text.contains("simple, hard"),
            "{text}"
        );
        assert_eq!(asked.params.max_tokens, Some(4));
    }
}
