//! The official TypeScript client against the server: its event
//! verification passes, its messages and state are the run's, an
//! interrupt and a client tool call resume, and a broken stream is
//! rejected.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::routing::post;
use futures::StreamExt;
use serde_json::{json, Value};
use statewise::agui::RunAgentInput;
use statewise::server::Server;

use super::{node, serve, serve_router, server};

fn user(text: &str) -> Value {
    json!([{"id": "u1", "role": "user", "content": text}])
}

#[tokio::test]
async fn the_official_client_verifies_a_run_and_resumes_its_interrupt() {
    let url = serve(server(Duration::ZERO)).await;
    let out = node(
        "client.mjs",
        &json!({"url": format!("{url}/agent"), "threadId": "t-approve", "messages": user("email the team"),
                "steps": [{"runId": "r1"}, {"runId": "r2", "resume": {"payload": true}}]}),
    )
    .await;
    let [first, second] = out["runs"].as_array().unwrap().as_slice() else {
        panic!("{out}")
    };
    assert!(first.get("error").is_none(), "{first}");
    let interrupt = &first["pendingInterrupts"][0];
    assert_eq!(interrupt["reason"], "tool_approval", "{first}");
    let call_id = interrupt["toolCallId"].as_str().unwrap();
    // The client built the assistant's tool call from the streamed events.
    let calls: Vec<&Value> = first["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["toolCalls"].as_array())
        .flatten()
        .collect();
    assert_eq!(calls.len(), 1, "{first}");
    assert_eq!(calls[0]["id"], call_id);
    assert_eq!(
        serde_json::from_str::<Value>(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap(),
        json!({"to": "team@example.com"})
    );

    assert!(second.get("error").is_none(), "{second}");
    assert_eq!(second["result"], "Result: sent to team@example.com");
    assert_eq!(second["pendingInterrupts"], json!([]));
    let messages = second["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["user", "assistant", "tool", "assistant"],
        "{second}"
    );
    assert_eq!(messages[2]["toolCallId"], call_id);
    assert_eq!(messages[2]["content"], "sent to team@example.com");
    assert_eq!(messages[3]["content"], "Result: sent to team@example.com");
    // The state the client patched together from snapshot and deltas.
    assert_eq!(
        second["state"]["answer"],
        "Result: sent to team@example.com"
    );
    assert_eq!(second["state"]["observations"][0]["call_id"], call_id);
}

#[tokio::test]
async fn a_client_tool_call_pauses_the_run_and_the_clients_result_resumes_it() {
    let url = serve(server(Duration::ZERO)).await;
    let weather = json!([{"name": "weather", "description": "Weather by city",
                          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    let out = node(
        "client.mjs",
        &json!({"url": format!("{url}/agent"), "threadId": "t-tool", "messages": user("weather in Oslo?"),
                "steps": [{"runId": "r1", "tools": weather}, {"runId": "r2", "tools": weather, "toolResult": "4 °C"}]}),
    )
    .await;
    let [first, second] = out["runs"].as_array().unwrap().as_slice() else {
        panic!("{out}")
    };
    assert!(first.get("error").is_none(), "{first}");
    let pending = first["pendingToolCallIds"].as_array().unwrap();
    assert_eq!(pending.len(), 1, "{first}");
    assert!(second.get("error").is_none(), "{second}");
    assert_eq!(second["result"], "Result: 4 °C");
    assert_eq!(second["pendingToolCallIds"], json!([]));
}

/// Our own stream with its `TEXT_MESSAGE_START`s left out.
async fn broken(
    State(server): State<Server>,
    body: Bytes,
) -> Sse<impl futures::Stream<Item = Result<SseEvent, std::convert::Infallible>>> {
    let input: RunAgentInput = serde_json::from_slice(&body).unwrap();
    let log = server.start(input, true).await.unwrap();
    let events = log
        .events(0)
        .filter(|(_, json)| futures::future::ready(!json.contains("TEXT_MESSAGE_START")))
        .map(|(_, json)| Ok(SseEvent::default().data(&*json)));
    Sse::new(events)
}

#[tokio::test]
async fn the_clients_verification_rejects_a_broken_stream() {
    let server = server(Duration::ZERO);
    let router = server
        .router()
        .route("/broken", post(broken).with_state(server.clone()));
    let url = serve_router(router).await;
    let out = node(
        "client.mjs",
        &json!({"url": format!("{url}/broken"), "threadId": "t-broken", "messages": user("hello"),
                "steps": [{"runId": "r1"}, {"runId": "r2", "url": format!("{url}/agent")}]}),
    )
    .await;
    let [broken, whole] = out["runs"].as_array().unwrap().as_slice() else {
        panic!("{out}")
    };
    let error = broken["error"]
        .as_str()
        .unwrap_or_else(|| panic!("the broken stream was accepted: {broken}"));
    assert!(error.contains("TEXT_MESSAGE_CONTENT"), "{error}");
    // The same run, whole, passes the same check.
    assert!(whole.get("error").is_none(), "{whole}");
    assert_eq!(whole["result"], "You said: hello");
}
