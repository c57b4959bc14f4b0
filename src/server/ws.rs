//! The WebSocket route: the same AG-UI events as the SSE routes, one JSON
//! text frame each, and control messages in.
//!
//! In: `{"type": "run", "input": RunAgentInput}` starts a run (with
//! `resume` entries, it resumes one); `{"type": "resume", "threadId",
//! "runId", "interruptId", "payload"}` is the short form of a resume;
//! `{"type": "cancel", "runId"}` cancels a run; `{"type": "subscribe",
//! "runId", "after"?}` reads a run started elsewhere. A message that
//! cannot be followed is answered with a `RUN_ERROR` naming why. Runs
//! started on the socket are direct runs: with the default setting they
//! stop when the socket closes.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{Server, ServerError};
use crate::agui::{AgUiEvent, ResumeEntry, ResumeStatus, RunAgentInput};
use crate::guard::Principal;

/// A control message a client sends on the socket.
#[derive(Debug, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
enum Control {
    Run {
        input: Box<RunAgentInput>,
    },
    Resume {
        thread_id: String,
        run_id: String,
        interrupt_id: String,
        #[serde(default)]
        payload: Option<serde_json::Value>,
    },
    Cancel {
        run_id: String,
    },
    Subscribe {
        run_id: String,
        #[serde(default)]
        after: Option<usize>,
    },
}

/// Upgrades a request whose credentials let it in: the socket acts for
/// its principal from then on (a browser cannot set headers on a
/// WebSocket, so a page behind auth uses the HTTP routes).
pub(super) async fn upgrade(
    State(server): State<Server>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, ServerError> {
    let caller = server.caller(&headers).await?;
    Ok(ws.on_upgrade(move |socket| session(server, socket, caller)))
}

async fn session(server: Server, socket: WebSocket, caller: Option<Principal>) {
    let (mut sink, mut incoming) = socket.split();
    let (tx, mut rx) = mpsc::channel::<String>(256);
    // Each run's events are forwarded by a task of this set; closing the
    // socket drops the set, and with it the runs' readers.
    let mut forwarding = JoinSet::new();
    loop {
        tokio::select! {
            message = incoming.next() => {
                let Some(Ok(message)) = message else { break };
                let text = match message {
                    Message::Text(text) => text,
                    Message::Close(_) => break,
                    _ => continue,
                };
                if let Err(e) = follow(&server, caller.as_ref(), text.as_str(), &tx, &mut forwarding).await {
                    let error = AgUiEvent::RunError { message: e.to_string(), code: Some(e.code().to_owned()), usage: None };
                    let _ = tx.send(serde_json::to_string(&error).unwrap_or_default()).await;
                }
            }
            Some(out) = rx.recv() => {
                if sink.send(Message::Text(out.into())).await.is_err() {
                    break;
                }
            }
        }
    }
}

async fn follow(
    server: &Server,
    caller: Option<&Principal>,
    text: &str,
    tx: &mpsc::Sender<String>,
    forwarding: &mut JoinSet<()>,
) -> Result<(), ServerError> {
    let control: Control =
        serde_json::from_str(text).map_err(|e| ServerError::BadInput(e.to_string()))?;
    let (log, from) = match control {
        Control::Run { input } => (
            server
                .start_as(
                    *input,
                    server.direct_stops_when_unread,
                    false,
                    caller.cloned(),
                )
                .await?,
            0,
        ),
        Control::Resume {
            thread_id,
            run_id,
            interrupt_id,
            payload,
        } => {
            let input = RunAgentInput {
                thread_id,
                run_id,
                resume: vec![ResumeEntry {
                    interrupt_id,
                    status: ResumeStatus::Resolved,
                    payload,
                }],
                ..RunAgentInput::default()
            };
            let stop = server.direct_stops_when_unread;
            (
                server.start_as(input, stop, false, caller.cloned()).await?,
                0,
            )
        }
        Control::Cancel { run_id } => {
            server.cancel_for(&run_id, caller).await?;
            return Ok(());
        }
        Control::Subscribe { run_id, after } => (
            server.run_for(&run_id, caller).await?,
            after.map_or(0, |a| a + 1),
        ),
    };
    let tx = tx.clone();
    forwarding.spawn(async move {
        let mut events = std::pin::pin!(log.events(from));
        while let Some((_, json)) = events.next().await {
            if tx.send(json.to_string()).await.is_err() {
                break;
            }
        }
    });
    Ok(())
}
