//! [`AnswerReader`]: the text of a final answer, decoded while the model is
//! still writing its JSON action.
//!
//! The reader is a small state machine over the streamed text, not a
//! repair of the prefix on every token: it looks for the action's opening
//! (`{"final_answer": "`), then decodes the string's characters and escapes
//! as they arrive, holding back only an escape cut in two by a chunk
//! boundary. What it yields is final: a string's decoded text never changes
//! as more of it arrives, so nothing needs to be taken back.

/// Where the reader is in the action's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Stage {
    /// Looking for `{ "final_answer" : "`.
    #[default]
    Opening,
    /// Inside the answer string.
    Answer,
    /// The string closed (or the action is not a final answer).
    Done,
}

/// The longest opening it looks through before giving up: a reply that has
/// not begun `{"final_answer": "` by then is something else.
const MAX_OPENING: usize = 256;

/// Decodes the final answer's text from a JSON action as it streams.
///
/// Only the plain shape streams: a top-level object whose first key is
/// `final_answer` with a string value, after optional prose or a code
/// fence. Any other shape yields nothing, and the answer is known once the
/// whole action is parsed.
///
/// ```
/// use statewise::action::AnswerReader;
///
/// let mut reader = AnswerReader::default();
/// let mut text = String::new();
/// for piece in ["{\"final_", "answer\": \"Line one\\", "nLine \\u00e9", "two\"}"] {
///     text.push_str(&reader.push(piece));
/// }
/// assert_eq!(text, "Line one\nLine étwo");
/// assert!(reader.is_done());
/// ```
#[derive(Debug, Clone, Default)]
pub struct AnswerReader {
    stage: Stage,
    /// Text not yet consumed: the opening so far, or a cut escape.
    pending: String,
    /// How much of the opening was looked through.
    seen: usize,
    /// A high surrogate waiting for its low half.
    high: Option<u16>,
}

impl AnswerReader {
    /// Adds the next piece of the model's text; returns the answer text it
    /// completes (often empty).
    pub fn push(&mut self, delta: &str) -> String {
        let mut out = String::new();
        match self.stage {
            Stage::Done => return out,
            Stage::Opening => {
                self.pending.push_str(delta);
                self.seen += delta.len();
                match opening_end(&self.pending) {
                    Opening::Found(at) => {
                        let rest = self.pending.split_off(at);
                        self.pending.clear();
                        self.stage = Stage::Answer;
                        self.decode(&rest, &mut out);
                    }
                    Opening::NotYet if self.seen <= MAX_OPENING => {}
                    Opening::NotYet | Opening::Never => {
                        self.stage = Stage::Done;
                        self.pending = String::new();
                    }
                }
            }
            Stage::Answer => self.decode(delta, &mut out),
        }
        out
    }

    /// Whether the reader has nothing more to yield: the answer string
    /// closed, or the text is not a final answer it can stream.
    pub fn is_done(&self) -> bool {
        self.stage == Stage::Done
    }

    fn decode(&mut self, delta: &str, out: &mut String) {
        let mut text = std::mem::take(&mut self.pending);
        text.push_str(delta);
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.stage = Stage::Done;
                    return;
                }
                '\\' => {
                    let rest = &text[i..];
                    match escape(rest) {
                        Escape::Cut => {
                            // Wait for the rest of the escape.
                            self.pending = rest.to_owned();
                            return;
                        }
                        Escape::Char(c, len) => {
                            self.flush_high(out);
                            out.push(c);
                            skip(&mut chars, i + len);
                        }
                        Escape::Unit(unit, len) => {
                            self.unit(unit, out);
                            skip(&mut chars, i + len);
                        }
                        Escape::Bad(len) => {
                            // Not JSON; the parsed action will say what it is.
                            self.flush_high(out);
                            skip(&mut chars, i + len);
                        }
                    }
                }
                c => {
                    self.flush_high(out);
                    out.push(c);
                }
            }
        }
    }

    /// One UTF-16 code unit from a `\u` escape.
    fn unit(&mut self, unit: u16, out: &mut String) {
        match (self.high.take(), unit) {
            (Some(high), 0xDC00..=0xDFFF) => {
                let c = 0x10000 + ((u32::from(high) - 0xD800) << 10) + (u32::from(unit) - 0xDC00);
                out.push(char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER));
            }
            (high, 0xD800..=0xDBFF) => {
                if high.is_some() {
                    out.push(char::REPLACEMENT_CHARACTER);
                }
                self.high = Some(unit);
            }
            (high, unit) => {
                if high.is_some() {
                    out.push(char::REPLACEMENT_CHARACTER);
                }
                out.push(char::from_u32(u32::from(unit)).unwrap_or(char::REPLACEMENT_CHARACTER));
            }
        }
    }

    /// A high surrogate with no low half after it.
    fn flush_high(&mut self, out: &mut String) {
        if self.high.take().is_some() {
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
}

/// Advances `chars` to byte `end`.
fn skip(chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>, end: usize) {
    while chars.peek().is_some_and(|(j, _)| *j < end) {
        chars.next();
    }
}

enum Escape {
    /// The escape is cut off by the end of the text so far.
    Cut,
    /// A character, and the escape's length in bytes.
    Char(char, usize),
    /// A `\uXXXX` code unit, and the length.
    Unit(u16, usize),
    /// Not a JSON escape; its length.
    Bad(usize),
}

/// The escape at the start of `text` (which starts with a backslash).
fn escape(text: &str) -> Escape {
    let bytes = text.as_bytes();
    let Some(&kind) = bytes.get(1) else {
        return Escape::Cut;
    };
    let c = match kind {
        b'n' => '\n',
        b't' => '\t',
        b'r' => '\r',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'/' => '/',
        b'\\' => '\\',
        b'"' => '"',
        b'u' => {
            let Some(hex) = text.get(2..6) else {
                return if text.len() < 6 && text[2..].bytes().all(|b| b.is_ascii_hexdigit()) {
                    Escape::Cut
                } else {
                    Escape::Bad(2)
                };
            };
            return match u16::from_str_radix(hex, 16) {
                Ok(unit) => Escape::Unit(unit, 6),
                Err(_) => Escape::Bad(2),
            };
        }
        _ => return Escape::Bad(1 + text[1..].chars().next().map_or(1, char::len_utf8)),
    };
    Escape::Char(c, 2)
}

/// Where an opening `{"final_answer": "` ends in `text`.
enum Opening {
    /// The answer string starts at this byte.
    Found(usize),
    /// Not yet: more text may complete it.
    NotYet,
    /// The text is some other shape.
    Never,
}

fn opening_end(text: &str) -> Opening {
    // Prose or a code fence may come first; the action starts at its brace.
    let Some(brace) = text.find('{') else {
        return Opening::NotYet;
    };
    let after = text[brace + 1..].trim_start();
    const KEY: &str = "\"final_answer\"";
    if after.len() < KEY.len() {
        return match KEY.starts_with(after) {
            true => Opening::NotYet,
            false => Opening::Never,
        };
    }
    let Some(rest) = after.strip_prefix(KEY) else {
        return Opening::Never;
    };
    let rest = rest.trim_start();
    let Some(rest) = rest.strip_prefix(':') else {
        return if rest.is_empty() {
            Opening::NotYet
        } else {
            Opening::Never
        };
    };
    let rest = rest.trim_start();
    match rest.strip_prefix('"') {
        Some(value) => Opening::Found(text.len() - value.len()),
        None if rest.is_empty() => Opening::NotYet,
        None => Opening::Never,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `text` in pieces of `size` bytes (on char boundaries).
    fn streamed(text: &str, size: usize) -> (String, bool) {
        let mut reader = AnswerReader::default();
        let mut out = String::new();
        let mut piece = String::new();
        for c in text.chars() {
            piece.push(c);
            if piece.len() >= size {
                out.push_str(&reader.push(&piece));
                piece.clear();
            }
        }
        out.push_str(&reader.push(&piece));
        (out, reader.is_done())
    }

    #[test]
    fn every_split_gives_the_same_decoded_answer() {
        let action = r#"{"final_answer": "Tab\there, \"quoted\", back\\slash, caf\u00e9, \ud83d\ude00 done", "extra": 1}"#;
        let expected: serde_json::Value = serde_json::from_str(action).unwrap();
        let expected = expected["final_answer"].as_str().unwrap();
        for size in 1..=action.len() {
            let (out, done) = streamed(action, size);
            assert_eq!(out, expected, "pieces of {size}");
            assert!(done);
        }
    }

    #[test]
    fn prose_or_a_fence_before_the_action_is_passed_over() {
        let (out, _) = streamed("Sure!\n```json\n{ \"final_answer\" : \"4\" }\n```", 3);
        assert_eq!(out, "4");
    }

    #[test]
    fn other_shapes_stream_nothing() {
        for text in [
            r#"{"tool_calls": [{"name": "calc", "arguments": {"final_answer": "x"}}]}"#,
            r#"{"name": "calc", "arguments": {}}"#,
            r#"{"final_answer": 42}"#,
            "The answer is 4.",
        ] {
            let (out, _) = streamed(text, 2);
            assert_eq!(out, "", "{text}");
        }
    }

    #[test]
    fn a_text_with_no_brace_for_long_is_given_up() {
        let mut reader = AnswerReader::default();
        reader.push(&"prose ".repeat(60));
        assert!(reader.is_done());
        assert_eq!(reader.push("{\"final_answer\": \"late\"}"), "");
    }

    #[test]
    fn a_lone_surrogate_becomes_a_replacement_character() {
        let (out, _) = streamed(r#"{"final_answer": "a\ud83d b"}"#, 4);
        assert_eq!(out, "a\u{fffd} b");
    }
}
