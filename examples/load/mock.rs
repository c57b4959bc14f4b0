//! The mock OpenAI-compatible server the load runs talk to, in a process
//! of its own (`load serve PORT LATENCY_MS`) so its CPU and memory are not
//! the client's. It answers a first call with a calculator tool call and a
//! call that carries the observation with the final answer, streamed in
//! 12-byte pieces after `latency`.

use std::process::{Child, Command};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

pub async fn serve(port: u16, latency: Duration) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_reuseaddr(true).expect("reuseaddr");
    socket
        .bind(([127, 0, 0, 1], port).into())
        .expect("bind 127.0.0.1");
    let listener = socket.listen(8192).expect("listen");
    loop {
        if let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(connection(stream, latency));
        }
    }
}

/// Serves requests on one kept-alive connection until the client closes it.
async fn connection(stream: tokio::net::TcpStream, latency: Duration) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = String::new();
    loop {
        let mut length = 0usize;
        loop {
            line.clear();
            if read.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        read.read_exact(&mut body).await?;
        let observed = body.windows(16).any(|w| w == b"Observation from");
        tokio::time::sleep(latency).await;
        let text = if observed {
            r#"{"final_answer": "6 * 7 = 42"}"#
        } else {
            r#"{"tool_calls": [{"name": "calculator", "arguments": {"expression": "6 * 7"}}]}"#
        };
        let mut out = String::from("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n");
        let mut chunk = |data: String| out.push_str(&format!("{:x}\r\n{data}\r\n", data.len()));
        for piece in text.as_bytes().chunks(12) {
            let piece = String::from_utf8_lossy(piece);
            chunk(format!(
                "data: {}\n\n",
                serde_json::json!({"choices": [{"delta": {"content": piece}}]})
            ));
        }
        chunk("data: {\"choices\": [{\"delta\": {}, \"finish_reason\": \"stop\"}]}\n\n".into());
        chunk("data: {\"choices\": [], \"usage\": {\"prompt_tokens\": 120, \"completion_tokens\": 20}}\n\n".into());
        chunk("data: [DONE]\n\n".into());
        out.push_str("0\r\n\r\n");
        write.write_all(out.as_bytes()).await?;
    }
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
