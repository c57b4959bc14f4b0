//! The approximate vector index of [`InMemoryStore`](super::InMemoryStore):
//! one HNSW graph (the `hnsw_rs` crate, cosine) per namespace that holds
//! more memories than a threshold.
//!
//! The graph only adds points: a memory written again gets a new point and
//! its old one goes stale, a deleted memory's point stays. Hits are
//! therefore checked against the current point of their key, and the graph
//! is dropped (searches go exact again until it is rebuilt at the next
//! crossing) once stale points outnumber live ones.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use hnsw_rs::prelude::{DistCosine, Hnsw};

use super::Namespace;

/// Points a graph links to per layer: hnswlib's default, a good balance
/// of recall and memory for 384-dimension text embeddings.
const LINKS: usize = 16;
/// Candidates kept while building: recall@10 above 0.95 with room
/// (`memory_bench`), at half the build time of hnswlib's 200.
const EF_CONSTRUCTION: usize = 100;
/// The least candidates kept while searching.
const EF_SEARCH: usize = 96;

/// One namespace's graph.
pub(crate) struct Graph {
    hnsw: Hnsw<'static, f32, DistCosine>,
    /// Each point's key.
    keys: Vec<String>,
    /// Each key's current point.
    current: HashMap<String, usize>,
}

impl Graph {
    /// A graph of `points` (key and vector), built on all cores.
    pub(crate) fn build(points: Vec<(String, Vec<f32>)>) -> Self {
        let hnsw = Hnsw::new(
            LINKS,
            points.len().max(1),
            16,
            EF_CONSTRUCTION,
            DistCosine {},
        );
        let data: Vec<(&Vec<f32>, usize)> = points
            .iter()
            .enumerate()
            .map(|(id, (_, v))| (v, id))
            .collect();
        hnsw.parallel_insert(&data);
        let keys: Vec<String> = points.into_iter().map(|(key, _)| key).collect();
        let current = keys
            .iter()
            .enumerate()
            .map(|(id, key)| (key.clone(), id))
            .collect();
        Graph {
            hnsw,
            keys,
            current,
        }
    }

    /// Adds `key`'s new vector; its old point, if any, goes stale.
    pub(crate) fn insert(&mut self, key: &str, vector: &[f32]) {
        let id = self.keys.len();
        self.hnsw.insert_slice((vector, id));
        self.keys.push(key.to_owned());
        self.current.insert(key.to_owned(), id);
    }

    /// Forgets `key`: its point goes stale.
    pub(crate) fn remove(&mut self, key: &str) {
        self.current.remove(key);
    }

    /// Keys with a vector in the graph.
    pub(crate) fn live(&self) -> usize {
        self.current.len()
    }

    /// Whether stale points outnumber live ones, so the graph should go.
    pub(crate) fn worn(&self) -> bool {
        self.keys.len() > 2 * self.current.len().max(1)
    }

    /// The `k` nearest current keys to `query`, with their cosine
    /// similarity, best first.
    pub(crate) fn nearest(&self, query: &[f32], k: usize) -> Vec<(String, f64)> {
        // Stale points take places among the nearest: ask for more.
        let stale = self.keys.len() - self.current.len();
        let ask = k + stale.min(k * 4);
        let ef = EF_SEARCH.max(2 * ask);
        self.hnsw
            .search(query, ask, ef)
            .into_iter()
            .filter_map(|n| {
                let key = self.keys.get(n.d_id)?;
                (self.current.get(key) == Some(&n.d_id))
                    .then(|| (key.clone(), 1.0 - f64::from(n.distance)))
            })
            .take(k)
            .collect()
    }
}

/// A namespace's graph, or the writes made while it is being built.
enum Slot {
    Building(Vec<(String, Option<Arc<[f32]>>)>),
    Ready(Graph),
}

/// The graphs of a store's namespaces, and the size from which a
/// namespace gets one. Clones share the graphs.
#[derive(Clone)]
pub(crate) struct Graphs {
    slots: Arc<Mutex<HashMap<Namespace, Slot>>>,
    above: usize,
}

/// What the graphs found for a search: for each namespace they cover,
/// the nearest memories' keys with their similarity.
pub(crate) type Nearest = HashMap<Namespace, HashMap<String, f64>>;

impl Graphs {
    /// Graphs for namespaces of more than `above` memories with vectors.
    pub(crate) fn new(above: usize) -> Self {
        Graphs {
            slots: Arc::default(),
            above,
        }
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<Namespace, Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Brings `namespace`'s graph up to date after `key` was written with
    /// `vector` (`None`: deleted, or nothing to embed).
    pub(crate) fn wrote(&self, namespace: &[String], key: &str, vector: Option<&Arc<[f32]>>) {
        let mut slots = self.slots();
        let Some(slot) = slots.get_mut(namespace) else {
            return;
        };
        match slot {
            Slot::Building(pending) => pending.push((key.to_owned(), vector.cloned())),
            Slot::Ready(graph) => {
                match vector {
                    Some(v) => graph.insert(key, v),
                    None => graph.remove(key),
                }
                if graph.worn() {
                    slots.remove(namespace);
                }
            }
        }
    }

    /// The `k` nearest memories to `query` in each graph under `prefix`.
    pub(crate) fn nearest(&self, prefix: &[String], query: &[f32], k: usize) -> Nearest {
        let slots = self.slots();
        slots
            .iter()
            .filter(|(namespace, _)| namespace.starts_with(prefix))
            .filter_map(|(namespace, slot)| match slot {
                Slot::Ready(graph) => Some((
                    namespace.clone(),
                    graph.nearest(query, k).into_iter().collect(),
                )),
                Slot::Building(_) => None,
            })
            .collect()
    }

    /// Whether a namespace with `count` memories with vectors should get a
    /// graph now; if so, writes to it are kept aside from here on until
    /// [`Graphs::build`] is done. Called with the memories locked, so no
    /// write falls between the count and the snapshot.
    pub(crate) fn claim(&self, namespace: &[String], count: usize) -> bool {
        if count < self.above {
            return false;
        }
        let mut slots = self.slots();
        if slots.contains_key(namespace) {
            return false;
        }
        slots.insert(namespace.to_vec(), Slot::Building(Vec::new()));
        true
    }

    /// Builds `namespace`'s graph from `points` off the async threads,
    /// then applies the writes made meanwhile.
    pub(crate) async fn build(&self, namespace: Namespace, points: Vec<(String, Vec<f32>)>) {
        let graph = match tokio::runtime::Handle::try_current() {
            Ok(handle) => match handle.spawn_blocking(move || Graph::build(points)).await {
                Ok(graph) => graph,
                Err(_) => {
                    // The build panicked: no graph, searches stay exact.
                    self.slots().remove(&namespace);
                    return;
                }
            },
            Err(_) => Graph::build(points),
        };
        let mut slots = self.slots();
        let mut graph = graph;
        if let Some(Slot::Building(pending)) = slots.remove(&namespace) {
            for (key, vector) in pending {
                match vector {
                    Some(v) => graph.insert(&key, &v),
                    None => graph.remove(&key),
                }
            }
        }
        slots.insert(namespace, Slot::Ready(graph));
    }

    /// How many memories each namespace's graph holds (for figures).
    pub(crate) fn sizes(&self) -> Vec<(Namespace, usize)> {
        self.slots()
            .iter()
            .filter_map(|(ns, slot)| match slot {
                Slot::Ready(g) => Some((ns.clone(), g.live())),
                Slot::Building(_) => None,
            })
            .collect()
    }
}
