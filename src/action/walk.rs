//! [`Walk`]: one pass over a JSON action's text as it streams, finding its
//! tool calls, their arguments and its final answer.
//!
//! The walk reads character by character instead of repairing the prefix on
//! every token: it keeps a stack of the objects and arrays it is in, knows
//! which of them are tool calls, passes the raw text of each call's
//! arguments through as it arrives, and decodes a final answer's string as
//! it is written. A call is announced once its name is complete; arguments
//! written before the name wait for it. Everything it reports is final, so
//! nothing needs to be taken back.

use super::unescape::Unescape;
use super::{ARG_KEYS, FINAL_KEYS, NAME_KEYS};
use crate::env::ToolCallDraft;

/// What an object or array of the action is to the walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The top-level object: a call itself (`{"name", "arguments"}`), the
    /// holder of `tool_calls`, or a final answer.
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

/// What a string being read is to the walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An object's key.
    Key,
    /// A call's tool name.
    Name,
    /// The final answer's text.
    Answer,
    /// Anything else, skipped.
    Skipped,
}

/// A string being read.
#[derive(Debug, Clone)]
struct Text {
    quote: char,
    kind: Kind,
    unescape: Unescape,
    /// The decoded text of a key or a name.
    kept: String,
}

/// What the walk knows of one call.
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

/// What one piece of text made known.
#[derive(Debug, Default)]
pub(super) struct Found {
    /// Calls named and their arguments' text, in order.
    pub(super) drafts: Vec<ToolCallDraft>,
    /// The final answer's text this piece completes.
    pub(super) answer: String,
}

/// The walk over one action's text.
#[derive(Debug, Clone)]
pub(super) struct Walk {
    prefix: String,
    stack: Vec<Frame>,
    text: Option<Text>,
    capture: Option<Capture>,
    calls: Vec<Call>,
    /// A final-answer key (or `"action": "Final Answer"`) was seen.
    final_answer: bool,
    /// The answer string was read: a second one is not streamed.
    answered: bool,
    /// The top-level value closed: nothing more is read.
    done: bool,
}

impl Walk {
    /// A walk naming calls `{prefix}{position}`.
    pub(super) fn new(prefix: String) -> Self {
        Walk {
            prefix,
            stack: Vec::new(),
            text: None,
            capture: None,
            calls: Vec::new(),
            final_answer: false,
            answered: false,
            done: false,
        }
    }

    /// Whether the action is known to be a final answer.
    pub(super) fn is_final_answer(&self) -> bool {
        self.final_answer
    }

    /// Whether the action's top-level value has closed.
    pub(super) fn is_done(&self) -> bool {
        self.done
    }

    /// Reads the next piece of the text.
    pub(super) fn push(&mut self, delta: &str, found: &mut Found) {
        let mut captured = String::new();
        for c in delta.chars() {
            if self.done {
                break;
            }
            let before = self.capture;
            self.step(c, found, &mut captured);
            // A character belongs to the arguments if a capture was open
            // before it (and it did not end a scalar) or opened with it.
            let keep = match (before, self.capture) {
                (_, Some(_)) => true,
                (Some(cap), None) => !cap.scalar || c == '"' || c == '\'',
                (None, None) => false,
            };
            if keep {
                captured.push(c);
            }
            if before.is_some() && self.capture.is_none() {
                self.flush(before.map(|c| c.index), &mut captured, found);
            }
        }
        self.flush(self.capture.map(|c| c.index), &mut captured, found);
    }

    fn call_id(&self, index: usize) -> String {
        format!("{}{index}", self.prefix)
    }

    /// Hands captured argument text to its call: out now if the call is
    /// named, else kept until it is.
    fn flush(&mut self, index: Option<usize>, captured: &mut String, found: &mut Found) {
        let Some(index) = index else { return };
        if captured.is_empty() {
            return;
        }
        let delta = std::mem::take(captured);
        let call = &mut self.calls[index];
        if call.named {
            found.drafts.push(ToolCallDraft::Arguments {
                call_id: self.call_id(index),
                delta,
            });
        } else {
            call.waiting.push_str(&delta);
        }
    }

    fn step(&mut self, c: char, found: &mut Found, captured: &mut String) {
        if let Some(mut text) = self.text.take() {
            let closes = text.unescape.closes(c, text.quote);
            // Where the string's decoded text goes.
            let out = match text.kind {
                Kind::Answer => Some(&mut found.answer),
                Kind::Key | Kind::Name => Some(&mut text.kept),
                Kind::Skipped => None,
            };
            if closes {
                // The string ends here; it is not put back.
                text.unescape.finish(out);
                self.string_ended(text, found, captured);
            } else {
                text.unescape.push(c, out);
                self.text = Some(text);
            }
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
        let kind = if expects_key {
            Kind::Key
        } else if self.answer_here() {
            self.answered = true;
            Kind::Answer
        } else {
            self.value_began(None);
            match self.name_key_here() {
                true => Kind::Name,
                false => Kind::Skipped,
            }
        };
        self.text = Some(Text {
            quote,
            kind,
            unescape: Unescape::default(),
            kept: String::new(),
        });
    }

    /// The key of the top-level object's value being read, while that
    /// object is not (yet) a call.
    fn top_key(&self) -> Option<&str> {
        match self.stack.as_slice() {
            [frame] if frame.role == Role::Top => frame.key.as_deref(),
            _ => None,
        }
    }

    /// Whether the string beginning now is the final answer's text: the
    /// first one under a final-answer key, or the input of
    /// `"action": "Final Answer"`.
    fn answer_here(&self) -> bool {
        let Some(key) = self.top_key() else {
            return false;
        };
        !self.answered
            && (FINAL_KEYS.contains(&key) || (self.final_answer && ARG_KEYS.contains(&key)))
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
        // The input of a final answer given as an action is not a call's.
        if self.final_answer && frame.role == Role::Top {
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

    fn string_ended(&mut self, text: Text, found: &mut Found, captured: &mut String) {
        match text.kind {
            Kind::Key => {
                // A final-answer key of the top-level object (or of an
                // object in a top-level list) makes the action an answer.
                let answer_frame = self
                    .stack
                    .last()
                    .is_some_and(|f| matches!(f.role, Role::Top | Role::Call(None)));
                if answer_frame && self.calls.is_empty() && FINAL_KEYS.contains(&text.kept.as_str())
                {
                    self.final_answer = true;
                }
                if let Some(frame) = self.stack.last_mut() {
                    frame.key = Some(text.kept);
                }
                return;
            }
            Kind::Name => self.named(text.kept.trim(), found, captured),
            Kind::Answer | Kind::Skipped => {}
        }
        self.end_scalar();
    }

    /// A call's name is complete: announce the call and what of its
    /// arguments waited.
    fn named(&mut self, name: &str, found: &mut Found, captured: &mut String) {
        let is_key_action = self
            .stack
            .last()
            .and_then(|f| f.key.as_deref())
            .is_some_and(|k| k == "action");
        let final_answer = is_key_action && {
            let squashed: String = name.chars().filter(|c| c.is_alphanumeric()).collect();
            squashed.eq_ignore_ascii_case("finalanswer")
        };
        if final_answer && self.stack.len() == 1 && self.calls.is_empty() {
            self.final_answer = true;
        }
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
        found.drafts.push(ToolCallDraft::Named {
            call_id: call_id.clone(),
            tool: name.to_owned(),
        });
        let mut waiting = std::mem::take(&mut self.calls[index].waiting);
        // Arguments still being written go out with what waited.
        if self.capture.is_some_and(|c| c.index == index) {
            waiting.push_str(&std::mem::take(captured));
        }
        if !waiting.is_empty() {
            found.drafts.push(ToolCallDraft::Arguments {
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
