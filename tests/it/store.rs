//! Checkpoint stores: the conformance suite for each store, and runs that
//! save, resume (in process and after SIGKILL) and rerun.

use crate::support;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::support::temp_dir;
use futures::future::BoxFuture;
use futures::StreamExt;
use serde_json::json;
use statewise::model::{ChatRequest, FnModel, Reply};
use statewise::store::{
    conformance, Checkpoint, CheckpointMeta, MemoryStore, SqliteStore, Store, StoreError,
};
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::{Env, EventKind, Machine, MachineError, Next};
use statewise_states::tools::Calculator;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_conforms() {
    let store = MemoryStore::new();
    conformance::check(move || store.clone()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_conforms() {
    let path = temp_dir("sqlite-conformance").join("checkpoints.sqlite");
    conformance::check(|| SqliteStore::open(&path).unwrap())
        .await
        .unwrap();
    // Twice on one file: the suite's runs do not collide.
    conformance::check(|| SqliteStore::open(&path).unwrap())
        .await
        .unwrap();
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_conforms() {
    let redis = crate::services::Redis::shared_or_own();
    let prefix = format!("conf{:08x}", fastrand::u32(..));
    let open = || {
        statewise::store::RedisStore::open(&redis.url)
            .unwrap()
            .with_prefix(&prefix)
    };
    conformance::check(open).await.unwrap();
    // Twice on one database: the suite's runs do not collide.
    conformance::check(open).await.unwrap();
}

/// The connection comes back by itself after the server restarts, and
/// what was written before is still there (append-only file).
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_reconnects_after_a_restart() {
    let mut redis = crate::services::Redis::own(true);
    let store = statewise::store::RedisStore::open(&redis.url).unwrap();
    let machine = agent().with_store(store.clone());
    let out = machine
        .run_as("before", Env::from_user("squares"))
        .await
        .unwrap();
    redis.restart();
    let saved = store.get("before", None).await.unwrap().unwrap();
    assert_eq!(saved.env.answer, out.answer);
    assert_eq!(saved.next, Next::End);
    let again = machine
        .run_as("after", Env::from_user("squares"))
        .await
        .unwrap();
    assert_eq!(again.answer, out.answer);
    assert_eq!(store.runs().await.unwrap(), ["after", "before"]);
}

/// A worker paused past its lease holds a stale claim: once another
/// worker claims the run, every write under the old token is refused, and
/// a run on the stale store fails with `Fenced` instead of writing.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_claim_cannot_write_over_the_new_owner() {
    let redis = crate::services::Redis::shared_or_own();
    let store = statewise::store::RedisStore::open(&redis.url)
        .unwrap()
        .with_prefix(format!("fence{:08x}", fastrand::u32(..)));
    let first = store.claim("r").await.unwrap();
    let paused = store.fenced("r", first);
    let out = agent()
        .with_store(paused.clone())
        .run_as("r", Env::from_user("squares"))
        .await
        .unwrap();

    let second = store.claim("r").await.unwrap();
    assert_eq!(second, first + 1);
    let owner = store.fenced("r", second);
    let mut latest = owner.get("r", None).await.unwrap().unwrap();
    latest.env.answer = Some("the new owner's".into());
    owner.put(&latest).await.unwrap();

    let mut stale = latest.clone();
    stale.env.answer = Some("the paused worker's".into());
    match paused.put(&stale).await {
        Err(StoreError::Fenced { run_id, token }) => {
            assert_eq!((run_id.as_str(), token), ("r", first))
        }
        other => panic!("a stale write gave {other:?}"),
    }
    assert!(matches!(
        paused.delete("r").await,
        Err(StoreError::Fenced { .. })
    ));
    let kept = store.get("r", None).await.unwrap().unwrap();
    assert_eq!(kept.env.answer.as_deref(), Some("the new owner's"));
    assert_ne!(out.answer, kept.env.answer);

    // A run resumed on the stale store fails before writing anything.
    let failure = agent()
        .with_store(paused.clone())
        .run_as("r2", Env::from_user("squares"))
        .await
        .unwrap_err();
    assert!(matches!(
        failure.error,
        statewise::MachineError::Store(StoreError::Fenced { .. })
    ));
    assert!(store.get("r2", None).await.unwrap().is_none());
    assert_eq!(store.rejected("r").await.unwrap(), 2);
    // Every accepted write, in order: the first claim's, then the second's.
    let writers = store.writers("r").await.unwrap();
    assert!(writers.windows(2).all(|w| w[0].1 <= w[1].1), "{writers:?}");
    assert_eq!(writers.first().map(|w| w.1), Some(first));
    assert_eq!(writers.last(), Some(&(latest.step, second)));
}

/// The Redis tool journal: what a call recorded reads back, per run and
/// key; a stale claim cannot journal an effect as the run's; and a journal
/// that kept nothing would fail here.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_journal_keeps_each_calls_observation_under_the_current_claim() {
    use statewise::env::Journal;
    use statewise::Observation;
    let redis = crate::services::Redis::shared_or_own();
    let store = statewise::store::RedisStore::open(&redis.url)
        .unwrap()
        .with_prefix(format!("journal{:08x}", fastrand::u32(..)));
    let observation = |content: serde_json::Value| Observation {
        call_id: "call_1_0".into(),
        tool: "count".into(),
        content,
        is_error: false,
    };
    assert_eq!(store.recorded("r", "k1").await.unwrap(), None);
    store
        .record("r", "k1", &observation(json!(1)))
        .await
        .unwrap();
    assert_eq!(
        store.recorded("r", "k1").await.unwrap(),
        Some(observation(json!(1)))
    );
    assert_eq!(store.recorded("r", "k2").await.unwrap(), None);
    assert_eq!(store.recorded("other", "k1").await.unwrap(), None);

    let first = store.claim("r").await.unwrap();
    let paused = store.fenced("r", first);
    paused
        .record("r", "k2", &observation(json!(2)))
        .await
        .unwrap();
    let second = store.claim("r").await.unwrap();
    let owner = store.fenced("r", second);
    // The paused worker's effect is refused; the new owner's is kept.
    let refused = paused.record("r", "k3", &observation(json!("stale"))).await;
    let source = refused.expect_err("a stale claim journaled an effect").0;
    assert!(matches!(
        source.downcast_ref::<StoreError>(),
        Some(StoreError::Fenced { token, .. }) if *token == first
    ));
    assert_eq!(store.recorded("r", "k3").await.unwrap(), None);
    owner
        .record("r", "k3", &observation(json!(3)))
        .await
        .unwrap();
    assert_eq!(
        store.recorded("r", "k3").await.unwrap(),
        Some(observation(json!(3)))
    );
    assert_eq!(
        store.recorded("r", "k2").await.unwrap(),
        Some(observation(json!(2)))
    );
    assert_eq!(store.rejected("r").await.unwrap(), 1);
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_conforms() {
    let pg = crate::services::Postgres::shared_or_own();
    let open = || statewise::store::PostgresStore::open(&pg.url).unwrap();
    conformance::check(open).await.unwrap();
    conformance::check(open).await.unwrap();
}

/// The server cuts the store's connection (as a restart or an idle timeout
/// would): the next call reconnects and succeeds.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_reconnects_after_its_connection_is_cut() {
    let pg = crate::services::Postgres::shared_or_own();
    let app = format!("statewise{:08x}", fastrand::u32(..));
    let sep = if pg.url.contains('?') { '&' } else { '?' };
    let store =
        statewise::store::PostgresStore::open(&format!("{}{sep}application_name={app}", pg.url))
            .unwrap();
    let run = format!("{app}-run");
    let out = agent()
        .with_store(store.clone())
        .run_as(run.as_str(), Env::from_user("squares"))
        .await
        .unwrap();

    let (admin, connection) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let cut = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await
        .unwrap();
    assert_eq!(cut.len(), 1, "the store's one connection was cut");

    let saved = store.get(&run, None).await.unwrap().unwrap();
    assert_eq!(saved.env.answer, out.answer);
}

/// Squares 1 to 3 with the calculator, one call per step, then answers:
/// deterministic from the request alone, so a resumed run must end alike.
fn planner() -> Arc<FnModel> {
    Arc::new(FnModel::new("planner", |req: &ChatRequest| {
        let seen: Vec<&str> = req
            .messages
            .iter()
            .filter_map(|m| m.content.strip_prefix("Observation from `calculator`"))
            .filter_map(|r| r.split_once('\n').map(|(_, v)| v.trim()))
            .collect();
        let n = seen.len() + 1;
        let action = if n <= 3 {
            json!({"name": "calculator", "arguments": {"expression": format!("{n}*{n}")}})
        } else {
            json!({"final_answer": format!("squares: {}", seen.join(" "))})
        };
        Ok(Reply::text(action.to_string()))
    }))
}

fn agent() -> Machine {
    statewise_states::agent(
        planner(),
        Toolbox::new(ToolRegistry::new().with(Calculator)),
    )
}

#[tokio::test]
async fn every_step_is_checkpointed_before_the_next() {
    let store = MemoryStore::new();
    let out = agent()
        .with_store(store.clone())
        .run_as("r1", Env::from_user("squares"))
        .await
        .unwrap();
    assert_eq!(out.run_id, "r1");
    let metas = store.list("r1").await.unwrap();
    let steps: Vec<u32> = metas.iter().map(|m| m.step).collect();
    assert_eq!(steps, (0..=out.path.len() as u32).collect::<Vec<_>>());
    assert_eq!(metas[0].next, Next::to("reasoning"));
    assert_eq!(metas[0].state, None);
    // Each checkpoint names the state that ran and where it went.
    for (meta, state) in metas[1..].iter().zip(&out.path) {
        assert_eq!(meta.state.as_deref(), Some(state.as_str()));
    }
    assert_eq!(metas.last().unwrap().next, Next::End);
    let last = store.get("r1", None).await.unwrap().unwrap();
    assert_eq!(last.env, out.env);
    assert_eq!(last.path, out.path);
}

#[tokio::test]
async fn a_run_dropped_midway_resumes_to_the_same_answer() {
    let whole = agent().run(Env::from_user("squares")).await.unwrap();

    let store = MemoryStore::new();
    let machine = agent().with_store(store.clone());
    // Drop the run's stream in the fourth state: the process "dies" there.
    let mut events = machine.stream_as("cut", Env::from_user("squares"));
    while let Some(e) = events.next().await {
        if matches!(e.kind, EventKind::StateEntered) && e.step == 4 {
            break;
        }
    }
    drop(events);
    assert_eq!(store.get("cut", None).await.unwrap().unwrap().step, 3);

    let resumed = statewise::machine::finish(machine.resume("cut").await.unwrap())
        .await
        .unwrap();
    assert_eq!(resumed.answer, whole.answer);
    assert_eq!(resumed.path, whole.path);
    assert_eq!(resumed.env.observations, whole.env.observations);
    assert_eq!(resumed.run_id, "cut");

    // Resuming a finished run gives its result again, running nothing.
    let again = statewise::machine::finish(machine.resume("cut").await.unwrap())
        .await
        .unwrap();
    assert_eq!(again.answer, whole.answer);
    assert_eq!(store.list("cut").await.unwrap().len(), whole.path.len() + 1);
}

#[tokio::test]
async fn a_rerun_goes_on_from_any_step_and_leaves_the_original() {
    let store = MemoryStore::new();
    let machine = agent().with_store(store.clone());
    let original = machine
        .run_as("orig", Env::from_user("squares"))
        .await
        .unwrap();
    let before: Vec<CheckpointMeta> = store.list("orig").await.unwrap();

    let second = statewise::machine::finish(machine.rerun("orig", 2, "second").await.unwrap())
        .await
        .unwrap();
    assert_eq!(second.run_id, "second");
    assert_eq!(second.answer, original.answer);
    assert_eq!(second.path, original.path);
    let second_start = store.get("second", Some(2)).await.unwrap().unwrap();
    let parent = second_start.parent.unwrap();
    assert_eq!((parent.run_id.as_str(), parent.step), ("orig", 2));
    assert_eq!(store.list("orig").await.unwrap(), before);

    // From step 0 a rerun starts afresh from the same input.
    let rerun = statewise::machine::finish(machine.rerun("orig", 0, "rerun").await.unwrap())
        .await
        .unwrap();
    assert_eq!(rerun.answer, original.answer);

    assert!(matches!(
        machine.rerun("orig", 2, "second").await.err(),
        Some(MachineError::Store(StoreError::Exists { .. }))
    ));
    assert!(matches!(
        machine.resume("nope").await.err(),
        Some(MachineError::Store(StoreError::NotFound { .. }))
    ));
    assert!(matches!(
        agent().resume("orig").await.err(),
        Some(MachineError::NoStore)
    ));
}

/// A store whose disk is full.
struct FullDisk;

impl Store for FullDisk {
    fn put<'a>(&'a self, _: &'a Checkpoint) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async {
            Err(StoreError::backend(std::io::Error::other(
                "no space left on device",
            )))
        })
    }
    fn get<'a>(
        &'a self,
        _: &'a str,
        _: Option<u32>,
    ) -> BoxFuture<'a, Result<Option<Checkpoint>, StoreError>> {
        Box::pin(async { Ok(None) })
    }
    fn list<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<CheckpointMeta>, StoreError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn runs(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn delete<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async { Ok(false) })
    }
}

#[tokio::test]
async fn a_checkpoint_that_cannot_be_saved_fails_the_run() {
    let failure = agent()
        .with_store(FullDisk)
        .run(Env::from_user("squares"))
        .await
        .unwrap_err();
    assert_eq!(failure.error.code(), "store");
    assert!(failure.to_string().contains("no space left"), "{failure}");
}

/// The resume example, killed with SIGKILL halfway and started again,
/// finishes the run with the answer an uninterrupted run gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_resumes_from_its_checkpoint() {
    let exe = support::example("resume");
    let dir = temp_dir("resume-kill");
    let run = |db: &str, slow: &str| {
        Command::new(&exe)
            .args([
                "--db",
                dir.join(db).to_str().unwrap(),
                "--run",
                "r",
                "--slow",
                slow,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let answer_of = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let answer = text
            .lines()
            .find(|l| l.starts_with("answer: "))
            .map(str::to_owned);
        (answer.expect("an answer line"), text)
    };
    let (uninterrupted, _) = answer_of(run("whole.sqlite", "0").wait_with_output().unwrap());

    let mut child = run("killed.sqlite", "400");
    let store = SqliteStore::open(dir.join("killed.sqlite")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let steps = store.list("r").await.unwrap();
        if steps.len() >= 5 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run never got going"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at_kill = store.get("r", None).await.unwrap().unwrap();
    assert_ne!(at_kill.next, Next::End, "the run finished before the kill");

    let (resumed, text) = answer_of(run("killed.sqlite", "0").wait_with_output().unwrap());
    assert!(
        text.contains(&format!("resuming run r after step {}", at_kill.step)),
        "{text}"
    );
    assert_eq!(resumed, uninterrupted);
    // One unbroken sequence of checkpoints, ending with the end.
    let steps: Vec<u32> = store
        .list("r")
        .await
        .unwrap()
        .iter()
        .map(|m| m.step)
        .collect();
    assert_eq!(steps, (0..steps.len() as u32).collect::<Vec<_>>());
    assert_eq!(store.get("r", None).await.unwrap().unwrap().next, Next::End);
}

/// A store with one bug, to show the suite finds it.
struct Buggy {
    inner: MemoryStore,
    /// `get(run, None)` returns the first checkpoint, not the latest.
    stale_latest: bool,
    /// `put` of a step that exists is ignored.
    no_replace: bool,
}

impl Store for Buggy {
    fn put<'a>(&'a self, c: &'a Checkpoint) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            if self.no_replace && self.inner.get(&c.run_id, Some(c.step)).await?.is_some() {
                return Ok(());
            }
            self.inner.put(c).await
        })
    }
    fn get<'a>(
        &'a self,
        run_id: &'a str,
        step: Option<u32>,
    ) -> BoxFuture<'a, Result<Option<Checkpoint>, StoreError>> {
        let step = match step {
            None if self.stale_latest => Some(0),
            other => other,
        };
        self.inner.get(run_id, step)
    }
    fn list<'a>(
        &'a self,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<CheckpointMeta>, StoreError>> {
        self.inner.list(run_id)
    }
    fn runs(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        self.inner.runs()
    }
    fn delete<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.inner.delete(run_id)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_suite_catches_a_buggy_store() {
    let inner = MemoryStore::new();
    let stale = conformance::check(|| Buggy {
        inner: inner.clone(),
        stale_latest: true,
        no_replace: false,
    })
    .await
    .unwrap_err();
    assert_eq!(stale.check, "get");
    let inner = MemoryStore::new();
    let sticky = conformance::check(|| Buggy {
        inner: inner.clone(),
        stale_latest: false,
        no_replace: true,
    })
    .await
    .unwrap_err();
    assert_eq!(sticky.check, "put");
}
