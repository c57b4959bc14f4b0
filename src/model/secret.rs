//! API keys that never print, and redaction of text that may hold one.
//!
//! Providers, traces and logs all redact through [`redact`], so a key is
//! masked the same way wherever text leaves the process. No HTTP client is
//! needed for that, so this module builds without the `http` feature.

/// An API key. Its `Debug` and `Display` print `[redacted]`, so it cannot
/// leak through a log line, a trace or an error message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Secret(key.into())
    }

    /// The key itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Removes credentials from text that came from a provider or a transport:
/// the known key anywhere, and anything shaped like a vendor key or a bearer
/// token (providers echo partial keys in their error bodies).
pub fn redact(text: &str, secret: Option<&Secret>) -> String {
    let mut out = match secret.map(Secret::expose).filter(|k| k.len() >= 4) {
        Some(key) => text.replace(key, "[redacted]"),
        None => text.to_owned(),
    };
    for prefix in ["sk-", "sk_", "Bearer ", "bearer "] {
        out = mask_after(&out, prefix);
    }
    out
}

/// Masks the token following each `prefix` (letters, digits, `-`, `_`, `*`, `.`).
fn mask_after(text: &str, prefix: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let (head, tail) = rest.split_at(at + prefix.len());
        out.push_str(head);
        let token_len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*' | '.')))
            .unwrap_or(tail.len());
        if token_len >= 4 {
            out.push_str("[redacted]");
        } else {
            out.push_str(&tail[..token_len]);
        }
        rest = &tail[token_len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let key = Secret::new("sk-live-123456");
        assert_eq!(format!("{key} {key:?}"), "[redacted] [redacted]");
    }

    #[test]
    fn redaction_covers_the_key_and_key_shapes() {
        let key = Secret::new("my-custom-key-9f8e");
        let text =
            "bad key my-custom-key-9f8e; also sk-proj-AbC123xyz and Bearer abc.def-ghi, ok sk-";
        let out = redact(text, Some(&key));
        assert_eq!(
            out,
            "bad key [redacted]; also sk-[redacted] and Bearer [redacted], ok sk-"
        );
        assert!(!out.contains("9f8e") && !out.contains("AbC123"));
    }
}
