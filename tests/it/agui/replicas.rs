//! Several servers, one fleet: any replica answers a run's status,
//! replays and follows its events, cancels it, and resumes its thread,
//! with the state shared in memory (servers in one process) or in Redis
//! (server processes, one of them killed).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use statewise::server::{MemoryRunLogs, Server};

use super::runs::{input, read_events, status, wait_for};
#[cfg(feature = "redis")]
use super::ServeProcess;
use super::{serve, server, sse_events, types};

/// Two replicas made by `replica`: a run started on A is known to B,
/// whose readers go on from `Last-Event-ID` live, and whose cancel stops
/// the run on A.
async fn a_run_on_one_replica_is_read_and_cancelled_on_another(
    replica: impl Fn() -> Server,
    run: &str,
) {
    let http = reqwest::Client::new();
    let (a, b) = (serve(replica()).await, serve(replica()).await);
    let started = http
        .post(format!("{a}/runs"))
        .json(&input(&format!("{run}-thread"), run, "say something long"))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    for _ in 0..200 {
        if status(&http, &a, run).await["events"].as_u64().unwrap() >= 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // B has seen nothing of it, and knows it.
    let on_b = status(&http, &b, run).await;
    assert_eq!(on_b["status"], "running", "{on_b}");
    assert_eq!(on_b["threadId"], format!("{run}-thread"));
    // A client cut after event 3 reconnects to B and reads on, live.
    let mut response = http
        .get(format!("{b}/runs/{run}/events"))
        .header("Last-Event-ID", "3")
        .send()
        .await
        .unwrap();
    let mut body = String::new();
    while body.matches("\n\n").count() < 3 {
        let chunk = response.chunk().await.unwrap().expect("B streams the run");
        body.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let cancelled = http.delete(format!("{b}/runs/{run}")).send().await.unwrap();
    assert_eq!(cancelled.status(), 202, "{:?}", cancelled.text().await);
    wait_for(&http, &a, run, "cancelled").await;
    body.push_str(&response.text().await.unwrap());
    let on_a = read_events(&http, &a, run).await;
    let last = &on_a.last().unwrap().1;
    assert_eq!(
        (last["type"].as_str(), last["outcome"]["type"].as_str()),
        (Some("RUN_FINISHED"), Some("cancelled"))
    );
    // Cancelled well before its 200 words were out.
    let words = types(&on_a)
        .iter()
        .filter(|t| *t == "TEXT_MESSAGE_CONTENT")
        .count();
    assert!(words < 150, "the cancel came late: {words} pieces sent");
    assert_eq!(
        sse_events(&body),
        on_a[4..],
        "B's reader got exactly the rest"
    );
    assert_eq!(status(&http, &b, run).await["status"], "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_in_one_process_share_runs_through_memory_logs() {
    let logs = Arc::new(MemoryRunLogs::new());
    let replica = || server(Duration::from_millis(20)).with_logs(Arc::clone(&logs));
    a_run_on_one_replica_is_read_and_cancelled_on_another(replica, "mem-long").await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_runs_through_redis_logs() {
    use statewise::server::RedisRunLogs;
    let redis = crate::services::Redis::shared_or_own();
    let prefix = format!("logs{:08x}", fastrand::u32(..));
    let replica = || {
        server(Duration::from_millis(20))
            .with_logs(RedisRunLogs::open(&redis.url).unwrap().with_prefix(&prefix))
    };
    a_run_on_one_replica_is_read_and_cancelled_on_another(replica, "redis-long").await;
}

/// An unknown run is unknown on every replica, with shared logs too.
#[tokio::test]
async fn a_run_no_replica_has_is_a_404() {
    let logs = Arc::new(MemoryRunLogs::new());
    let url = serve(server(Duration::from_millis(1)).with_logs(Arc::clone(&logs))).await;
    let http = reqwest::Client::new();
    for request in [
        http.get(format!("{url}/runs/nope")),
        http.get(format!("{url}/runs/nope/events")),
        http.delete(format!("{url}/runs/nope")),
    ] {
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status(), 404);
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["code"], "unknown_run");
    }
}

/// A thread paused on one server resumes on another (or on the same one
/// after a restart): the run it waits in is kept in Redis
/// (`RedisThreads`), its checkpoint in the shared store.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_paused_on_one_server_resumes_on_another() {
    use statewise::server::RedisThreads;
    use statewise::store::RedisStore;
    let redis = crate::services::Redis::shared_or_own();
    let prefix = format!("threads{:08x}", fastrand::u32(..));
    let replica = || {
        server(Duration::from_millis(1))
            .with_store(
                RedisStore::open(&redis.url)
                    .unwrap()
                    .with_prefix(prefix.clone()),
            )
            .with_threads(RedisThreads::open(&redis.url).unwrap().with_prefix(&prefix))
    };
    let http = reqwest::Client::new();
    let a = serve(replica()).await;
    http.post(format!("{a}/runs"))
        .json(&input("shared", "a-1", "email the team"))
        .send()
        .await
        .unwrap();
    wait_for(&http, &a, "a-1", "interrupted").await;
    let paused = read_events(&http, &a, "a-1").await;
    let interrupt = paused.last().unwrap().1["outcome"]["interrupts"][0]["id"].clone();

    // Another replica, which has seen nothing of the thread.
    let b = serve(replica()).await;
    let resume = |run: &str| {
        json!({"threadId": "shared", "runId": run, "messages": [],
            "resume": [{"interruptId": interrupt, "status": "resolved", "payload": true}]})
    };
    let answered = http
        .post(format!("{b}/runs"))
        .json(&resume("b-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 202, "{:?}", answered.text().await);
    let events = read_events(&http, &b, "b-1").await;
    assert_eq!(
        events.last().unwrap().1["result"],
        "Result: sent to team@example.com"
    );
    // Finished: the thread has nothing left to resume, on either replica.
    for (url, run) in [(&a, "again-a"), (&b, "again-b")] {
        let refused = http
            .post(format!("{url}/runs"))
            .json(&resume(run))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 409);
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["code"], "nothing_to_resume");
    }
}

/// Two `serve` processes on one Redis: a run started on A pauses for
/// approval; A is killed (SIGKILL); B replays the run's events from a
/// client's `Last-Event-ID`, and the approval sent to B finishes it, once.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_paused_on_a_killed_server_replays_and_resumes_on_another() {
    let redis = crate::services::Redis::shared_or_own();
    let mut a = ServeProcess::start(&["--redis", &redis.url, "--port", "0"]);
    let b = ServeProcess::start(&["--redis", &redis.url, "--port", "0"]);
    let http = reqwest::Client::new();
    let thread = format!("killed-{:08x}", fastrand::u32(..));
    let (first, second) = (format!("{thread}-1"), format!("{thread}-2"));
    let started = http
        .post(format!("{}/runs", a.url))
        .json(&input(
            &thread,
            &first,
            "Please email the team the minutes.",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    wait_for(&http, &a.url, &first, "interrupted").await;
    let sent = read_events(&http, &a.url, &first).await;
    let interrupt = sent.last().unwrap().1["outcome"]["interrupts"][0]["id"].clone();
    assert!(interrupt.is_string(), "{:?}", sent.last());
    a.kill();

    // A client that got half the events goes on at B: exactly the rest.
    let got = sent.len() / 2;
    let on_b = status(&http, &b.url, &first).await;
    assert_eq!(on_b["status"], "interrupted", "{on_b}");
    assert_eq!(on_b["events"], sent.len());
    let rest = http
        .get(format!("{}/runs/{first}/events", b.url))
        .header("Last-Event-ID", (got - 1).to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(sse_events(&rest), sent[got..]);

    // The approval goes to B; the run finishes there, once.
    let resume = json!({"threadId": thread, "runId": second, "messages": [],
        "resume": [{"interruptId": interrupt, "status": "resolved", "payload": true}]});
    let answered = http
        .post(format!("{}/runs", b.url))
        .json(&resume)
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 202, "{:?}", answered.text().await);
    let done = read_events(&http, &b.url, &second).await;
    let t = types(&done);
    assert_eq!(
        t.iter().filter(|t| *t == "TOOL_CALL_RESULT").count(),
        1,
        "{t:?}"
    );
    assert_eq!(t.iter().filter(|t| *t == "RUN_FINISHED").count(), 1);
    let last = &done.last().unwrap().1;
    assert_eq!(last["type"], "RUN_FINISHED");
    assert!(
        last["outcome"].is_null() || last["outcome"]["type"] == "success",
        "{last}"
    );
    let again = http
        .post(format!("{}/runs", b.url))
        .json(
            &json!({"threadId": thread, "runId": format!("{thread}-3"), "messages": [],
            "resume": [{"interruptId": interrupt, "status": "resolved", "payload": true}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409, "the thread has nothing left to resume");
}

/// Redis logs as the memory ones: a write sent again adds nothing, the
/// oldest events go past the bound and the rest keep their indexes, and a
/// cancel reaches the next write.
#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_logs_skip_repeats_keep_indexes_and_pass_on_a_cancel() {
    use statewise::server::{Entry, RedisRunLogs, RunLogs, RunStatus};
    let redis = crate::services::Redis::shared_or_own();
    let prefix = format!("bounds{:08x}", fastrand::u32(..));
    let logs = RedisRunLogs::open(&redis.url)
        .unwrap()
        .with_prefix(&prefix)
        .with_bounds(3, Duration::from_secs(60));
    let texts = |t: &[&str]| t.iter().map(|s| Arc::<str>::from(*s)).collect::<Vec<_>>();
    let writes = [
        (0, texts(&["a", "b"]), RunStatus::Running),
        (1, texts(&["b", "c"]), RunStatus::Running),
        (3, texts(&["d"]), RunStatus::Interrupted),
    ];
    for (first, events, status) in &writes {
        let entry = Entry {
            run_id: "r",
            thread_id: "t",
            first: *first,
            events,
            status: *status,
            owner: None,
        };
        assert!(!logs.append(entry).await.unwrap());
    }
    let page = logs.read("r", 0).await.unwrap().unwrap();
    assert_eq!(
        (page.thread_id.as_str(), page.status),
        ("t", RunStatus::Interrupted)
    );
    let got: Vec<(usize, &str)> = page.events.iter().map(|(i, e)| (*i, &**e)).collect();
    assert_eq!(got, [(1, "b"), (2, "c"), (3, "d")]);
    assert_eq!(logs.read("r", 3).await.unwrap().unwrap().events.len(), 1);
    assert_eq!(logs.read("nope", 0).await.unwrap(), None);
    assert!(!logs.cancel("nope").await.unwrap());
    assert!(logs.cancel("r").await.unwrap());
    let none = Vec::new();
    let entry = Entry {
        run_id: "r",
        thread_id: "t",
        first: 4,
        events: &none,
        status: RunStatus::Running,
        owner: None,
    };
    assert!(
        logs.append(entry).await.unwrap(),
        "the cancel reaches the writer"
    );
}

/// One schedule on two replicas sharing logs: each firing starts on one
/// replica only (the other counts it skipped), where without shared logs
/// each would start its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_on_two_replicas_starts_each_firing_once() {
    use statewise::server::{Schedule, ScheduleHandle};
    let logs = Arc::new(MemoryRunLogs::new());
    let replica = || server(Duration::from_millis(1)).with_logs(Arc::clone(&logs));
    let (a, b) = (replica(), replica());
    let template: statewise::agui::RunAgentInput =
        serde_json::from_value(input("", "", "hello")).unwrap();
    let schedule = || Schedule::new("tick", "* * * * * *", template.clone()).unwrap();
    let (on_a, on_b) = (a.schedule(schedule()), b.schedule(schedule()));
    tokio::time::sleep(Duration::from_millis(3500)).await;
    on_a.stop();
    on_b.stop();
    let fired = |h: &ScheduleHandle| h.started() + h.skipped() + h.queued();
    let started = on_a.started() + on_b.started();
    let counts = [
        on_a.started(),
        on_a.skipped(),
        on_b.started(),
        on_b.skipped(),
    ];
    assert!(started >= 2, "{counts:?}");
    // The replicas' windows may differ by a slot at either end (each
    // schedule starts and stops a moment apart): at most one slot more
    // than either saw, where starting every firing on both would give
    // about twice as many.
    assert!(
        started <= fired(&on_a).max(fired(&on_b)) + 1,
        "a firing started on both replicas: {counts:?}"
    );
    assert!(on_a.skipped() + on_b.skipped() >= 2, "{counts:?}");
}
