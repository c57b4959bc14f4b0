//! [`Unescape`]: a JSON string's text decoded one character at a time, for
//! a reader that sees the string arrive in pieces cut anywhere.
//!
//! Decoding by character, with the escape in progress as the only state,
//! means a piece boundary inside `\n` or `\ud83d\ude00` needs no look-ahead
//! and no buffer of the text so far.

/// Where the decoder is inside an escape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Escape {
    /// Not in an escape.
    #[default]
    None,
    /// After a backslash.
    Backslash,
    /// After `\u`: the code unit so far and how many hex digits it has.
    Hex { unit: u16, digits: u8 },
}

/// Decodes a JSON (or single-quoted, JSON-like) string's body character by
/// character: escapes and `\u` surrogate pairs, an escape split between two
/// pieces, and a lone surrogate (as U+FFFD). A backslash before a character
/// JSON does not escape is dropped, as the model meant the character.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Unescape {
    escape: Escape,
    /// A high surrogate waiting for its low half.
    high: Option<u16>,
}

impl Unescape {
    /// Whether `c` ends the string opened with `quote`: an unescaped quote.
    pub(super) fn closes(&self, c: char, quote: char) -> bool {
        c == quote && self.escape != Escape::Backslash
    }

    /// Decodes the next character of the body, adding what it completes to
    /// `out` (when one is given; a skipped string only tracks escapes).
    pub(super) fn push(&mut self, c: char, mut out: Option<&mut String>) {
        match self.escape {
            Escape::None if c == '\\' => self.escape = Escape::Backslash,
            Escape::None => self.char(c, out),
            Escape::Backslash => {
                self.escape = Escape::None;
                let decoded = match c {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    'u' => {
                        self.escape = Escape::Hex { unit: 0, digits: 0 };
                        return;
                    }
                    other => other,
                };
                self.char(decoded, out);
            }
            Escape::Hex { unit, digits } => match c.to_digit(16) {
                Some(d) => {
                    // Four hex digits: at most 0xFFFF, so the cast is exact.
                    let unit = (unit << 4) | d as u16;
                    if digits == 3 {
                        self.escape = Escape::None;
                        self.unit(unit, out);
                    } else {
                        self.escape = Escape::Hex {
                            unit,
                            digits: digits + 1,
                        };
                    }
                }
                None => {
                    // Not an escape after all: what it held is text.
                    self.escape = Escape::None;
                    self.flush_high(out.as_deref_mut());
                    if let Some(out) = out.as_deref_mut() {
                        out.push('u');
                        push_hex(out, unit, digits);
                    }
                    self.push(c, out);
                }
            },
        }
    }

    /// The string closed: an escape cut short is kept as text, a lone high
    /// surrogate becomes U+FFFD.
    pub(super) fn finish(&mut self, mut out: Option<&mut String>) {
        if let (Escape::Hex { unit, digits }, Some(out)) = (self.escape, out.as_deref_mut()) {
            out.push('u');
            push_hex(out, unit, digits);
        }
        self.escape = Escape::None;
        self.flush_high(out);
    }

    fn char(&mut self, c: char, out: Option<&mut String>) {
        if let Some(out) = out {
            self.flush_high(Some(&mut *out));
            out.push(c);
        } else {
            self.high = None;
        }
    }

    /// One UTF-16 code unit from a `\u` escape.
    fn unit(&mut self, unit: u16, out: Option<&mut String>) {
        match (self.high.take(), unit) {
            (Some(high), 0xDC00..=0xDFFF) => {
                let c = 0x10000 + ((u32::from(high) - 0xD800) << 10) + (u32::from(unit) - 0xDC00);
                if let Some(out) = out {
                    out.push(char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER));
                }
            }
            (high, 0xD800..=0xDBFF) => {
                if let (Some(_), Some(out)) = (high, out) {
                    out.push(char::REPLACEMENT_CHARACTER);
                }
                self.high = Some(unit);
            }
            (high, unit) => {
                if let Some(out) = out {
                    if high.is_some() {
                        out.push(char::REPLACEMENT_CHARACTER);
                    }
                    out.push(
                        char::from_u32(u32::from(unit)).unwrap_or(char::REPLACEMENT_CHARACTER),
                    );
                }
            }
        }
    }

    /// A high surrogate with no low half after it.
    fn flush_high(&mut self, out: Option<&mut String>) {
        if let (Some(_), Some(out)) = (self.high.take(), out) {
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
}

/// The `digits` hex digits of `unit` read so far, as written.
fn push_hex(out: &mut String, unit: u16, digits: u8) {
    for i in (0..digits).rev() {
        let d = (unit >> (4 * u16::from(i))) & 0xF;
        out.push(char::from_digit(u32::from(d), 16).unwrap_or('0'));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(body: &str) -> String {
        let mut u = Unescape::default();
        let mut out = String::new();
        for c in body.chars() {
            u.push(c, Some(&mut out));
        }
        u.finish(Some(&mut out));
        out
    }

    #[test]
    fn escapes_decode_as_serde_json_does() {
        let body = r#"Tab\there, \"quoted\", back\\slash\/, caf\u00e9, \ud83d\ude00 \r\b\f end"#;
        let expected: String = serde_json::from_str(&format!("\"{body}\"")).unwrap();
        assert_eq!(decode(body), expected);
    }

    #[test]
    fn broken_escapes_keep_their_text() {
        assert_eq!(decode(r"a\ud83d b"), "a\u{fffd} b");
        assert_eq!(decode(r"\u00zz"), "u00zz");
        assert_eq!(decode(r"cut \u00"), "cut u00");
        assert_eq!(decode(r"it\'s"), "it's");
    }

    #[test]
    fn only_an_unescaped_quote_closes() {
        let mut u = Unescape::default();
        u.push('\\', None);
        assert!(!u.closes('"', '"'));
        u.push('"', None);
        assert!(u.closes('"', '"'));
        assert!(!u.closes('\'', '"'));
    }
}
