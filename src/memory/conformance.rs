//! The conformance suite every [`MemoryStore`] passes.
//!
//! A backend runs it from a test, giving a function that opens the store
//! on the same data with a given embedder:
//!
//! ```
//! use statewise::memory::{conformance, HashEmbedder, InMemoryStore};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let store = InMemoryStore::new(HashEmbedder::new(64));
//! conformance::check(move |embedder| store.with_embedder(embedder)).await.unwrap();
//! # });
//! ```
//!
//! It covers put, get, delete, search (keyword, vector, hybrid, filters,
//! pages), namespaces and their isolation, time to live and sweeping,
//! batches, bad input (empty namespaces and keys, a 10 MB value, unicode),
//! vectors of another dimension, and concurrent writers. Namespaces carry
//! a random root, so the suite can run many times against one database.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::{
    Embedder, HashEmbedder, MemoryError, MemoryStore, Namespace, PutOptions, Search, SearchMode,
};

pub use crate::backend::ConformanceFailure;

fn fail(check: &'static str, detail: impl Into<String>) -> ConformanceFailure {
    ConformanceFailure {
        check,
        detail: detail.into(),
    }
}

fn backend(check: &'static str) -> impl Fn(MemoryError) -> ConformanceFailure {
    move |e| fail(check, format!("store error: {e}"))
}

fn ensure(
    check: &'static str,
    ok: bool,
    detail: impl FnOnce() -> String,
) -> Result<(), ConformanceFailure> {
    match ok {
        true => Ok(()),
        false => Err(fail(check, detail())),
    }
}

/// Runs every check against the store `open` opens (each call on the same
/// data) with the embedder given.
pub async fn check<S, F>(open: F) -> Result<(), ConformanceFailure>
where
    S: MemoryStore,
    F: Fn(Arc<dyn Embedder>) -> S,
{
    let root = format!("conf-{:016x}", fastrand::u64(..));
    let ns = |parts: &[&str]| -> Namespace {
        std::iter::once(root.clone())
            .chain(parts.iter().map(|p| p.to_string()))
            .collect()
    };
    let embedder: Arc<dyn Embedder> = Arc::new(HashEmbedder::new(64));
    let store = open(Arc::clone(&embedder));
    let none = PutOptions::default();

    // Put, get, replace.
    let alice = ns(&["users", "alice"]);
    store
        .put(
            &alice,
            "tea",
            json!({"text": "Alice drinks green tea every morning", "kind": "habit"}),
            none.clone(),
        )
        .await
        .map_err(backend("put"))?;
    let got = store.get(&alice, "tea").await.map_err(backend("get"))?;
    let first = got.ok_or_else(|| fail("get", "a stored memory was not found"))?;
    ensure(
        "get",
        first.value["kind"] == "habit" && first.namespace == alice,
        || format!("{first:?}"),
    )?;
    tokio::time::sleep(Duration::from_millis(5)).await;
    store
        .put(
            &alice,
            "tea",
            json!({"text": "Alice drinks green tea every morning", "kind": "routine"}),
            none.clone(),
        )
        .await
        .map_err(backend("replace"))?;
    let again = store
        .get(&alice, "tea")
        .await
        .map_err(backend("replace"))?
        .unwrap_or(first.clone());
    ensure("replace", again.value["kind"] == "routine", || {
        format!("{again:?}")
    })?;
    ensure(
        "replace",
        again.created_ms == first.created_ms && again.updated_ms >= first.updated_ms,
        || format!("creation time not kept: {first:?} then {again:?}"),
    )?;

    // Several memories, in two users' namespaces, in one batch.
    let bob = ns(&["users", "bob"]);
    let facts = [
        (&alice, "cat", "Alice has a cat named Miso", "pet"),
        (
            &alice,
            "city",
            "Alice lives in Lisbon near the river",
            "home",
        ),
        (
            &alice,
            "job",
            "Alice works as a nurse at the city hospital",
            "work",
        ),
        (&bob, "tea", "Bob hates tea and drinks coffee", "habit"),
        (&bob, "city", "Bob lives in Oslo", "home"),
    ];
    let batch: Vec<(Namespace, String, Value)> = facts
        .iter()
        .map(|(n, k, t, kind)| {
            (
                (*n).clone(),
                k.to_string(),
                json!({"text": t, "kind": kind}),
            )
        })
        .collect();
    store
        .put_many(batch, none.clone())
        .await
        .map_err(backend("put_many"))?;

    // Search: each mode finds the memory the query is about, only in the
    // namespace asked.
    for mode in [SearchMode::Keyword, SearchMode::Vector, SearchMode::Hybrid] {
        let hits = store
            .search(
                &Search::under(alice.clone())
                    .query("Alice lives where?")
                    .mode(mode),
            )
            .await
            .map_err(backend("search"))?;
        ensure(
            "search",
            hits.first().is_some_and(|h| h.key == "city"),
            || format!("{mode:?}: {hits:?}"),
        )?;
        ensure(
            "search isolation",
            hits.iter().all(|h| h.namespace == alice),
            || format!("{mode:?}: {hits:?}"),
        )?;
        ensure(
            "search scores",
            hits.windows(2).all(|w| w[0].score >= w[1].score),
            || format!("{hits:?}"),
        )?;
    }
    let bobs = store
        .search(&Search::under(bob.clone()).query("tea"))
        .await
        .map_err(backend("search isolation"))?;
    ensure(
        "search isolation",
        !bobs.is_empty() && bobs.iter().all(|h| h.namespace == bob),
        || format!("{bobs:?}"),
    )?;

    // Filters and pages; no query lists newest first.
    let homes = store
        .search(&Search::under(ns(&["users"])).filter("kind", json!("home")))
        .await
        .map_err(backend("filter"))?;
    let mut keys: Vec<(String, String)> = homes
        .iter()
        .map(|h| (h.namespace[2].clone(), h.key.clone()))
        .collect();
    keys.sort();
    ensure(
        "filter",
        keys == [
            ("alice".into(), "city".into()),
            ("bob".into(), "city".into()),
        ],
        || format!("{keys:?}"),
    )?;
    let all = store.list(&alice, 10, 0).await.map_err(backend("list"))?;
    let page = store
        .list(&alice, 2, 1)
        .await
        .map_err(backend("list page"))?;
    ensure("list", all.len() == 4, || {
        format!("{} memories: {all:?}", all.len())
    })?;
    ensure(
        "list page",
        page.len() == 2 && page[0].key == all[1].key && page[1].key == all[2].key,
        || format!("{page:?} of {all:?}"),
    )?;
    ensure(
        "list order",
        all.windows(2).all(|w| w[0].updated_ms >= w[1].updated_ms),
        || format!("{all:?}"),
    )?;

    // Namespaces under a prefix, sorted, paged.
    store
        .put(
            &ns(&["users", "alice", "notes"]),
            "n1",
            json!({"text": "buy milk"}),
            none.clone(),
        )
        .await
        .map_err(backend("namespaces"))?;
    let spaces = store
        .list_namespaces(&ns(&["users"]), 10, 0)
        .await
        .map_err(backend("namespaces"))?;
    ensure(
        "namespaces",
        spaces == [alice.clone(), ns(&["users", "alice", "notes"]), bob.clone()],
        || format!("{spaces:?}"),
    )?;
    let second = store
        .list_namespaces(&ns(&["users"]), 1, 1)
        .await
        .map_err(backend("namespaces"))?;
    ensure(
        "namespaces page",
        second == [ns(&["users", "alice", "notes"])],
        || format!("{second:?}"),
    )?;

    // Delete.
    ensure(
        "delete",
        store.delete(&bob, "tea").await.map_err(backend("delete"))?,
        || "nothing deleted".into(),
    )?;
    ensure(
        "delete",
        store
            .get(&bob, "tea")
            .await
            .map_err(backend("delete"))?
            .is_none(),
        || "still there".into(),
    )?;
    ensure(
        "delete",
        !store.delete(&bob, "tea").await.map_err(backend("delete"))?,
        || "deleted twice".into(),
    )?;

    // Time to live: refreshed by a read, swept once past.
    let short = ns(&["ttl"]);
    // Margins of 400 ms and more, so a slow machine's late wake-ups do
    // not change the outcome.
    let ttl = PutOptions::default().ttl(Duration::from_millis(1_000));
    store
        .put(&short, "a", json!({"text": "short lived"}), ttl.clone())
        .await
        .map_err(backend("ttl"))?;
    store
        .put(&short, "b", json!({"text": "also short lived"}), ttl)
        .await
        .map_err(backend("ttl"))?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    store
        .get(&short, "a")
        .await
        .map_err(backend("ttl refresh"))?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let a = store
        .get(&short, "a")
        .await
        .map_err(backend("ttl refresh"))?;
    let b = store.get(&short, "b").await.map_err(backend("ttl"))?;
    ensure("ttl refresh", a.is_some(), || {
        "a memory read was not kept".into()
    })?;
    ensure("ttl", b.is_none(), || {
        "a memory past its time to live was returned".into()
    })?;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let swept = store.sweep().await.map_err(backend("sweep"))?;
    ensure("sweep", swept >= 1, || format!("swept {swept}"))?;

    // Bad input: typed errors, never a panic.
    let bad = store.put(&[], "k", json!({}), none.clone()).await;
    ensure(
        "empty namespace",
        matches!(bad, Err(MemoryError::Namespace { .. })),
        || format!("{bad:?}"),
    )?;
    let bad = store
        .put(&[root.clone(), String::new()], "k", json!({}), none.clone())
        .await;
    ensure(
        "empty segment",
        matches!(bad, Err(MemoryError::Namespace { .. })),
        || format!("{bad:?}"),
    )?;
    let bad = store.put(&alice, "", json!({}), none.clone()).await;
    ensure(
        "empty key",
        matches!(bad, Err(MemoryError::EmptyKey)),
        || format!("{bad:?}"),
    )?;
    let uni = ns(&["ユーザー", "zoë"]);
    store
        .put(
            &uni,
            "🔑 clé",
            json!({"text": "naïve café ☕"}),
            none.clone(),
        )
        .await
        .map_err(backend("unicode"))?;
    let back = store
        .get(&uni, "🔑 clé")
        .await
        .map_err(backend("unicode"))?;
    ensure(
        "unicode",
        back.is_some_and(|b| b.value["text"] == "naïve café ☕"),
        || "not read back".into(),
    )?;
    let big = json!({"text": "x".repeat(10 << 20)});
    match store
        .put(
            &alice,
            "big",
            big,
            PutOptions::default().index(Vec::<String>::new()),
        )
        .await
    {
        Ok(()) => {
            let back = store
                .get(&alice, "big")
                .await
                .map_err(backend("10 MB value"))?;
            let len = back.and_then(|b| b.value["text"].as_str().map(str::len));
            ensure("10 MB value", len == Some(10 << 20), || {
                format!("read back {len:?} bytes")
            })?;
        }
        Err(MemoryError::TooLarge { .. }) => {}
        Err(e) => return Err(fail("10 MB value", format!("not a TooLarge error: {e}"))),
    }

    // Vectors of another dimension: the store refuses, never mixes.
    let other = open(Arc::new(HashEmbedder::new(32)));
    let mixed = other
        .put(&alice, "x", json!({"text": "another model"}), none.clone())
        .await;
    ensure(
        "dimension",
        matches!(
            mixed,
            Err(MemoryError::Dimension {
                expected: 64,
                got: 32,
                ..
            })
        ),
        || format!("{mixed:?}"),
    )?;
    let searched = other
        .search(&Search::under(alice.clone()).query("tea"))
        .await;
    ensure(
        "dimension",
        matches!(searched, Err(MemoryError::Dimension { .. })),
        || format!("{searched:?}"),
    )?;

    // Concurrent writers: none is lost.
    let crowd = ns(&["crowd"]);
    let writers = (0..8).map(|w| {
        let (store, crowd) = (&store, &crowd);
        async move {
            for i in 0..25 {
                let value = json!({"text": format!("writer {w} note {i}")});
                store
                    .put(crowd, &format!("{w}-{i}"), value, PutOptions::default())
                    .await?;
            }
            Ok::<(), MemoryError>(())
        }
    });
    for written in futures::future::join_all(writers).await {
        written.map_err(backend("concurrent writers"))?;
    }
    let listed = store
        .list(&crowd, 500, 0)
        .await
        .map_err(backend("concurrent writers"))?;
    ensure("concurrent writers", listed.len() == 200, || {
        format!("{} of 200", listed.len())
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::InMemoryStore;
    use super::*;

    #[tokio::test]
    async fn the_in_memory_store_conforms() {
        let store = InMemoryStore::new(HashEmbedder::new(64));
        check(move |embedder| store.with_embedder(embedder))
            .await
            .unwrap();
    }

    /// Every namespace of two memories or more searched by meaning through
    /// its approximate index.
    #[cfg(feature = "memory-ann")]
    #[tokio::test]
    async fn the_in_memory_store_with_its_index_conforms() {
        let store = InMemoryStore::new(HashEmbedder::new(64)).approximate_above(Some(2));
        check(move |embedder| store.with_embedder(embedder))
            .await
            .unwrap();
    }
}
