//! The conformance suite every [`CacheStore`] passes.
//!
//! A backend runs it from a test, giving a function that opens the cache
//! (again) on the same data:
//!
//! ```
//! use std::sync::Arc;
//! use statewise::layer::{cache_conformance, MemoryCache};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cache = Arc::new(MemoryCache::new(1000));
//! cache_conformance::check(move || Arc::clone(&cache)).await.unwrap();
//! # });
//! ```
//!
//! It covers a miss, a round trip of every kind of chunk, replacing, keys
//! that share a prefix, a large reply, concurrent writers and reopening.
//! Keys carry a random prefix, so the suite can run many times against one
//! database.

use std::sync::Arc;

use super::CacheStore;
use crate::backend::{BackendError, ConformanceFailure};
use crate::env::Usage;
use crate::model::{Chunk, FinishReason, ToolCallDelta};

fn fail(check: &'static str, detail: impl Into<String>) -> ConformanceFailure {
    ConformanceFailure {
        check,
        detail: detail.into(),
    }
}

fn backend(check: &'static str) -> impl Fn(BackendError) -> ConformanceFailure {
    move |e| fail(check, format!("cache error: {e}"))
}

/// A reply with every kind of chunk, marked by `n`.
fn reply(n: usize) -> Vec<Chunk> {
    vec![
        Chunk::Reasoning(format!("thinking {n} \u{1F914}")),
        Chunk::Text(format!("part one of {n}, \"quoted\"\n")),
        Chunk::Text(String::new()),
        Chunk::ToolCall(ToolCallDelta {
            index: 0,
            id: Some(format!("call_{n}")),
            name: Some("calculator".into()),
            arguments: "{\"expression\":".into(),
        }),
        Chunk::ToolCall(ToolCallDelta {
            index: 0,
            id: None,
            name: None,
            arguments: format!("\"{n}*2\"}}"),
        }),
        Chunk::Usage(Usage {
            prompt_tokens: 100 + n as u64,
            completion_tokens: 7,
            ..Usage::default()
        }),
        Chunk::Finish(FinishReason::Other(format!("reason {n}"))),
    ]
}

/// Runs every check against the cache `open` returns. `open` is called
/// again to check that replies outlive a closed cache.
pub async fn check<C, F>(open: F) -> Result<(), ConformanceFailure>
where
    C: CacheStore + 'static,
    F: Fn() -> C,
{
    let prefix = format!("conf-{:08x}", fastrand::u32(..));
    let key = |name: &str| format!("{prefix}-{name}");
    let cache = Arc::new(open());

    // a miss
    if cache
        .get(&key("none"))
        .await
        .map_err(backend("miss"))?
        .is_some()
    {
        return Err(fail("miss", "a key never put was found"));
    }

    // round trip
    cache
        .put(&key("a"), &reply(1))
        .await
        .map_err(backend("put"))?;
    let got = cache.get(&key("a")).await.map_err(backend("get"))?;
    if got.as_deref() != Some(&reply(1)[..]) {
        return Err(fail("round trip", format!("read back {got:?}")));
    }

    // replace
    cache
        .put(&key("a"), &reply(2))
        .await
        .map_err(backend("replace"))?;
    let got = cache.get(&key("a")).await.map_err(backend("replace"))?;
    if got.as_deref() != Some(&reply(2)[..]) {
        return Err(fail("replace", format!("a second put read back {got:?}")));
    }

    // keys sharing a prefix stay apart; an empty reply is a hit, not a miss
    cache.put(&key("a2"), &[]).await.map_err(backend("keys"))?;
    let short = cache.get(&key("a")).await.map_err(backend("keys"))?;
    let long = cache.get(&key("a2")).await.map_err(backend("keys"))?;
    if short.as_deref() != Some(&reply(2)[..]) || long.as_deref() != Some(&[][..]) {
        return Err(fail("keys", format!("`a` reads {short:?}, `a2` {long:?}")));
    }

    // a large reply: 2,000 chunks, about 2 MB
    let large: Vec<Chunk> = (0..2000)
        .map(|i| Chunk::Text(format!("{i:04}{}", "x".repeat(1000))))
        .collect();
    cache
        .put(&key("large"), &large)
        .await
        .map_err(backend("large"))?;
    let got = cache.get(&key("large")).await.map_err(backend("large"))?;
    if got.as_ref() != Some(&large) {
        return Err(fail(
            "large",
            format!(
                "a reply of {} chunks read back as {:?} chunks",
                large.len(),
                got.map(|g| g.len())
            ),
        ));
    }

    // concurrent writers: sixteen keys, and two writers racing on one key
    let writers = (0..18).map(|w| {
        let cache = Arc::clone(&cache);
        let k = key(&format!("w{}", w.min(16)));
        tokio::spawn(async move { cache.put(&k, &reply(w)).await })
    });
    for w in futures::future::join_all(writers).await {
        w.map_err(|e| fail("concurrent writers", format!("writer panicked: {e}")))?
            .map_err(backend("concurrent writers"))?;
    }
    for w in 0..16 {
        let got = cache
            .get(&key(&format!("w{w}")))
            .await
            .map_err(backend("concurrent writers"))?;
        if got.as_deref() != Some(&reply(w)[..]) {
            return Err(fail("concurrent writers", format!("w{w} reads {got:?}")));
        }
    }
    let raced = cache
        .get(&key("w16"))
        .await
        .map_err(backend("concurrent writers"))?;
    if raced != Some(reply(16)) && raced != Some(reply(17)) {
        return Err(fail(
            "concurrent writers",
            format!("two writers of one key left {raced:?}, neither's reply"),
        ));
    }

    // reopen after close
    drop(cache);
    let cache = open();
    let got = cache.get(&key("a")).await.map_err(backend("reopen"))?;
    if got.as_deref() != Some(&reply(2)[..]) {
        return Err(fail(
            "reopen",
            format!("after reopening, `a` reads {got:?}"),
        ));
    }
    Ok(())
}
