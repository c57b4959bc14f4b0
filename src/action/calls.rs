//! [`ToolCallReader`]: the tool calls of a JSON action, announced while the
//! model is still writing them.
//!
//! Like [`AnswerReader`](super::AnswerReader) it walks the streamed text
//! once, character by character, instead of repairing the prefix on every
//! token: it keeps a stack of the objects and arrays it is in, knows which
//! of them are tool calls, and passes the raw text of each call's arguments
//! through as it arrives. A call is announced once its name is complete;
//! arguments written before the name wait for it.

use super::{ARG_KEYS, NAME_KEYS};
use crate::env::ToolCallDraft;

/// What an object or array of the action is to the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The top-level object: a call itself (`{"name", "arguments"}`), or
    /// the holder of `tool_calls`.
    Top,
    /// An array whose objects are calls.
    Calls,
    /// A call's object, or the `function` object wrapped in one.
    Call(Option<usize>),
    /// Anything else (inside arguments, unknown keys).
    Other,
}

#[derive(Debug, Clone)]
struct Frame {
    role: Role,
    is_object: bool,
    /// The key whose value comes next (objects only).
    key: Option<String>,
    /// Whether a key (not a value) comes next (objects only).
    expects_key: bool,
}

/// A string being read: a key, a tool name, or a value to skip.
#[derive(Debug, Clone)]
struct Text {
    quote: char,
    escaped: bool,
    /// The decoded text, when it is kept (keys and names).
    kept: Option<String>,
    is_key: bool,
}

/// What the reader knows of one call.
#[derive(Debug, Clone, Default)]
struct Call {
    named: bool,
    /// Arguments written before the name.
    waiting: String,
    /// Whether its arguments were read once (the parser takes the first).
    has_arguments: bool,
}

/// The raw text of a call's arguments being passed through.
#[derive(Debug, Clone, Copy)]
struct Capture {
    index: usize,
    /// The stack's height when the value began.
    depth: usize,
    /// A string or scalar value (ends without a closer of its own).
    scalar: bool,
}

/// Announces a JSON action's tool calls as the model writes them: a
/// [`ToolCallDraft::Named`] once a call's name is complete, then
/// [`ToolCallDraft::Arguments`] with the raw text of its arguments as it
/// arrives (concatenated, the deltas are the arguments' JSON as written).
///
/// Streams the shapes the stock prompt asks for and their common variants:
/// `{"tool_calls": [...]}`, a top-level list of calls, a lone
/// `{"name", "arguments"}` (or any of the key names
/// [`parse_action`](super::parse_action) accepts), and OpenAI's
/// `{"function": {...}}` wrapper. Call ids are `prefix` and the call's
/// position, as the parsed action numbers them.
///
/// ```
/// use statewise::action::ToolCallReader;
/// use statewise::ToolCallDraft;
///
/// let mut reader = ToolCallReader::new("call_");
/// let mut drafts = Vec::new();
/// for piece in [r#"{"tool_calls": [{"name": "calc"#, r#"ulator", "arguments": {"expr"#, r#"": "6*7"}}]}"#] {
///     drafts.extend(reader.push(piece));
/// }
/// assert_eq!(drafts, [
///     ToolCallDraft::Named { call_id: "call_0".into(), tool: "calculator".into() },
///     ToolCallDraft::Arguments { call_id: "call_0".into(), delta: r#"{"expr"#.into() },
///     ToolCallDraft::Arguments { call_id: "call_0".into(), delta: r#"": "6*7"}"#.into() },
/// ]);
/// ```
#[derive(Debug, Clone)]
pub struct ToolCallReader {
    prefix: String,
    stack: Vec<Frame>,
    text: Option<Text>,
    capture: Option<Capture>,
    calls: Vec<Call>,
    /// The top-level value closed: nothing more is read.
    done: bool,
}

impl ToolCallReader {
    /// A reader naming calls `{prefix}{position}`.
    pub fn new(prefix: impl Into<String>) -> Self {
        ToolCallReader {
            prefix: prefix.into(),
            stack: Vec::new(),
            text: None,
            capture: None,
            calls: Vec::new(),
            done: false,
        }
    }

    /// Adds the next piece of the model's text; returns what it makes
    /// known, in order (often nothing).
    pub fn push(&mut self, delta: &str) -> Vec<ToolCallDraft> {
        let mut out = Vec::new();
        let mut captured = String::new();
        for c in delta.chars() {
            if self.done {
                break;
            }
            let before = self.capture;
            self.step(c, &mut out, &mut captured);
            // A character belongs to the arguments if a capture was open
            // before it (and it did not end a scalar) or opened with it.
            let keep = match (before, self.capture) {
                (_, Some(_)) => true,
                (Some(cap), None) => !cap.scalar || self.text_closed_by(c),
                (None, None) => false,
            };
            if keep {
                captured.push(c);
            }
            if before.is_some() && self.capture.is_none() {
                self.flush(before.map(|c| c.index), &mut captured, &mut out);
            }
        }
        self.flush(self.capture.map(|c| c.index), &mut captured, &mut out);
        out
    }

    /// Whether the action's top-level value has closed.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// A string value that ended with `c` belongs wholly to the arguments.
    fn text_closed_by(&self, c: char) -> bool {
        c == '"' || c == '\''
    }

    fn call_id(&self, index: usize) -> String {
        format!("{}{index}", self.prefix)
    }

    /// Hands captured argument text to its call: out now if the call is
    /// named, else kept until it is.
    fn flush(&mut self, index: Option<usize>, captured: &mut String, out: &mut Vec<ToolCallDraft>) {
        let Some(index) = index else { return };
        if captured.is_empty() {
            return;
        }
        let delta = std::mem::take(captured);
        let call = &mut self.calls[index];
        if call.named {
            out.push(ToolCallDraft::Arguments {
                call_id: self.call_id(index),
                delta,
            });
        } else {
            call.waiting.push_str(&delta);
        }
    }

    fn step(&mut self, c: char, out: &mut Vec<ToolCallDraft>, captured: &mut String) {
        if let Some(mut text) = self.text.take() {
            if text.escaped {
                text.escaped = false;
                if let Some(kept) = &mut text.kept {
                    kept.push(match c {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    });
                }
            } else if c == '\\' {
                text.escaped = true;
            } else if c == text.quote {
                // The string ends here; it is not put back.
                self.string_ended(text, out, captured);
                return;
            } else if let Some(kept) = &mut text.kept {
                kept.push(c);
            }
            self.text = Some(text);
            return;
        }
        if self.stack.is_empty() {
            // Prose or a code fence before the action.
            match c {
                '{' => self.open(Role::Top, true),
                '[' => self.open(Role::Calls, false),
                _ => {}
            }
            return;
        }
        match c {
            '"' | '\'' => self.open_string(c),
            '{' | '[' => {
                let role = self.value_began(Some(c));
                self.open(role, c == '{');
            }
            '}' | ']' => self.close(),
            ',' => {
                self.end_scalar();
                if let Some(top) = self.stack.last_mut() {
                    if top.is_object {
                        top.expects_key = true;
                        top.key = None;
                    }
                }
            }
            ':' => {
                if let Some(top) = self.stack.last_mut() {
                    top.expects_key = false;
                }
            }
            c if c.is_whitespace() => {}
            _ => {
                // A number, true, false or null.
                self.value_began(None);
            }
        }
    }

    fn open(&mut self, role: Role, is_object: bool) {
        self.stack.push(Frame {
            role,
            is_object,
            key: None,
            expects_key: is_object,
        });
    }

    fn open_string(&mut self, quote: char) {
        let expects_key = self
            .stack
            .last()
            .is_some_and(|f| f.is_object && f.expects_key);
        let kept = if expects_key {
            Some(String::new())
        } else {
            self.value_began(None);
            self.name_key_here().then(String::new)
        };
        self.text = Some(Text {
            quote,
            escaped: false,
            kept,
            is_key: expects_key,
        });
    }

    /// Whether the current value is a tool name: a name key of a call.
    fn name_key_here(&self) -> bool {
        let Some(frame) = self.stack.last() else {
            return false;
        };
        matches!(frame.role, Role::Top | Role::Call(_))
            && frame.key.as_deref().is_some_and(|k| NAME_KEYS.contains(&k))
    }

    /// The call index of the current frame, allocating one on first use.
    fn call_index(&mut self) -> Option<usize> {
        let next = self.calls.len();
        let frame = self.stack.last_mut()?;
        match &mut frame.role {
            Role::Top => {
                frame.role = Role::Call(Some(next));
            }
            Role::Call(index @ None) => *index = Some(next),
            Role::Call(Some(index)) => return Some(*index),
            Role::Calls | Role::Other => return None,
        }
        self.calls.push(Call::default());
        Some(next)
    }

    /// A value begins in the current frame (`opening` is its `{` or `[`, if
    /// it is one): decides its role, and opens a capture if it is a call's
    /// arguments.
    fn value_began(&mut self, opening: Option<char>) -> Role {
        let Some(frame) = self.stack.last() else {
            return Role::Other;
        };
        if self.capture.is_some() {
            return Role::Other;
        }
        let depth = self.stack.len();
        match (frame.role, frame.is_object, frame.key.clone()) {
            (Role::Calls, false, _) if opening == Some('[') => Role::Calls,
            (Role::Calls, false, _) => Role::Call(None),
            (Role::Top, true, Some(k)) if k == "tool_calls" || k == "calls" => Role::Calls,
            (Role::Top | Role::Call(_), true, Some(k))
                if k == "function" || k == "function_call" =>
            {
                Role::Call(self.call_index())
            }
            (Role::Top | Role::Call(_), true, Some(k)) if ARG_KEYS.contains(&k.as_str()) => {
                if let Some(index) = self.call_index() {
                    let call = &mut self.calls[index];
                    if !call.has_arguments {
                        call.has_arguments = true;
                        self.capture = Some(Capture {
                            index,
                            depth,
                            scalar: opening.is_none(),
                        });
                    }
                }
                Role::Other
            }
            _ => Role::Other,
        }
    }

    fn string_ended(&mut self, text: Text, out: &mut Vec<ToolCallDraft>, captured: &mut String) {
        if text.is_key {
            if let (Some(frame), Some(key)) = (self.stack.last_mut(), text.kept) {
                frame.key = Some(key);
            }
            return;
        }
        if let Some(name) = text.kept {
            self.named(name.trim(), out, captured);
        }
        self.end_scalar();
    }

    /// A call's name is complete: announce the call and what of its
    /// arguments waited.
    fn named(&mut self, name: &str, out: &mut Vec<ToolCallDraft>, captured: &mut String) {
        let is_key_action = self
            .stack
            .last()
            .and_then(|f| f.key.as_deref())
            .is_some_and(|k| k == "action");
        let final_answer = is_key_action && {
            let squashed: String = name.chars().filter(|c| c.is_alphanumeric()).collect();
            squashed.eq_ignore_ascii_case("finalanswer")
        };
        if name.is_empty() || final_answer {
            return;
        }
        let Some(index) = self.call_index() else {
            return;
        };
        if self.calls[index].named {
            return;
        }
        self.calls[index].named = true;
        let call_id = self.call_id(index);
        out.push(ToolCallDraft::Named {
            call_id: call_id.clone(),
            tool: name.to_owned(),
        });
        let mut waiting = std::mem::take(&mut self.calls[index].waiting);
        // Arguments still being written go out with what waited.
        if self.capture.is_some_and(|c| c.index == index) {
            waiting.push_str(&std::mem::take(captured));
        }
        if !waiting.is_empty() {
            out.push(ToolCallDraft::Arguments {
                call_id,
                delta: waiting,
            });
        }
    }

    /// A string or scalar value ended: a scalar capture at this depth ends.
    fn end_scalar(&mut self) {
        if self
            .capture
            .is_some_and(|c| c.scalar && c.depth == self.stack.len())
        {
            self.capture = None;
        }
    }

    fn close(&mut self) {
        self.end_scalar();
        self.stack.pop();
        if let Some(cap) = self.capture {
            if cap.depth == self.stack.len() && !cap.scalar {
                self.capture = None;
            }
        }
        if self.stack.is_empty() {
            self.done = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::parse_action;
    use crate::env::Action;

    /// Per call id: the tool, and its arguments' text joined.
    fn read(pieces: &[&str]) -> Vec<(String, String, String)> {
        let mut reader = ToolCallReader::new("call_");
        let mut calls: Vec<(String, String, String)> = Vec::new();
        for piece in pieces {
            for draft in reader.push(piece) {
                match draft {
                    ToolCallDraft::Named { call_id, tool } => {
                        assert!(
                            calls.iter().all(|c| c.0 != call_id),
                            "{call_id} named twice"
                        );
                        calls.push((call_id, tool, String::new()));
                    }
                    ToolCallDraft::Arguments { call_id, delta } => {
                        let call = calls
                            .iter_mut()
                            .find(|c| c.0 == call_id)
                            .expect("arguments only after the name");
                        assert!(!delta.is_empty());
                        call.2.push_str(&delta);
                    }
                }
            }
        }
        calls
    }

    /// Every way of cutting `text` in two, and one character at a time,
    /// reads the same calls, which match the parsed action.
    fn check(text: &str, expected: &[(&str, &str)]) {
        let expected: Vec<(String, String, String)> = expected
            .iter()
            .enumerate()
            .map(|(i, (tool, args))| (format!("call_{i}"), tool.to_string(), args.to_string()))
            .collect();
        assert_eq!(read(&[text]), expected, "whole: {text}");
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let chars: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(read(&chars), expected, "char by char: {text}");
        for (at, _) in text.char_indices() {
            let (a, b) = text.split_at(at);
            assert_eq!(read(&[a, b]), expected, "cut at {at}: {text}");
        }
        if let Ok(Action::ToolCalls(parsed)) = parse_action(text) {
            // Ids are by position, as the stock Reasoning renumbers them.
            let names: Vec<&str> = parsed.iter().map(|c| c.name.as_str()).collect();
            assert_eq!(
                names,
                expected.iter().map(|c| c.1.as_str()).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn the_stock_shape_streams_each_call() {
        check(
            r#"{"tool_calls": [{"name": "calculator", "arguments": {"expr": "6*7", "n": [1, {"a": "}"}]}}, {"name": "clock", "arguments": {}}]}"#,
            &[
                ("calculator", r#"{"expr": "6*7", "n": [1, {"a": "}"}]}"#),
                ("clock", "{}"),
            ],
        );
    }

    #[test]
    fn other_shapes_stream_too() {
        // Prose and a fence before a flat call.
        check(
            "Sure.\n```json\n{\"tool\": \"search\", \"args\": {\"q\": \"a \\\"b\\\"\"}}\n```",
            &[("search", r#"{"q": "a \"b\""}"#)],
        );
        // A top-level list, with arguments before the name.
        check(
            r#"[{"arguments": {"x": 1}, "name": "a"}, {"name": "b", "arguments": {"y": 2}}]"#,
            &[("a", r#"{"x": 1}"#), ("b", r#"{"y": 2}"#)],
        );
        // OpenAI's wrapper, with arguments as a string.
        check(
            r#"{"tool_calls": [{"id": "x", "type": "function", "function": {"name": "calc", "arguments": "{\"e\": 2}"}}]}"#,
            &[("calc", r#""{\"e\": 2}""#)],
        );
        // Single quotes and a scalar argument.
        check("{'name': 'clock', 'arguments': 5}", &[("clock", "5")]);
    }

    #[test]
    fn answers_announce_no_call() {
        check(r#"{"final_answer": "use {\"name\": \"x\"}"}"#, &[]);
        check(
            r#"{"action": "Final Answer", "action_input": {"name": "x"}}"#,
            &[],
        );
        check("The answer is 42.", &[]);
    }

    #[test]
    fn nothing_is_read_after_the_action() {
        let mut reader = ToolCallReader::new("c");
        assert_eq!(reader.push(r#"{"name": "a"} then {"name": "b"}"#).len(), 1);
        assert!(reader.is_done());
    }
}
