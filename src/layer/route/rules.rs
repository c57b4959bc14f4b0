//! [`Rules`]: a routing policy from what the request shows — the tier a
//! state asks for, the prompt's size, tools, a response schema.

use futures::future::BoxFuture;
use futures::FutureExt;

use super::router::{Choice, Policy};
use super::Tier;
use crate::model::{request_tokens, ChatRequest, Estimate, ModelError};

#[derive(Debug, Clone)]
enum Condition {
    TokensOver(usize),
    Tools,
    Schema,
}

/// Picks a tier by rules, first match wins: the request's own
/// [`tier`](ChatRequest::tier) hint when it names a tier, then each rule
/// in the order added, then the default.
///
/// ```
/// use statewise::layer::Rules;
/// let rules = Rules::new("small")
///     .when_tokens_over(2_000, "large")
///     .when_tools("large");
/// ```
#[derive(Debug, Clone)]
pub struct Rules {
    default: String,
    rules: Vec<(Condition, String)>,
}

impl Rules {
    /// Rules that send everything to `tier` unless one says otherwise.
    pub fn new(tier: impl Into<String>) -> Self {
        Rules {
            default: tier.into(),
            rules: Vec::new(),
        }
    }

    /// Requests whose prompt is over `tokens` (estimated) go to `tier`.
    pub fn when_tokens_over(mut self, tokens: usize, tier: impl Into<String>) -> Self {
        self.rules
            .push((Condition::TokensOver(tokens), tier.into()));
        self
    }

    /// Requests that offer tools natively go to `tier`.
    pub fn when_tools(mut self, tier: impl Into<String>) -> Self {
        self.rules.push((Condition::Tools, tier.into()));
        self
    }

    /// Requests that ask for a response schema go to `tier`.
    pub fn when_schema(mut self, tier: impl Into<String>) -> Self {
        self.rules.push((Condition::Schema, tier.into()));
        self
    }

    /// The tier for `request` among tiers labelled `labels`: a plain
    /// function. A rule naming no tier in `labels` is a configuration
    /// error, which lists them.
    pub fn decide(&self, request: &ChatRequest, labels: &[&str]) -> Result<Choice, ModelError> {
        let position = |label: &str| super::position(labels, label, "a rule");
        if let Some(hint) = &request.tier {
            if let Some(i) = labels.iter().position(|l| l == hint) {
                return Ok(Choice::new(i, format!("the request asks for `{hint}`")));
            }
        }
        let mut tokens = None;
        for (condition, tier) in &self.rules {
            let why = match condition {
                Condition::TokensOver(limit) => {
                    let n = *tokens.get_or_insert_with(|| request_tokens(request, &Estimate));
                    (n > *limit).then(|| format!("about {n} prompt tokens, over {limit}"))
                }
                Condition::Tools => (!request.tools.is_empty())
                    .then(|| format!("{} tools offered", request.tools.len())),
                Condition::Schema => request
                    .response_schema
                    .is_some()
                    .then(|| "a response schema asked for".to_owned()),
            };
            if let Some(why) = why {
                return Ok(Choice::new(position(tier)?, why));
            }
        }
        Ok(Choice::new(position(&self.default)?, "no rule matched"))
    }
}

impl Policy for Rules {
    fn choose<'a>(
        &'a self,
        request: &'a ChatRequest,
        tiers: &'a [Tier],
    ) -> BoxFuture<'a, Result<Choice, ModelError>> {
        let labels: Vec<&str> = tiers.iter().map(Tier::label).collect();
        futures::future::ready(self.decide(request, &labels)).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::Message;
    use crate::tool::ToolSpec;
    use serde_json::json;

    const TIERS: [&str; 2] = ["small", "large"];

    fn ask(text: &str) -> ChatRequest {
        ChatRequest::new(vec![Message::user(text)])
    }

    #[test]
    fn first_match_wins_then_the_default() {
        let rules = Rules::new("small")
            .when_tokens_over(50, "large")
            .when_tools("large");
        assert_eq!(rules.decide(&ask("hi"), &TIERS).unwrap().tier, 0);
        let long = rules.decide(&ask(&"word ".repeat(200)), &TIERS).unwrap();
        assert_eq!(long.tier, 1);
        assert!(long.reason.contains("over 50"), "{}", long.reason);
        let mut tools = ask("hi");
        tools.tools.push(ToolSpec {
            name: "calc".into(),
            description: "math".into(),
            parameters: json!({"type": "object"}),
        });
        assert_eq!(rules.decide(&tools, &TIERS).unwrap().tier, 1);
    }

    #[test]
    fn a_state_hint_comes_first_and_unknown_hints_are_ignored() {
        let rules = Rules::new("large").when_schema("large");
        let mut req = ask("hi");
        req.response_schema = Some(json!({"type": "object"}));
        req.tier = Some("small".into());
        let choice = rules.decide(&req, &TIERS).unwrap();
        assert_eq!(choice.tier, 0);
        assert!(choice.reason.contains("asks for `small`"));
        req.tier = Some("medium".into());
        assert_eq!(rules.decide(&req, &TIERS).unwrap().tier, 1);
    }

    #[test]
    fn a_rule_naming_no_tier_says_which_exist() {
        let err = Rules::new("tiny").decide(&ask("hi"), &TIERS).unwrap_err();
        assert!(err.to_string().contains("small, large"), "{err}");
    }
}
