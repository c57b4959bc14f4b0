//! 1,000 concurrent SSE clients on one server, against a model that takes
//! its time: every client gets a complete, valid stream. (The memory per
//! open stream is measured by `cargo run --release --features server
//! --example sse_load`, not here: timings and sizes are benchmarks'.)

use std::time::Duration;

use futures::future::join_all;
use serde_json::{json, Value};

use super::{serve, server, sse_events};

/// Checks one stream the way a client must find it: it starts and ends
/// as a run does, every text message is opened before its content and
/// closed before the end, and the text is the answer.
fn check(events: &[Value], question: &str) -> Result<(), String> {
    let first = events.first().ok_or("no events")?;
    if first["type"] != "RUN_STARTED" {
        return Err(format!("first event {first}"));
    }
    let mut open = None;
    let mut text = String::new();
    for e in &events[1..events.len() - 1] {
        match e["type"].as_str() {
            Some("TEXT_MESSAGE_START") if open.is_none() => open = Some(e["messageId"].clone()),
            Some("TEXT_MESSAGE_CONTENT") if open.as_ref() == Some(&e["messageId"]) => {
                text.push_str(e["delta"].as_str().unwrap_or_default());
            }
            Some("TEXT_MESSAGE_END") if open.as_ref() == Some(&e["messageId"]) => open = None,
            Some("TEXT_MESSAGE_START" | "TEXT_MESSAGE_CONTENT" | "TEXT_MESSAGE_END") => {
                return Err(format!("out of order: {e}"))
            }
            Some("RUN_STARTED" | "RUN_FINISHED" | "RUN_ERROR") => {
                return Err(format!("a second run event: {e}"))
            }
            _ => {}
        }
    }
    let last = events.last().unwrap();
    if last["type"] != "RUN_FINISHED" || open.is_some() {
        return Err(format!("last event {last}, message open: {open:?}"));
    }
    let want = format!("You said: {question}");
    if text != want || last["result"] != want.as_str() {
        return Err(format!("text {text:?}, result {}", last["result"]));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_sse_clients_each_get_a_complete_valid_stream() {
    let url = serve(server(Duration::from_millis(20))).await;
    // One connection per client: HTTP/1.1 without pooling across them.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let clients = (0..1000).map(|i| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let question = format!("client {i} here, five words");
            let input = json!({"threadId": format!("load-{i}"), "runId": format!("load-{i}"),
                               "messages": [{"id": "u", "role": "user", "content": question}]});
            let body = http
                .post(format!("{url}/agent"))
                .json(&input)
                .send()
                .await
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())?;
            let events: Vec<Value> = sse_events(&body).into_iter().map(|(_, e)| e).collect();
            check(&events, &question).map_err(|e| format!("client {i}: {e}"))
        }
    });
    let results = join_all(clients).await;
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of 1000 streams were not whole; first: {}",
        failed.len(),
        failed[0]
    );
}

#[test]
fn the_check_catches_a_cut_stream_and_a_message_never_opened() {
    let whole = vec![
        json!({"type": "RUN_STARTED"}),
        json!({"type": "TEXT_MESSAGE_START", "messageId": "m"}),
        json!({"type": "TEXT_MESSAGE_CONTENT", "messageId": "m", "delta": "You said: hi"}),
        json!({"type": "TEXT_MESSAGE_END", "messageId": "m"}),
        json!({"type": "RUN_FINISHED", "result": "You said: hi"}),
    ];
    assert_eq!(check(&whole, "hi"), Ok(()));
    assert!(check(&whole[..4], "hi").is_err());
    let unopened: Vec<Value> = whole
        .iter()
        .filter(|e| e["type"] != "TEXT_MESSAGE_START")
        .cloned()
        .collect();
    assert!(check(&unopened, "hi").is_err());
}
