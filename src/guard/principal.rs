//! [`Principal`]: who a run acts for, with the scopes that decide which
//! tools it may use.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// Who a run acts for: an id, set by the caller (the server sets it from
/// the request's credentials), and the scopes it holds. A tool that needs
/// scopes is shown to the model, and runs, only for a principal holding
/// every one of them; the scope `*` holds them all.
///
/// ```
/// use statewise::guard::Principal;
///
/// let alice = Principal::new("alice").with_scopes(["email:send"]);
/// assert!(alice.holds(["email:send"]));
/// assert!(!alice.holds(["email:send", "files:delete"]));
/// assert!(Principal::new("ops").with_scopes(["*"]).holds(["files:delete"]));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Principal {
    /// Who: a user, an API key's owner, a service.
    pub id: String,
    /// What it may do.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub scopes: BTreeSet<String>,
}

impl Principal {
    /// Principal `id`, with no scopes.
    pub fn new(id: impl Into<String>) -> Self {
        Principal {
            id: id.into(),
            scopes: BTreeSet::new(),
        }
    }

    /// The same principal, also holding `scopes`.
    pub fn with_scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// Whether it holds every scope of `needed`.
    pub fn holds<S: AsRef<str>>(&self, needed: impl IntoIterator<Item = S>) -> bool {
        self.scopes.contains("*")
            || needed
                .into_iter()
                .all(|scope| self.scopes.contains(scope.as_ref()))
    }

    /// The scopes of `needed` it lacks, sorted.
    pub fn lacks<'a>(&self, needed: impl IntoIterator<Item = &'a String>) -> Vec<String> {
        if self.scopes.contains("*") {
            return Vec::new();
        }
        needed
            .into_iter()
            .filter(|s| !self.scopes.contains(*s))
            .cloned()
            .collect()
    }
}
