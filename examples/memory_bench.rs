//! Memory store figures: insert and search latency at a given size, per
//! backend, with a deterministic 384-dimension embedder (MiniLM's size),
//! so the figures are the stores' own, not a model's.
//!
//! ```sh
//! cargo run --release --example memory_bench -- 10000 100000
//! ```
//!
//! For each size and backend it prints the time to insert the memories (in
//! batches of 1,000), and the median and 95th-percentile latency of 50
//! searches in each mode under one namespace prefix. Backends: the
//! in-memory store searched exactly (`memory`), the same with its HNSW
//! index (`hnsw`, feature `memory-ann`; it also prints the index's build
//! time and its recall@10 against exact search, ties counted), SQLite, and
//! PostgreSQL with pgvector when `PGVECTOR_DATABASE_URL` names one
//! (feature `postgres`).
//!
//! With feature `memory-local` it first prints MiniLM's embedding
//! throughput in process (sentences per second, batches of 32), and
//! recall@1 and @3 of keyword, vector and hybrid search with MiniLM on the
//! 250 pairs of `tests/data/retrieval_set.json`.

use std::time::{Duration, Instant};

use serde_json::json;
use statewise::memory::{
    HashEmbedder, InMemoryStore, MemoryStore, PutOptions, Search, SearchMode, SqliteMemory,
};

const WORDS: [&str; 40] = [
    "alice", "bob", "tea", "coffee", "train", "paris", "lisbon", "cat", "dog", "garden", "river",
    "music", "piano", "football", "doctor", "nurse", "book", "film", "winter", "summer", "bread",
    "cheese", "bicycle", "mountain", "ocean", "friend", "sister", "brother", "office", "meeting",
    "project", "deadline", "holiday", "birthday", "recipe", "soup", "phone", "laptop", "window",
    "market",
];

/// Stores `size` memories for ten users, in batches of 1,000.
async fn fill(store: &dyn MemoryStore, size: usize) -> Result<(), String> {
    for start in (0..size).step_by(1_000) {
        let batch = (start..(start + 1_000).min(size))
            .map(|i| {
                // Ten users, so a search covers a tenth of the memories.
                let ns = vec!["users".to_owned(), format!("u{}", i % 10)];
                (ns, format!("m{i}"), json!({"text": sentence(i as u64)}))
            })
            .collect();
        store
            .put_many(batch, PutOptions::default())
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The search the figures time: one user's memories, ten hits.
fn query(q: u64, mode: SearchMode) -> Search {
    Search::under(["users", "u3"])
        .query(sentence(1_000_000 + q))
        .mode(mode)
        .page(10, 0)
}

/// The in-memory store with its HNSW index against exact search: the
/// index's build time, and recall@10 over 50 queries, a hit counting when
/// it is as near as the exact tenth.
#[cfg(feature = "memory-ann")]
async fn approximate(size: usize, exact: &InMemoryStore) -> Result<(), String> {
    let store = InMemoryStore::new(HashEmbedder::new(384)).approximate_above(Some(1_000));
    fill(&store, size).await?;
    let at = Instant::now();
    // The first vector search builds the index of the namespace it covers.
    store
        .search(&query(0, SearchMode::Vector))
        .await
        .map_err(|e| e.to_string())?;
    let build = at.elapsed();
    let mut found = 0;
    for q in 0..50 {
        let approx = store.search(&query(q, SearchMode::Vector)).await;
        let truth = exact.search(&query(q, SearchMode::Vector)).await;
        let (approx, truth) = (
            approx.map_err(|e| e.to_string())?,
            truth.map_err(|e| e.to_string())?,
        );
        let tenth = truth.last().and_then(|h| h.score).unwrap_or(f64::INFINITY);
        found += approx
            .iter()
            .filter(|h| h.score.unwrap_or(f64::NEG_INFINITY) >= tenth - 1e-6)
            .count();
    }
    println!(
        "    hnsw {size:>7}  index build {:>8.1} ms for {} memories, recall@10 {:.3}",
        build.as_secs_f64() * 1e3,
        size / 10,
        found as f64 / 500.0
    );
    measure_searches("hnsw", &store).await?;
    println!();
    Ok(())
}

/// MiniLM's throughput in process on this machine's threads.
#[cfg(feature = "memory-local")]
async fn embedding_throughput() -> Result<(), String> {
    use statewise::memory::{Embedder, MiniLm};
    let model = MiniLm::load_default().map_err(|e| e.to_string())?;
    let texts: Vec<String> = (0..512).map(sentence).collect();
    // Warm up once, then time.
    model.embed(&texts[..32]).await.map_err(|e| e.to_string())?;
    let at = Instant::now();
    for batch in texts.chunks(32) {
        model.embed(batch).await.map_err(|e| e.to_string())?;
    }
    let took = at.elapsed();
    println!(
        "MiniLM in process: {:.0} sentences/s ({} sentences of 12 words, batches of 32, {} threads)",
        texts.len() as f64 / took.as_secs_f64(),
        texts.len(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    Ok(())
}

/// Recall@1 and @3 per search mode with MiniLM on the retrieval set.
#[cfg(feature = "memory-local")]
async fn retrieval_recall() -> Result<(), String> {
    use statewise::memory::{CachedEmbedder, MiniLm};
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/retrieval_set.json");
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let data: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let pairs = data["pairs"].as_array().cloned().unwrap_or_default();
    let minilm = MiniLm::load_default().map_err(|e| e.to_string())?;
    let store = InMemoryStore::new(CachedEmbedder::new(minilm, 1_000));
    let ns = vec!["people".to_owned()];
    let items = pairs
        .iter()
        .map(|p| {
            (
                ns.clone(),
                p["id"].as_str().unwrap_or_default().to_owned(),
                json!({"text": p["passage"]}),
            )
        })
        .collect();
    store
        .put_many(items, PutOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    for mode in [SearchMode::Keyword, SearchMode::Vector, SearchMode::Hybrid] {
        let (mut at1, mut at3) = (0, 0);
        for pair in &pairs {
            let search = Search::under(ns.clone())
                .query(pair["question"].as_str().unwrap_or_default())
                .mode(mode)
                .page(3, 0);
            let hits = store.search(&search).await.map_err(|e| e.to_string())?;
            let rank = hits.iter().position(|h| pair["id"] == h.key.as_str());
            at1 += usize::from(rank == Some(0));
            at3 += usize::from(rank.is_some());
        }
        println!(
            "retrieval set, {mode:?}: recall@1 {at1}/{n}, recall@3 {at3}/{n}",
            n = pairs.len()
        );
    }
    Ok(())
}

/// A sentence made of words picked by `seed`.
fn sentence(seed: u64) -> String {
    let mut rng = fastrand::Rng::with_seed(seed);
    let words: Vec<&str> = (0..8).map(|_| WORDS[rng.usize(..WORDS.len())]).collect();
    format!("The user said {}.", words.join(" "))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn measure(name: &str, store: &dyn MemoryStore, size: usize) -> Result<(), String> {
    let started = Instant::now();
    fill(store, size).await?;
    let insert = started.elapsed();
    print!(
        "{name:>8} {size:>7}  insert {:>8.1} ms ({:>6.0}/s)",
        insert.as_secs_f64() * 1e3,
        size as f64 / insert.as_secs_f64()
    );
    measure_searches(name, store).await?;
    println!();
    Ok(())
}

/// Prints the p50 and p95 of 50 searches in each mode.
async fn measure_searches(name: &str, store: &dyn MemoryStore) -> Result<(), String> {
    for mode in [SearchMode::Keyword, SearchMode::Vector, SearchMode::Hybrid] {
        let mut times = Vec::new();
        for q in 0..50u64 {
            let search = query(q, mode);
            let at = Instant::now();
            let hits = store.search(&search).await.map_err(|e| e.to_string())?;
            times.push(at.elapsed());
            if hits.is_empty() {
                return Err(format!("{name}: a {mode:?} search found nothing"));
            }
        }
        times.sort();
        print!(
            "  {:?} p50 {:>6.2} p95 {:>6.2} ms",
            mode,
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            percentile(&times, 0.95).as_secs_f64() * 1e3
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10_000]
    } else {
        sizes
    };
    #[cfg(feature = "memory-local")]
    if let Err(e) = async {
        embedding_throughput().await?;
        retrieval_recall().await
    }
    .await
    {
        eprintln!("memory_bench: {e}");
        return std::process::ExitCode::FAILURE;
    }
    for size in sizes {
        let memory = InMemoryStore::new(HashEmbedder::new(384));
        let dir = std::env::temp_dir().join(format!("memory-bench-{}", std::process::id()));
        let sqlite = match SqliteMemory::open(dir.join("memory.db"), HashEmbedder::new(384)) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("memory_bench: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        // Pushed to only with the `postgres` feature.
        #[cfg_attr(not(feature = "postgres"), allow(unused_mut))]
        let mut stores: Vec<(&str, Box<dyn MemoryStore>)> = vec![("sqlite", Box::new(sqlite))];
        #[cfg(feature = "postgres")]
        if let Ok(url) = std::env::var("PGVECTOR_DATABASE_URL") {
            match statewise::memory::PostgresMemory::open(&url, HashEmbedder::new(384)) {
                Ok(pg) => stores.push(("postgres", Box::new(pg))),
                Err(e) => eprintln!("memory_bench: postgres: {e}"),
            }
        }
        let mut result = measure("memory", &memory, size).await;
        #[cfg(feature = "memory-ann")]
        if result.is_ok() {
            result = approximate(size, &memory).await;
        }
        for (name, store) in &stores {
            if result.is_ok() {
                result = measure(name, store.as_ref(), size).await;
            }
        }
        if let Err(e) = result {
            eprintln!("memory_bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
        std::fs::remove_dir_all(dir).ok();
    }
    std::process::ExitCode::SUCCESS
}
