//! [`Cache`]: a response cache in front of a model, and the stores it
//! keeps replies in behind one trait ([`CacheStore`]): in memory here,
//! SQLite and Redis beside it, all held to one conformance suite.

pub mod conformance;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "sqlite")]
mod sqlite;
mod window;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use lru::LruCache;
use sha2::{Digest, Sha256};
use tokio::sync::{watch, OnceCell};

use crate::backend::BackendError;
use crate::env::Usage;
use crate::model::{
    Capabilities, ChatModel, ChatRequest, Chunk, ChunkStream, ContextWindow, ModelError,
    TokenCounter,
};
use window::{window_entry, window_key, window_of};

#[cfg(feature = "redis")]
pub use self::redis::RedisCache;
#[cfg(feature = "sqlite")]
pub use self::sqlite::SqliteCache;

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

/// A stored reply read back from its JSON.
#[cfg(any(feature = "sqlite", feature = "redis"))]
pub(crate) fn chunks_from_json(text: &str, key: &str) -> Result<Vec<Chunk>, BackendError> {
    serde_json::from_str(text)
        .map_err(|source| BackendError::corrupt(format!("cache entry {key}"), source))
}

/// Where a [`Cache`] keeps replies: the chunks of each, as first streamed.
pub trait CacheStore: Send + Sync {
    /// The chunks stored under `key`.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<Chunk>>, BackendError>>;
    /// Stores `chunks` under `key`.
    fn put<'a>(
        &'a self,
        key: &'a str,
        chunks: &'a [Chunk],
    ) -> BoxFuture<'a, Result<(), BackendError>>;

    /// Claims, for `ttl`, the call of the request `key` among the processes
    /// sharing this store: true if `owner` may make it (it holds the claim,
    /// now or already), false if another owner does (then its reply is
    /// awaited with [`get`](Self::get)). A store no other process shares
    /// grants every claim, as this default does.
    fn claim<'a>(
        &'a self,
        _key: &'a str,
        _owner: &'a str,
        _ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        Box::pin(async { Ok(true) })
    }

    /// Gives up `owner`'s claim on `key`, if it still holds it.
    fn release<'a>(
        &'a self,
        _key: &'a str,
        _owner: &'a str,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async { Ok(()) })
    }
}

impl<C: CacheStore + ?Sized> CacheStore for Arc<C> {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<Chunk>>, BackendError>> {
        (**self).get(key)
    }
    fn put<'a>(
        &'a self,
        key: &'a str,
        chunks: &'a [Chunk],
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        (**self).put(key, chunks)
    }
    fn claim<'a>(
        &'a self,
        key: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        (**self).claim(key, owner, ttl)
    }
    fn release<'a>(
        &'a self,
        key: &'a str,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        (**self).release(key, owner)
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
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<Chunk>>, BackendError>> {
        let found = self.lock().get(key).map(|c| (**c).clone());
        Box::pin(async move { Ok(found) })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        chunks: &'a [Chunk],
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        self.lock().put(key.to_owned(), Arc::new(chunks.to_vec()));
        Box::pin(async { Ok(()) })
    }
}

/// Hits and misses of a [`Cache`] so far.
#[derive(Debug, Default)]
pub struct CacheStats {
    hits: AtomicU64,
    misses: AtomicU64,
    coalesced: AtomicU64,
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
    /// Calls that waited for the same request already in flight and got
    /// its reply, without a call of their own.
    pub fn coalesced(&self) -> u64 {
        self.coalesced.load(Ordering::Relaxed)
    }
}

/// Streams a stored reply for a request it has seen before (a
/// [`CacheStore`], keyed by [`cache_key`]), and the inner model's chunks
/// unchanged for the others, storing their replies.
///
/// A hit streams the stored chunks as the model first streamed them, so
/// consumers see the same tokens; its usage has the original token counts
/// (prompt tokens all counted as cached), cost 0 and
/// [`Usage::cached_responses`] 1. Only complete replies are stored; a
/// failed store read or write is logged (`tracing`) and the call goes on
/// as a miss.
///
/// Calls for a request already in flight in this process are coalesced:
/// they wait for that one call and get its reply as a hit (all at once,
/// when it completes), or its error. If the call is dropped before it
/// ends, one of the waiting callers makes the call instead. Across
/// processes sharing a store that coordinates claims
/// ([`CacheStore::claim`]; `RedisCache` does), one process makes the call
/// and the others wait for its reply in the store; if it fails or dies,
/// another makes it.
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
    flights: Flights,
    /// This cache's name in claims shared with other processes.
    owner: Arc<str>,
    claim_ttl: Duration,
    /// The inner model's window, once known (shared by clones).
    window: Arc<OnceCell<Option<ContextWindow>>>,
}

/// What claiming a request among processes came to.
enum Claimed {
    /// This process makes the call.
    Ours(Claim),
    /// Another made it meanwhile: its stored reply.
    Answered(Vec<Chunk>),
}

/// A claim on a request among processes, given up when the call ends or
/// is dropped.
struct Claim {
    store: Arc<dyn CacheStore>,
    key: String,
    owner: Arc<str>,
    held: bool,
}

impl Claim {
    async fn release(mut self) {
        self.held = false;
        if let Err(e) = self.store.release(&self.key, &self.owner).await {
            tracing::warn!(error = %e, "giving up a cache claim failed; it lapses by itself");
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        // Dropped mid-call: give it up from a task, so the other processes
        // need not wait for it to lapse.
        let (store, key, owner) = (
            Arc::clone(&self.store),
            std::mem::take(&mut self.key),
            Arc::clone(&self.owner),
        );
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                store.release(&key, &owner).await.ok();
            });
        }
    }
}

/// The calls in flight, by cache key.
type Flights = Arc<Mutex<HashMap<String, watch::Receiver<Flight>>>>;

/// Where a call in flight is, as the callers waiting on it see it.
#[derive(Clone)]
enum Flight {
    Running,
    Done(Arc<Vec<Chunk>>),
    Failed(Arc<ModelError>),
    /// Dropped before it ended: a waiting caller makes the call itself.
    Abandoned,
}

/// What a caller does about a request that missed the cache.
enum Role {
    /// Makes the call, and tells the waiting callers how it ended.
    Lead(Leader),
    /// Waits for the caller making it.
    Follow(watch::Receiver<Flight>),
}

/// Decides the role of a caller of `key`: the first leads, later ones
/// follow until the leader is done.
fn role(flights: &Flights, key: &str) -> Role {
    let mut map = flights.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(rx) = map.get(key) {
        return Role::Follow(rx.clone());
    }
    let (tx, rx) = watch::channel(Flight::Running);
    map.insert(key.to_owned(), rx);
    Role::Lead(Leader {
        key: key.to_owned(),
        flights: Arc::clone(flights),
        tx,
    })
}

/// The caller making the call; tells the others it was abandoned if it is
/// dropped before [`Leader::end`].
struct Leader {
    key: String,
    flights: Flights,
    tx: watch::Sender<Flight>,
}

impl Leader {
    /// Publishes how the call ended and lets new callers lead again.
    fn end(self, flight: Flight) {
        self.tx.send_replace(flight);
        // Drop removes the entry; Abandoned is not sent over an ending.
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if matches!(*self.tx.borrow(), Flight::Running) {
            self.tx.send_replace(Flight::Abandoned);
        }
        let mut map = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        if map
            .get(&self.key)
            .is_some_and(|rx| rx.same_channel(&self.tx.subscribe()))
        {
            map.remove(&self.key);
        }
    }
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
            flights: Arc::default(),
            owner: format!("{}-{:08x}", std::process::id(), fastrand::u32(..)).into(),
            claim_ttl: Duration::from_secs(120),
            window: Arc::default(),
        }
    }

    /// Hits and misses so far.
    pub fn stats(&self) -> &Arc<CacheStats> {
        &self.stats
    }

    /// How long another process waits for this one's call before making
    /// it itself, should this process die mid-call (default 2 minutes;
    /// make it longer than your slowest call).
    pub fn claim_ttl(mut self, ttl: Duration) -> Self {
        self.claim_ttl = ttl;
        self
    }

    /// Claims the request `key` among processes, or finds the reply
    /// another process stored meanwhile.
    async fn claim(&self, key: &str) -> Claimed {
        let mut pause = Duration::from_millis(20);
        loop {
            match self.store.claim(key, &self.owner, self.claim_ttl).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    // Better a second call than none.
                    tracing::warn!(error = %e, "claiming a cached request failed; calling the model");
                    break;
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(250));
            if let Ok(Some(chunks)) = self.store.get(key).await {
                return Claimed::Answered(chunks);
            }
        }
        Claimed::Ours(Claim {
            store: Arc::clone(&self.store),
            key: key.to_owned(),
            owner: Arc::clone(&self.owner),
            held: true,
        })
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

wrapper!(Cache);

impl<M: ChatModel> ChatModel for Cache<M> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    /// The inner model's window, asked once and kept in the store: a later
    /// process sharing the store takes it from there (with the inner
    /// model's [`token_counter`](ChatModel::token_counter)) and asks the
    /// inner model nothing.
    fn context_window(&self) -> BoxFuture<'_, Option<ContextWindow>> {
        Box::pin(async move {
            self.window
                .get_or_init(|| async {
                    let key = window_key(self.inner.name());
                    match self.store.get(&key).await {
                        Ok(Some(entry)) => {
                            if let Some(tokens) = window_of(&entry) {
                                return tokens.map(|tokens| ContextWindow {
                                    tokens,
                                    counter: self.inner.token_counter(),
                                });
                            }
                        }
                        Ok(None) => {}
                        Err(e) => tracing::warn!(model = self.inner.name(), error = %e, "reading the cached context window failed"),
                    }
                    let window = self.inner.context_window().await;
                    let entry = window_entry(window.as_ref().map(|w| w.tokens));
                    if let Err(e) = self.store.put(&key, &entry).await {
                        tracing::warn!(model = self.inner.name(), error = %e, "caching the context window failed");
                    }
                    window
                })
                .await
                .clone()
        })
    }

    fn token_counter(&self) -> Option<Arc<dyn TokenCounter>> {
        self.inner.token_counter()
    }

    fn stream(&self, request: ChatRequest) -> ChunkStream<'_> {
        Box::pin(async_stream::try_stream! {
            let key = cache_key(self.inner.name(), &request);
            loop {
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
                let leader = match role(&self.flights, &key) {
                    Role::Lead(leader) => leader,
                    Role::Follow(mut rx) => {
                        let ended = rx
                            .wait_for(|f| !matches!(f, Flight::Running))
                            .await
                            .map(|f| f.clone())
                            .unwrap_or(Flight::Abandoned);
                        match ended {
                            Flight::Done(chunks) => {
                                self.stats.coalesced.fetch_add(1, Ordering::Relaxed);
                                for chunk in as_hit((*chunks).clone()) {
                                    yield chunk;
                                }
                                return;
                            }
                            Flight::Failed(e) => Err(e.duplicate())?,
                            // Look again: the reply may be stored by now.
                            Flight::Running | Flight::Abandoned => continue,
                        }
                        return;
                    }
                };
                let claim = match self.claim(&key).await {
                    Claimed::Ours(claim) => claim,
                    Claimed::Answered(chunks) => {
                        // Another process made the call.
                        self.stats.coalesced.fetch_add(1, Ordering::Relaxed);
                        leader.end(Flight::Done(Arc::new(chunks.clone())));
                        for chunk in as_hit(chunks) {
                            yield chunk;
                        }
                        return;
                    }
                };
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                let mut seen = Vec::new();
                let mut chunks = self.inner.stream(request.clone());
                while let Some(chunk) = chunks.next().await {
                    let chunk = match chunk {
                        Ok(chunk) => chunk,
                        Err(e) => {
                            claim.release().await;
                            leader.end(Flight::Failed(Arc::new(e.duplicate())));
                            Err(e)?;
                            return;
                        }
                    };
                    seen.push(chunk.clone());
                    yield chunk;
                }
                if let Err(e) = self.store.put(&key, &seen).await {
                    tracing::warn!(model = self.inner.name(), error = %e, "response cache write failed");
                }
                claim.release().await;
                leader.end(Flight::Done(Arc::new(seen)));
                return;
            }
        })
    }
}
