//! The mock OpenAI-compatible server the load runs talk to, in a process
//! of its own (`load serve PORT LATENCY_MS`) so its CPU and memory are not
//! the client's. It answers a first call with a calculator tool call and a
//! call that carries the observation with the final answer, as SSE events
//! of 12 bytes each after `latency`. hyper's own server, so the same mock
//! speaks HTTP/1.1 and HTTP/2.

use std::process::{Child, Command};
use std::time::Duration;

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

/// Serves on 127.0.0.1:`port` until killed: HTTP/1.1 with keep-alive, and
/// HTTP/2 for clients that speak it with prior knowledge.
pub async fn serve(port: u16, latency: Duration) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_reuseaddr(true).expect("reuseaddr");
    socket
        .bind(([127, 0, 0, 1], port).into())
        .expect("bind 127.0.0.1");
    let listener = socket.listen(8192).expect("listen");
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Every run in flight may share one connection, and all their request
    // bodies (about 2 KB each) fit its window at once: with the default
    // window the bodies arrive as many small DATA frames, which h2 takes
    // for an attack (GOAWAY, ENHANCE_YOUR_CALM).
    builder
        .http2()
        .max_concurrent_streams(100_000)
        .initial_connection_window_size(64 << 20);
    loop {
        if let Ok((stream, _)) = listener.accept().await {
            let builder = builder.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |r| answer(r, latency));
                let served = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                if let Err(e) = served {
                    eprintln!("mock: a connection failed: {e:?}");
                }
            });
        }
    }
}

/// A tool call first; the final answer once the request carries the
/// observation. The whole SSE body is sent after `latency`.
async fn answer(
    request: Request<hyper::body::Incoming>,
    latency: Duration,
) -> Result<Response<Full<Bytes>>, Infallible> {
    // The window lookup (`/props`, `/v1/models`): none here, said at once,
    // as a server without them does (answered after `latency`, it had put
    // two seconds on the first call of every cold client).
    if request.method() == hyper::Method::GET {
        return Ok(Response::builder()
            .status(404)
            .body(Full::new(Bytes::new()))
            .expect("a valid response"));
    }
    let body = match request.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let observed = body.windows(16).any(|w| w == b"Observation from");
    tokio::time::sleep(latency).await;
    let text = if observed {
        r#"{"final_answer": "6 * 7 = 42"}"#
    } else {
        r#"{"tool_calls": [{"name": "calculator", "arguments": {"expression": "6 * 7"}}]}"#
    };
    let mut out = String::new();
    for piece in text.as_bytes().chunks(12) {
        let piece = String::from_utf8_lossy(piece);
        out.push_str(&format!(
            "data: {}\n\n",
            serde_json::json!({"choices": [{"delta": {"content": piece}}]})
        ));
    }
    out.push_str("data: {\"choices\": [{\"delta\": {}, \"finish_reason\": \"stop\"}]}\n\n");
    out.push_str("data: {\"choices\": [], \"usage\": {\"prompt_tokens\": 120, \"completion_tokens\": 20}}\n\n");
    out.push_str("data: [DONE]\n\n");
    Ok(Response::builder()
        .header("content-type", "text/event-stream")
        .body(Full::new(Bytes::from(out)))
        .expect("a valid response"))
}

pub struct Server {
    child: Child,
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn start_server(latency_ms: u64) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["serve", &port.to_string(), &latency_ms.to_string()])
        .spawn()
        .expect("the mock server starts");
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Server {
        child,
        url: format!("http://127.0.0.1:{port}/v1"),
    }
}
