//! [`PersonalData`]: finds email addresses, phone numbers, card numbers
//! (Luhn-checked), IBANs (mod-97-checked) and API-key shapes in text, and
//! masks or blocks them.
//!
//! Finding is plain scanning, no regular expressions: each kind has its
//! own small recognizer, and numbers are checked (Luhn, mod 97) so an order
//! number is not taken for a card. Secrets the process knows are masked by
//! the trace redactor ([`Redactor`]), so a key is hidden the same way in an
//! answer as in a trace.

use std::collections::BTreeSet;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    CallScope, Check, InputGuardrail, OutputCheck, OutputGuardrail, ResultCheck, ToolGuardrail,
};
use crate::redact::Redactor;

/// A kind of personal data or credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PersonalKind {
    /// `name@example.com`.
    Email,
    /// `+44 20 7946 0958`, `(555) 123-4567`.
    Phone,
    /// A payment card number that passes the Luhn check.
    Card,
    /// An IBAN that passes the mod-97 check.
    Iban,
    /// An API key or bearer token by its shape, or a secret the redactor
    /// knows.
    Secret,
}

impl PersonalKind {
    /// Every kind.
    pub const ALL: [PersonalKind; 5] = [
        PersonalKind::Email,
        PersonalKind::Phone,
        PersonalKind::Card,
        PersonalKind::Iban,
        PersonalKind::Secret,
    ];

    /// The kind in snake_case; masked text reads `[email]`, `[card]`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            PersonalKind::Email => "email",
            PersonalKind::Phone => "phone",
            PersonalKind::Card => "card",
            PersonalKind::Iban => "iban",
            PersonalKind::Secret => "secret",
        }
    }
}

/// Where a piece of personal data is in a text: bytes `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// What it is.
    pub kind: PersonalKind,
    /// Its first byte.
    pub start: usize,
    /// One past its last byte.
    pub end: usize,
}

/// Finds personal data and credentials, and masks them (`[email]`) or
/// blocks the text. As an input guardrail it trips; as an output guardrail
/// it rewrites or blocks the answer, streaming what is settled; as a tool
/// guardrail it masks tool results before the model reads them.
///
/// ```
/// use statewise::guard::PersonalData;
///
/// let pii = PersonalData::redacting();
/// assert_eq!(
///     pii.mask("Write to ann@example.org or call +44 20 7946 0958."),
///     "Write to [email] or call [phone]."
/// );
/// assert_eq!(pii.mask("card 4111 1111 1111 1111, order 4111 1111 1111 1112"),
///            "card [card], order 4111 1111 1111 1112");
/// ```
#[derive(Debug, Clone)]
pub struct PersonalData {
    kinds: BTreeSet<PersonalKind>,
    blocks: bool,
    /// Literal secrets to mask too (its key shapes are this module's own).
    secrets: Option<Redactor>,
}

impl PersonalData {
    /// Masks every kind.
    pub fn redacting() -> Self {
        PersonalData {
            kinds: PersonalKind::ALL.into_iter().collect(),
            blocks: false,
            secrets: None,
        }
    }

    /// Blocks text with any kind in it.
    pub fn blocking() -> Self {
        PersonalData {
            blocks: true,
            ..PersonalData::redacting()
        }
    }

    /// Looks only for `kinds`.
    pub fn only(mut self, kinds: impl IntoIterator<Item = PersonalKind>) -> Self {
        self.kinds = kinds.into_iter().collect();
        self
    }

    /// Also treats the secrets `redactor` knows (for example
    /// [`Redactor::from_env`]) as [`PersonalKind::Secret`].
    pub fn with_secrets(mut self, redactor: Redactor) -> Self {
        self.secrets = Some(redactor);
        self
    }

    /// Everything found in `text`, in order, not overlapping.
    pub fn find(&self, text: &str) -> Vec<Found> {
        let mut found = Vec::new();
        for kind in &self.kinds {
            match kind {
                PersonalKind::Email => emails(text, &mut found),
                PersonalKind::Phone | PersonalKind::Card => numbers(text, &self.kinds, &mut found),
                PersonalKind::Iban => ibans(text, &mut found),
                PersonalKind::Secret => keys(text, &mut found),
            }
        }
        found.sort_by_key(|f| (f.start, std::cmp::Reverse(f.end)));
        let mut kept: Vec<Found> = Vec::with_capacity(found.len());
        for f in found {
            if kept.last().is_none_or(|last| f.start >= last.end) {
                kept.push(f);
            }
        }
        kept
    }

    /// `text` with everything found replaced by `[kind]`.
    pub fn mask(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for f in self.find(text) {
            out.push_str(&text[at..f.start]);
            out.push('[');
            out.push_str(f.kind.as_str());
            out.push(']');
            at = f.end;
        }
        out.push_str(&text[at..]);
        if let (true, Some(secrets)) = (self.kinds.contains(&PersonalKind::Secret), &self.secrets) {
            out = secrets.apply(&out);
        }
        out
    }

    /// The kinds found in `text`, for a reason that names them and never
    /// shows the data.
    fn kinds_in(&self, text: &str) -> Option<String> {
        let mut kinds: BTreeSet<&str> = self.find(text).iter().map(|f| f.kind.as_str()).collect();
        let known = self.secrets.as_ref().is_some_and(|s| s.apply(text) != text);
        if kinds.is_empty() && self.kinds.contains(&PersonalKind::Secret) && known {
            kinds.insert("secret");
        }
        (!kinds.is_empty()).then(|| kinds.into_iter().collect::<Vec<_>>().join(", "))
    }

    fn mask_value(&self, value: &Value) -> Value {
        match value {
            Value::String(s) => Value::String(self.mask(s)),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.mask_value(v)).collect()),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.mask_value(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

impl InputGuardrail for PersonalData {
    fn name(&self) -> &str {
        "personal_data"
    }

    fn check<'a>(&'a self, input: &'a str) -> BoxFuture<'a, Check> {
        let check = match self.kinds_in(input) {
            Some(kinds) => Check::Trip(format!("the input contains personal data ({kinds})")),
            None => Check::Pass,
        };
        Box::pin(std::future::ready(check))
    }
}

impl OutputGuardrail for PersonalData {
    fn name(&self) -> &str {
        "personal_data"
    }

    fn check<'a>(&'a self, text: &'a str) -> BoxFuture<'a, OutputCheck> {
        let check = match (self.kinds_in(text), self.blocks) {
            (None, _) => OutputCheck::Pass,
            (Some(kinds), true) => {
                OutputCheck::Block(format!("the answer contains personal data ({kinds})"))
            }
            (Some(_), false) => OutputCheck::Rewrite(self.mask(text)),
        };
        Box::pin(std::future::ready(check))
    }

    /// Everything before the last word and the number-like words just
    /// before it: a phone or card number may still be growing there.
    fn settled(&self, text: &str) -> usize {
        let mut words: Vec<(usize, &str)> = Vec::new();
        let mut start = None;
        for (i, c) in text.char_indices().chain([(text.len(), ' ')]) {
            match (c.is_whitespace(), start) {
                (false, None) => start = Some(i),
                (true, Some(s)) => {
                    words.push((s, &text[s..i]));
                    start = None;
                }
                _ => {}
            }
        }
        let Some(&(mut at, _)) = words.last() else {
            return 0;
        };
        for &(s, word) in words.iter().rev().skip(1) {
            let numberish = word.chars().any(|c| c.is_ascii_digit())
                || word
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
            if !numberish {
                break;
            }
            at = s;
        }
        at
    }
}

impl ToolGuardrail for PersonalData {
    fn name(&self) -> &str {
        "personal_data"
    }

    fn after<'a>(
        &'a self,
        _tool: &'a str,
        result: &'a Value,
        _scope: &'a CallScope,
    ) -> BoxFuture<'a, ResultCheck> {
        let masked = self.mask_value(result);
        let check = match (&masked == result, self.blocks) {
            (true, _) => ResultCheck::Keep,
            (false, true) => ResultCheck::Stop("a tool result contains personal data".into()),
            (false, false) => ResultCheck::Replace(masked),
        };
        Box::pin(std::future::ready(check))
    }
}

fn email_local(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-')
}

fn email_domain(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-')
}

fn emails(text: &str, found: &mut Vec<Found>) {
    for (at, _) in text.match_indices('@') {
        let start = text[..at]
            .char_indices()
            .rev()
            .take_while(|(_, c)| email_local(*c))
            .last()
            .map_or(at, |(i, _)| i);
        let start = start + text[start..at].len() - text[start..at].trim_start_matches('.').len();
        let rest = &text[at + 1..];
        let domain_len = rest.find(|c| !email_domain(c)).unwrap_or(rest.len());
        let domain = rest[..domain_len].trim_end_matches(['.', '-']);
        let tld = domain.rsplit('.').next().unwrap_or("");
        if start < at
            && domain.contains('.')
            && tld.len() >= 2
            && tld.chars().all(|c| c.is_ascii_alphabetic())
        {
            found.push(Found {
                kind: PersonalKind::Email,
                start,
                end: at + 1 + domain.len(),
            });
        }
    }
}

/// Runs of digits joined by single separators (space, `-`, `.`, `(`, `)`),
/// judged as card numbers (13 to 19 digits, Luhn) or phone numbers.
fn numbers(text: &str, kinds: &BTreeSet<PersonalKind>, found: &mut Vec<Found>) {
    let bytes = text.as_bytes();
    let is_digit = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_digit);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let opens = b.is_ascii_digit() || (matches!(b, b'+' | b'(') && is_digit(i + 1));
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if !opens || !boundary {
            i += 1;
            continue;
        }
        let (start, plus) = (i, b == b'+');
        let mut j = i + usize::from(!b.is_ascii_digit());
        let (mut digits, mut groups, mut separated, mut dots) =
            (String::new(), Vec::new(), false, false);
        let mut end = j;
        loop {
            let run = bytes[j..].iter().take_while(|c| c.is_ascii_digit()).count();
            if run == 0 {
                break;
            }
            digits.push_str(&text[j..j + run]);
            groups.push(run);
            j += run;
            end = j;
            // Up to two separators (") " or " (") before the next group.
            let sep = bytes[j..]
                .iter()
                .take(2)
                .take_while(|c| matches!(c, b' ' | b'-' | b'.' | b'(' | b')'))
                .count();
            if sep == 0 || !is_digit(j + sep) {
                if bytes.get(j) == Some(&b')') {
                    end = j + 1;
                }
                break;
            }
            dots |= bytes[j..j + sep].contains(&b'.');
            separated = true;
            j += sep;
        }
        i = end.max(i + 1);
        if bytes.get(end).is_some_and(|c| c.is_ascii_alphanumeric()) {
            continue;
        }
        let n = digits.len();
        let kind = if (13..=19).contains(&n) && luhn(&digits) {
            PersonalKind::Card
        } else if is_phone(n, &groups, plus, separated, dots) {
            PersonalKind::Phone
        } else {
            continue;
        };
        if kinds.contains(&kind) {
            found.push(Found { kind, start, end });
        }
    }
}

fn is_phone(n: usize, groups: &[usize], plus: bool, separated: bool, dots: bool) -> bool {
    let date = n == 8 && (groups == [4, 2, 2] || groups == [2, 2, 4]);
    // After a country code, every group has two digits or more (an IP
    // address or a version number has single-digit groups).
    let grouped = groups.iter().skip(usize::from(plus)).all(|g| *g >= 2);
    let shape = match (plus, separated) {
        (true, _) => (8..=15).contains(&n),
        (false, true) => (7..=15).contains(&n) && !(dots && groups.len() != 3),
        (false, false) => false,
    };
    shape && grouped && !date
}

fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            match i % 2 {
                1 if d * 2 > 9 => d * 2 - 9,
                1 => d * 2,
                _ => d,
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn ibans(text: &str, found: &mut Vec<Found>) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i + 4 <= bytes.len() {
        let boundary = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        let head = bytes[i].is_ascii_uppercase()
            && bytes[i + 1].is_ascii_uppercase()
            && bytes[i + 2].is_ascii_digit()
            && bytes[i + 3].is_ascii_digit();
        if !(boundary && head) {
            i += 1;
            continue;
        }
        // Characters, and where each group of them ends.
        let (mut chars, mut ends, mut j) = (String::new(), Vec::new(), i);
        loop {
            let run = bytes[j..]
                .iter()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
                .count();
            if run == 0 || chars.len() + run > 34 {
                break;
            }
            chars.push_str(&text[j..j + run]);
            j += run;
            ends.push((chars.len(), j));
            if bytes.get(j) == Some(&b' ')
                && bytes
                    .get(j + 1)
                    .is_some_and(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            {
                j += 1;
            } else {
                break;
            }
        }
        // The longest run of whole groups that checks.
        let valid = ends.iter().rev().find(|(len, end)| {
            *len >= 15
                && mod97(&chars[..*len])
                && !bytes.get(*end).is_some_and(u8::is_ascii_alphanumeric)
        });
        match valid {
            Some(&(_, end)) => {
                found.push(Found {
                    kind: PersonalKind::Iban,
                    start: i,
                    end,
                });
                i = end;
            }
            None => i += 1,
        }
    }
}

fn mod97(iban: &str) -> bool {
    let (head, tail) = iban.split_at(4);
    let mut rest = 0u32;
    for c in tail.chars().chain(head.chars()) {
        let value = match c.to_digit(36) {
            Some(v) => v,
            None => return false,
        };
        rest = if value >= 10 {
            (rest * 100 + value) % 97
        } else {
            (rest * 10 + value) % 97
        };
    }
    rest == 1
}

/// Vendors' key prefixes, whose tokens are at least 16 characters long.
const KEY_PREFIXES: [&str; 12] = [
    "sk-",
    "sk_",
    "pk_live_",
    "rk_live_",
    "ghp_",
    "gho_",
    "ghs_",
    "github_pat_",
    "xoxb-",
    "xoxp-",
    "AKIA",
    "AIza",
];

fn keys(text: &str, found: &mut Vec<Found>) {
    let token = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_');
    for prefix in KEY_PREFIXES.iter().chain(&["Bearer ", "bearer "]) {
        for (at, _) in text.match_indices(prefix) {
            if text[..at].chars().next_back().is_some_and(token) {
                continue;
            }
            let rest = &text[at + prefix.len()..];
            let len = rest
                .find(|c: char| !(token(c) || c == '.'))
                .unwrap_or(rest.len());
            let least = if prefix.ends_with(' ') { 8 } else { 16 };
            if len >= least {
                found.push(Found {
                    kind: PersonalKind::Secret,
                    start: at,
                    end: at + prefix.len() + len,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<PersonalKind> {
        PersonalData::redacting()
            .find(text)
            .iter()
            .map(|f| f.kind)
            .collect()
    }

    #[test]
    fn each_kind_is_found_and_lookalikes_are_not() {
        use PersonalKind::*;
        assert_eq!(kinds("mail j.doe+x@mail.example.co.uk."), [Email]);
        assert_eq!(kinds("no mail@ here, or @handle, or a@b"), []);
        assert_eq!(
            kinds("call (555) 123-4567 or +49 30 901820"),
            [Phone, Phone]
        );
        assert_eq!(
            kinds("on 2026-12-06 at 192.168.1.1, v1.2.3, 391.0, 1234567"),
            []
        );
        assert_eq!(kinds("card 5500-0000-0000-0004"), [Card]);
        assert_eq!(kinds("order 5500-0000-0000-0005"), []);
        assert_eq!(kinds("IBAN DE89 3704 0044 0532 0130 00 please"), [Iban]);
        assert_eq!(kinds("GB82WEST12345698765432"), [Iban]);
        assert_eq!(kinds("GB82WEST12345698765433"), []);
        assert_eq!(
            kinds("key sk-proj-abcdefghijklmnop1234 and AKIAABCDEFGHIJKLMNOP"),
            [Secret, Secret]
        );
        assert_eq!(kinds("Authorization: Bearer abc.def-123456"), [Secret]);
    }

    #[test]
    fn masking_keeps_the_rest_of_the_text() {
        let pii = PersonalData::redacting().only([PersonalKind::Email]);
        assert_eq!(
            pii.mask("a@b.io, +1 555 123 4567"),
            "[email], +1 555 123 4567"
        );
        let known = PersonalData::redacting().with_secrets({
            let mut r = Redactor::default();
            r.add("hunter2-hunter2");
            r
        });
        assert_eq!(known.mask("pw hunter2-hunter2"), "pw [redacted]");
    }

    #[test]
    fn a_number_still_growing_is_not_settled() {
        let pii = PersonalData::redacting();
        let text = "Call me at +1 555";
        assert_eq!(pii.settled(text), "Call me at ".len());
        assert_eq!(pii.settled("write to ann@exa"), "write to ".len());
        assert_eq!(pii.settled("single"), 0);
    }

    #[tokio::test]
    async fn as_a_tool_guardrail_it_masks_strings_inside_results() {
        let pii = PersonalData::redacting();
        let result = serde_json::json!({"rows": [{"email": "x@y.org", "n": 3}]});
        let scope = CallScope::default();
        assert_eq!(
            pii.after("lookup", &result, &scope).await,
            ResultCheck::Replace(serde_json::json!({"rows": [{"email": "[email]", "n": 3}]}))
        );
    }
}
