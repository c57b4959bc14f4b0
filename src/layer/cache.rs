//! [`Cache`]: a response cache in front of a model.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::StreamExt;
use lru::LruCache;
use sha2::{Digest, Sha256};

use crate::env::Usage;
use crate::model::{Capabilities, ChatModel, ChatRequest, Chunk, ChunkStream, ContextWindow};
use crate::store::StoreError;

/// The key of a request to `model`: a SHA-256 over the model's name and the
/// request's messages, tools, parameters and response schema, as hex.
/// Stable across processes and versions of Rust, so it can key a file.
pub fn cache_key(model: &str, request: &ChatRequest) -> String {
    let mut hash = Sha256::new();
    hash.update(model.as_bytes());
    hash.update([0]);
    // ChatRequest serializes its fields in declaration order, and maps keep
    // their insertion order, so equal requests give equal bytes.
    hash.update(serde_json::to_vec(request).unwrap_or_default());
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a [`Cache`] keeps replies: the chunks of each, as first streamed.
pub trait CacheStore: Send + Sync {
    /// The chunks stored under `key`.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<Chunk>>, StoreError>>;
    /// Stores `chunks` under `key`.
    fn put<'a>(
        &'a self,
        key: &'a str,
        chunks: &'a [Chunk],
    ) -> BoxFuture<'a, Result<(), StoreError>>;
}

impl<C: CacheStore + ?Sized> CacheStore for Arc<C> {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<Chunk>>, StoreError>> {
        (**self).get(key)
    }
    fn put<'a>(
        &'a self,
        key: &'a str,
        chunks: &'a [Chunk],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).put(key, chunks)
    }
}

/// Replies in memory, least recently used dropped first.
#[derive(Debug)]
pub struct MemoryCache {
    entries: Mutex<LruCache<String, Arc<Vec<Chunk>>>>,
}

impl MemoryCache {
    /// A cache of at most `capacity` replies (at least one).
    pub fn new(capacity: usize) -> Self {
        MemoryCache {
            entries: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    /// How many replies it holds.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, Arc<Vec<Chunk>>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl CacheStore for MemoryCache {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<Chunk>>, StoreError>> {
        let found = self.lock().get(key).map(|c| (**c).clone());
        Box::pin(async move { Ok(found) })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        chunks: &'a [Chunk],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.lock().put(key.to_owned(), Arc::new(chunks.to_vec()));
        Box::pin(async { Ok(()) })
    }
}

/// Hits and misses of a [`Cache`] so far.
#[derive(Debug, Default)]
pub struct CacheStats {
    hits: AtomicU64,
    misses: AtomicU64,
}

impl CacheStats {
    /// Calls answered from the cache.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
    /// Calls passed to the model.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }
}

/// Answers a request it has seen before from a [`CacheStore`], keyed by
/// [`cache_key`]; passes the others to the model and stores their replies.
///
/// A hit streams the stored chunks as the model first streamed them, so
/// consumers see the same tokens; its usage has the original token counts
/// (prompt tokens all counted as cached), cost 0 and
/// [`Usage::cached_responses`] 1. Only complete replies are stored; a
/// failed store read or write is logged (`tracing`) and the call goes on
/// as a miss.
///
/// Put it outermost, around retries and limits, so a hit skips them all.
/// Caching is per state by construction: give a state the cached model and
/// another state the model itself.
///
/// ```
/// use std::sync::Arc;
/// use statewise::layer::{Cache, MemoryCache, ModelExt};
/// use statewise::model::{ChatModel, ChatRequest, ScriptedModel};
/// use statewise::Message;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let model = ScriptedModel::new().text("4");
/// let cached = model.cache(Arc::new(MemoryCache::new(1000)));
/// let ask = || ChatRequest::new(vec![Message::user("2+2?")]);
/// assert_eq!(cached.complete(ask()).await?.text, "4");
/// // The script held one reply; the second answer comes from the cache.
/// let again = cached.complete(ask()).await?;
/// assert_eq!((again.text.as_str(), again.usage.cached_responses), ("4", 1));
/// assert_eq!((cached.stats().hits(), cached.stats().misses()), (1, 1));
/// # Ok::<(), statewise::model::ModelError>(())
/// # }).unwrap();
/// ```
pub struct Cache<M> {
    inner: M,
    store: Arc<dyn CacheStore>,
    stats: Arc<CacheStats>,
}

impl<M> std::fmt::Debug for Cache<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<M: ChatModel> Cache<M> {
    /// Caches `inner`'s replies in `store`.
    pub fn new(inner: M, store: Arc<dyn CacheStore>) -> Self {
        Cache {
            inner,
            store,
            stats: Arc::default(),
        }
    }

    /// Hits and misses so far.
    pub fn stats(&self) -> &Arc<CacheStats> {
        &self.stats
    }
}

/// What a stored reply's usage becomes when it is served again.
fn as_hit(chunks: Vec<Chunk>) -> Vec<Chunk> {
    let mut saw_usage = false;
    let mut out: Vec<Chunk> = chunks
        .into_iter()
        .map(|c| match c {
            Chunk::Usage(u) => {
                saw_usage = true;
                Chunk::Usage(Usage {
                    prompt_tokens: u.prompt_tokens,
                    completion_tokens: u.completion_tokens,
                    cached_tokens: u.prompt_tokens,
                    cached_responses: 1,
                    ..Usage::default()
                })
            }
            other => other,
        })
        .collect();
    if !saw_usage {
        out.push(Chunk::Usage(Usage {
            cached_responses: 1,
            ..Usage::default()
        }));
    }
    out
}

impl<M: ChatModel> ChatModel for Cache<M> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn context_window(&self) -> BoxFuture<'_, Option<ContextWindow>> {
        self.inner.context_window()
    }

    fn stream(&self, request: ChatRequest) -> ChunkStream<'_> {
        Box::pin(async_stream::try_stream! {
            let key = cache_key(self.inner.name(), &request);
            match self.store.get(&key).await {
                Ok(Some(chunks)) => {
                    self.stats.hits.fetch_add(1, Ordering::Relaxed);
                    for chunk in as_hit(chunks) {
                        yield chunk;
                    }
                    return;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(model = self.inner.name(), error = %e, "response cache read failed"),
            }
            self.stats.misses.fetch_add(1, Ordering::Relaxed);
            let mut seen = Vec::new();
            let mut chunks = self.inner.stream(request);
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk?;
                seen.push(chunk.clone());
                yield chunk;
            }
            if let Err(e) = self.store.put(&key, &seen).await {
                tracing::warn!(model = self.inner.name(), error = %e, "response cache write failed");
            }
        })
    }
}
