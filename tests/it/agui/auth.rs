//! A server that knows who asks: 401 without valid credentials, 403 for
//! another principal's run on every route and WebSocket message, the
//! official client with a token, a request limit per principal, and a
//! thousand bad requests that leave a good run alone.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use statewise::guard::Principal;
use statewise::server::{ApiKeys, Server};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::runs::input;
use super::{node, serve, server, sse_events, ServeProcess};

const ALICE: &str = "alice-key-0123456789";
const BOB: &str = "bob-key-0123456789";

fn keys() -> ApiKeys {
    ApiKeys::new()
        .key(ALICE, Principal::new("alice").with_scopes(["*"]))
        .key(BOB, Principal::new("bob").with_scopes(["*"]))
}

fn guarded(pace: Duration) -> Server {
    server(pace).with_auth(keys())
}

/// Polls run `run` as `key` until its status is `want`.
async fn wait_for(http: &reqwest::Client, url: &str, key: &str, run: &str, want: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..400 {
        last = http
            .get(format!("{url}/runs/{run}"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if last["status"] == want {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("run {run} never got to {want}: {last}");
}

/// Run `run`'s events, read whole as `key`.
async fn events_as(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    run: &str,
) -> Vec<(Option<usize>, Value)> {
    let body = http
        .get(format!("{url}/runs/{run}/events"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    sse_events(&body)
}

/// A WebSocket to `url` sending `key`, if the server lets it in.
async fn socket(
    url: &str,
    key: Option<&str>,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    tokio_tungstenite::tungstenite::Error,
> {
    let mut request = format!("{}/ws", url.replace("http://", "ws://"))
        .into_client_request()
        .unwrap();
    if let Some(key) = key {
        let value = format!("Bearer {key}").parse().unwrap();
        request.headers_mut().insert("authorization", value);
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(s, _)| s)
}

/// Sends `message` on `ws` and returns the `code` of the `RUN_ERROR` that
/// answers it.
async fn refused_on_socket<S>(ws: &mut S, message: Value) -> String
where
    S: futures::Sink<Message, Error = tokio_tungstenite::tungstenite::Error>
        + futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
        + Unpin,
{
    ws.send(Message::Text(message.to_string().into()))
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("an answer")
        .unwrap()
        .unwrap();
    let event: Value = serde_json::from_str(answer.to_text().unwrap()).unwrap();
    assert_eq!(event["type"], "RUN_ERROR", "{event}");
    event["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn another_principal_gets_403_on_every_route_and_no_credentials_get_401() {
    let url = serve(guarded(Duration::from_millis(2))).await;
    let http = reqwest::Client::new();

    // No credentials, or ones the server does not know: 401 everywhere.
    for key in [None, Some("not-a-key")] {
        let with = |r: reqwest::RequestBuilder| match key {
            Some(k) => r.bearer_auth(k),
            None => r,
        };
        let requests = [
            with(http.post(format!("{url}/agent"))).json(&input("t0", "r0", "hi")),
            with(http.post(format!("{url}/runs"))).json(&input("t0", "r0", "hi")),
            with(http.get(format!("{url}/runs/r0"))),
            with(http.delete(format!("{url}/runs/r0"))),
            with(http.get(format!("{url}/runs/r0/events"))),
        ];
        for request in requests {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401);
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["code"], "unauthorized");
            assert!(!body.to_string().contains("not-a-key"), "{body}");
        }
        match socket(&url, key).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 401)
            }
            other => panic!("the socket opened without credentials: {other:?}"),
        }
    }

    // Alice starts a run that pauses for approval.
    let started = http
        .post(format!("{url}/runs"))
        .bearer_auth(ALICE)
        .json(&input("t-alice", "a-1", "email the team"))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    let paused = wait_for(&http, &url, ALICE, "a-1", "interrupted").await;
    assert_eq!(paused["threadId"], "t-alice");
    let events = events_as(&http, &url, ALICE, "a-1").await;
    let interrupt_id = events.last().unwrap().1["outcome"]["interrupts"][0]["id"].clone();
    let resume = |run: &str| {
        json!({"threadId": "t-alice", "runId": run, "messages": [],
               "resume": [{"interruptId": interrupt_id, "status": "resolved", "payload": true}]})
    };

    // Bob: 403 on each route for Alice's run and thread.
    let requests = [
        http.get(format!("{url}/runs/a-1")),
        http.delete(format!("{url}/runs/a-1")),
        http.get(format!("{url}/runs/a-1/events")),
        http.get(format!("{url}/runs/a-1/events"))
            .header("last-event-id", "0"),
        // Taking over Alice's run id, or resuming her thread's pause.
        http.post(format!("{url}/runs"))
            .json(&input("t-bob", "a-1", "hi")),
        http.post(format!("{url}/agent")).json(&resume("b-1")),
        http.post(format!("{url}/runs")).json(&resume("b-2")),
    ];
    for request in requests {
        let response = request.bearer_auth(BOB).send().await.unwrap();
        assert_eq!(response.status(), 403);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "forbidden");
    }
    let mut ws = socket(&url, Some(BOB)).await.unwrap();
    for message in [
        json!({"type": "subscribe", "runId": "a-1"}),
        json!({"type": "cancel", "runId": "a-1"}),
        json!({"type": "resume", "threadId": "t-alice", "runId": "b-3",
               "interruptId": interrupt_id, "payload": true}),
        json!({"type": "run", "input": resume("b-4")}),
        json!({"type": "run", "input": input("t-bob", "a-1", "hi")}),
    ] {
        assert_eq!(refused_on_socket(&mut ws, message).await, "forbidden");
    }
    // Bob's own run on the same socket goes through.
    ws.send(Message::Text(
        json!({"type": "run", "input": input("t-bob", "b-5", "hello")})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let first: Value =
        serde_json::from_str(ws.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(first["type"], "RUN_STARTED");

    // Nothing Bob did touched Alice's run: she resumes it and it ends.
    assert_eq!(
        wait_for(&http, &url, ALICE, "a-1", "interrupted").await["status"],
        "interrupted"
    );
    let body = http
        .post(format!("{url}/agent"))
        .bearer_auth(ALICE)
        .json(&resume("a-2"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&body);
    let last = &events.last().unwrap().1;
    assert_eq!(last["result"], "Result: sent to team@example.com", "{last}");
    // And Alice cannot read Bob's.
    let response = http
        .get(format!("{url}/runs/b-5"))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn the_official_client_runs_and_resumes_with_a_token() {
    let url = serve(guarded(Duration::ZERO)).await;
    let scenario = |headers: Value| {
        json!({"url": format!("{url}/agent"), "threadId": "t-client",
               "messages": [{"id": "u1", "role": "user", "content": "email the team"}],
               "headers": headers,
               "steps": [{"runId": "c1"}, {"runId": "c2", "resume": {"payload": true}}]})
    };
    let out = node(
        "client.mjs",
        &scenario(json!({"Authorization": format!("Bearer {ALICE}")})),
    )
    .await;
    let runs = out["runs"].as_array().unwrap();
    assert!(runs.iter().all(|r| r.get("error").is_none()), "{out}");
    assert_eq!(runs[1]["result"], "Result: sent to team@example.com");
    // Without the token the client's request is refused.
    let out = node("client.mjs", &scenario(json!({}))).await;
    let error = out["runs"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("401"), "{out}");
}

#[tokio::test]
async fn a_principal_over_its_request_limit_gets_429_and_others_do_not() {
    let url = serve(guarded(Duration::ZERO).rate_limit(3)).await;
    let http = reqwest::Client::new();
    let get = |key: &str| http.get(format!("{url}/runs/none")).bearer_auth(key).send();
    for _ in 0..3 {
        assert_eq!(get(ALICE).await.unwrap().status(), 404);
    }
    let limited = get(ALICE).await.unwrap();
    assert_eq!(limited.status(), 429);
    let wait: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait));
    assert_eq!(get(BOB).await.unwrap().status(), 404);
}

#[tokio::test]
async fn a_thousand_bad_requests_get_4xx_and_a_run_under_way_finishes() {
    let url = serve(guarded(Duration::from_millis(10)).max_body(64 * 1024)).await;
    let http = reqwest::Client::new();
    // Alice's run, under way while the bad requests come in.
    let started = http
        .post(format!("{url}/runs"))
        .bearer_auth(ALICE)
        .json(&input("t-good", "good-1", "say something long"))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    wait_for(&http, &url, ALICE, "good-1", "running").await;

    let oversized = "x".repeat(200 * 1024);
    let bad = |i: usize| -> reqwest::RequestBuilder {
        let agent = http.post(format!("{url}/agent")).bearer_auth(BOB);
        let raw = |body: String| {
            http.post(format!("{url}/runs"))
                .bearer_auth(BOB)
                .header("content-type", "application/json")
                .body(body)
        };
        match i % 12 {
            0 => raw("{\"threadId\": ".into()),
            1 => raw(json!({"threadId": 7, "runId": []}).to_string()),
            2 => raw(
                json!({"threadId": "t", "runId": format!("u{i}"), "surprise": true}).to_string(),
            ),
            3 => raw(format!(
                "{{\"threadId\": \"t\", \"runId\": \"big\", \"state\": \"{oversized}\"}}"
            )),
            4 => agent.json(
                &json!({"threadId": format!("none-{i}"), "runId": format!("n{i}"), "messages": [],
                                    "resume": [{"interruptId": "nothing", "status": "resolved"}]}),
            ),
            5 => http.get(format!("{url}/runs/missing-{i}")).bearer_auth(BOB),
            6 => http.delete(format!("{url}/runs/good-1")).bearer_auth(BOB),
            7 => http
                .get(format!("{url}/runs/good-1/events"))
                .bearer_auth(BOB),
            8 => http
                .post(format!("{url}/agent"))
                .bearer_auth("forged-key")
                .json(&input("t", "x", "hi")),
            9 => http
                .post(format!("{url}/agent"))
                .json(&input("t", "x", "hi")),
            10 => raw("\u{0}\u{1}binary".into()),
            _ => agent
                .header("content-type", "application/json")
                .body("[1, 2, 3]"),
        }
    };
    let statuses: Vec<u16> = futures::stream::iter(0..1_000)
        .map(|i| {
            let request = bad(i);
            async move { (i, request.send().await.map(|r| r.status().as_u16())) }
        })
        .buffer_unordered(32)
        .map(|(i, status)| match status {
            Ok(s) => s,
            Err(e) => panic!("request {i} got no answer: {e}"),
        })
        .collect()
        .await;
    assert_eq!(statuses.len(), 1_000);
    let outside: Vec<&u16> = statuses
        .iter()
        .filter(|s| !(400..500).contains(*s))
        .collect();
    assert!(outside.is_empty(), "answers outside 4xx: {outside:?}");
    for expected in [400, 401, 403, 404, 409, 413] {
        assert!(
            statuses.contains(&expected),
            "no {expected} among {statuses:?}"
        );
    }
    // The server is healthy, and Alice's run finished whole.
    let done = wait_for(&http, &url, ALICE, "good-1", "finished").await;
    let events = events_as(&http, &url, ALICE, "good-1").await;
    assert_eq!(events.len() as u64, done["events"].as_u64().unwrap());
    assert_eq!(events.last().unwrap().1["type"], "RUN_FINISHED");
    let fresh = http
        .post(format!("{url}/agent"))
        .bearer_auth(ALICE)
        .json(&input("t-after", "after-1", "hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 200);
    assert!(fresh.text().await.unwrap().contains("RUN_FINISHED"));
}

#[tokio::test]
async fn the_serve_example_with_api_keys_refuses_requests_without_one() {
    let serve = ServeProcess::start(&["--port", "0", "--api-key", ALICE, "--api-key", BOB]);
    let url = &serve.url;
    let http = reqwest::Client::new();
    let ask = |key: Option<&str>, run: &str| {
        let request = http
            .post(format!("{url}/agent"))
            .json(&input("t-serve", run, "hello"));
        match key {
            Some(k) => request.bearer_auth(k),
            None => request,
        }
        .send()
    };
    assert_eq!(ask(None, "s-0").await.unwrap().status(), 401);
    assert_eq!(ask(Some("guess"), "s-0").await.unwrap().status(), 401);
    let answered = ask(Some(ALICE), "s-1").await.unwrap();
    assert_eq!(answered.status(), 200);
    assert!(answered.text().await.unwrap().contains("RUN_FINISHED"));
    // Each key is its own principal.
    let status = |key: &str| http.get(format!("{url}/runs/s-1")).bearer_auth(key).send();
    assert_eq!(status(ALICE).await.unwrap().status(), 200);
    assert_eq!(status(BOB).await.unwrap().status(), 403);
}

/// An input check that takes its time, as one asking a model would, and
/// trips on "forbidden".
struct SlowCheck;

impl statewise::guard::InputGuardrail for SlowCheck {
    fn name(&self) -> &str {
        "slow_check"
    }
    fn check<'a>(
        &'a self,
        input: &'a str,
    ) -> futures::future::BoxFuture<'a, statewise::guard::Check> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            match input.contains("forbidden") {
                true => statewise::guard::Check::Trip("a forbidden topic".into()),
                false => statewise::guard::Check::Pass,
            }
        })
    }
}

#[tokio::test]
async fn a_tripped_input_guardrail_sends_the_client_no_answer_text() {
    use statewise::guard::Guardrails;
    // The stand-in model streams a long answer, a word every 10 ms: it is
    // well under way when the check trips.
    let model = Arc::new(super::model(Duration::from_millis(10)));
    let url = serve(Server::new(move |_| {
        statewise_states::agent(model.clone(), statewise::tool::Toolbox::default())
            .with_guardrails(Guardrails::new().input(SlowCheck))
    }))
    .await;
    let http = reqwest::Client::new();
    let ask = |text: &str| {
        http.post(format!("{url}/agent"))
            .json(&input("t-g", "g-1", text))
            .send()
    };
    let body = ask("say something long and forbidden")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&body);
    let kinds: Vec<&str> = events
        .iter()
        .map(|(_, e)| e["type"].as_str().unwrap())
        .collect();
    assert!(
        !kinds
            .iter()
            .any(|k| k.starts_with("TEXT_MESSAGE") || k.starts_with("REASONING")),
        "{kinds:?}"
    );
    let last = &events.last().unwrap().1;
    assert_eq!(
        (last["type"].as_str(), last["code"].as_str()),
        (Some("RUN_ERROR"), Some("guardrail")),
        "{last}"
    );
    // The same agent answers a harmless question in full.
    let body = ask("say something long")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("TEXT_MESSAGE_CONTENT") && body.contains("RUN_FINISHED"));
}
