//! What can be known of an action while its text is still streaming.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{
    is_final_answer_action, parse_action, repair_prefix, ParseError, FINAL_KEYS, NAME_KEYS,
};
use crate::env::Action;

/// Re-reading a prefix costs time linear in its length; past this many bytes
/// the reader stops announcing (the final parse still reads everything).
const MAX_PREFIX: usize = 64 * 1024;

/// The best-effort, never-retracted view of an action still being written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartialAction {
    /// The model is calling tools; these are the names complete so far.
    ToolCalls(Vec<String>),
    /// The model is writing a final answer.
    FinalAnswer,
}

/// Reads an action token by token: [`push`](Self::push) says when more of
/// it became known (a tool name completed, a final answer began), and
/// [`finish`](Self::finish) parses the whole text once, at the end.
///
/// ```
/// use statewise::action::{PartialAction, PartialActionReader};
///
/// let mut reader = PartialActionReader::default();
/// let mut seen = Vec::new();
/// for token in ["{\"name\": \"calc", "ulator\", ", "\"arguments\": {\"x\": 1}}"] {
///     if let Some(partial) = reader.push(token) {
///         seen.push(partial.clone());
///     }
/// }
/// assert_eq!(seen, [PartialAction::ToolCalls(vec!["calculator".into()])]);
/// assert!(reader.finish().is_ok());
/// ```
#[derive(Debug, Default, Clone)]
pub struct PartialActionReader {
    text: String,
    known: Option<PartialAction>,
}

impl PartialActionReader {
    /// Adds the next piece of text; returns what is known now if it changed.
    pub fn push(&mut self, delta: &str) -> Option<&PartialAction> {
        self.text.push_str(delta);
        // A final answer is all there is to know; names complete only at a
        // quote or a separator, so other pieces cannot change anything.
        let settled = self.known == Some(PartialAction::FinalAnswer);
        let may_change = delta.contains(['"', '\'', '”', ',', '}', ']', ':']);
        if settled || !may_change || self.text.len() > MAX_PREFIX {
            return None;
        }
        let now = repair_prefix(&self.text)
            .ok()
            .and_then(|v| partial_from_value(&v));
        if now.is_some() && now != self.known {
            self.known = now;
            return self.known.as_ref();
        }
        None
    }

    /// The text received so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// What is known so far.
    pub fn known(&self) -> Option<&PartialAction> {
        self.known.as_ref()
    }

    /// Parses the complete text.
    pub fn finish(&self) -> Result<Action, ParseError> {
        parse_action(&self.text)
    }
}

fn partial_from_value(value: &Value) -> Option<PartialAction> {
    let mut names = Vec::new();
    let mut final_answer = false;
    collect(value, &mut names, &mut final_answer);
    if !names.is_empty() {
        Some(PartialAction::ToolCalls(names))
    } else if final_answer {
        Some(PartialAction::FinalAnswer)
    } else {
        None
    }
}

fn collect(value: &Value, names: &mut Vec<String>, final_answer: &mut bool) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| collect(v, names, final_answer)),
        Value::Object(map) => collect_object(map, names, final_answer),
        _ => {}
    }
}

fn collect_object(map: &Map<String, Value>, names: &mut Vec<String>, final_answer: &mut bool) {
    if FINAL_KEYS.iter().any(|k| map.contains_key(*k)) || is_final_answer_action(map) {
        *final_answer = true;
        return;
    }
    for key in ["tool_calls", "calls", "function", "function_call"] {
        if let Some(inner @ (Value::Array(_) | Value::Object(_))) = map.get(key) {
            collect(inner, names, final_answer);
            return;
        }
    }
    if let Some(name) = NAME_KEYS
        .iter()
        .find_map(|k| map.get(*k).and_then(Value::as_str))
        .filter(|n| !n.trim().is_empty())
    {
        names.push(name.trim().to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a reader announces when `text` arrives in pieces of `piece` chars.
    fn announcements(text: &str, piece: usize) -> Vec<PartialAction> {
        let mut reader = PartialActionReader::default();
        let chars: Vec<char> = text.chars().collect();
        let mut seen = Vec::new();
        for chunk in chars.chunks(piece) {
            if let Some(p) = reader.push(&chunk.iter().collect::<String>()) {
                seen.push(p.clone());
            }
        }
        assert_eq!(reader.text(), text);
        seen
    }

    #[test]
    fn names_are_announced_once_complete_in_order() {
        let text = r#"{"tool_calls": [{"name": "search", "arguments": {"q": "a \"b\""}}, {"name": "calculator", "arguments": {}}]}"#;
        for piece in [1, 2, 3, 7] {
            let mut whole = PartialActionReader::default();
            whole.push(text);
            assert!(whole.finish().is_ok());
            assert_eq!(
                announcements(text, piece),
                [
                    PartialAction::ToolCalls(vec!["search".into()]),
                    PartialAction::ToolCalls(vec!["search".into(), "calculator".into()]),
                ],
                "piece {piece}"
            );
        }
    }

    #[test]
    fn a_final_answer_is_announced_before_its_text_ends() {
        let mut reader = PartialActionReader::default();
        assert_eq!(
            reader.push(r#"{"final_answer": "#),
            Some(&PartialAction::FinalAnswer)
        );
        assert_eq!(reader.push(r#""Paris is the capital"#), None);
        assert_eq!(
            reader.finish().unwrap(),
            Action::FinalAnswer("Paris is the capital".into())
        );
    }

    #[test]
    fn prose_announces_nothing() {
        assert!(announcements("I think, honestly: the answer is 4.", 3).is_empty());
    }
}
