//! A model grades an answer against a rubric, as pydantic_evals' `LLMJudge`
//! does: it writes its reasoning first, then a verdict, and both are kept
//! in the score.
//!
//! The judge asks at temperature 0 with a request that depends only on the
//! rubric, the question and the answer, so a judge model wrapped in
//! [`Cache`](crate::layer::Cache) grades an unchanged answer once however
//! often the bench runs (the eval example keeps that cache beside the
//! results file).

use serde_json::Value;

use crate::dataset::{Item, ItemResult, Score};
use crate::env::Message;
use crate::model::{ChatModel, ChatRequest, Params, SharedModel};

const INSTRUCTIONS: &str = "You grade an assistant's answer against a rubric. \
Reply with one JSON object and nothing else: \
{\"reasoning\": \"<one or two sentences>\", \"verdict\": \"pass\" or \"fail\", \"score\": <0 to 1>}.";

/// Grades answers with a model.
#[derive(Clone)]
pub struct Judge {
    model: SharedModel,
}

impl std::fmt::Debug for Judge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Judge")
            .field("model", &self.model.name())
            .finish()
    }
}

impl Judge {
    /// A judge asking `model`.
    pub fn new(model: SharedModel) -> Self {
        Judge { model }
    }

    /// The request the judge sends for `rubric` on `run` of `case`.
    pub fn request(rubric: &str, case: &Item, run: &ItemResult) -> ChatRequest {
        let answer = match (&run.answer, &run.error) {
            (Some(a), _) => a.clone(),
            (None, Some(e)) => format!("(no answer: the run failed with {e})"),
            (None, None) => "(no answer)".to_owned(),
        };
        let prompt = format!(
            "Rubric:\n{rubric}\n\nQuestion:\n{}\n\nAnswer:\n{answer}",
            case.input
        );
        ChatRequest {
            messages: vec![Message::system(INSTRUCTIONS), Message::user(prompt)],
            params: Params {
                temperature: Some(0.0),
                ..Params::default()
            },
            ..ChatRequest::default()
        }
    }

    /// The judge's score of `run` of `case` against `rubric`; a judge that
    /// cannot be reached or does not reply with a verdict fails the score,
    /// saying so.
    pub async fn grade(&self, rubric: &str, case: &Item, run: &ItemResult) -> Score {
        match self.model.complete(Self::request(rubric, case, run)).await {
            Ok(reply) => verdict(&reply.text),
            Err(e) => Score::new("judge", false, format!("the judge model failed: {e}")),
        }
    }
}

/// Reads the judge's reply: a JSON verdict (repaired if need be), else a
/// bare `pass`/`fail` word.
pub(super) fn verdict(text: &str) -> Score {
    let parsed = crate::action::repair(text).ok();
    let field = |name: &str| parsed.as_ref().and_then(|v| v.get(name)).cloned();
    let reasoning = field("reasoning")
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| text.trim().to_owned());
    let label = match field("verdict") {
        Some(Value::String(s)) => Some(s.trim().to_lowercase()),
        Some(Value::Bool(b)) => Some(if b { "pass" } else { "fail" }.to_owned()),
        _ => {
            let lower = text.to_lowercase();
            match (lower.contains("pass"), lower.contains("fail")) {
                (true, false) => Some("pass".to_owned()),
                (false, true) => Some("fail".to_owned()),
                _ => None,
            }
        }
    };
    let Some(label) = label else {
        return Score::new(
            "judge",
            false,
            format!("the judge gave no verdict: {}", super::check::clip(text)),
        );
    };
    let passed = matches!(label.as_str(), "pass" | "passed" | "yes" | "true");
    let score = Score::new("judge", passed, reasoning);
    match field("score").and_then(|v| v.as_f64()) {
        Some(n) => score.with_value(n),
        None => score.with_value(label),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Reply, ScriptedModel};
    use std::sync::Arc;

    #[test]
    fn verdicts_are_read_from_json_or_words() {
        let s = verdict(r#"{"reasoning": "Names Paris.", "verdict": "pass", "score": 0.9}"#);
        assert!(s.passed);
        assert_eq!(
            (s.reason.as_str(), s.value),
            ("Names Paris.", Some(serde_json::json!(0.9)))
        );
        let s = verdict("```json\n{\"reasoning\": \"Wrong city\", \"verdict\": \"FAIL\"\n```");
        assert!(!s.passed && s.reason == "Wrong city", "{s:?}");
        assert!(verdict("Verdict: pass").passed);
        let s = verdict("I cannot tell.");
        assert!(!s.passed && s.reason.contains("no verdict"));
    }

    #[tokio::test]
    async fn the_judge_asks_with_the_rubric_and_keeps_its_reasoning() {
        let model = Arc::new(ScriptedModel::new().reply(Reply::text(
            r#"{"reasoning": "It says 42.", "verdict": "pass"}"#,
        )));
        let judge = Judge::new(model.clone());
        let case: Item =
            serde_json::from_value(serde_json::json!({"id": "1", "input": "6*7?"})).unwrap();
        let run: ItemResult = serde_json::from_value(serde_json::json!({"id": "1", "answer": "42", "path": [], "usage": {}, "latency_ms": 1.0})).unwrap();
        let score = judge.grade("States 42.", &case, &run).await;
        assert!(score.passed);
        assert_eq!(score.reason, "It says 42.");
        let sent = model.calls();
        assert!(sent[0].messages[1].content.contains("Rubric:\nStates 42."));
        assert_eq!(sent[0].params.temperature, Some(0.0));
    }
}
