//! The conformance suite every [`Store`] passes.
//!
//! A backend runs it from a test, giving a function that opens the store
//! (again) on the same data:
//!
//! ```
//! use statewise::store::{conformance, MemoryStore};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let store = MemoryStore::new();
//! conformance::check(move || store.clone()).await.unwrap();
//! # });
//! ```
//!
//! It covers put, get, list, runs, rerun, delete, concurrent writers and
//! reopening. Run ids carry a random prefix, so the suite can run many times
//! against one database.

use std::sync::Arc;

use super::{Checkpoint, Store, StoreError};
use crate::env::Env;
use crate::state::Next;

pub use crate::backend::ConformanceFailure;

fn fail(check: &'static str, detail: impl Into<String>) -> ConformanceFailure {
    ConformanceFailure {
        check,
        detail: detail.into(),
    }
}

fn backend(check: &'static str) -> impl Fn(StoreError) -> ConformanceFailure {
    move |e| fail(check, format!("store error: {e}"))
}

fn checkpoint(run_id: &str, step: u32) -> Checkpoint {
    let mut env = Env::from_user(format!("question of {run_id}"));
    env.step = step;
    env.scratch.set("step", &step).ok();
    if step > 0 {
        env = env.with_assistant(format!("reply {step} \u{1F600} \"quoted\""));
    }
    Checkpoint {
        run_id: run_id.to_owned(),
        step,
        state: (step > 0).then(|| format!("state{step}")),
        next: if step >= 3 {
            Next::End
        } else {
            Next::to(format!("state{}", step + 1))
        },
        path: (1..=step).map(|s| format!("state{s}")).collect(),
        env,
        parent: None,
        created_ms: 1_700_000_000_000 + u64::from(step),
        failed: None,
    }
}

/// Runs every check against the store `open` returns. `open` is called
/// again to check that data outlives a closed store.
pub async fn check<S, F>(open: F) -> Result<(), ConformanceFailure>
where
    S: Store + 'static,
    F: Fn() -> S,
{
    let prefix = format!("conf-{:08x}", fastrand::u32(..));
    let run = |name: &str| format!("{prefix}-{name}");
    let store = Arc::new(open());

    // put / get
    let a = run("a");
    for step in 0..=3 {
        store
            .put(&checkpoint(&a, step))
            .await
            .map_err(backend("put"))?;
    }
    let got = store.get(&a, Some(1)).await.map_err(backend("get"))?;
    if got.as_ref() != Some(&checkpoint(&a, 1)) {
        return Err(fail("get", format!("step 1 read back as {got:?}")));
    }
    let latest = store.get(&a, None).await.map_err(backend("get"))?;
    if latest.as_ref().map(|c| c.step) != Some(3) {
        return Err(fail("get", format!("latest is {latest:?}, not step 3")));
    }
    if store
        .get(&a, Some(9))
        .await
        .map_err(backend("get"))?
        .is_some()
    {
        return Err(fail("get", "a missing step was found"));
    }
    if store
        .get(&run("none"), None)
        .await
        .map_err(backend("get"))?
        .is_some()
    {
        return Err(fail("get", "a missing run was found"));
    }

    // put replaces the same step
    let mut replaced = checkpoint(&a, 2);
    replaced.env.answer = Some("replaced".into());
    store.put(&replaced).await.map_err(backend("put"))?;
    let got = store.get(&a, Some(2)).await.map_err(backend("put"))?;
    if got.as_ref() != Some(&replaced) {
        return Err(fail("put", "a second put of a step did not replace it"));
    }

    // list / runs
    let metas = store.list(&a).await.map_err(backend("list"))?;
    let steps: Vec<u32> = metas.iter().map(|m| m.step).collect();
    if steps != [0, 1, 2, 3] {
        return Err(fail("list", format!("steps {steps:?}, not [0, 1, 2, 3]")));
    }
    if metas[3].next != Next::End || metas[1].state.as_deref() != Some("state1") {
        return Err(fail("list", format!("metadata wrong: {metas:?}")));
    }
    if !store
        .list(&run("none"))
        .await
        .map_err(backend("list"))?
        .is_empty()
    {
        return Err(fail("list", "a missing run has checkpoints"));
    }
    let runs = store.runs().await.map_err(backend("runs"))?;
    if !runs.contains(&a) || !runs.windows(2).all(|w| w[0] <= w[1]) {
        return Err(fail("runs", format!("{a} missing or unsorted in {runs:?}")));
    }

    // rerun
    let b = run("b");
    let first = store.rerun(&a, 1, &b).await.map_err(backend("rerun"))?;
    let origin = checkpoint(&a, 1);
    let got = store.get(&b, None).await.map_err(backend("rerun"))?;
    match &got {
        Some(c)
            if c.step == 1
                && c.env == origin.env
                && c.next == origin.next
                && c.path == origin.path
                && c.parent.as_ref().map(|p| (p.run_id.as_str(), p.step)) == Some((&a, 1))
                && *c == first => {}
        other => return Err(fail("rerun", format!("the rerun reads {other:?}"))),
    }
    if store.list(&a).await.map_err(backend("rerun"))?.len() != 4 {
        return Err(fail("rerun", "a rerun changed the original run"));
    }
    match store.rerun(&a, 1, &b).await {
        Err(StoreError::Exists { .. }) => {}
        other => {
            return Err(fail(
                "rerun",
                format!("a rerun onto a taken id gave {other:?}"),
            ))
        }
    }
    match store.rerun(&a, 7, &run("c")).await {
        Err(StoreError::NotFound { .. }) => {}
        other => {
            return Err(fail(
                "rerun",
                format!("a rerun from a missing step gave {other:?}"),
            ))
        }
    }

    // concurrent writers: eight runs at once, two writers sharing a run
    let writers = (0..8).map(|w| {
        let store = Arc::clone(&store);
        let id = run(&format!("w{}", w % 6));
        tokio::spawn(async move {
            // Writers 6 and 7 share runs w0 and w1 with writers 0 and 1,
            // on odd steps where those write even ones.
            let offset = u32::from(w >= 6);
            for i in 0..20 {
                store.put(&checkpoint(&id, i * 2 + offset)).await?;
            }
            Ok::<_, StoreError>(())
        })
    });
    for w in futures::future::join_all(writers).await {
        w.map_err(|e| fail("concurrent writers", format!("writer panicked: {e}")))?
            .map_err(backend("concurrent writers"))?;
    }
    for w in 0..6 {
        let id = run(&format!("w{w}"));
        let n = store
            .list(&id)
            .await
            .map_err(backend("concurrent writers"))?
            .len();
        let want = if w < 2 { 40 } else { 20 };
        if n != want {
            return Err(fail(
                "concurrent writers",
                format!("{id} has {n} checkpoints, not {want}"),
            ));
        }
    }

    // delete
    if !store.delete(&b).await.map_err(backend("delete"))? {
        return Err(fail("delete", "deleting a run reported nothing removed"));
    }
    if !store.list(&b).await.map_err(backend("delete"))?.is_empty()
        || store.delete(&b).await.map_err(backend("delete"))?
    {
        return Err(fail("delete", "a deleted run still has checkpoints"));
    }

    // reopen after close
    drop(store);
    let store = open();
    let got = store.get(&a, Some(2)).await.map_err(backend("reopen"))?;
    if got.as_ref() != Some(&replaced) {
        return Err(fail(
            "reopen",
            format!("after reopening, step 2 reads {got:?}"),
        ));
    }
    let n = store
        .list(&run("w0"))
        .await
        .map_err(backend("reopen"))?
        .len();
    if n != 40 {
        return Err(fail(
            "reopen",
            format!("after reopening, w0 has {n} checkpoints"),
        ));
    }
    Ok(())
}
