//! The answer streams live with native tool calling: OpenAI chat
//! completions and Anthropic messages, replayed from recorded wire
//! transcripts one event at a time on a paused clock. A reply's text is
//! passed on the instant its bytes arrive; text before a tool call is the
//! model's message before the call, shown once, never as the answer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use statewise::model::{Anthropic, OpenAi, SharedModel};
use statewise::tool::{ToolRegistry, Toolbox};
use statewise::{Emit, Env, Event, EventKind, Role};
use statewise_states::tools::Calculator;
use tokio::time::Instant;

use crate::support::{self, MockServer, Response};

const KEY: &str = "sk-test-0123456789abcdef";
/// Between two events of a reply: long enough that an answer held back
/// until the reply ends would show.
const PAUSE: Duration = Duration::from_secs(1);

type Sent = Arc<Mutex<Vec<Instant>>>;

/// The events of a run of the stock agent against `model`, each with the
/// instant it reached the caller.
async fn run(model: SharedModel) -> Vec<(Instant, Event)> {
    let tools = Toolbox::new(ToolRegistry::new().with(Calculator));
    let machine = statewise_states::agent(model, tools);
    let mut events = machine.stream(Env::from_user("What is 6*7?"));
    let mut seen = Vec::new();
    while let Some(event) = events.next().await {
        seen.push((Instant::now(), event));
    }
    seen
}

/// The answer pieces on the run's main line, with when each arrived.
fn pieces(events: &[(Instant, Event)]) -> Vec<(Instant, String)> {
    events
        .iter()
        .filter(|(_, e)| e.branch.is_none())
        .filter_map(|(at, e)| match &e.kind {
            EventKind::Emitted(Emit::AnswerToken(t)) => Some((*at, t.clone())),
            _ => None,
        })
        .collect()
}

/// The index of the transcript event (one piece each) holding `text`.
fn piece_with(transcript: &str, text: &str) -> usize {
    transcript
        .split_inclusive("\n\n")
        .position(|event| event.contains(text))
        .unwrap_or_else(|| panic!("no event holds {text:?}"))
}

/// What both providers must show, given the two replies' transcripts and
/// when each of their events went out.
fn check(
    events: &[(Instant, Event)],
    (first, first_sent): (&str, &Sent),
    (second, second_sent): (&str, &Sent),
    before_call: &str,
) {
    let answer = "The answer is 4.";
    let pieces = pieces(events);
    let shown: String = pieces.iter().map(|(_, t)| t.as_str()).collect();
    // The message before the call, then the answer: each once.
    assert_eq!(shown, format!("{before_call}{answer}"));
    let Some((_, EventKind::Finished(out))) = events.last().map(|(at, e)| (at, &e.kind)) else {
        panic!("the run did not finish: {:?}", events.last());
    };
    assert_eq!(out.answer.as_deref(), Some(answer));
    // The text before the call stays with the call, as the model wrote it.
    let with_calls = out
        .env
        .messages
        .iter()
        .find(|m| m.role == Role::Assistant && !m.tool_calls.is_empty())
        .expect("the assistant's tool-call message");
    assert_eq!(with_calls.content, before_call);
    // Nothing of the replies' text comes as plain tokens (shown as thinking).
    assert!(
        !events
            .iter()
            .any(|(_, e)| matches!(e.kind, EventKind::Emitted(Emit::Token(_)))),
        "a reply's text came as Emit::Token"
    );
    // The message before the call ends before the call is drafted.
    let draft = events
        .iter()
        .position(|(_, e)| matches!(e.kind, EventKind::Emitted(Emit::ToolCallDraft(_))))
        .expect("a drafted call");
    let last_before = events
        .iter()
        .rposition(|(_, e)| {
            matches!(&e.kind, EventKind::Emitted(Emit::AnswerToken(t)) if before_call.ends_with(t.as_str()))
        })
        .unwrap();
    assert!(last_before < draft);

    // Each reply's first text piece reached the caller the instant its
    // event went out (on the paused clock), seconds before the reply ended.
    let first_sent = first_sent.lock().unwrap().clone();
    let second_sent = second_sent.lock().unwrap().clone();
    let opening = &before_call[..4];
    let at = first_sent[piece_with(first, opening)];
    assert_eq!(pieces[0].0, at, "the message before the call was held back");
    assert!(at + PAUSE < *first_sent.last().unwrap());
    let answer_first = pieces
        .iter()
        .find(|(_, t)| t.starts_with("The"))
        .expect("the answer's first piece");
    let at = second_sent[piece_with(second, "\"The\"")];
    assert_eq!(answer_first.0, at, "the answer was held back");
    assert!(at + PAUSE < *second_sent.last().unwrap());
}

/// A server replying with `first`, then `second`, one event per `PAUSE`,
/// each reply's send instants written to its own `Sent`.
async fn serve(first: &str, second: &str) -> (MockServer, Sent, Sent) {
    let (a, b) = (Sent::default(), Sent::default());
    let server = MockServer::script(vec![
        Response::sse_events_paced(first, PAUSE, a.clone()),
        Response::sse_events_paced(second, PAUSE, b.clone()),
    ])
    .await;
    (server, a, b)
}

#[tokio::test(start_paused = true)]
async fn openai_native_tool_calls_stream_the_answer_live() {
    let first = support::transcript("openai", "text_then_tool_call.sse");
    let second = support::transcript("openai", "text.sse");
    let (server, a, b) = serve(&first, &second).await;
    let model = OpenAi::builder("gpt-4o-mini")
        .base_url(server.url("/v1"))
        .api_key(KEY)
        .native_tools(true)
        .build()
        .unwrap();
    let events = run(Arc::new(model)).await;
    check(&events, (&first, &a), (&second, &b), "Let me calculate.");
}

#[tokio::test(start_paused = true)]
async fn anthropic_native_tool_calls_stream_the_answer_live() {
    let first = support::transcript("anthropic", "tool_use.sse");
    let second = support::transcript("anthropic", "text.sse");
    let (server, a, b) = serve(&first, &second).await;
    let model = Anthropic::builder("claude-sonnet-4-5")
        .base_url(server.url(""))
        .api_key(KEY)
        .build()
        .unwrap();
    let events = run(Arc::new(model)).await;
    check(&events, (&first, &a), (&second, &b), "Let me calculate.");
}
