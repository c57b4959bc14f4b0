//! [`Domains`]: a tool guardrail that lets chosen tools reach only listed
//! domains, by the email addresses and URLs in their arguments.

use std::collections::BTreeSet;

use futures::future::BoxFuture;
use serde_json::Value;

use super::{CallCheck, CallScope, ToolGuardrail};

/// Rejects a call of a watched tool whose arguments hold an email address
/// or URL outside the allowed domains (a subdomain of an allowed domain is
/// allowed). The model is told which domains it may use.
///
/// ```
/// use statewise::guard::Domains;
///
/// let mail = Domains::allow(["example.com"]).for_tools(["send_email"]);
/// assert!(mail.allows("ops@mail.example.com"));
/// assert!(!mail.allows("ops@example.com.evil.io"));
/// ```
#[derive(Debug, Clone)]
pub struct Domains {
    allowed: BTreeSet<String>,
    /// The tools watched; every tool when empty.
    tools: BTreeSet<String>,
}

impl Domains {
    /// Allows `domains` only.
    pub fn allow<S: AsRef<str>>(domains: impl IntoIterator<Item = S>) -> Self {
        Domains {
            allowed: domains
                .into_iter()
                .map(|d| d.as_ref().trim_matches('.').to_ascii_lowercase())
                .collect(),
            tools: BTreeSet::new(),
        }
    }

    /// Watches only `tools`.
    pub fn for_tools<S: Into<String>>(mut self, tools: impl IntoIterator<Item = S>) -> Self {
        self.tools = tools.into_iter().map(Into::into).collect();
        self
    }

    /// Whether an address or URL (or a bare host) is in an allowed domain.
    pub fn allows(&self, address: &str) -> bool {
        let host = host_of(address);
        self.allowed
            .iter()
            .any(|d| host == *d || host.ends_with(&format!(".{d}")))
    }

    /// The addresses and URLs in `value`'s strings.
    fn addresses(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(s) => out.extend(
                s.split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '<' | '>' | '"'))
                    .filter(|w| w.contains('@') || w.contains("://"))
                    .map(str::to_owned),
            ),
            Value::Array(items) => items.iter().for_each(|v| Self::addresses(v, out)),
            Value::Object(map) => map.values().for_each(|v| Self::addresses(v, out)),
            _ => {}
        }
    }
}

/// The host of `name@host`, `scheme://[user@]host[:port]/...` or a bare
/// host, lower-cased.
fn host_of(address: &str) -> String {
    let rest = match address.split_once("://") {
        Some((_, rest)) => rest.split(['/', '?', '#']).next().unwrap_or(""),
        None => address,
    };
    let host = rest.rsplit('@').next().unwrap_or(rest);
    let host = host.split(':').next().unwrap_or(host);
    host.trim_end_matches('.').to_ascii_lowercase()
}

impl ToolGuardrail for Domains {
    fn name(&self) -> &str {
        "domains"
    }

    fn before<'a>(
        &'a self,
        tool: &'a str,
        arguments: &'a Value,
        _scope: &'a CallScope,
    ) -> BoxFuture<'a, CallCheck> {
        let watched = self.tools.is_empty() || self.tools.contains(tool);
        let mut found = Vec::new();
        if watched {
            Self::addresses(arguments, &mut found);
        }
        let check = match found.iter().find(|a| !self.allows(a)) {
            Some(_) => CallCheck::Reject(format!(
                "`{tool}` may only reach these domains: {}",
                self.allowed.iter().cloned().collect::<Vec<_>>().join(", ")
            )),
            None => CallCheck::Allow,
        };
        Box::pin(std::future::ready(check))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn a_call_to_an_address_outside_the_list_is_rejected() {
        let mail = Domains::allow(["example.com"]).for_tools(["send_email"]);
        let scope = CallScope::default();
        let inside = json!({"to": ["a@example.com", "b@eu.example.com"], "body": "hi"});
        assert_eq!(
            mail.before("send_email", &inside, &scope).await,
            CallCheck::Allow
        );
        let outside = json!({"to": "a@example.com, x@evil.test"});
        assert!(matches!(
            mail.before("send_email", &outside, &scope).await,
            CallCheck::Reject(_)
        ));
        // Other tools are not watched.
        assert_eq!(
            mail.before("search", &outside, &scope).await,
            CallCheck::Allow
        );
        assert!(!mail.allows("https://user@evil.test:443/path"));
        assert!(mail.allows("https://example.com/x"));
    }
}
