//! Long-term memory: JSON values under namespaces, found again by key, by
//! their fields, by the words they hold and by what they mean.
//!
//! Key design decision: one [`MemoryStore`] trait over every backend, with
//! a public conformance suite ([`conformance`]) each passes, and search
//! that fuses a keyword ranking (BM25) with a vector ranking (cosine over
//! an [`Embedder`]'s vectors) by relative score ([`fuse`]), so a query finds
//! a memory by its exact words and by its meaning alike. A store is opened with its
//! embedder and checks every vector's dimension against it: a store filled
//! by one model and searched with another's vectors fails with a typed
//! error, never a silent wrong answer. Namespaces are paths (`["users",
//! "alice", "facts"]`); a search or listing covers a prefix, so one user's
//! memories are reached only through that user's namespace.

#[cfg(feature = "memory-ann")]
mod ann;
mod chunk;
pub mod conformance;
mod embed;
mod in_memory;
#[cfg(feature = "memory-local")]
mod minilm;
#[cfg(feature = "http")]
mod openai;
#[cfg(feature = "postgres")]
mod postgres;
mod rank;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use chunk::chunks;
pub use embed::{content_key, CachedEmbedder, EmbedError, Embedder, HashEmbedder};
pub use in_memory::InMemoryStore;
#[cfg(feature = "memory-local")]
pub use minilm::MiniLm;
#[cfg(feature = "http")]
pub use openai::{OpenAiEmbedder, OpenAiEmbedderBuilder};
#[cfg(feature = "postgres")]
pub use postgres::PostgresMemory;
pub use rank::{bm25, cosine, fuse, Fused, KEYWORD_WEIGHT};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteMemory;

/// Where a memory lives: a path of one or more non-empty segments.
pub type Namespace = Vec<String>;

/// A stored memory, and its score when a search found it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Its namespace.
    pub namespace: Namespace,
    /// Its key within the namespace.
    pub key: String,
    /// What was stored.
    pub value: Value,
    /// When it was first stored, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// When it was last stored.
    pub updated_ms: u64,
    /// How well it matched a search (higher is better); `None` outside
    /// searches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

/// How a value is stored.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct PutOptions {
    /// Forgotten this long after its last write or read; `None` keeps it.
    pub ttl: Option<Duration>,
    /// The fields whose text is embedded and indexed for keywords (dotted
    /// paths); `None` indexes the whole value, an empty list nothing.
    pub index: Option<Vec<String>>,
}

impl PutOptions {
    /// Kept for `ttl` after its last write or read.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Indexes only `fields` (dotted paths into the value).
    pub fn index<S: Into<String>>(mut self, fields: impl IntoIterator<Item = S>) -> Self {
        self.index = Some(fields.into_iter().map(Into::into).collect());
        self
    }
}

/// Which rankings a search uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchMode {
    /// Keyword and vector rankings fused by relative score ([`fuse`]).
    #[default]
    Hybrid,
    /// Cosine similarity of the embeddings only.
    Vector,
    /// BM25 over the indexed words only.
    Keyword,
}

/// A search: under a namespace prefix, optionally for a query, filtered
/// on fields, a page of the best hits.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Search {
    /// The namespace prefix searched (empty: every namespace).
    pub prefix: Namespace,
    /// The text sought; without one, hits come newest first.
    pub query: Option<String>,
    /// Top-level fields that must equal these values.
    pub filter: BTreeMap<String, Value>,
    /// The most hits returned.
    pub limit: usize,
    /// Hits skipped first.
    pub offset: usize,
    /// The rankings used for a query.
    pub mode: SearchMode,
}

impl Search {
    /// The newest memories under `prefix`, ten at most.
    pub fn under<S: Into<String>>(prefix: impl IntoIterator<Item = S>) -> Self {
        Search {
            prefix: prefix.into_iter().map(Into::into).collect(),
            query: None,
            filter: BTreeMap::new(),
            limit: 10,
            offset: 0,
            mode: SearchMode::Hybrid,
        }
    }

    /// Ranks by `query`.
    pub fn query(mut self, query: impl Into<String>) -> Self {
        self.query = Some(query.into());
        self
    }

    /// Keeps only memories whose field `field` equals `value`.
    pub fn filter(mut self, field: impl Into<String>, value: Value) -> Self {
        self.filter.insert(field.into(), value);
        self
    }

    /// Returns at most `limit` hits, after skipping `offset`.
    pub fn page(mut self, limit: usize, offset: usize) -> Self {
        self.limit = limit;
        self.offset = offset;
        self
    }

    /// Ranks with `mode`.
    pub fn mode(mut self, mode: SearchMode) -> Self {
        self.mode = mode;
        self
    }
}

/// Why a memory operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryError {
    /// A namespace was empty or had an empty segment.
    #[error("namespace {namespace:?} is not valid: give one or more non-empty segments without U+001F, such as [\"users\", \"alice\"]")]
    Namespace {
        /// The namespace given.
        namespace: Namespace,
    },
    /// A key was empty.
    #[error("a memory key cannot be empty")]
    EmptyKey,
    /// A vector of another dimension than the store's embedder's: the
    /// store was filled with another model.
    #[error("the store holds {expected}-dimension vectors ({model}), and got {got}; open it with the embedder it was filled with, or re-index it")]
    Dimension {
        /// The store's dimension.
        expected: usize,
        /// The dimension met.
        got: usize,
        /// The store's embedder.
        model: String,
    },
    /// A value larger than the store takes.
    #[error("the value is {bytes} bytes; this store takes at most {limit}")]
    TooLarge {
        /// Its size as JSON.
        bytes: usize,
        /// The store's limit.
        limit: usize,
    },
    /// The embedder failed.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// The database failed.
    #[error(transparent)]
    Backend(#[from] crate::backend::BackendError),
}

/// Checks `namespace`: one or more non-empty segments, none holding the
/// unit separator U+001F (which stores join segments with).
pub fn check_namespace(namespace: &[String]) -> Result<(), MemoryError> {
    if namespace.is_empty()
        || namespace
            .iter()
            .any(|s| s.is_empty() || s.contains('\u{1f}'))
    {
        return Err(MemoryError::Namespace {
            namespace: namespace.to_vec(),
        });
    }
    Ok(())
}

/// A namespaced store of JSON memories with keyword and semantic search.
pub trait MemoryStore: Send + Sync {
    /// Stores `value` under `namespace` and `key`, replacing what was
    /// there (its creation time is kept).
    fn put<'a>(
        &'a self,
        namespace: &'a [String],
        key: &'a str,
        value: Value,
        options: PutOptions,
    ) -> BoxFuture<'a, Result<(), MemoryError>>;

    /// The memory at `namespace` and `key`, refreshing its time to live.
    fn get<'a>(
        &'a self,
        namespace: &'a [String],
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Item>, MemoryError>>;

    /// Forgets the memory at `namespace` and `key`; true if there was one.
    fn delete<'a>(
        &'a self,
        namespace: &'a [String],
        key: &'a str,
    ) -> BoxFuture<'a, Result<bool, MemoryError>>;

    /// Memories found by `search`, best first.
    fn search<'a>(&'a self, search: &'a Search) -> BoxFuture<'a, Result<Vec<Item>, MemoryError>>;

    /// The namespaces under `prefix` that hold memories, sorted, a page.
    fn list_namespaces<'a>(
        &'a self,
        prefix: &'a [String],
        limit: usize,
        offset: usize,
    ) -> BoxFuture<'a, Result<Vec<Namespace>, MemoryError>>;

    /// Forgets every memory past its time to live; how many.
    fn sweep(&self) -> BoxFuture<'_, Result<usize, MemoryError>>;

    /// Stores each `(namespace, key, value)`, embedding their texts in one
    /// batch where the store can.
    fn put_many<'a>(
        &'a self,
        items: Vec<(Namespace, String, Value)>,
        options: PutOptions,
    ) -> BoxFuture<'a, Result<(), MemoryError>> {
        Box::pin(async move {
            for (namespace, key, value) in items {
                self.put(&namespace, &key, value, options.clone()).await?;
            }
            Ok(())
        })
    }

    /// The memories under `prefix`, newest first, a page.
    fn list<'a>(
        &'a self,
        prefix: &'a [String],
        limit: usize,
        offset: usize,
    ) -> BoxFuture<'a, Result<Vec<Item>, MemoryError>> {
        Box::pin(async move {
            let search = Search::under(prefix.iter().cloned()).page(limit, offset);
            self.search(&search).await
        })
    }
}

/// Checks what a store is given to keep: a valid namespace, a key, and a
/// value of at most `max_value` bytes of JSON.
pub(crate) fn check_put(
    namespace: &[String],
    key: &str,
    value: &Value,
    max_value: usize,
) -> Result<(), MemoryError> {
    check_namespace(namespace)?;
    if key.is_empty() {
        return Err(MemoryError::EmptyKey);
    }
    let bytes = value.to_string().len();
    if bytes > max_value {
        return Err(MemoryError::TooLarge {
            bytes,
            limit: max_value,
        });
    }
    Ok(())
}

/// The vectors `embedder` makes of `texts` (none for an empty text), each
/// checked to be of the `expected` dimension of the store, filled by
/// `model`.
pub(crate) async fn embed_checked(
    embedder: &dyn Embedder,
    texts: &[String],
    expected: usize,
    model: &str,
) -> Result<Vec<Option<Vec<f32>>>, MemoryError> {
    let asked: Vec<String> = texts
        .iter()
        .filter(|t| !t.trim().is_empty())
        .cloned()
        .collect();
    let mut made = if asked.is_empty() {
        Vec::new()
    } else {
        embedder.embed(&asked).await?
    }
    .into_iter();
    let mut out = Vec::with_capacity(texts.len());
    for text in texts {
        if text.trim().is_empty() {
            out.push(None);
            continue;
        }
        let vector = made.next().ok_or_else(|| EmbedError::Shape {
            model: embedder.model_id().to_owned(),
            asked: format!("{} texts", asked.len()),
            got: "fewer vectors".into(),
        })?;
        if vector.len() != expected {
            return Err(MemoryError::Dimension {
                expected,
                got: vector.len(),
                model: model.to_owned(),
            });
        }
        out.push(Some(vector));
    }
    Ok(out)
}

/// The text of `value` that is indexed: the given fields' text, or all of
/// its strings (and numbers) in order.
pub fn indexed_text(value: &Value, fields: Option<&[String]>) -> String {
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(s) => out.push(s.clone()),
            Value::Number(n) => out.push(n.to_string()),
            Value::Bool(b) => out.push(b.to_string()),
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            Value::Object(map) => map.values().for_each(|v| walk(v, out)),
            Value::Null => {}
        }
    }
    let mut out = Vec::new();
    match fields {
        None => walk(value, &mut out),
        Some(fields) => {
            for field in fields {
                let mut at = Some(value);
                for part in field.split('.') {
                    at = at.and_then(|v| match v {
                        Value::Object(map) => map.get(part),
                        Value::Array(items) => {
                            part.parse::<usize>().ok().and_then(|i| items.get(i))
                        }
                        _ => None,
                    });
                }
                if let Some(v) = at {
                    walk(v, &mut out);
                }
            }
        }
    }
    out.join("\n")
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_indexed_text_is_the_fields_asked_for_or_every_string() {
        let v = json!({"text": "Alice likes tea", "tags": ["drinks", "alice"], "n": 3, "meta": {"src": "chat"}});
        assert_eq!(
            indexed_text(&v, None),
            "Alice likes tea\ndrinks\nalice\n3\nchat"
        );
        let only = [
            "text".to_owned(),
            "meta.src".to_owned(),
            "tags.1".to_owned(),
        ];
        assert_eq!(
            indexed_text(&v, Some(&only)),
            "Alice likes tea\nchat\nalice"
        );
        assert_eq!(indexed_text(&v, Some(&[])), "");
    }

    #[test]
    fn a_namespace_needs_non_empty_segments() {
        assert!(check_namespace(&["u".into()]).is_ok());
        assert!(check_namespace(&[]).is_err());
        assert!(check_namespace(&["u".into(), String::new()]).is_err());
    }
}
