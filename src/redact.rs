//! [`Redactor`]: removes secrets from text before it is written anywhere.

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
        crate::model::secret::redact(out.as_deref().unwrap_or(text), None)
    }
}
