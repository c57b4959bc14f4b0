//! The AG-UI server with real clients: the official TypeScript client
//! (`@ag-ui/client`, pinned in tests/agui/package-lock.json), background
//! runs over HTTP, the WebSocket, schedules, a headless Chromium on the
//! page, and 1,000 concurrent SSE clients.

mod auth;
mod browser;
mod client;
mod load;
mod replicas;
mod runs;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use statewise::model::{ChatRequest, FnModel, ModelError, Reply};
use statewise::server::Server;
use statewise::tool::{Tool, ToolContext, ToolRegistry, Toolbox};
use statewise::Role;

/// Serves `server` on a free port; the address's base URL.
pub(crate) async fn serve(server: Server) -> String {
    serve_router(server.router()).await
}

pub(crate) async fn serve_router(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

/// The folder with the pinned npm packages; `scripts/setup-tests` installs them.
pub(crate) fn npm_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/agui");
    assert!(
        dir.join("node_modules/@ag-ui/client").exists(),
        "the AG-UI client is not installed: run scripts/setup-tests (npm ci in tests/agui)"
    );
    dir
}

/// Runs `script` in tests/agui with Node and `arg`, returning its stdout
/// as JSON.
pub(crate) async fn node(script: &str, arg: &Value) -> Value {
    let out = tokio::process::Command::new("node")
        .arg(script)
        .arg(arg.to_string())
        .current_dir(npm_dir())
        .output()
        .await
        .expect("node runs (Node 20 is installed by scripts/setup-tests' caller)");
    assert!(
        out.status.success(),
        "node {script} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "node {script} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// "Sends" an email (needs approval in [`server`]).
pub(crate) struct SendEmail;

#[derive(serde::Deserialize, schemars::JsonSchema)]
pub(crate) struct EmailArgs {
    to: String,
}

impl Tool for SendEmail {
    type Args = EmailArgs;
    type Output = String;
    type Error = std::convert::Infallible;

    fn name(&self) -> &str {
        "send_email"
    }
    fn description(&self) -> &str {
        "Sends an email."
    }
    async fn call(&self, args: EmailArgs, _ctx: ToolContext) -> Result<String, Self::Error> {
        Ok(format!("sent to {}", args.to))
    }
}

/// The last tool result after the question, if any.
fn tool_result(request: &ChatRequest) -> Option<String> {
    request
        .messages
        .iter()
        .rev()
        .take_while(|m| !(m.role == Role::User && m.tool_call_id.is_none()))
        .find(|m| m.role == Role::Tool || m.tool_call_id.is_some())
        .and_then(|m| m.content.lines().last().map(str::to_owned))
}

/// A model that emails for "email", asks the client's `weather` tool for
/// "weather", says a long sentence for "long", and answers from a tool's
/// result once it has one; each chunk after `pace`.
pub(crate) fn model(pace: Duration) -> FnModel {
    FnModel::new("test", move |request: &ChatRequest| -> Result<Reply, ModelError> {
        let question = request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User && m.tool_call_id.is_none())
            .map(|m| m.content.clone())
            .unwrap_or_default();
        let action = match tool_result(request) {
            Some(result) => json!({"final_answer": format!("Result: {result}")}),
            None if question.contains("email") => {
                json!({"tool_calls": [{"name": "send_email", "arguments": {"to": "team@example.com"}}]})
            }
            None if question.contains("weather") => {
                json!({"tool_calls": [{"name": "weather", "arguments": {"city": "Oslo"}}]})
            }
            None if question.contains("long") => {
                json!({"final_answer": "word ".repeat(200).trim_end()})
            }
            None => json!({"final_answer": format!("You said: {question}")}),
        };
        Ok(Reply::text(action.to_string()))
    })
    .paced(pace)
}

/// A server of the stock agent over [`model`], with `send_email` (needs
/// approval) and the request's client tools.
pub(crate) fn server(pace: Duration) -> Server {
    let model = Arc::new(model(pace));
    let registry = Arc::new(ToolRegistry::new().with(SendEmail));
    Server::new(move |input| {
        let tools = Toolbox::new(Arc::clone(&registry))
            .require_approval(["send_email"])
            .with_client_tools(input.client_tools());
        statewise_states::agent(model.clone(), tools)
    })
}

/// The AG-UI events of an SSE body, in order.
pub(crate) fn sse_events(body: &str) -> Vec<(Option<usize>, Value)> {
    body.split("\n\n")
        .filter_map(|frame| {
            let id = frame
                .lines()
                .find_map(|l| l.strip_prefix("id:"))
                .and_then(|v| v.trim().parse().ok());
            let data: String = frame
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            (!data.is_empty()).then(|| (id, serde_json::from_str(&data).unwrap()))
        })
        .collect()
}

pub(crate) fn types(events: &[(Option<usize>, Value)]) -> Vec<String> {
    events
        .iter()
        .map(|(_, e)| e["type"].as_str().unwrap().to_owned())
        .collect()
}

/// A process of the `serve` example, killed when dropped.
pub(crate) struct ServeProcess {
    child: std::process::Child,
    pub(crate) url: String,
}

impl ServeProcess {
    /// Starts `serve` with `args` (give `--port 0`) and reads the address
    /// it prints.
    pub(crate) fn start(args: &[&str]) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(crate::support::example("serve"))
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the serve example starts");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("serving on ")
            .unwrap_or_else(|| panic!("serve printed {line:?}, not its address"))
            .to_owned();
        ServeProcess { child, url }
    }

    /// SIGKILL: no shutdown, nothing flushed.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
