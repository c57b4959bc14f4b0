//! The run queue and its workers against a real redis-server: worker
//! processes killed and paused while they run, poison runs, and a Redis
//! restart.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use statewise::model::{ChatRequest, FnModel, Reply};
use statewise::state::FnState;
use statewise::store::RedisStore;
use statewise::worker::{OutcomeStatus, RunQueue, Worker};
use statewise::{Env, Machine, Next};
use tokio_util::sync::CancellationToken;

use crate::services::Redis;

/// A worker process of the `worker` example: its stand-in model takes
/// `latency` per reply, and its `note` tool counts its effects in Redis.
fn worker_process(url: &str, prefix: &str, id: &str, latency_ms: u64, lease_ms: u64) -> Child {
    worker_process_with(url, prefix, id, latency_ms, lease_ms, &[])
}

/// [`worker_process`] with more arguments.
fn worker_process_with(
    url: &str,
    prefix: &str,
    id: &str,
    latency_ms: u64,
    lease_ms: u64,
    more: &[&str],
) -> Child {
    Command::new(crate::support::example("worker"))
        .args(more)
        .args(["--redis", url, "--prefix", prefix, "--id", id])
        .args([
            "--latency",
            &latency_ms.to_string(),
            "--lease",
            &lease_ms.to_string(),
        ])
        .args(["--concurrency", "4", "--max-deliveries", "50"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the worker example starts")
}

/// Kills a random worker of `fleet` (SIGKILL) once `more` further runs
/// are recorded, and starts its replacement with `spawn`. On progress, not
/// after a time, which a slow machine turns into a kill before any work or
/// after all of it.
async fn kill_one_after_progress(
    queue: &RunQueue,
    fleet: &mut Fleet,
    more: std::ops::Range<usize>,
    spawn: impl FnOnce() -> Child,
) {
    let want = queue.recorded().await.unwrap().len() + fastrand::usize(more);
    let deadline = Instant::now() + Duration::from_secs(120);
    while queue.recorded().await.unwrap().len() < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let victim = fastrand::usize(..fleet.0.len());
    fleet.0[victim].kill().unwrap();
    fleet.0[victim].wait().unwrap();
    fleet.0[victim] = spawn();
}

/// Kills the worker processes when the test ends, however it ends.
struct Fleet(Vec<Child>);

impl Drop for Fleet {
    fn drop(&mut self) {
        for child in &mut self.0 {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -{name} of a worker");
}

async fn get_u64(conn: &mut redis::aio::ConnectionManager, key: &str) -> u64 {
    let n: Option<u64> = redis::cmd("GET").arg(key).query_async(conn).await.unwrap();
    n.unwrap_or(0)
}

/// Waits until every one of `runs` has an outcome.
async fn wait_all(
    queue: &RunQueue,
    runs: usize,
    limit: Duration,
) -> Vec<statewise::worker::Outcome> {
    let start = Instant::now();
    loop {
        let recorded = queue.recorded().await.unwrap();
        if recorded.len() >= runs {
            return recorded;
        }
        assert!(
            start.elapsed() < limit,
            "{} of {runs} runs recorded after {limit:?}",
            recorded.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// 300 runs of a two-step agent through three worker processes; a random
/// worker is killed (SIGKILL) and restarted five times while they run, and
/// one is paused past its lease and let go on. Every run's outcome is
/// recorded once, every tool effect happens once, and no checkpoint write
/// came from a claim older than one that had already written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_and_paused_workers_lose_and_repeat_nothing() {
    const RUNS: usize = 300;
    const LEASE_MS: u64 = 1500;
    let redis = Redis::own(true);
    let prefix = "fleet";
    let spawn = |n: usize| worker_process(&redis.url, prefix, &format!("w{n}"), 150, LEASE_MS);
    let mut fleet = Fleet((0..3).map(spawn).collect());
    let mut started = 3;

    let queue = RunQueue::open(&redis.url).unwrap().with_prefix(prefix);
    for i in 0..RUNS {
        let submitted = queue
            .submit(
                "agent",
                &format!("run-{i:03}"),
                &Env::from_user(format!("Request {i}")),
            )
            .await
            .unwrap();
        assert!(submitted.new);
    }
    // Submitting a run again queues nothing.
    assert!(
        !queue
            .submit("agent", "run-000", &Env::from_user("Request 0"))
            .await
            .unwrap()
            .new
    );

    for _ in 0..5 {
        kill_one_after_progress(&queue, &mut fleet, 5..30, || spawn(started)).await;
        started += 1;
    }
    // Paused, not dead: its runs are taken over, and when it wakes its
    // writes are refused.
    let paused = fastrand::usize(..3);
    signal(&fleet.0[paused], "STOP");
    tokio::time::sleep(Duration::from_millis(LEASE_MS * 2)).await;
    signal(&fleet.0[paused], "CONT");

    let recorded = wait_all(&queue, RUNS, Duration::from_secs(300)).await;

    // Every outcome once, each run's own.
    assert_eq!(
        recorded.len(),
        RUNS,
        "the outcome log has one entry per run"
    );
    let ids: BTreeSet<&str> = recorded.iter().map(|o| o.run_id.as_str()).collect();
    assert_eq!(ids.len(), RUNS);
    for outcome in &recorded {
        let i: usize = outcome.run_id["run-".len()..].parse().unwrap();
        assert_eq!(outcome.status, OutcomeStatus::Finished, "{outcome:?}");
        assert_eq!(
            outcome.answer.as_deref(),
            Some(format!("Noted: Request {i}").as_str())
        );
        assert_eq!(
            queue.outcome(&outcome.run_id).await.unwrap().as_ref(),
            Some(outcome)
        );
    }
    assert_eq!(
        queue.backlog().await.unwrap(),
        0,
        "every delivery acknowledged"
    );

    // Every effect once; fenced writes never landed.
    let store = RedisStore::open(&redis.url).unwrap().with_prefix(prefix);
    let mut conn = redis::Client::open(redis.url.as_str())
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap();
    let (mut calls, mut rejected, mut taken_over) = (0, 0, 0);
    for outcome in &recorded {
        let run = &outcome.run_id;
        let written = get_u64(&mut conn, &format!("{prefix}:notes-written:{run}")).await;
        assert_eq!(written, 1, "{run}: the note was written {written} times");
        calls += get_u64(&mut conn, &format!("{prefix}:note-calls:{run}")).await;
        let writes = store.writers(run).await.unwrap();
        assert!(
            writes.windows(2).all(|w| w[0].1 <= w[1].1),
            "{run}: a stale claim wrote after a newer one: {writes:?}"
        );
        // Recorded under a claim that was current then: a worker may take
        // the run over after that (its lease ran out just before the
        // record), and then finds the outcome already there.
        assert!(
            outcome.token >= 1 && outcome.token <= store.token(run).await.unwrap(),
            "{run}: {outcome:?}"
        );
        rejected += store.rejected(run).await.unwrap();
        taken_over += usize::from(outcome.deliveries > 1);
    }
    println!(
        "fleet: {RUNS} runs, {taken_over} taken over from a killed or paused worker, \
         {calls} note calls for {RUNS} notes, {rejected} stale checkpoint writes refused"
    );
    assert!(taken_over > 0, "the kills hit runs in flight");
}

fn two_step_agent() -> Machine {
    let model = Arc::new(FnModel::new("planner", |req: &ChatRequest| {
        let done = req
            .messages
            .iter()
            .any(|m| m.content.starts_with("Observation"));
        Ok(Reply::text(if done {
            r#"{"final_answer": "done"}"#.to_owned()
        } else {
            r#"{"name": "calculator", "arguments": {"expression": "6*7"}}"#.to_owned()
        }))
    }));
    statewise_states::agent(
        model,
        statewise::tool::Toolbox::new(
            statewise::tool::ToolRegistry::new().with(statewise_states::tools::Calculator),
        ),
    )
}

/// A run that panics its worker every time goes to the dead-letter stream
/// after its last allowed delivery, with the panic as its error; the other
/// runs are not held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_run_goes_to_the_dead_letters_with_its_error() {
    let redis = Redis::shared_or_own();
    let prefix = format!("poison{:08x}", fastrand::u32(..));
    let poison = Machine::new("boom").with_state(FnState::new(
        "boom",
        |_: &mut Env| panic!("the disk is on fire"),
        |_: &Env| Next::End,
    ));
    let worker = Worker::new(&redis.url)
        .unwrap()
        .with_prefix(&prefix)
        .machine("poison", poison)
        .machine("agent", two_step_agent())
        .lease(Duration::from_millis(300))
        .max_deliveries(2);
    let stats = worker.stats();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(worker.run(shutdown.clone()));

    let queue = RunQueue::open(&redis.url).unwrap().with_prefix(&prefix);
    queue
        .submit("poison", "bad", &Env::from_user("go"))
        .await
        .unwrap();
    queue
        .submit("agent", "good", &Env::from_user("6*7?"))
        .await
        .unwrap();
    queue
        .submit("nobody", "lost", &Env::from_user("?"))
        .await
        .unwrap();

    let good = queue.wait("good", Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        (good.status, good.answer.as_deref()),
        (OutcomeStatus::Finished, Some("done"))
    );
    let lost = queue.wait("lost", Duration::from_secs(30)).await.unwrap();
    assert_eq!(lost.status, OutcomeStatus::Failed);
    assert!(
        lost.error.unwrap().contains("agent, poison"),
        "names the machines it knows"
    );

    let bad = queue.wait("bad", Duration::from_secs(30)).await.unwrap();
    assert_eq!(bad.status, OutcomeStatus::Dead);
    assert_eq!(bad.deliveries, 3);
    assert!(
        bad.error
            .as_deref()
            .unwrap()
            .contains("the disk is on fire"),
        "{bad:?}"
    );
    let dead = queue.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (
            dead[0].run_id.as_str(),
            dead[0].machine.as_str(),
            dead[0].deliveries
        ),
        ("bad", "poison", 3)
    );
    assert!(dead[0].error.contains("the disk is on fire"));

    shutdown.cancel();
    running.await.unwrap().unwrap();
    assert_eq!((stats.dead(), stats.released()), (1, 2));
    assert_eq!(queue.backlog().await.unwrap(), 0);
}

/// A client follows a run's events as the worker streams them, to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_streams_a_run_s_events() {
    let redis = Redis::shared_or_own();
    let prefix = format!("events{:08x}", fastrand::u32(..));
    let worker = Worker::new(&redis.url)
        .unwrap()
        .with_prefix(&prefix)
        .machine("agent", two_step_agent());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(worker.run(shutdown.clone()));
    let queue = RunQueue::open(&redis.url).unwrap().with_prefix(&prefix);
    queue
        .submit("agent", "r", &Env::from_user("6*7?"))
        .await
        .unwrap();
    let events: Vec<serde_json::Value> = queue.events("r").map(|e| e.unwrap()).collect().await;
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"state_entered"));
    assert_eq!(kinds.last(), Some(&"finished"), "{kinds:?}");
    let observed = events
        .iter()
        .any(|e| e["data"]["observation"]["content"] == serde_json::json!(42));
    assert!(observed, "the tool's result is among the events");
    shutdown.cancel();
    running.await.unwrap().unwrap();
}

/// redis-server (appendonly yes) is killed and restarted while runs go
/// through two workers: no run that was acknowledged as submitted is lost,
/// and each still gets exactly one outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_loses_no_acknowledged_run() {
    const RUNS: usize = 60;
    let mut redis = Redis::own(true);
    let prefix = "restart";
    let spawn = |n: usize| worker_process(&redis.url, prefix, &format!("r{n}"), 100, 1500);
    let _fleet = Fleet((0..2).map(spawn).collect());
    let queue = RunQueue::open(&redis.url).unwrap().with_prefix(prefix);
    let mut acknowledged = Vec::new();
    for i in 0..RUNS {
        let id = format!("run-{i:02}");
        if i == RUNS / 2 {
            redis.restart();
        }
        // A submit during the restart may fail; one that returned is kept.
        match queue
            .submit("agent", &id, &Env::from_user(format!("Request {i}")))
            .await
        {
            Ok(_) => acknowledged.push(id),
            Err(e) => println!("submit of {id} failed during the restart: {e}"),
        }
    }
    assert!(
        acknowledged.len() >= RUNS - 2,
        "the client rides out the restart"
    );
    let mut by_run: BTreeMap<String, usize> = BTreeMap::new();
    for outcome in wait_all(&queue, acknowledged.len(), Duration::from_secs(180)).await {
        *by_run.entry(outcome.run_id).or_default() += 1;
    }
    for id in &acknowledged {
        assert_eq!(by_run.get(id), Some(&1), "{id}: outcomes recorded");
        let outcome = queue.outcome(id).await.unwrap().unwrap();
        assert_eq!(outcome.status, OutcomeStatus::Finished, "{outcome:?}");
    }
}

/// The batch runner feeds a dataset through the queue and keeps its
/// resumable output file: a rerun after a crash (the output cut mid-line)
/// finishes the file without queueing any item twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_through_the_queue_resumes_without_queueing_twice() {
    let redis = Redis::shared_or_own();
    let prefix = format!("batch{:08x}", fastrand::u32(..));
    let worker = Worker::new(&redis.url)
        .unwrap()
        .with_prefix(&prefix)
        .machine("agent", two_step_agent());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(worker.run(shutdown.clone()));
    let queue = RunQueue::open(&redis.url).unwrap().with_prefix(&prefix);

    let dir = crate::support::temp_dir("queued-batch");
    let input = dir.join("input.jsonl");
    let output = dir.join("output.jsonl");
    let lines: Vec<String> = (0..30)
        .map(|i| serde_json::json!({"id": format!("q{i}"), "input": format!("question {i}"), "expected": "done"}).to_string())
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let batch = || {
        statewise::dataset::Dataset::on_queue(queue.clone(), "agent")
            .concurrency(16)
            .progress(false)
    };
    let summary = batch().run(&input, &output).await.unwrap();
    assert_eq!((summary.total, summary.passed), (30, 30));

    // A crash mid-write: twelve whole lines and a torn one survive.
    let written = std::fs::read_to_string(&output).unwrap();
    let kept: Vec<&str> = written.lines().take(13).collect();
    let torn = format!("{}\n{}", kept[..12].join("\n"), &kept[12][..10]);
    std::fs::write(&output, torn).unwrap();
    let summary = batch().run(&input, &output).await.unwrap();
    assert_eq!(
        (summary.total, summary.resumed, summary.passed),
        (30, 12, 30)
    );
    let ids: Vec<String> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids, (0..30).map(|i| format!("q{i}")).collect::<Vec<_>>());
    assert_eq!(
        queue.recorded().await.unwrap().len(),
        30,
        "no item was queued twice"
    );
    shutdown.cancel();
    running.await.unwrap().unwrap();
}

/// 300 runs of the example's `count` machine through three worker
/// processes, one killed (SIGKILL) and restarted five times, each kill
/// once a few more runs are recorded. Each run makes two calls at once that
/// count in Redis with no check of their own, a quick one and one after
/// 300 ms; a worker killed between them has done one effect of the step.
/// The lease (3 s) is long enough that no live worker loses a run: one
/// that is slow but alive when its claim is taken over has done its effect
/// before the fenced journal refuses it, the window only the tool's own
/// use of the idempotency key closes. Returns how often each run counted.
async fn counted_runs(redis: &Redis, prefix: &str, journal: bool) -> BTreeMap<String, u64> {
    const RUNS: usize = 300;
    let more: &[&str] = if journal { &[] } else { &["--no-journal"] };
    let spawn =
        |n: usize| worker_process_with(&redis.url, prefix, &format!("c{n}"), 20, 3000, more);
    let mut fleet = Fleet((0..3).map(spawn).collect());
    let queue = RunQueue::open(&redis.url).unwrap().with_prefix(prefix);
    for i in 0..RUNS {
        let env = Env::from_user(format!("Count {i}"));
        queue
            .submit("count", &format!("run-{i:03}"), &env)
            .await
            .unwrap();
    }
    for started in 3..8 {
        kill_one_after_progress(&queue, &mut fleet, 5..20, || spawn(started)).await;
    }
    let recorded = wait_all(&queue, RUNS, Duration::from_secs(300)).await;
    assert!(recorded.iter().all(|o| o.status == OutcomeStatus::Finished));
    let mut conn = redis::Client::open(redis.url.as_str())
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap();
    let mut counts = BTreeMap::new();
    for outcome in &recorded {
        let key = format!("{prefix}:counted:{}", outcome.run_id);
        counts.insert(outcome.run_id.clone(), get_u64(&mut conn, &key).await);
    }
    counts
}

/// Effects once, shown by what stops repeats: the tool repeats whatever it
/// is asked to, so with the journal every run counts its two calls, and
/// with the journal off some runs' quick calls ran again after a kill.
///
/// One window stays open with the journal, as documented: a kill landing
/// after a call's effect and before its journal entry (a Redis round trip)
/// repeats that call. So the journal's side allows one repeated call in
/// all 600; without the journal, every kill that lands while a worker holds
/// runs between their two calls repeats some (9 to 12 of 300 runs when
/// measured), and the same bound fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_alone_keeps_effects_to_one_per_call() {
    let redis = Redis::own(true);
    let extra = |counts: &BTreeMap<String, u64>| -> u64 {
        counts.values().map(|n| n.saturating_sub(2)).sum()
    };
    let with = counted_runs(&redis, "journal-on", true).await;
    assert!(with.values().all(|n| *n >= 2), "a call was lost: {with:?}");
    let repeated_with = extra(&with);
    assert!(
        repeated_with <= 1,
        "with the journal, {repeated_with} calls ran again: {:?}",
        with.iter().filter(|(_, n)| **n != 2).collect::<Vec<_>>()
    );

    // The control's kills land at random moments; on a loaded machine a
    // round of them can all fall between runs' calls, so it gets up to
    // three rounds to show repeats (each round alone usually shows 9-12).
    let mut repeated_without = 0;
    for round in 0..3 {
        let without = counted_runs(&redis, &format!("journal-off-{round}"), false).await;
        assert!(
            without.values().all(|n| *n >= 2),
            "a call was lost: {without:?}"
        );
        repeated_without += extra(&without);
        if repeated_without > 1 {
            break;
        }
    }
    println!(
        "calls run again: {repeated_with} with the journal, {repeated_without} without (600 calls a round)"
    );
    assert!(
        repeated_without > 1,
        "without the journal, {repeated_without} calls ran again in three rounds: the kills prove nothing"
    );
}

/// 50 runs of the example's `fanout` machine (a fork of four branches)
/// through three worker processes, one killed (SIGKILL) and restarted five
/// times. The branches run as child runs on the fleet; every branch's
/// outcome is recorded once, every parent finishes with all four parts,
/// and no run parked for its children holds a worker's slot (the queue's
/// occupancy, sampled throughout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forks_spread_over_the_fleet_and_a_waiting_parent_holds_no_slot() {
    const PARENTS: usize = 50;
    let redis = Redis::shared_or_own();
    let prefix = format!("fanout{:08x}", fastrand::u32(..));
    // Each branch works 300 ms: the kills land while the fleet is busy.
    let spawn = |n: usize| worker_process(&redis.url, &prefix, &format!("f{n}"), 300, 1500);
    let mut fleet = Fleet((0..3).map(spawn).collect());
    let queue = RunQueue::open(&redis.url).unwrap().with_prefix(&prefix);
    for i in 0..PARENTS {
        queue
            .submit("fanout", &format!("parent-{i:02}"), &Env::new())
            .await
            .unwrap();
    }
    let done = CancellationToken::new();
    let watching = tokio::spawn({
        let (queue, done) = (queue.clone(), done.clone());
        async move {
            let (mut samples, mut parked_seen, mut both) = (0, 0, Vec::new());
            while !done.is_cancelled() {
                let seen = queue.occupancy().await.unwrap();
                samples += 1;
                parked_seen = parked_seen.max(seen.parked.len());
                both.extend(
                    seen.held
                        .iter()
                        .filter(|r| seen.parked.contains(r))
                        .cloned(),
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (samples, parked_seen, both)
        }
    });
    for started in 3..8 {
        kill_one_after_progress(&queue, &mut fleet, 5..25, || spawn(started)).await;
    }
    let recorded = wait_all(&queue, PARENTS * 5, Duration::from_secs(300)).await;
    done.cancel();
    let (samples, parked_seen, both) = watching.await.unwrap();
    assert!(
        both.is_empty(),
        "parked runs held a worker's slot: {both:?}"
    );
    assert!(
        parked_seen > 0,
        "no parent was ever parked ({samples} samples)"
    );
    let mut per_run: BTreeMap<&str, usize> = BTreeMap::new();
    for outcome in &recorded {
        *per_run.entry(&outcome.run_id).or_default() += 1;
    }
    assert_eq!(per_run.len(), PARENTS * 5, "{per_run:?}");
    assert!(
        per_run.values().all(|n| *n == 1),
        "an outcome was recorded twice"
    );
    for outcome in &recorded {
        assert_eq!(outcome.status, OutcomeStatus::Finished, "{outcome:?}");
        if !outcome.run_id.contains('/') {
            assert_eq!(
                outcome.answer.as_deref(),
                Some("merged part 0, part 1, part 2, part 3"),
                "{outcome:?}"
            );
        }
    }
    let children = per_run.keys().filter(|r| r.contains('/')).count();
    assert_eq!(children, PARENTS * 4);
    assert!(queue.occupancy().await.unwrap().parked.is_empty());
    println!("fanout: {PARENTS} parents, {children} child runs, at most {parked_seen} parked at once, {samples} samples");
}

/// The `fleet` example: the orchestrator's two branches run as child runs
/// on its workers, and it merges what they answered.
#[test]
fn the_fleet_example_merges_what_its_child_runs_answered() {
    let redis = Redis::shared_or_own();
    let out = Command::new(crate::support::example("fleet"))
        .args(["--redis", &redis.url, "How do tides work?"])
        .output()
        .expect("the fleet example runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("searcher: found: tides follow the Moon's pull"),
        "{text}"
    );
    assert!(
        text.contains("analyser: a question about a mechanism, 4 words"),
        "{text}"
    );
    for child in ["ask/1/0", "ask/1/1"] {
        assert!(
            text.contains(&format!("child run {child} ran on worker-")),
            "{text}"
        );
    }
}
