//! A tolerant JSON parser for model output.
//!
//! It reads what strict JSON would reject (single or slanted quotes, missing
//! quotes, commas, colons and closers, comments, Python literals and tuples,
//! raw control characters in strings) and decides each ambiguity from
//! context: whether it is reading an object key, an object value or an array
//! element, and what follows the character in question.
//!
//! It never panics and its work is linear in the input: every look-ahead is
//! either O(1) (precomputed) or capped at [`LOOKAHEAD`] characters.

use serde_json::{Map, Number, Value};

/// Deepest nesting accepted, as in serde_json; deeper input is an error
/// rather than a stack overflow.
pub(super) const MAX_DEPTH: usize = 128;

/// How far ahead (in characters) a heuristic may scan.
const LOOKAHEAD: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Key,
    Value,
    Array,
}

/// How an object's member list ended.
enum MembersEnd {
    /// At its `}`.
    Closed,
    /// At a `]` that belongs to an enclosing array (left unconsumed).
    Mismatched,
    /// At the end of the input.
    Eof,
    /// It was a set literal, `{'a', 'b'}`: these are its elements.
    Set(Vec<Value>),
}

pub(super) struct Parser<'a> {
    s: &'a [char],
    pub(super) i: usize,
    stack: Vec<Ctx>,
    /// Drop scalars cut off by the end of the input (streaming prefixes).
    partial: bool,
    pub(super) too_deep: bool,
    /// For each quote kind, the index of its last occurrence: "is there a
    /// closing quote anywhere ahead" in O(1).
    last_quote: [Option<usize>; 3],
}

fn is_quote(c: char) -> bool {
    matches!(c, '"' | '\'' | '“' | '”')
}

fn closing_quote(open: char) -> char {
    match open {
        '“' => '”',
        other => other,
    }
}

fn quote_slot(close: char) -> usize {
    match close {
        '"' => 0,
        '\'' => 1,
        _ => 2,
    }
}

impl<'a> Parser<'a> {
    pub(super) fn new(s: &'a [char], partial: bool) -> Self {
        let mut last_quote = [None; 3];
        for (i, c) in s.iter().enumerate() {
            if matches!(c, '"' | '\'' | '”') {
                last_quote[quote_slot(*c)] = Some(i);
            }
        }
        Parser {
            s,
            i: 0,
            stack: Vec::new(),
            partial,
            too_deep: false,
            last_quote,
        }
    }

    fn at(&self, i: usize) -> Option<char> {
        self.s.get(i).copied()
    }

    fn peek(&self) -> Option<char> {
        self.at(self.i)
    }

    fn ctx(&self) -> Option<Ctx> {
        self.stack.last().copied()
    }

    fn in_object(&self) -> bool {
        self.stack
            .iter()
            .any(|c| matches!(c, Ctx::Key | Ctx::Value))
    }

    /// Index of the first non-whitespace character at or after `i`.
    fn skip_ws_from(&self, mut i: usize) -> usize {
        while self.at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        i
    }

    fn skip_ws(&mut self) {
        self.i = self.skip_ws_from(self.i);
    }

    fn starts_with(&self, i: usize, pat: &str) -> bool {
        pat.chars()
            .enumerate()
            .all(|(k, c)| self.at(i + k) == Some(c))
    }

    /// Skips whitespace and comments (`//`, `/* */`, `#`) between tokens.
    fn skip_ws_comments(&mut self) {
        loop {
            self.skip_ws();
            if self.starts_with(self.i, "//") {
                while self.peek().is_some_and(|c| c != '\n') {
                    self.i += 1;
                }
            } else if self.starts_with(self.i, "/*") {
                self.i += 2;
                while self.peek().is_some() && !self.starts_with(self.i, "*/") {
                    self.i += 1;
                }
                self.i = (self.i + 2).min(self.s.len());
            } else if self.peek() == Some('#') {
                // A `#` comment also ends before a closer: models write
                // `"a": 1 # note }` on one line.
                while self.peek().is_some_and(|c| !matches!(c, '\n' | '}' | ']')) {
                    self.i += 1;
                }
            } else {
                return;
            }
        }
    }

    fn closer_ahead(&self, close: char, from: usize) -> bool {
        self.last_quote[quote_slot(close)].is_some_and(|last| last >= from)
    }

    /// Whether a quoted token starts at `j` and is followed by `:` (a key).
    fn key_at(&self, j: usize) -> bool {
        match self.at(j) {
            Some(q) if is_quote(q) => self
                .quoted_end(j)
                .is_some_and(|end| self.at(self.skip_ws_from(end + 1)) == Some(':')),
            _ => false,
        }
    }

    /// The index of the closing quote of the quoted token starting at `j`,
    /// within the look-ahead limit.
    fn quoted_end(&self, j: usize) -> Option<usize> {
        let close = closing_quote(self.at(j)?);
        let mut k = j + 1;
        while k < self.s.len() && k - j < LOOKAHEAD {
            match self.s[k] {
                '\\' => k += 2,
                c if c == close => return Some(k),
                _ => k += 1,
            }
        }
        None
    }

    /// Parses one value at the current position, or `None` when there is
    /// none (a closer, a separator, the end, or a scalar cut in partial mode).
    pub(super) fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    pub(super) fn parse_value(&mut self) -> Option<Value> {
        if self.stack.len() >= MAX_DEPTH {
            self.too_deep = true;
            self.i = self.s.len();
            return None;
        }
        self.skip_ws_comments();
        let c = self.peek()?;
        match c {
            '{' => self.parse_object(),
            '[' => self.parse_array(']'),
            '(' => self.parse_tuple(),
            c if is_quote(c) => self.parse_quoted(),
            c if c.is_ascii_digit() || matches!(c, '-' | '+' | '.') => self.parse_number(),
            c if c.is_alphanumeric() || c == '_' => self.parse_word(),
            _ => None,
        }
    }

    fn parse_object(&mut self) -> Option<Value> {
        self.i += 1;
        let mut map = Map::new();
        match self.parse_members(&mut map) {
            MembersEnd::Set(items) => Some(Value::Array(items)),
            MembersEnd::Mismatched if map.is_empty() => None,
            _ => Some(Value::Object(map)),
        }
    }

    /// Reads more members into an object that was already closed, for
    /// `{"a": 1}, "b": 2}` (the model closed it too early).
    pub(super) fn continue_object(&mut self, map: &mut Map<String, Value>) {
        self.stack.push(Ctx::Key);
        self.parse_members(map);
        self.stack.pop();
    }

    /// Reads `key: value` pairs into `map` until the object ends.
    fn parse_members(&mut self, map: &mut Map<String, Value>) -> MembersEnd {
        loop {
            if self.too_deep {
                return MembersEnd::Eof;
            }
            self.skip_ws_comments();
            let Some(c) = self.peek() else {
                return MembersEnd::Eof;
            };
            match c {
                '}' => {
                    self.i += 1;
                    return MembersEnd::Closed;
                }
                ']' => return MembersEnd::Mismatched,
                ',' | ':' | '{' | ')' => {
                    self.i += 1;
                    continue;
                }
                '[' => {
                    self.array_in_key_position(map);
                    continue;
                }
                _ => {}
            }

            let quoted = is_quote(c);
            let key = if quoted {
                self.stack.push(Ctx::Key);
                let key = self.parse_quoted();
                self.stack.pop();
                match key {
                    Some(Value::String(k)) => k,
                    _ => continue,
                }
            } else if c.is_alphanumeric() || matches!(c, '_' | '$' | '-' | '.') {
                self.read_bare_key()
            } else {
                self.i += 1;
                continue;
            };

            self.skip_ws_comments();
            match self.peek() {
                Some(':') => self.i += 1,
                Some(',' | '}') if map.is_empty() => {
                    let first = if quoted {
                        Value::String(key)
                    } else {
                        scalar_from_word(&key)
                    };
                    return self.parse_set(first);
                }
                // A quoted key followed by a value: the colon is missing.
                Some(n)
                    if quoted
                        && (is_quote(n) || n.is_alphanumeric() || matches!(n, '{' | '[' | '-')) => {
                }
                // A bare word not followed by a colon is stray text, as is a
                // key with nothing after it.
                _ => continue,
            }

            self.stack.push(Ctx::Value);
            let value = self.parse_value();
            self.stack.pop();
            let value = match value {
                Some(v) => v,
                // In a prefix, the key is known and its value still coming.
                None if self.partial && self.peek().is_none() => {
                    map.insert(key.trim_end().to_owned(), Value::Null);
                    return MembersEnd::Eof;
                }
                None => Value::String(String::new()),
            };
            map.insert(key.trim_end().to_owned(), value);
        }
    }

    /// `[` where a key belongs: more elements for the previous array value
    /// (`"a": [1], [2]`), or a key written as a list.
    fn array_in_key_position(&mut self, map: &mut Map<String, Value>) {
        let Some(Value::Array(items)) = self.parse_array(']') else {
            return;
        };
        if let Some((_, Value::Array(prev))) = map.iter_mut().next_back() {
            prev.extend(items);
        } else if let Some(Value::String(k)) = items.into_iter().next() {
            map.insert(k, Value::String(String::new()));
        }
    }

    /// An unquoted key: up to `:`, whitespace, a separator or a quote.
    fn read_bare_key(&mut self) -> String {
        let start = self.i;
        while self.peek().is_some_and(|c| {
            !(c.is_whitespace() || is_quote(c) || matches!(c, ':' | ',' | '}' | ']' | '{' | '['))
        }) {
            self.i += 1;
        }
        self.s[start..self.i].iter().collect()
    }

    /// `{'a', 'b'}`: a set literal, read as a list.
    fn parse_set(&mut self, first: Value) -> MembersEnd {
        let mut items = vec![first];
        self.stack.push(Ctx::Array);
        loop {
            self.skip_ws_comments();
            match self.peek() {
                None => break,
                Some('}') => {
                    self.i += 1;
                    break;
                }
                Some(',') => self.i += 1,
                Some(_) => {
                    let before = self.i;
                    match self.parse_value() {
                        Some(v) => items.push(v),
                        None if self.i == before => self.i += 1,
                        None => {}
                    }
                }
            }
        }
        self.stack.pop();
        MembersEnd::Set(items)
    }

    fn parse_array(&mut self, close: char) -> Option<Value> {
        self.i += 1;
        self.stack.push(Ctx::Array);
        let mut items = Vec::new();
        loop {
            if self.too_deep {
                break;
            }
            self.skip_ws_comments();
            let Some(c) = self.peek() else { break };
            if c == close {
                self.i += 1;
                break;
            }
            match c {
                ',' => {
                    self.i += 1;
                    continue;
                }
                // Inside an object, a `}` means the array's `]` is missing:
                // end the array and leave the `}` to close the object
                // (`{"a": [1, 2}, ...`). Anywhere else it is stray.
                '}' if self.in_object() => break,
                '}' => {
                    self.i += 1;
                    continue;
                }
                ']' | ')' => break,
                _ => {}
            }
            let before = self.i;
            match self.parse_value() {
                Some(Value::String(key)) if self.at(self.skip_ws_from(self.i)) == Some(':') => {
                    // `["key": "value"]`: an object missing its braces.
                    self.i = self.skip_ws_from(self.i) + 1;
                    items.push(self.implied_object(key));
                }
                Some(v) if !v.is_array() && self.row_opener_lost(&items) => {
                    // `[["a", "b"], "c", "d"], ["e"]]`: a row whose `[` was
                    // left out; it ends at its `]`.
                    let mut row = vec![v];
                    loop {
                        self.skip_ws_comments();
                        match self.peek() {
                            Some(',') => self.i += 1,
                            Some(']') => {
                                self.i += 1;
                                break;
                            }
                            None => break,
                            Some(_) => match self.parse_value() {
                                Some(v) => row.push(v),
                                None => break,
                            },
                        }
                    }
                    items.push(Value::Array(row));
                }
                Some(v) => items.push(v),
                None if self.i == before => self.i += 1,
                None => {}
            }
        }
        self.stack.pop();
        Some(Value::Array(items))
    }

    /// Whether a scalar among rows (`items` all arrays) begins a row whose
    /// opening `[` was lost: plain scalars follow up to a `]` that is
    /// followed by a `,` and another row.
    fn row_opener_lost(&self, items: &[Value]) -> bool {
        if items.is_empty() || !items.iter().all(Value::is_array) {
            return false;
        }
        let mut k = self.i;
        while k < self.s.len() && k - self.i < LOOKAHEAD {
            match self.s[k] {
                q if is_quote(q) => match self.quoted_end(k) {
                    Some(end) => k = end + 1,
                    None => return false,
                },
                ']' => {
                    // Another row follows (not a list of rows).
                    let j = self.skip_ws_from(k + 1);
                    let next = self.skip_ws_from(j + 1);
                    return self.at(j) == Some(',')
                        && self.at(next) == Some('[')
                        && self.at(self.skip_ws_from(next + 1)) != Some('[');
                }
                '[' | '{' | '}' | ':' => return false,
                _ => k += 1,
            }
        }
        false
    }

    fn implied_object(&mut self, key: String) -> Value {
        let mut map = Map::new();
        self.stack.push(Ctx::Value);
        let value = self.parse_value().unwrap_or(Value::String(String::new()));
        self.stack.pop();
        map.insert(key, value);
        self.parse_members(&mut map);
        Value::Object(map)
    }

    /// `(1, 2)` is a list; `(1)` is just `1`.
    fn parse_tuple(&mut self) -> Option<Value> {
        let start = self.i;
        let value = self.parse_array(')')?;
        let had_comma = self.s[start..self.i].contains(&',');
        match value {
            Value::Array(mut items) if items.len() == 1 && !had_comma => items.pop(),
            other => Some(other),
        }
    }

    /// A number, or the bare word it turns out to be (`1/3`, `10-20`, a UUID).
    fn parse_number(&mut self) -> Option<Value> {
        let start = self.i;
        while self.peek().is_some_and(|c| {
            !(c.is_whitespace()
                || is_quote(c)
                || matches!(c, ',' | '}' | ']' | ')' | ':' | '{' | '['))
        }) {
            self.i += 1;
        }
        if self.partial && self.peek().is_none() {
            return None;
        }
        let token: String = self.s[start..self.i].iter().collect();
        self.skip_stray_closing_quote();
        if token == "-" || token == "..." {
            return None;
        }
        Some(number_from_token(&token).unwrap_or(Value::String(token)))
    }

    /// A literal (`true`, `False`, `None`, ...) or an unquoted string.
    fn parse_word(&mut self) -> Option<Value> {
        if self.ctx() != Some(Ctx::Key) {
            let start = self.i;
            let mut end = start;
            while self
                .at(end)
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
            {
                end += 1;
            }
            let word: String = self.s[start..end].iter().collect();
            let boundary = self.at(end).is_none_or(|c| !c.is_alphanumeric());
            let literal = match word.to_ascii_lowercase().as_str() {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                "null" | "none" => Some(Value::Null),
                _ => None,
            };
            if let (Some(v), true) = (literal, boundary) {
                self.i = end;
                if self.partial && self.peek().is_none() {
                    return None;
                }
                return Some(v);
            }
        }
        self.parse_unquoted()
    }

    /// A string missing its opening quote: it runs to what ends a value in
    /// this context, keeping separators that a later closing quote shows to
    /// be part of it (`ipsum, sic, datum."`).
    fn parse_unquoted(&mut self) -> Option<Value> {
        let ctx = self.ctx();
        let start = self.i;
        let mut depth = 0usize;
        while let Some(c) = self.peek() {
            match c {
                '{' | '[' => depth += 1,
                '}' | ']' if depth > 0 => depth -= 1,
                '}' | ']' => break,
                '\n' => break,
                ',' if ctx == Some(Ctx::Array) => break,
                ',' if !self.comma_inside_unquoted() => break,
                c if is_quote(c) => break,
                _ => {}
            }
            self.i += 1;
        }
        if self.partial && self.peek().is_none() {
            return None;
        }
        let text: String = self.s[start..self.i].iter().collect();
        self.skip_stray_closing_quote();
        let text = text.trim();
        if text.is_empty() || (ctx == Some(Ctx::Array) && text == "...") {
            return None;
        }
        Some(Value::String(text.to_owned()))
    }

    /// In an unquoted value, a comma belongs to the text when the next quote
    /// ahead closes it (is followed by `,`, `}` or the end) rather than
    /// opening the next key.
    fn comma_inside_unquoted(&self) -> bool {
        let mut k = self.i + 1;
        while k < self.s.len() && k - self.i < LOOKAHEAD {
            let c = self.s[k];
            if is_quote(c) {
                let after = self.skip_ws_from(k + 1);
                return matches!(self.at(after), None | Some(',' | '}'));
            }
            if matches!(c, '}' | '{' | '[' | ']' | ':') {
                return false;
            }
            k += 1;
        }
        false
    }

    /// A quote right after a bare value (`12345",` or `abc" }`) closes
    /// nothing: drop it.
    fn skip_stray_closing_quote(&mut self) {
        if self.peek().is_some_and(is_quote) {
            let after = self.skip_ws_from(self.i + 1);
            if matches!(self.at(after), None | Some(',' | '}' | ']')) {
                self.i += 1;
            }
        }
    }

    /// A quoted string, deciding at each quote character whether it closes
    /// the string or is part of it.
    fn parse_quoted(&mut self) -> Option<Value> {
        let ctx = self.ctx();
        let close = closing_quote(self.s[self.i]);
        self.i += 1;

        let mut doubled = false;
        if self.peek() == Some(close) {
            let run = (self.i..)
                .take_while(|&k| self.at(k) == Some(close))
                .count();
            if run >= 2 {
                // `""""`: a run of quotes holds nothing.
                self.i += run;
                return None;
            }
            if self.ends_string(ctx, self.i) {
                self.i += 1;
                return Some(Value::String(String::new()));
            }
            // `""value""`: doubled quotes, as CSV writes them.
            doubled = true;
            self.i += 1;
        }

        let mut out = String::new();
        let mut embedded_open = false;
        // Braces and brackets the text itself opened (`Use {"a": 1}`): a
        // closer that one of them awaits is the text's, not the end.
        let mut opened = 0usize;
        loop {
            let Some(c) = self.peek() else {
                // Cut off by the end of the input.
                if self.partial {
                    return None;
                }
                let kept = out.trim_end();
                return (!kept.is_empty()).then(|| Value::String(kept.to_owned()));
            };
            if c == '\\' {
                self.read_escape(&mut out, close);
                continue;
            }
            if c == close {
                if doubled && self.at(self.i + 1) == Some(close) {
                    self.i += 2;
                    return Some(Value::String(out));
                }
                match self.quote_role(ctx, &out, embedded_open) {
                    QuoteRole::Closes => {
                        self.i += 1;
                        return Some(Value::String(out));
                    }
                    QuoteRole::Embedded => {
                        embedded_open = !embedded_open;
                        out.push(c);
                        self.i += 1;
                        continue;
                    }
                }
            }
            // The closing quote may be missing: stop where the context says
            // the string must have ended.
            let missing_close = match (ctx, c) {
                (Some(Ctx::Value), ',') => self.key_at(self.skip_ws_from(self.i + 1)),
                (Some(Ctx::Value), '}') | (Some(Ctx::Array), ']') => {
                    opened == 0 && !self.closer_ahead(close, self.i)
                }
                (Some(Ctx::Key), ':') => self.colon_ends_key(close),
                _ => false,
            };
            if missing_close {
                let kept = out.trim_end().to_owned();
                return Some(Value::String(kept));
            }
            match c {
                '{' | '[' => opened += 1,
                '}' | ']' => opened = opened.saturating_sub(1),
                _ => {}
            }
            out.push(c);
            self.i += 1;
        }
    }

    /// Whether the quote at `i` ends the string for certain: what follows it
    /// is what follows a string in this context.
    fn ends_string(&self, ctx: Option<Ctx>, i: usize) -> bool {
        let j = self.skip_ws_from(i + 1);
        let Some(n) = self.at(j) else { return true };
        match ctx {
            Some(Ctx::Key) => n == ':',
            Some(Ctx::Value) => match n {
                '}' | ':' => true,
                ',' => {
                    let k = self.skip_ws_from(j + 1);
                    matches!(self.at(k), None | Some('}')) || self.key_at(k) || self.bare_key_at(k)
                }
                q if is_quote(q) => self.key_at(j),
                _ => false,
            },
            Some(Ctx::Array) => matches!(n, ',' | ']'),
            None => true,
        }
    }

    /// Whether an unquoted key (`word:`) starts at `k`.
    fn bare_key_at(&self, k: usize) -> bool {
        let mut e = k;
        while self.at(e).is_some_and(|c| c.is_alphanumeric() || c == '_') && e - k < LOOKAHEAD {
            e += 1;
        }
        e > k && self.at(self.skip_ws_from(e)) == Some(':')
    }

    fn quote_role(&self, ctx: Option<Ctx>, out: &str, embedded_open: bool) -> QuoteRole {
        // A quotation inside a value that reads as a key (`"Use {"a": 1}"`)
        // is text: a value's own closing quote is never followed by `:`.
        let quoted_key = embedded_open
            && ctx == Some(Ctx::Value)
            && self.at(self.skip_ws_from(self.i + 1)) == Some(':');
        if quoted_key {
            return QuoteRole::Embedded;
        }
        if self.ends_string(ctx, self.i) {
            return QuoteRole::Closes;
        }
        if embedded_open {
            // It closes a quotation inside the string: `say "hi" now`.
            return QuoteRole::Embedded;
        }
        let prev = out.chars().next_back();
        let next = self.at(self.i + 1);
        let opens_quotation = prev
            .is_none_or(|p| p.is_whitespace() || matches!(p, '(' | '[' | '{' | '=' | ':'))
            && next.is_some_and(|n| !n.is_whitespace() && !matches!(n, ',' | '}' | ']' | ':'));
        if opens_quotation {
            return QuoteRole::Embedded;
        }
        match (ctx, next) {
            // `["value1" value2", ...]`: the quote closed value1.
            (Some(Ctx::Array), _) => QuoteRole::Closes,
            (_, Some(n)) if n.is_alphanumeric() => QuoteRole::Embedded,
            _ => QuoteRole::Closes,
        }
    }

    /// In a quoted key, a `:` ends the key when the closing quote is missing:
    /// no quote follows at all, or a complete quoted value follows it.
    fn colon_ends_key(&self, close: char) -> bool {
        if !self.closer_ahead(close, self.i) {
            return true;
        }
        let j = self.skip_ws_from(self.i + 1);
        self.at(j).is_some_and(is_quote)
            && self.quoted_end(j).is_some_and(|end| {
                matches!(self.at(self.skip_ws_from(end + 1)), None | Some(',' | '}'))
            })
    }

    fn read_escape(&mut self, out: &mut String, close: char) {
        self.i += 1;
        let Some(c) = self.peek() else {
            out.push('\\');
            return;
        };
        self.i += 1;
        match c {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'u' => match self.hex4(self.i) {
                Some(unit) => {
                    self.i += 4;
                    out.push(self.unicode_escape(unit));
                }
                None => out.push_str("\\u"),
            },
            '"' | '\\' | '/' | '\'' | '`' => out.push(c),
            c if c == close => out.push(c),
            other => {
                out.push('\\');
                out.push(other);
            }
        }
    }

    fn hex4(&self, i: usize) -> Option<u32> {
        let digits: String = self.s.get(i..i + 4)?.iter().collect();
        if digits.chars().all(|c| c.is_ascii_hexdigit()) {
            u32::from_str_radix(&digits, 16).ok()
        } else {
            None
        }
    }

    /// A `\uXXXX` unit, joined with a following low surrogate when it is a
    /// high one; a lone surrogate becomes U+FFFD.
    fn unicode_escape(&mut self, unit: u32) -> char {
        if (0xD800..0xDC00).contains(&unit) && self.starts_with(self.i, "\\u") {
            if let Some(low @ 0xDC00..=0xDFFF) = self.hex4(self.i + 2) {
                self.i += 6;
                let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                return char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
            }
        }
        char::from_u32(unit).unwrap_or(char::REPLACEMENT_CHARACTER)
    }
}

enum QuoteRole {
    Closes,
    Embedded,
}

/// A bare word as a scalar: a number if it reads as one, else a string.
fn scalar_from_word(word: &str) -> Value {
    number_from_token(word).unwrap_or_else(|| Value::String(word.to_owned()))
}

/// Reads `82_461_110`, `.25`, `1.`, `1e`, `+3` as the numbers they mean.
fn number_from_token(token: &str) -> Option<Value> {
    let mut t: String = token.chars().filter(|&c| c != '_').collect();
    if t.starts_with('+') {
        t.remove(0);
    }
    if t.starts_with('.') {
        t.insert(0, '0');
    } else if t.starts_with("-.") {
        t.insert(1, '0');
    }
    while t.ends_with(['e', 'E', '+', '-']) && t.len() > 1 {
        t.pop();
    }
    if t.ends_with('.') {
        t.push('0');
    }
    if !t.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
        return None;
    }
    match serde_json::from_str::<Value>(&t) {
        Ok(Value::Number(n)) => Some(Value::Number(n)),
        // Integers beyond 64 bits keep their value as a float.
        _ => t
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite() && t.chars().all(|c| c.is_ascii_digit() || c == '-'))
            .and_then(Number::from_f64)
            .map(Value::Number),
    }
}
