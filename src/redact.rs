//! Secrets kept out of everything written: [`Secret`] API keys that never
//! print, [`redact`] for text from a provider or a transport, and
//! [`Redactor`] for trace records.
//!
//! A leaf: it imports nothing from the crate, so providers, traces, spans
//! and logs all mask through this one place, and a key is masked the same
//! way wherever text leaves the process. No HTTP client is needed for that,
//! so it builds without the `http` feature.

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

/// The environment variables whose values are treated as secrets: names
/// ending in one of these.
const SECRET_SUFFIXES: [&str; 5] = ["_API_KEY", "_KEY", "_TOKEN", "_SECRET", "_PASSWORD"];

/// Shorter values are too likely to occur by chance to be replaced.
const MIN_SECRET_LEN: usize = 8;

/// Replaces secrets with `[redacted]`: literal values (API keys, passwords)
/// and, by pattern, bearer tokens and `sk-` style keys.
///
/// ```
/// use statewise::trace::Redactor;
///
/// let mut r = Redactor::default();
/// r.add("hunter2-hunter2");
/// assert_eq!(
///     r.apply("password hunter2-hunter2, header Bearer abcdef123456"),
///     "password [redacted], header Bearer [redacted]"
/// );
/// ```
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

/// Shows how many secrets it knows, never which.
impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

impl Redactor {
    /// A redactor knowing the values of this process's environment
    /// variables named `*_API_KEY`, `*_KEY`, `*_TOKEN`, `*_SECRET` or
    /// `*_PASSWORD`.
    pub fn from_env() -> Self {
        let mut r = Redactor::default();
        for (name, value) in std::env::vars_os() {
            let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else {
                continue;
            };
            let name = name.to_ascii_uppercase();
            if SECRET_SUFFIXES.iter().any(|s| name.ends_with(s)) {
                r.add(value);
            }
        }
        r
    }

    /// Also replaces `secret` (ignored if shorter than 8 characters).
    pub fn add(&mut self, secret: impl Into<String>) {
        let secret = secret.into();
        if secret.len() < MIN_SECRET_LEN || self.secrets.contains(&secret) {
            return;
        }
        // Inside JSON text the secret may appear escaped.
        if let Ok(quoted) = serde_json::to_string(&secret) {
            let escaped = &quoted[1..quoted.len() - 1];
            if escaped != secret {
                self.secrets.push(escaped.to_owned());
            }
        }
        self.secrets.push(secret);
        // Longest first, so a secret containing another is replaced whole.
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// `text` with every known secret and token pattern replaced.
    pub fn apply(&self, text: &str) -> String {
        let mut out = None::<String>;
        for secret in &self.secrets {
            let current = out.as_deref().unwrap_or(text);
            if current.contains(secret.as_str()) {
                out = Some(current.replace(secret.as_str(), "[redacted]"));
            }
        }
        redact(out.as_deref().unwrap_or(text), None)
    }
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
