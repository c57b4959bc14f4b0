//! A small HTTP/1.1 server on 127.0.0.1 for provider tests: it records
//! every request and answers each with whatever its handler returns,
//! including streams that are cut without their end.

#![allow(dead_code)] // each test file uses part of it

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("request body is JSON")
    }
}

/// How the server answers one request.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Written one after another, each flushed; chunked encoding when streaming.
    pub pieces: Vec<String>,
    pub streaming: bool,
    /// Pause before each piece.
    pub delay: Duration,
    /// Drop the connection after this many pieces, without ending the body.
    pub cut_after: Option<usize>,
    /// Pause this long before the given piece.
    pub stall: Option<(usize, Duration)>,
    /// Where the instant each piece went out is written.
    pub sent: Option<Arc<Mutex<Vec<tokio::time::Instant>>>>,
}

impl Response {
    /// A whole body with a content length.
    pub fn body(status: u16, content_type: &str, body: impl Into<String>) -> Self {
        Response {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            pieces: vec![body.into()],
            streaming: false,
            delay: Duration::ZERO,
            cut_after: None,
            stall: None,
            sent: None,
        }
    }

    pub fn json(status: u16, body: impl Into<String>) -> Self {
        Self::body(status, "application/json", body)
    }

    /// An event stream, written in pieces of `piece_len` bytes so that
    /// events straddle the reads of the client.
    pub fn sse(transcript: &str, piece_len: usize) -> Self {
        let bytes = transcript.as_bytes();
        let pieces = bytes
            .chunks(piece_len.max(1))
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        Response {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            pieces,
            streaming: true,
            delay: Duration::ZERO,
            cut_after: None,
            stall: None,
            sent: None,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// An event stream sent one event per piece, `pause` before each, the
    /// instant each went out written to `sent`.
    pub fn sse_events_paced(
        transcript: &str,
        pause: Duration,
        sent: Arc<Mutex<Vec<tokio::time::Instant>>>,
    ) -> Self {
        let pieces = transcript
            .split_inclusive("\n\n")
            .map(str::to_owned)
            .collect();
        Response {
            pieces,
            delay: pause,
            sent: Some(sent),
            ..Self::sse("", 1)
        }
    }

    pub fn cut_after(mut self, pieces: usize) -> Self {
        self.cut_after = Some(pieces);
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn stall_at(mut self, piece: usize, pause: Duration) -> Self {
        self.stall = Some((piece, pause));
        self
    }
}

type Handler = dyn Fn(&Recorded) -> Response + Send + Sync;

pub struct MockServer {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    gets: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockServer {
    /// A server answering every POST with `handler`, and every GET (a
    /// client asking for `/props` or `/v1/models`) with 404, as a server
    /// that has neither does.
    pub async fn start(handler: impl Fn(&Recorded) -> Response + Send + Sync + 'static) -> Self {
        Self::with_gets(handler, |_| {
            Response::json(404, r#"{"error": {"message": "not found"}}"#)
        })
        .await
    }

    /// A server answering POSTs with `handler` and GETs with `gets`.
    pub async fn with_gets(
        handler: impl Fn(&Recorded) -> Response + Send + Sync + 'static,
        gets: impl Fn(&Recorded) -> Response + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let got = Arc::new(Mutex::new(Vec::new()));
        let handlers: Arc<[Box<Handler>; 2]> = Arc::new([Box::new(handler), Box::new(gets)]);
        let recorded = [Arc::clone(&requests), Arc::clone(&got)];
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let handlers = Arc::clone(&handlers);
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let _ = serve(socket, handlers, recorded).await;
                });
            }
        });
        MockServer {
            addr,
            requests,
            gets: got,
            task,
        }
    }

    /// A server answering requests with `responses`, in order (500 after).
    pub async fn script(responses: Vec<Response>) -> Self {
        let queue = Mutex::new(VecDeque::from(responses));
        Self::start(move |_| {
            queue.lock().unwrap().pop_front().unwrap_or_else(|| {
                Response::json(500, r#"{"error": {"message": "mock script exhausted"}}"#)
            })
        })
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The POSTs (model calls) received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// The GETs received so far.
    pub fn gets(&self) -> Vec<Recorded> {
        self.gets.lock().unwrap().clone()
    }
}

async fn serve(
    mut socket: TcpStream,
    handlers: Arc<[Box<Handler>; 2]>,
    recorded: [Arc<Mutex<Vec<Recorded>>>; 2],
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_owned();
    let path = request_line.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
    let request = Recorded {
        method,
        path,
        headers,
        body,
    };
    let route = usize::from(request.method == "GET");
    recorded[route].lock().unwrap().push(request.clone());
    let response = handlers[route](&request);

    let mut head = format!("HTTP/1.1 {} Mock\r\nconnection: close\r\n", response.status);
    for (k, v) in &response.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if response.streaming {
        head.push_str("transfer-encoding: chunked\r\n\r\n");
    } else {
        let len: usize = response.pieces.iter().map(String::len).sum();
        head.push_str(&format!("content-length: {len}\r\n\r\n"));
    }
    socket.write_all(head.as_bytes()).await?;
    for (i, piece) in response.pieces.iter().enumerate() {
        if response.cut_after == Some(i) {
            // Drop the connection mid-body: the client sees a broken stream.
            return Ok(());
        }
        if !response.delay.is_zero() {
            tokio::time::sleep(response.delay).await;
        }
        if let Some((at, pause)) = response.stall {
            if at == i {
                tokio::time::sleep(pause).await;
            }
        }
        if response.streaming {
            socket
                .write_all(format!("{:x}\r\n{piece}\r\n", piece.len()).as_bytes())
                .await?;
        } else {
            socket.write_all(piece.as_bytes()).await?;
        }
        socket.flush().await?;
        if let Some(sent) = &response.sent {
            sent.lock().unwrap().push(tokio::time::Instant::now());
        }
    }
    if response.streaming {
        socket.write_all(b"0\r\n\r\n").await?;
    }
    socket.shutdown().await
}

/// `data: <json>\n\n` for each value: an OpenAI-style event stream body.
pub fn sse_data(events: &[serde_json::Value]) -> String {
    events.iter().map(|e| format!("data: {e}\n\n")).collect()
}

/// The test model's path: `$STATEWISE_MODEL`, else fetched into the cache by
/// `scripts/fetch-model` (idempotent).
pub fn model_path() -> String {
    if let Ok(path) = std::env::var("STATEWISE_MODEL") {
        return path;
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-model");
    let out = std::process::Command::new(script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("scripts/fetch-model runs");
    assert!(out.status.success(), "scripts/fetch-model failed");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// What a mock model says to the stock agent: a calculator call first, the
/// answer once the conversation holds an observation.
pub fn react_reply(request: &Recorded) -> String {
    react_reply_with(request, false)
}

/// [`react_reply`], with the answer as a JSON action or, with `prose`, in
/// plain prose as many models write it after a tool's observation.
pub fn react_reply_with(request: &Recorded, prose: bool) -> String {
    let saw_observation = request.json()["messages"].as_array().is_some_and(|m| {
        m.iter().any(|m| {
            m["content"]
                .as_str()
                .is_some_and(|c| c.contains("Observation from"))
        })
    });
    match (saw_observation, prose) {
        (true, true) => "The final answer is 6 * 7 = 42.".to_owned(),
        (true, false) => serde_json::json!({"final_answer": "6 * 7 = 42"}).to_string(),
        (false, _) => serde_json::json!({"tool_calls": [{"name": "calculator", "arguments": {"expression": "6 * 7"}}]}).to_string(),
    }
}

/// `text` as OpenAI SSE events, one piece per event; complete (finish
/// reason, usage, `[DONE]`) when `usage` is given.
pub fn sse_events(text: &str, usage: Option<statewise::Usage>) -> Vec<String> {
    use serde_json::json;
    let chars: Vec<char> = text.chars().collect();
    let mut out: Vec<String> = chars
        .chunks(8)
        .map(|c| {
            format!(
                "data: {}\n\n",
                json!({"choices": [{"delta": {"content": c.iter().collect::<String>()}}]})
            )
        })
        .collect();
    if let Some(u) = usage {
        out.push(format!(
            "data: {}\n\n",
            json!({"choices": [{"delta": {}, "finish_reason": "stop"}]})
        ));
        out.push(format!(
            "data: {}\n\n",
            json!({"choices": [], "usage": {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens}})
        ));
        out.push("data: [DONE]\n\n".into());
    }
    out
}

/// A streamed response made of `pieces`, each after `pause`.
pub fn stream_pieces(pieces: Vec<String>, pause: Duration) -> Response {
    let mut r = Response::sse("", 1).delay(pause);
    r.pieces = pieces;
    r
}

/// Builds the example `name` (a no-op when `cargo test` already did) and
/// returns its path.
pub fn example(name: &str) -> std::path::PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // The features this test binary was built with: under `cargo test
    // --features ...` the examples are already built with them, so this
    // build has nothing to do.
    let features: Vec<&str> = [
        ("local", cfg!(feature = "local")),
        ("tiktoken", cfg!(feature = "tiktoken")),
        ("mcp", cfg!(feature = "mcp")),
        ("redis", cfg!(feature = "redis")),
        ("postgres", cfg!(feature = "postgres")),
        ("otel", cfg!(feature = "otel")),
        ("prometheus", cfg!(feature = "prometheus")),
        ("server", cfg!(feature = "server")),
        ("jwt", cfg!(feature = "jwt")),
        ("memory-local", cfg!(feature = "memory-local")),
        ("memory-ann", cfg!(feature = "memory-ann")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    let status = std::process::Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--example",
            name,
            "--features",
            &features.join(","),
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the {name} example failed");
    // target/<profile>/deps/<test> -> target/<profile>/examples/<name>
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name)
}

/// A new empty folder for this call, named after `name`.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    // Unique per call: two tests asking for the same name run at once (the
    // two batch vendors once emptied each other's folder).
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("statewise-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Token counts of a call.
pub fn usage(prompt: u64, completion: u64) -> statewise::Usage {
    statewise::Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        ..statewise::Usage::default()
    }
}

/// A complete streamed OpenAI reply carrying `text`.
pub fn streamed_reply(text: &str, usage: statewise::Usage) -> Response {
    stream_pieces(sse_events(text, Some(usage)), Duration::ZERO)
}

/// The ReAct reply to `request` ([`react_reply`]), streamed.
pub fn react_response(request: &Recorded, usage: statewise::Usage) -> Response {
    streamed_reply(&react_reply(request), usage)
}

/// The recorded wire transcript `name` of `provider` (tests/transcripts/).
pub fn transcript(provider: &str, name: &str) -> String {
    let path = format!(
        "{}/tests/transcripts/{provider}/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The answer's text as a caller saw it stream: the run's answer pieces,
/// from whichever state wrote them.
pub fn answer_text(events: &[statewise::Event]) -> String {
    answer_pieces(events).concat()
}

/// The run's answer pieces ([`Emit::AnswerToken`](statewise::Emit)s
/// outside fork branches), in the order they streamed.
pub fn answer_pieces(events: &[statewise::Event]) -> Vec<&str> {
    use statewise::{Emit, EventKind};
    events
        .iter()
        .filter(|e| e.branch.is_none())
        .filter_map(|e| match &e.kind {
            EventKind::Emitted(Emit::AnswerToken(t)) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}
