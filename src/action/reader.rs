//! [`ActionReader`]: everything a streaming JSON action makes known, from
//! one pass over its text.
//!
//! A state reading an action wants three things while it streams — what
//! kind of action it is, the answer's text, the tool calls as drafts — and
//! the parsed action at the end. One reader walks each token once for all
//! three ([`Walk`]), and repairs the whole text once, at the end.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::walk::{Found, Walk};
use super::{action_from_value, repair, ParseError};
use crate::env::{Action, ToolCallDraft};

/// The best-effort, never-retracted view of an action still being written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartialAction {
    /// The model is calling tools; these are the names complete so far.
    ToolCalls(Vec<String>),
    /// The model is writing a final answer.
    FinalAnswer,
}

/// What one piece of an action's text made known (often nothing).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Progress {
    /// What is known of the action now, when this piece changed it.
    pub partial: Option<PartialAction>,
    /// The final answer's text this piece completes, decoded.
    pub answer: String,
    /// Tool calls named and their arguments' raw text, in order.
    pub drafts: Vec<ToolCallDraft>,
}

/// A complete action's text, repaired and read.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Parsed {
    /// The JSON recovered from the text.
    pub repaired: Value,
    /// The action it holds.
    pub action: Action,
}

/// Reads a JSON action token by token, in one pass: [`push`](Self::push)
/// says what each piece made known — the kind of action (a tool name
/// completed, a final answer began), the final answer's text decoded as it
/// is written, and each tool call's name and raw arguments — and
/// [`finish`](Self::finish) repairs and parses the whole text once.
///
/// The answer streams from `{"final_answer": "..."}` (or `"answer"`, or
/// `{"action": "Final Answer", "action_input": "..."}`) after optional
/// prose or a code fence; a final answer that is not a string is known only
/// when parsed. Calls stream from `{"tool_calls": [...]}`, a top-level list
/// of calls, a lone `{"name", "arguments"}` (or any of the key names
/// [`parse_action`](super::parse_action) accepts), and OpenAI's
/// `{"function": {...}}` wrapper; their ids are the prefix and the call's
/// position, as the parsed action numbers them. What a piece makes known is
/// final: nothing is taken back.
///
/// ```
/// use statewise::action::{ActionReader, PartialAction};
/// use statewise::{Action, ToolCallDraft};
///
/// let mut reader = ActionReader::new("call_");
/// let mut drafts = Vec::new();
/// for piece in [r#"{"tool_calls": [{"name": "calc"#, r#"ulator", "arguments": {"x"#, r#"": 1}}]}"#] {
///     drafts.extend(reader.push(piece).drafts);
/// }
/// assert_eq!(reader.known(), Some(&PartialAction::ToolCalls(vec!["calculator".into()])));
/// assert_eq!(drafts[0], ToolCallDraft::Named { call_id: "call_0".into(), tool: "calculator".into() });
/// assert!(matches!(reader.finish()?.action, Action::ToolCalls(_)));
///
/// let mut reader = ActionReader::new("call_");
/// let mut answer = String::new();
/// for piece in ["{\"final_", "answer\": \"Line one\\", "nLine \\u00e9", "two\"}"] {
///     answer.push_str(&reader.push(piece).answer);
/// }
/// assert_eq!(answer, "Line one\nLine étwo");
/// # Ok::<(), statewise::action::ParseError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ActionReader {
    text: String,
    walk: Walk,
    known: Option<PartialAction>,
}

impl ActionReader {
    /// A reader naming calls `{prefix}{position}`.
    pub fn new(prefix: impl Into<String>) -> Self {
        ActionReader {
            text: String::new(),
            walk: Walk::new(prefix.into()),
            known: None,
        }
    }

    /// Adds the next piece of the model's text; returns what it made known.
    pub fn push(&mut self, delta: &str) -> Progress {
        self.text.push_str(delta);
        let mut found = Found::default();
        self.walk.push(delta, &mut found);
        let partial = self.partial(&found.drafts);
        Progress {
            partial,
            answer: found.answer,
            drafts: found.drafts,
        }
    }

    /// What is known now, if these drafts (or the walk) changed it; a final
    /// answer is all there is to know, so it is never followed by calls.
    fn partial(&mut self, drafts: &[ToolCallDraft]) -> Option<PartialAction> {
        if self.known == Some(PartialAction::FinalAnswer) {
            return None;
        }
        let named = drafts.iter().filter_map(|d| match d {
            ToolCallDraft::Named { tool, .. } => Some(tool.clone()),
            ToolCallDraft::Arguments { .. } => None,
        });
        let now = match (&self.known, self.walk.is_final_answer()) {
            (None, true) => PartialAction::FinalAnswer,
            (Some(PartialAction::ToolCalls(names)), _) => {
                let mut names = names.clone();
                let before = names.len();
                names.extend(named);
                if names.len() == before {
                    return None;
                }
                PartialAction::ToolCalls(names)
            }
            _ => {
                let names: Vec<String> = named.collect();
                if names.is_empty() {
                    return None;
                }
                PartialAction::ToolCalls(names)
            }
        };
        self.known = Some(now);
        self.known.clone()
    }

    /// The text received so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// What is known so far.
    pub fn known(&self) -> Option<&PartialAction> {
        self.known.as_ref()
    }

    /// Whether the action's top-level value has closed: what follows is
    /// not read as it streams.
    pub fn is_done(&self) -> bool {
        self.walk.is_done()
    }

    /// Repairs the complete text and reads it as an action.
    pub fn finish(&self) -> Result<Parsed, ParseError> {
        let repaired = repair(&self.text)?;
        let action = action_from_value(repaired.clone())?;
        Ok(Parsed { repaired, action })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::parse_action;

    /// Everything `pieces` make known, joined: the announcements, the
    /// answer's text, and per call id the tool and its arguments' text.
    #[derive(Debug, Default, PartialEq)]
    struct Read {
        partials: Vec<PartialAction>,
        answer: String,
        calls: Vec<(String, String, String)>,
    }

    fn read(pieces: &[&str]) -> Read {
        let mut reader = ActionReader::new("call_");
        let mut read = Read::default();
        for piece in pieces {
            let progress = reader.push(piece);
            read.partials.extend(progress.partial);
            read.answer.push_str(&progress.answer);
            for draft in progress.drafts {
                match draft {
                    ToolCallDraft::Named { call_id, tool } => {
                        assert!(
                            read.calls.iter().all(|c| c.0 != call_id),
                            "{call_id} named twice"
                        );
                        read.calls.push((call_id, tool, String::new()));
                    }
                    ToolCallDraft::Arguments { call_id, delta } => {
                        let call = read
                            .calls
                            .iter_mut()
                            .find(|c| c.0 == call_id)
                            .expect("arguments only after the name");
                        assert!(!delta.is_empty());
                        call.2.push_str(&delta);
                    }
                }
            }
        }
        assert_eq!(reader.text(), pieces.concat());
        read
    }

    /// Whole, one character at a time, and cut in two at every place, the
    /// text makes the same things known (announced in more or fewer steps).
    fn every_split(text: &str) -> Read {
        let whole = read(&[text]);
        let same = |split: Read, how: &str| {
            assert_eq!(split.answer, whole.answer, "{how}: {text}");
            assert_eq!(split.calls, whole.calls, "{how}: {text}");
            assert_eq!(
                split.partials.last(),
                whole.partials.last(),
                "{how}: {text}"
            );
        };
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let chars: Vec<&str> = chars.iter().map(String::as_str).collect();
        same(read(&chars), "char by char");
        for (at, _) in text.char_indices() {
            let (a, b) = text.split_at(at);
            same(read(&[a, b]), &format!("cut at {at}"));
        }
        whole
    }

    /// The calls `text` streams, which match the parsed action's.
    fn check_calls(text: &str, expected: &[(&str, &str)]) {
        let expected: Vec<(String, String, String)> = expected
            .iter()
            .enumerate()
            .map(|(i, (tool, args))| (format!("call_{i}"), tool.to_string(), args.to_string()))
            .collect();
        let read = every_split(text);
        assert_eq!(read.calls, expected, "{text}");
        if let Ok(Action::ToolCalls(parsed)) = parse_action(text) {
            let names: Vec<&str> = parsed.iter().map(|c| c.name.as_str()).collect();
            assert_eq!(
                names,
                expected.iter().map(|c| c.1.as_str()).collect::<Vec<_>>()
            );
        }
    }

    /// The answer `text` streams, which is the parsed answer.
    fn check_answer(text: &str) -> String {
        let read = every_split(text);
        assert_eq!(read.partials, [PartialAction::FinalAnswer], "{text}");
        assert!(read.calls.is_empty(), "{text}");
        let Ok(Action::FinalAnswer(parsed)) = parse_action(text) else {
            panic!("not an answer: {text}");
        };
        assert_eq!(read.answer, parsed, "{text}");
        read.answer
    }

    #[test]
    fn the_stock_shape_streams_each_call_and_names_them_in_order() {
        let text = r#"{"tool_calls": [{"name": "calculator", "arguments": {"expr": "6*7", "n": [1, {"a": "}"}]}}, {"name": "clock", "arguments": {}}]}"#;
        check_calls(
            text,
            &[
                ("calculator", r#"{"expr": "6*7", "n": [1, {"a": "}"}]}"#),
                ("clock", "{}"),
            ],
        );
        assert_eq!(
            read(&[text]).partials,
            [PartialAction::ToolCalls(vec![
                "calculator".into(),
                "clock".into()
            ])]
        );
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let chars: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(
            read(&chars).partials,
            [
                PartialAction::ToolCalls(vec!["calculator".into()]),
                PartialAction::ToolCalls(vec!["calculator".into(), "clock".into()]),
            ]
        );
    }

    #[test]
    fn other_call_shapes_stream_too() {
        // Prose and a fence before a flat call.
        check_calls(
            "Sure.\n```json\n{\"tool\": \"search\", \"args\": {\"q\": \"a \\\"b\\\"\"}}\n```",
            &[("search", r#"{"q": "a \"b\""}"#)],
        );
        // A top-level list, with arguments before the name.
        check_calls(
            r#"[{"arguments": {"x": 1}, "name": "a"}, {"name": "b", "arguments": {"y": 2}}]"#,
            &[("a", r#"{"x": 1}"#), ("b", r#"{"y": 2}"#)],
        );
        // OpenAI's wrapper, with arguments as a string.
        check_calls(
            r#"{"tool_calls": [{"id": "x", "type": "function", "function": {"name": "calc", "arguments": "{\"e\": 2}"}}]}"#,
            &[("calc", r#""{\"e\": 2}""#)],
        );
        // Single quotes and a scalar argument.
        check_calls("{'name': 'clock', 'arguments': 5}", &[("clock", "5")]);
        // An escaped name.
        check_calls(r#"{"name": "w\u0065b", "arguments": {}}"#, &[("web", "{}")]);
    }

    #[test]
    fn answers_stream_decoded_and_announce_no_call() {
        assert_eq!(
            check_answer(
                r#"{"final_answer": "Tab\there, \"quoted\", back\\slash, caf\u00e9, \ud83d\ude00 done", "extra": 1}"#
            ),
            "Tab\there, \"quoted\", back\\slash, café, 😀 done"
        );
        assert_eq!(
            check_answer(r#"{"final_answer": "use {\"name\": \"x\"}"}"#),
            "use {\"name\": \"x\"}"
        );
        assert_eq!(
            check_answer("Sure!\n```json\n{ \"final_answer\" : \"4\" }\n```"),
            "4"
        );
        // After another key, under the short key, as a ReAct action.
        assert_eq!(check_answer(r#"{"thought": "easy", "answer": "4"}"#), "4");
        assert_eq!(
            check_answer(r#"{"action": "Final Answer", "action_input": "Paris"}"#),
            "Paris"
        );
        assert_eq!(check_answer("{'final_answer': 'It\\'s 4'}"), "It's 4");
    }

    #[test]
    fn other_shapes_stream_no_answer() {
        for text in [
            r#"{"tool_calls": [{"name": "calc", "arguments": {"final_answer": "x"}}]}"#,
            r#"{"name": "calc", "arguments": {"answer": "x"}}"#,
            r#"{"final_answer": 42}"#,
            r#"{"action": "Final Answer", "action_input": {"name": "x"}}"#,
            "The answer is 42.",
            "I'm not sure: \"quoted\" prose",
        ] {
            let read = every_split(text);
            assert_eq!(read.answer, "", "{text}");
        }
    }

    #[test]
    fn a_final_answer_is_announced_once_before_its_text_ends() {
        let mut reader = ActionReader::new("c");
        assert_eq!(
            reader.push(r#"{"final_answer""#).partial,
            Some(PartialAction::FinalAnswer)
        );
        let progress = reader.push(r#": "Paris is the capital"#);
        assert_eq!(progress.partial, None);
        assert_eq!(progress.answer, "Paris is the capital");
        let parsed = reader.finish().unwrap();
        assert_eq!(
            parsed.action,
            Action::FinalAnswer("Paris is the capital".into())
        );
        assert_eq!(
            parsed.repaired,
            serde_json::json!({"final_answer": "Paris is the capital"})
        );
    }

    #[test]
    fn prose_makes_nothing_known() {
        let read = every_split("I think, honestly: the answer is 4.");
        assert_eq!(read, Read::default());
    }

    #[test]
    fn nothing_is_read_after_the_action() {
        let mut reader = ActionReader::new("c");
        assert_eq!(
            reader
                .push(r#"{"name": "a"} then {"name": "b"}"#)
                .drafts
                .len(),
            1
        );
        assert!(reader.is_done());
        assert!(matches!(
            reader.finish(),
            Ok(Parsed {
                action: Action::ToolCalls(_),
                ..
            })
        ));
    }

    #[test]
    fn an_answer_split_inside_an_escape_loses_nothing() {
        let read = read(&[r#"{"final_answer": "a\"#, r#"u00"#, r#"e9\"#, r#"nb"}"#]);
        assert_eq!(read.answer, "a\u{e9}\nb");
    }
}
