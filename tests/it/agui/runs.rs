//! Runs that outlive a request: background runs replayed to late and
//! reconnecting clients, cancelled, or stopped when their client leaves;
//! the WebSocket; schedules; fire-and-forget work.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use statewise::agui::RunAgentInput;
use statewise::server::{Overlap, RunStatus, Schedule, ScheduleHandle};
use statewise::{Emit, EmitStream, Env, Machine, Next, State};

use super::{serve, server, sse_events, types};

pub(super) fn input(thread: &str, run: &str, text: &str) -> Value {
    json!({"threadId": thread, "runId": run, "messages": [{"id": "u1", "role": "user", "content": text}]})
}

/// Run `run`'s events, read whole (after the run ends).
pub(super) async fn read_events(
    http: &reqwest::Client,
    url: &str,
    run: &str,
) -> Vec<(Option<usize>, Value)> {
    let response = http
        .get(format!("{url}/runs/{run}/events"))
        .send()
        .await
        .unwrap();
    sse_events(&response.text().await.unwrap())
}

pub(super) async fn status(http: &reqwest::Client, url: &str, run: &str) -> Value {
    http.get(format!("{url}/runs/{run}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_background_run_is_replayed_whole_to_a_late_client_and_from_last_event_id() {
    let url = serve(server(Duration::from_millis(2))).await;
    let http = reqwest::Client::new();
    let started = http
        .post(format!("{url}/runs"))
        .json(&input("t1", "bg-1", "email the team"))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    let started: Value = started.json().await.unwrap();
    assert_eq!(started["runId"], "bg-1");
    // Late: the run may be over by now; its events are all there.
    let all = read_events(&http, &url, "bg-1").await;
    assert_eq!(types(&all).first().map(String::as_str), Some("RUN_STARTED"));
    assert_eq!(all.last().unwrap().1["outcome"]["type"], "interrupt");
    let ids: Vec<usize> = all.iter().map(|(id, _)| id.unwrap()).collect();
    assert_eq!(ids, (0..all.len()).collect::<Vec<_>>());
    assert_eq!(status(&http, &url, "bg-1").await["status"], "interrupted");
    // Reconnecting after event 3: the rest, exactly.
    let body = http
        .get(format!("{url}/runs/bg-1/events"))
        .header("Last-Event-ID", "3")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rest = sse_events(&body);
    assert_eq!(rest, all[4..]);
    // The pause resumes from the background, too.
    let resume = json!({"threadId": "t1", "runId": "bg-2", "messages": [],
        "resume": [{"interruptId": all.last().unwrap().1["outcome"]["interrupts"][0]["id"], "status": "resolved", "payload": true}]});
    http.post(format!("{url}/runs"))
        .json(&resume)
        .send()
        .await
        .unwrap();
    let events = read_events(&http, &url, "bg-2").await;
    assert_eq!(
        events.last().unwrap().1["result"],
        "Result: sent to team@example.com"
    );
    // A run nobody knows is a 404 that says so.
    let missing = http.get(format!("{url}/runs/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let missing: Value = missing.json().await.unwrap();
    assert_eq!(missing["code"], "unknown_run");
}

pub(super) async fn wait_for(http: &reqwest::Client, url: &str, run: &str, want: &str) -> Value {
    for _ in 0..200 {
        let s = status(http, url, run).await;
        if s["status"] == want {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "run {run} never got to {want}: {}",
        status(http, url, run).await
    );
}

#[tokio::test]
async fn a_background_run_goes_on_without_clients_until_it_is_cancelled() {
    let url = serve(server(Duration::from_millis(20))).await;
    let http = reqwest::Client::new();
    http.post(format!("{url}/runs"))
        .json(&input("t2", "slow-1", "say something long"))
        .send()
        .await
        .unwrap();
    // A client reads a little, then leaves.
    let mut response = http
        .get(format!("{url}/runs/slow-1/events"))
        .send()
        .await
        .unwrap();
    response.chunk().await.unwrap();
    drop(response);
    // With no client left, the run still records event after event.
    let left = wait_for(&http, &url, "slow-1", "running").await["events"]
        .as_u64()
        .unwrap();
    let mut now = status(&http, &url, "slow-1").await;
    for _ in 0..200 {
        if now["events"].as_u64().unwrap() >= left + 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        now = status(&http, &url, "slow-1").await;
    }
    assert!(
        now["events"].as_u64().unwrap() >= left + 5,
        "no progress without clients: {left} events when the client left, now {now}"
    );
    assert_eq!(now["status"], "running", "{now}");
    let cancelled = http
        .delete(format!("{url}/runs/slow-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 202);
    wait_for(&http, &url, "slow-1", "cancelled").await;
    let events = read_events(&http, &url, "slow-1").await;
    let last = &events.last().unwrap().1;
    assert_eq!(
        (last["type"].as_str(), last["outcome"]["type"].as_str()),
        (Some("RUN_FINISHED"), Some("cancelled"))
    );
    // What was open was closed before the end.
    let t = types(&events);
    assert_eq!(
        t.iter().filter(|x| *x == "TEXT_MESSAGE_START").count(),
        t.iter().filter(|x| *x == "TEXT_MESSAGE_END").count()
    );
}

#[tokio::test]
async fn a_direct_run_stops_when_its_client_disconnects() {
    let server = server(Duration::from_millis(20));
    let url = serve(server.clone()).await;
    let http = reqwest::Client::new();
    let mut response = http
        .post(format!("{url}/agent"))
        .json(&input("t3", "direct-1", "say something long"))
        .send()
        .await
        .unwrap();
    response.chunk().await.unwrap();
    drop(response);
    let mut status = RunStatus::Running;
    for _ in 0..200 {
        status = server.run("direct-1").await.unwrap().info().status;
        if status != RunStatus::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(status, RunStatus::Cancelled);
}

#[tokio::test]
async fn the_websocket_carries_the_events_and_takes_resume_and_cancel() {
    let url = serve(server(Duration::from_millis(5))).await;
    let ws_url = format!("{}/ws", url.replace("http://", "ws://"));
    let (mut socket, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    let send = |v: Value| tokio_tungstenite::tungstenite::Message::Text(v.to_string().into());
    async fn until_end(
        socket: &mut (impl futures::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin),
    ) -> Vec<Value> {
        let mut events = Vec::new();
        while let Some(Ok(message)) = socket.next().await {
            let event: Value = serde_json::from_str(message.to_text().unwrap()).unwrap();
            let end = matches!(event["type"].as_str(), Some("RUN_FINISHED" | "RUN_ERROR"));
            events.push(event);
            if end {
                break;
            }
        }
        events
    }
    socket
        .send(send(
            json!({"type": "run", "input": input("t4", "ws-1", "email the team")}),
        ))
        .await
        .unwrap();
    let first = until_end(&mut socket).await;
    let interrupt = &first.last().unwrap()["outcome"]["interrupts"][0];
    socket
        .send(send(
            json!({"type": "resume", "threadId": "t4", "runId": "ws-2",
        "interruptId": interrupt["id"], "payload": true}),
        ))
        .await
        .unwrap();
    let second = until_end(&mut socket).await;
    assert_eq!(
        second.last().unwrap()["result"],
        "Result: sent to team@example.com"
    );
    socket
        .send(send(
            json!({"type": "run", "input": input("t5", "ws-3", "say something long")}),
        ))
        .await
        .unwrap();
    socket
        .send(send(json!({"type": "cancel", "runId": "ws-3"})))
        .await
        .unwrap();
    let third = until_end(&mut socket).await;
    assert_eq!(third.last().unwrap()["outcome"]["type"], "cancelled");
    // A message it cannot follow is answered with a RUN_ERROR naming why.
    socket
        .send(send(json!({"type": "cancel", "runId": "nope"})))
        .await
        .unwrap();
    let error = until_end(&mut socket).await;
    assert_eq!(error.last().unwrap()["code"], "unknown_run");
}

#[tokio::test]
async fn schedules_skip_or_queue_a_firing_while_their_last_run_goes_on() {
    // Each run streams 200 words at 10 ms: about 2 s, while the schedule
    // fires every second.
    let server = server(Duration::from_millis(10));
    let template: RunAgentInput =
        serde_json::from_value(input("", "", "say something long")).unwrap();
    let skip = server.schedule(Schedule::new("skip", "* * * * * *", template.clone()).unwrap());
    let queue = server.schedule(
        Schedule::new("queue", "* * * * * *", template)
            .unwrap()
            .overlap(Overlap::Queue),
    );
    tokio::time::sleep(Duration::from_millis(6000)).await;
    skip.stop();
    queue.stop();
    let counts = |h: &ScheduleHandle| (h.started(), h.skipped(), h.queued());
    // Skipping: a firing during a run is dropped, none waits.
    let (started, skipped, queued) = counts(&skip);
    assert!(
        started >= 1 && skipped >= 1 && queued == 0,
        "skip: {:?}",
        counts(&skip)
    );
    // Queueing: a firing during a run waits for it (at most one waits; one
    // may still wait at the stop), and only a firing while one already
    // waits is skipped.
    let (started, _, queued) = counts(&queue);
    assert!(queued >= 1, "queue: {:?}", counts(&queue));
    assert!(
        started >= queued,
        "queued firings started: {:?}",
        counts(&queue)
    );
}

/// A state that hands a failing notification to the background and ends.
struct Notify;

impl State for Notify {
    fn name(&self) -> &str {
        "notify"
    }
    fn run<'a>(&'a self, env: &'a mut Env) -> EmitStream<'a> {
        let background = env.settings.background.clone();
        Box::pin(statewise::try_stream! {
            background.spawn("webhook", async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err::<(), _>("the webhook answered 500")
            });
            env.answer = Some("noted".into());
            yield Emit::Token("noted".into());
        })
    }
    fn transition(&self, _env: &Env) -> Next {
        Next::End
    }
}

#[tokio::test]
async fn fire_and_forget_work_does_not_hold_the_run_and_its_failure_is_counted() {
    let machine = Machine::new("notify").with_state(Notify);
    let out = machine.run(Env::new()).await.unwrap();
    assert_eq!(out.answer.as_deref(), Some("noted"));
    assert_eq!(
        machine.background().running(),
        1,
        "the run did not wait for it"
    );
    machine.background().idle().await;
    assert_eq!(machine.background().failed(), 1);
}

/// With the Redis queue, `POST /runs` hands a new run to a worker (which
/// may be another process) and streams what the worker streams; the pause
/// it ends on resumes on the server, from the shared store; a queued run
/// cannot be cancelled from the server, and says so.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_runs_go_to_the_redis_queue_and_stream_the_workers_events() {
    use statewise::model::{FnModel, Reply};
    use statewise::store::RedisStore;
    use statewise::tool::{ToolRegistry, Toolbox};
    use statewise::worker::{RunQueue, Worker};
    use std::sync::Arc;

    let redis = crate::services::Redis::shared_or_own();
    let prefix = format!("agui{:08x}", fastrand::u32(..));
    // The worker's agent: the test model, with the approval tool.
    let tools =
        Toolbox::new(ToolRegistry::new().with(super::SendEmail)).require_approval(["send_email"]);
    let worker_agent =
        statewise_states::agent(Arc::new(super::model(Duration::ZERO)), tools).snapshots(true);
    let worker = Worker::new(&redis.url)
        .unwrap()
        .with_prefix(&prefix)
        .machine("agent", worker_agent);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(worker.run(shutdown.clone()));

    // The server's own agent answers differently: whose answer arrives
    // tells who ran the run.
    let in_process = Arc::new(FnModel::new("here", |_| {
        Ok(Reply::text(r#"{"final_answer": "in-process"}"#))
    }));
    let server = statewise::server::Server::new(move |_| {
        let tools = Toolbox::new(ToolRegistry::new().with(super::SendEmail))
            .require_approval(["send_email"]);
        statewise_states::agent(in_process.clone(), tools)
    })
    .with_store(
        RedisStore::open(&redis.url)
            .unwrap()
            .with_prefix(prefix.clone()),
    )
    .with_queue(
        RunQueue::open(&redis.url).unwrap().with_prefix(&prefix),
        "agent",
    );
    let url = serve(server).await;
    let http = reqwest::Client::new();

    http.post(format!("{url}/runs"))
        .json(&input("tq", "queued-1", "hello"))
        .send()
        .await
        .unwrap();
    let events = read_events(&http, &url, "queued-1").await;
    assert_eq!(
        types(&events).first().map(String::as_str),
        Some("RUN_STARTED")
    );
    assert_eq!(
        events.last().unwrap().1["result"],
        "You said: hello",
        "{events:?}"
    );
    assert!(
        types(&events).contains(&"STATE_SNAPSHOT".to_owned()),
        "{events:?}"
    );
    let queue = RunQueue::open(&redis.url).unwrap().with_prefix(&prefix);
    assert!(
        queue.outcome("queued-1").await.unwrap().is_some(),
        "a worker recorded it"
    );

    // A queued run that pauses, resumed on the server.
    http.post(format!("{url}/runs"))
        .json(&input("tq2", "queued-2", "email the team"))
        .send()
        .await
        .unwrap();
    let cancel = http
        .delete(format!("{url}/runs/queued-2"))
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 409);
    let paused = read_events(&http, &url, "queued-2").await;
    let asked = &paused.last().unwrap().1["outcome"]["interrupts"][0]["id"];
    assert!(
        asked.as_str().unwrap().starts_with("approve:"),
        "{paused:?}"
    );
    let resume = json!({"threadId": "tq2", "runId": "queued-2b", "messages": [],
        "resume": [{"interruptId": asked, "status": "resolved", "payload": true}]});
    let body = http
        .post(format!("{url}/agent"))
        .json(&resume)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let resumed = sse_events(&body);
    // The server's machine resumed the worker's checkpoint: the email went
    // out, and the server's own model wrote the answer.
    let results: Vec<&Value> = resumed
        .iter()
        .filter(|(_, e)| e["type"] == "TOOL_CALL_RESULT")
        .map(|(_, e)| &e["content"])
        .collect();
    assert_eq!(results, [&json!("sent to team@example.com")], "{body}");
    assert_eq!(resumed.last().unwrap().1["result"], "in-process");

    shutdown.cancel();
    running.await.unwrap().unwrap();
}
