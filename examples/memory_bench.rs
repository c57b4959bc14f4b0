//! Memory store figures: insert and search latency at a given size, per
//! backend, with a deterministic 384-dimension embedder (MiniLM's size),
//! so the figures are the stores' own, not a model's.
//!
//!     cargo run --release --example memory_bench -- 10000 100000
//!
//! For each size and backend it prints the time to insert the memories (in
//! batches of 1,000), and the median and 95th-percentile latency of 50
//! searches in each mode under one namespace prefix.

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
    let insert = started.elapsed();
    print!(
        "{name:>8} {size:>7}  insert {:>8.1} ms ({:>6.0}/s)",
        insert.as_secs_f64() * 1e3,
        size as f64 / insert.as_secs_f64()
    );
    for mode in [SearchMode::Keyword, SearchMode::Vector, SearchMode::Hybrid] {
        let mut times = Vec::new();
        for q in 0..50u64 {
            let search = Search::under(["users", "u3"])
                .query(sentence(1_000_000 + q))
                .mode(mode)
                .page(10, 0);
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
    println!();
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
        for (name, store) in [("memory", &memory as &dyn MemoryStore), ("sqlite", &sqlite)] {
            if let Err(e) = measure(name, store, size).await {
                eprintln!("memory_bench: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
        std::fs::remove_dir_all(dir).ok();
    }
    std::process::ExitCode::SUCCESS
}
