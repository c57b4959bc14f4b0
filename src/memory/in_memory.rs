//! [`InMemoryStore`]: memories in this process, searched exactly, or
//! by meaning through an approximate index per large namespace (feature
//! `memory-ann`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde_json::Value;

use super::rank::{bm25, cosine, fuse};
use super::{
    check_namespace, check_put, embed_checked, indexed_text, now_ms, Embedder, Item, MemoryError,
    MemoryStore, Namespace, PutOptions, Search, SearchMode,
};

/// What the approximate indexes found, by namespace and key.
type Nearest = HashMap<Namespace, HashMap<String, f64>>;
/// A namespace and its memories' keys and vectors, to build an index from.
type Snapshot = (Namespace, Vec<(String, Vec<f32>)>);

/// The largest value stored by default: 16 MiB of JSON.
const DEFAULT_MAX_VALUE: usize = 16 << 20;
/// The size from which a namespace is searched through an index.
#[cfg(feature = "memory-ann")]
const DEFAULT_APPROXIMATE_ABOVE: usize = 20_000;

#[derive(Debug, Clone)]
struct Entry {
    item: Item,
    text: String,
    vector: Option<Arc<[f32]>>,
    ttl: Option<Duration>,
    expires: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| at > now)
    }
}

/// Memories in this process's memory: exact keyword and vector search over
/// every memory under the prefix. Clones share the memories.
///
/// ```
/// use statewise::memory::{HashEmbedder, InMemoryStore, MemoryStore, PutOptions, Search};
/// use serde_json::json;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = InMemoryStore::new(HashEmbedder::new(128));
/// let alice = ["users".to_owned(), "alice".to_owned()];
/// store.put(&alice, "tea", json!({"text": "Alice drinks green tea"}), PutOptions::default()).await?;
/// let hits = store.search(&Search::under(alice.clone()).query("what does alice drink")).await?;
/// assert_eq!(hits[0].key, "tea");
/// # Ok::<(), statewise::memory::MemoryError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct InMemoryStore {
    embedder: Arc<dyn Embedder>,
    entries: Arc<Mutex<BTreeMap<(Namespace, String), Entry>>>,
    /// The dimension and model of the vectors held, once one is.
    fixed: Arc<Mutex<Option<(usize, String)>>>,
    max_value: usize,
    #[cfg(feature = "memory-ann")]
    graphs: Option<super::ann::Graphs>,
}

impl std::fmt::Debug for InMemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryStore")
            .field("embedder", &self.embedder.model_id())
            .field("memories", &self.entries().len())
            .finish()
    }
}

impl InMemoryStore {
    /// An empty store whose memories `embedder` embeds.
    pub fn new(embedder: impl Embedder + 'static) -> Self {
        InMemoryStore {
            embedder: Arc::new(embedder),
            entries: Arc::default(),
            fixed: Arc::default(),
            max_value: DEFAULT_MAX_VALUE,
            #[cfg(feature = "memory-ann")]
            graphs: Some(super::ann::Graphs::new(DEFAULT_APPROXIMATE_ABOVE)),
        }
    }

    /// Searches by meaning through an approximate index (HNSW) in each
    /// namespace of at least `memories` memories with vectors (default
    /// 20,000), or always exactly with `None`. The search that finds a
    /// namespace past the size builds its index and waits for it; later
    /// writes go into the index as they are made. Searches with a field
    /// filter stay exact. Feature `memory-ann`.
    #[cfg(feature = "memory-ann")]
    pub fn approximate_above(mut self, memories: Option<usize>) -> Self {
        self.graphs = memories.map(super::ann::Graphs::new);
        self
    }

    /// The namespaces searched through an approximate index, with how many
    /// memories each index holds.
    #[cfg(feature = "memory-ann")]
    pub fn approximate_indexes(&self) -> Vec<(Namespace, usize)> {
        self.graphs.as_ref().map_or_else(Vec::new, |g| g.sizes())
    }

    /// Tells the namespace's index, if it has one, what was written.
    fn index_wrote(&self, _namespace: &[String], _key: &str, _vector: Option<&Arc<[f32]>>) {
        #[cfg(feature = "memory-ann")]
        if let Some(graphs) = &self.graphs {
            graphs.wrote(_namespace, _key, _vector);
        }
    }

    /// The same memories, embedded from now on by `embedder`: vectors of
    /// another dimension than those held fail with
    /// [`MemoryError::Dimension`].
    pub fn with_embedder(&self, embedder: Arc<dyn Embedder>) -> Self {
        InMemoryStore {
            embedder,
            ..self.clone()
        }
    }

    /// Takes values of at most `bytes` of JSON (default 16 MiB).
    pub fn max_value(mut self, bytes: usize) -> Self {
        self.max_value = bytes;
        self
    }

    /// What the approximate indexes under the search's prefix find, by
    /// namespace; nothing for a search they cannot serve.
    fn nearest(&self, _search: &Search, _query: Option<&[f32]>) -> Nearest {
        #[cfg(feature = "memory-ann")]
        if let (Some(graphs), Some(query), true) = (&self.graphs, _query, _search.filter.is_empty())
        {
            let wanted = (_search.offset + _search.limit).max(10);
            // Hybrid fusion reads deeper into the vector ranking.
            let k = match _search.mode {
                SearchMode::Hybrid => wanted * 3,
                _ => wanted,
            };
            return graphs.nearest(&_search.prefix, query, k);
        }
        Nearest::new()
    }

    /// The namespaces among `candidates` (every live memory under a
    /// prefix) that just grew past the index size, each with its points;
    /// they are claimed, so writes from now on are kept for their index.
    fn claim_indexes(&self, _candidates: &[&mut Entry], _nearest: &Nearest) -> Vec<Snapshot> {
        #[cfg(feature = "memory-ann")]
        if let Some(graphs) = &self.graphs {
            let mut counts: HashMap<&Namespace, usize> = HashMap::new();
            for e in _candidates.iter().filter(|e| e.vector.is_some()) {
                if !_nearest.contains_key(&e.item.namespace) {
                    *counts.entry(&e.item.namespace).or_default() += 1;
                }
            }
            let claimed: Vec<Namespace> = counts
                .into_iter()
                .filter(|(ns, count)| graphs.claim(ns, *count))
                .map(|(ns, _)| ns.clone())
                .collect();
            return claimed
                .into_iter()
                .map(|ns| {
                    let points = _candidates
                        .iter()
                        .filter(|e| e.item.namespace == ns)
                        .filter_map(|e| Some((e.item.key.clone(), e.vector.as_deref()?.to_vec())))
                        .collect();
                    (ns, points)
                })
                .collect();
        }
        Vec::new()
    }

    /// Builds the indexes claimed.
    async fn build_indexes(&self, _claimed: Vec<Snapshot>) {
        #[cfg(feature = "memory-ann")]
        if let Some(graphs) = &self.graphs {
            for (namespace, points) in _claimed {
                graphs.build(namespace, points).await;
            }
        }
    }

    fn entries(&self) -> MutexGuard<'_, BTreeMap<(Namespace, String), Entry>> {
        // Only map reads and writes happen under the lock.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The vectors of `texts` (none for an empty text), checked against
    /// the embedder's dimension.
    async fn vectors(&self, texts: &[String]) -> Result<Vec<Option<Arc<[f32]>>>, MemoryError> {
        let (expected, model) = {
            let mut fixed = self
                .fixed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            fixed
                .get_or_insert_with(|| {
                    (
                        self.embedder.dimensions(),
                        self.embedder.model_id().to_owned(),
                    )
                })
                .clone()
        };
        let checked = embed_checked(&*self.embedder, texts, expected, &model).await?;
        Ok(checked.into_iter().map(|v| v.map(Arc::from)).collect())
    }

    fn insert(
        &self,
        namespace: &[String],
        key: &str,
        value: Value,
        text: String,
        vector: Option<Arc<[f32]>>,
        ttl: Option<Duration>,
    ) {
        let now = now_ms();
        let mut entries = self.entries();
        let id = (namespace.to_vec(), key.to_owned());
        let created_ms = entries
            .get(&id)
            .filter(|e| e.live(Instant::now()))
            .map_or(now, |e| e.item.created_ms);
        entries.insert(
            id,
            Entry {
                item: Item {
                    namespace: namespace.to_vec(),
                    key: key.to_owned(),
                    value,
                    created_ms,
                    updated_ms: now,
                    score: None,
                },
                text,
                vector: vector.clone(),
                ttl,
                expires: ttl.map(|t| Instant::now() + t),
            },
        );
        drop(entries);
        self.index_wrote(namespace, key, vector.as_ref());
    }
}

/// Whether `value`'s top-level fields equal every one of `filter`.
fn matches(value: &Value, filter: &BTreeMap<String, Value>) -> bool {
    filter
        .iter()
        .all(|(field, want)| value.get(field) == Some(want))
}

impl MemoryStore for InMemoryStore {
    fn put<'a>(
        &'a self,
        namespace: &'a [String],
        key: &'a str,
        value: Value,
        options: PutOptions,
    ) -> BoxFuture<'a, Result<(), MemoryError>> {
        Box::pin(async move {
            check_put(namespace, key, &value, self.max_value)?;
            let text = indexed_text(&value, options.index.as_deref());
            let vector = self
                .vectors(std::slice::from_ref(&text))
                .await?
                .pop()
                .flatten();
            self.insert(namespace, key, value, text, vector, options.ttl);
            Ok(())
        })
    }

    fn put_many<'a>(
        &'a self,
        items: Vec<(Namespace, String, Value)>,
        options: PutOptions,
    ) -> BoxFuture<'a, Result<(), MemoryError>> {
        Box::pin(async move {
            for (namespace, key, value) in &items {
                check_put(namespace, key, value, self.max_value)?;
            }
            let texts: Vec<String> = items
                .iter()
                .map(|(_, _, v)| indexed_text(v, options.index.as_deref()))
                .collect();
            let vectors = self.vectors(&texts).await?;
            for (((namespace, key, value), text), vector) in
                items.into_iter().zip(texts).zip(vectors)
            {
                self.insert(&namespace, &key, value, text, vector, options.ttl);
            }
            Ok(())
        })
    }

    fn get<'a>(
        &'a self,
        namespace: &'a [String],
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Item>, MemoryError>> {
        let found = check_namespace(namespace).map(|()| {
            let now = Instant::now();
            let mut entries = self.entries();
            let entry = entries
                .get_mut(&(namespace.to_vec(), key.to_owned()))
                .filter(|e| e.live(now))?;
            entry.expires = entry.ttl.map(|t| now + t);
            Some(entry.item.clone())
        });
        Box::pin(std::future::ready(found))
    }

    fn delete<'a>(
        &'a self,
        namespace: &'a [String],
        key: &'a str,
    ) -> BoxFuture<'a, Result<bool, MemoryError>> {
        let deleted = check_namespace(namespace).map(|()| {
            let now = Instant::now();
            let removed = self.entries().remove(&(namespace.to_vec(), key.to_owned()));
            if removed.is_some() {
                self.index_wrote(namespace, key, None);
            }
            removed.is_some_and(|e| e.live(now))
        });
        Box::pin(std::future::ready(deleted))
    }

    fn search<'a>(&'a self, search: &'a Search) -> BoxFuture<'a, Result<Vec<Item>, MemoryError>> {
        Box::pin(async move {
            let query_vector = match (&search.query, search.mode) {
                (Some(q), SearchMode::Hybrid | SearchMode::Vector) => {
                    self.vectors(std::slice::from_ref(q)).await?.pop().flatten()
                }
                _ => None,
            };
            let nearest = self.nearest(search, query_vector.as_deref());
            let (hits, build) = {
                let now = Instant::now();
                let mut entries = self.entries();
                // Namespaces under a prefix sort together, from the prefix
                // itself on: only they are read.
                let mut candidates: Vec<&mut Entry> = entries
                    .range_mut((search.prefix.clone(), String::new())..)
                    .take_while(|((namespace, _), _)| namespace.starts_with(&search.prefix))
                    .map(|(_, e)| e)
                    .filter(|e| e.live(now) && matches(&e.item.value, &search.filter))
                    .collect();
                let ranked: Vec<(usize, Option<f64>)> = match &search.query {
                    None => {
                        let mut order: Vec<usize> = (0..candidates.len()).collect();
                        order.sort_by(|a, b| {
                            let (a, b) = (&candidates[*a].item, &candidates[*b].item);
                            b.updated_ms
                                .cmp(&a.updated_ms)
                                .then_with(|| a.key.cmp(&b.key))
                        });
                        order.into_iter().map(|i| (i, None)).collect()
                    }
                    Some(query) => {
                        let keyword = || {
                            let texts: Vec<&str> =
                                candidates.iter().map(|e| e.text.as_str()).collect();
                            let scores = bm25(query, &texts);
                            let mut order: Vec<usize> =
                                (0..scores.len()).filter(|i| scores[*i] > 0.0).collect();
                            order.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
                            (order, scores)
                        };
                        let vector = || {
                            let scores: Vec<f64> = candidates
                                .iter()
                                .map(|e| match (&e.vector, &query_vector) {
                                    (Some(v), Some(q)) => match nearest.get(&e.item.namespace) {
                                        // Indexed: the index's nearest only.
                                        Some(found) => found
                                            .get(e.item.key.as_str())
                                            .copied()
                                            .unwrap_or(f64::NEG_INFINITY),
                                        None => cosine(v, q),
                                    },
                                    _ => f64::NEG_INFINITY,
                                })
                                .collect();
                            let mut order: Vec<usize> = (0..scores.len())
                                .filter(|i| scores[*i].is_finite())
                                .collect();
                            order.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
                            (order, scores)
                        };
                        match search.mode {
                            SearchMode::Keyword => {
                                let (order, scores) = keyword();
                                order.into_iter().map(|i| (i, Some(scores[i]))).collect()
                            }
                            SearchMode::Vector => {
                                let (order, scores) = vector();
                                order.into_iter().map(|i| (i, Some(scores[i]))).collect()
                            }
                            SearchMode::Hybrid => {
                                let scored =
                                    |(order, scores): (Vec<usize>, Vec<f64>)| -> Vec<(usize, f64)> {
                                        order.into_iter().map(|i| (i, scores[i])).collect()
                                    };
                                fuse(&scored(keyword()), &scored(vector()))
                            }
                            .into_iter()
                            .map(|f| (f.index, Some(f.score)))
                            .collect(),
                        }
                    }
                };
                let mut hits = Vec::new();
                for (i, score) in ranked.into_iter().skip(search.offset).take(search.limit) {
                    let entry = &mut candidates[i];
                    // A memory found is a memory read: its time to live starts again.
                    entry.expires = entry.ttl.map(|t| now + t);
                    hits.push(Item {
                        score,
                        ..entry.item.clone()
                    });
                }
                let build = match query_vector.is_some() && search.filter.is_empty() {
                    true => self.claim_indexes(&candidates, &nearest),
                    false => Vec::new(),
                };
                (hits, build)
            };
            self.build_indexes(build).await;
            Ok(hits)
        })
    }

    fn list_namespaces<'a>(
        &'a self,
        prefix: &'a [String],
        limit: usize,
        offset: usize,
    ) -> BoxFuture<'a, Result<Vec<Namespace>, MemoryError>> {
        let now = Instant::now();
        let found: BTreeSet<Namespace> = self
            .entries()
            .values()
            .filter(|e| e.live(now) && e.item.namespace.starts_with(prefix))
            .map(|e| e.item.namespace.clone())
            .collect();
        let page = found.into_iter().skip(offset).take(limit).collect();
        Box::pin(std::future::ready(Ok(page)))
    }

    fn sweep(&self) -> BoxFuture<'_, Result<usize, MemoryError>> {
        let now = Instant::now();
        let mut entries = self.entries();
        let before = entries.len();
        entries.retain(|_, e| e.live(now));
        let swept = before - entries.len();
        Box::pin(std::future::ready(Ok(swept)))
    }
}
