//! What a [`Cascade`](super::Cascade) asks of a reply before keeping it:
//! plain functions of the request and the whole reply.

use std::sync::Arc;

use serde_json::Value;

use crate::model::{ChatRequest, Reply};
use crate::output::Output;
use crate::schema::{Problem, SchemaCheck};

/// A test a reply must pass to be kept; a failure sends the request to the
/// next tier.
pub trait Check: Send + Sync {
    /// The check's name, as rejection reasons show it.
    fn name(&self) -> &str;

    /// `Err(why)` if `reply` (to `request`) should not be kept.
    fn check(&self, request: &ChatRequest, reply: &Reply) -> Result<(), String>;

    /// Whether the check reads token log-probabilities: the cascade then
    /// asks its tiers for them ([`Params::logprobs`](crate::model::Params)).
    fn wants_logprobs(&self) -> bool {
        false
    }
}

/// The reply is a JSON action the stock states can act on
/// ([`parse_action`](crate::action::parse_action), repairs included), or
/// native tool calls.
#[derive(Debug, Clone, Copy, Default)]
pub struct ParsesAsAction;

impl Check for ParsesAsAction {
    fn name(&self) -> &str {
        "parses as an action"
    }

    fn check(&self, _request: &ChatRequest, reply: &Reply) -> Result<(), String> {
        if !reply.tool_calls.is_empty() {
            return Ok(());
        }
        crate::action::parse_action(&reply.text)
            .map(drop)
            .map_err(|e| format!("not an action: {e}"))
    }
}

/// The reply is JSON (after repair) that fits the request's
/// `response_schema`; passes when the request has none.
#[derive(Debug, Clone, Copy, Default)]
pub struct MatchesSchema;

impl Check for MatchesSchema {
    fn name(&self) -> &str {
        "matches the response schema"
    }

    fn check(&self, request: &ChatRequest, reply: &Reply) -> Result<(), String> {
        let Some(schema) = &request.response_schema else {
            return Ok(());
        };
        let value = json_of(reply)?;
        let check = SchemaCheck::new(schema).map_err(|e| format!("unusable schema: {e}"))?;
        problems(check.problems(&value))
    }
}

/// The reply is a typed output that fits its schema and passes its
/// validators ([`Output::check`]).
#[derive(Clone)]
pub struct ValidOutput(pub Arc<Output>);

impl std::fmt::Debug for ValidOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ValidOutput").field(&self.0.name()).finish()
    }
}

impl Check for ValidOutput {
    fn name(&self) -> &str {
        "valid output"
    }

    fn check(&self, _request: &ChatRequest, reply: &Reply) -> Result<(), String> {
        let value = json_of(reply)?;
        self.0.check(&value).or_else(problems)
    }
}

/// The model was sure enough of its reply: its
/// [`confidence`](Reply::confidence) (the geometric mean of its tokens'
/// probabilities) is at least the floor. A reply without log-probabilities
/// (a provider that returns none, Anthropic's) passes: there is nothing to
/// judge, and the other checks still apply.
#[derive(Debug, Clone, Copy)]
pub struct Confident {
    floor: f64,
}

impl Confident {
    /// Rejects replies whose confidence is below `floor` (0 to 1).
    pub fn above(floor: f64) -> Self {
        Confident { floor }
    }
}

impl Check for Confident {
    fn name(&self) -> &str {
        "confident"
    }

    fn check(&self, _request: &ChatRequest, reply: &Reply) -> Result<(), String> {
        match reply.confidence() {
            Some(c) if c < self.floor => Err(format!(
                "confidence {c:.3} is below {:.3} over {} tokens",
                self.floor,
                reply.logprobs.len()
            )),
            _ => Ok(()),
        }
    }

    fn wants_logprobs(&self) -> bool {
        true
    }
}

type CheckFn = dyn Fn(&ChatRequest, &Reply) -> Result<(), String> + Send + Sync;

/// A check from a function: your own validator.
///
/// ```
/// use statewise::layer::FnCheck;
/// let short = FnCheck::new("short", |_req, reply| match reply.text.len() < 400 {
///     true => Ok(()),
///     false => Err(format!("{} characters", reply.text.len())),
/// });
/// ```
#[derive(Clone)]
pub struct FnCheck {
    name: String,
    f: Arc<CheckFn>,
}

impl std::fmt::Debug for FnCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnCheck").field("name", &self.name).finish()
    }
}

impl FnCheck {
    /// The check `f`, named `name`.
    pub fn new(
        name: impl Into<String>,
        f: impl Fn(&ChatRequest, &Reply) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        FnCheck {
            name: name.into(),
            f: Arc::new(f),
        }
    }
}

impl Check for FnCheck {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self, request: &ChatRequest, reply: &Reply) -> Result<(), String> {
        (self.f)(request, reply)
    }
}

/// The reply's text as JSON, repaired as actions are.
fn json_of(reply: &Reply) -> Result<Value, String> {
    crate::action::repair(&reply.text).map_err(|e| format!("not JSON: {e}"))
}

fn problems(problems: Vec<Problem>) -> Result<(), String> {
    if problems.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
    Err(list.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str) -> Reply {
        Reply::text(t)
    }

    #[test]
    fn actions_parse_or_not() {
        let req = ChatRequest::default();
        assert!(ParsesAsAction
            .check(&req, &text(r#"{"final_answer": "4"}"#))
            .is_ok());
        assert!(ParsesAsAction
            .check(&req, &text("I think it is 4"))
            .is_err());
    }

    #[test]
    fn confidence_floor_reads_logprobs_and_passes_without_them() {
        let req = ChatRequest::default();
        let mut sure = text("4");
        sure.logprobs = vec![-0.01, -0.02];
        let mut unsure = text("4");
        unsure.logprobs = vec![-2.0, -1.5];
        let check = Confident::above(0.7);
        assert!(check.check(&req, &sure).is_ok());
        let why = check.check(&req, &unsure).unwrap_err();
        assert!(why.contains("below 0.700"), "{why}");
        assert!(check.check(&req, &text("4")).is_ok());
        assert!(check.wants_logprobs());
    }

    #[cfg(feature = "jsonschema")]
    #[test]
    fn schema_and_output_checks() {
        use serde_json::json;
        let mut req = ChatRequest::default();
        assert!(MatchesSchema.check(&req, &text("anything")).is_ok());
        req.response_schema = Some(json!({
            "type": "object",
            "properties": {"answer": {"type": "number"}},
            "required": ["answer"]
        }));
        assert!(MatchesSchema.check(&req, &text(r#"{"answer": 4}"#)).is_ok());
        assert!(MatchesSchema
            .check(&req, &text(r#"{"answer": "four"}"#))
            .is_err());

        let output = Output::from_schema("n", req.response_schema.clone().unwrap())
            .unwrap()
            .validate(|v: &Value| match v["answer"].as_f64() {
                Some(n) if n >= 0.0 => Ok(()),
                _ => Err("the answer must not be negative".to_owned()),
            });
        let check = ValidOutput(Arc::new(output));
        assert!(check.check(&req, &text(r#"{"answer": 4}"#)).is_ok());
        let why = check.check(&req, &text(r#"{"answer": -4}"#)).unwrap_err();
        assert!(why.contains("negative"), "{why}");
    }
}
