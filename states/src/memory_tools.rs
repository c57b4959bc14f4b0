//! Stock memory tools: [`Remember`] and [`Recall`], each scoped to the
//! principal the run acts for, so one user never reads another's
//! memories.
//!
//! The namespace is not an argument the model writes: it is the tool's
//! prefix and the run's principal ([`ToolContext::principal`]), set by
//! the caller, so no prompt can point a tool at someone else's memories.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use statewise::guard::Principal;
use statewise::memory::{content_key, MemoryError, MemoryStore, PutOptions, Search};
use statewise::tool::{Tool, ToolContext};

/// Why a memory tool could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryToolError {
    /// The run acts for no one, so there is no namespace to use.
    #[error(
        "memories belong to a user: the run has no principal (set one with Env::with_principal)"
    )]
    NoPrincipal,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] MemoryError),
}

/// Where both tools keep a principal's memories: `prefix` + its id.
#[derive(Clone)]
struct Scoped {
    store: Arc<dyn MemoryStore>,
    prefix: Vec<String>,
}

impl Scoped {
    fn namespace(&self, ctx: &ToolContext) -> Result<Vec<String>, MemoryToolError> {
        scoped(&self.prefix, ctx.principal.as_deref())
    }
}

/// `prefix` + the principal's id: where a principal's memories live.
pub(crate) fn scoped(
    prefix: &[String],
    principal: Option<&Principal>,
) -> Result<Vec<String>, MemoryToolError> {
    let principal = principal.ok_or(MemoryToolError::NoPrincipal)?;
    Ok(prefix
        .iter()
        .cloned()
        .chain([principal.id.clone()])
        .collect())
}

/// Stores a fact for later runs of the same principal (under
/// `["memories", <principal id>]` by default); the same text twice is
/// stored once.
#[derive(Clone)]
pub struct Remember(Scoped);

/// Finds the principal's memories that best match a query (keywords and
/// meaning, fused).
#[derive(Clone)]
pub struct Recall(Scoped);

impl Remember {
    /// Remembers in `store`.
    pub fn new(store: Arc<dyn MemoryStore>) -> Self {
        Remember(Scoped {
            store,
            prefix: vec!["memories".into()],
        })
    }

    /// Keeps memories under `prefix` + the principal's id.
    pub fn prefix<S: Into<String>>(mut self, prefix: impl IntoIterator<Item = S>) -> Self {
        self.0.prefix = prefix.into_iter().map(Into::into).collect();
        self
    }
}

impl Recall {
    /// Recalls from `store`.
    pub fn new(store: Arc<dyn MemoryStore>) -> Self {
        Recall(Scoped {
            store,
            prefix: vec!["memories".into()],
        })
    }

    /// Reads memories under `prefix` + the principal's id.
    pub fn prefix<S: Into<String>>(mut self, prefix: impl IntoIterator<Item = S>) -> Self {
        self.0.prefix = prefix.into_iter().map(Into::into).collect();
        self
    }
}

/// Arguments of [`Remember`].
#[derive(Debug, Deserialize, JsonSchema)]
pub struct RememberArgs {
    /// The fact to keep, as a sentence that makes sense on its own.
    pub text: String,
}

/// Arguments of [`Recall`].
#[derive(Debug, Deserialize, JsonSchema)]
pub struct RecallArgs {
    /// What to look for.
    pub query: String,
    /// How many memories at most (default 3).
    #[serde(default)]
    pub k: Option<u8>,
}

/// One recalled memory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recalled {
    /// What was remembered.
    pub text: String,
    /// How well it matched.
    pub score: f64,
}

impl Tool for Remember {
    type Args = RememberArgs;
    type Output = String;
    type Error = MemoryToolError;

    fn name(&self) -> &str {
        "remember"
    }
    fn description(&self) -> &str {
        "Keeps a fact about the user for later conversations."
    }
    async fn call(&self, args: RememberArgs, ctx: ToolContext) -> Result<String, Self::Error> {
        let namespace = self.0.namespace(&ctx)?;
        let text = args.text.trim().to_owned();
        let key = content_key("remember", &text);
        self.0
            .store
            .put(
                &namespace,
                &key,
                json!({ "text": text }),
                PutOptions::default(),
            )
            .await?;
        Ok("remembered".into())
    }
}

impl Tool for Recall {
    type Args = RecallArgs;
    type Output = Vec<Recalled>;
    type Error = MemoryToolError;

    fn name(&self) -> &str {
        "recall"
    }
    fn description(&self) -> &str {
        "Finds facts remembered about the user in earlier conversations."
    }
    async fn call(&self, args: RecallArgs, ctx: ToolContext) -> Result<Vec<Recalled>, Self::Error> {
        let namespace = self.0.namespace(&ctx)?;
        let k = usize::from(args.k.unwrap_or(3).clamp(1, 20));
        let search = Search::under(namespace).query(args.query).page(k, 0);
        let hits = self.0.store.search(&search).await?;
        Ok(hits
            .into_iter()
            .filter_map(|hit| {
                let text = hit.value.get("text")?.as_str()?.to_owned();
                Some(Recalled {
                    text,
                    score: hit.score.unwrap_or(0.0),
                })
            })
            .collect())
    }
}
