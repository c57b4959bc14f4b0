//! MCP servers' tools in a toolbox, against the reference server
//! `@modelcontextprotocol/server-everything` (pinned in tests/mcp;
//! `scripts/setup` installs it), over stdio and streamable HTTP.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use statewise::model::ScriptedModel;
use statewise::tool::mcp::McpServer;
use statewise::tool::{DynTool, ToolContext, ToolError, Toolbox};
use statewise::{Emit, Env, EventKind};

/// The reference server's launcher, installed by `scripts/setup`.
fn server_script() -> PathBuf {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(
        script.exists(),
        "{} is missing: run scripts/setup (it runs npm ci in tests/mcp)",
        script.display()
    );
    script
}

async fn stdio_server() -> McpServer {
    let mut command = tokio::process::Command::new("node");
    command.arg(server_script()).arg("stdio");
    McpServer::stdio(command)
        .await
        .expect("the reference server starts")
}

/// The reference server on streamable HTTP on a free port, stopped when
/// dropped.
struct HttpServer {
    child: tokio::process::Child,
    url: String,
}

impl HttpServer {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = tokio::process::Command::new("node")
            .arg(server_script())
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts");
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the server did not listen"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        HttpServer {
            child,
            url: format!("http://127.0.0.1:{port}/mcp"),
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Lists the server's tools and calls a few, as the toolbox does.
async fn exercise(server: &McpServer) {
    let toolbox = Toolbox::new(server.registry().await.unwrap());
    let names = toolbox.names();
    for expected in ["echo", "get-sum"] {
        assert!(names.iter().any(|n| n == expected), "{names:?}");
    }
    let echo = toolbox.specs().iter().find(|s| s.name == "echo").unwrap();
    assert_eq!(echo.parameters["required"], json!(["message"]));
    let ctx = ToolContext::default;
    let reply = toolbox
        .call("echo", json!({"message": "hi there"}), ctx())
        .await
        .unwrap();
    assert_eq!(reply, json!("Echo: hi there"));
    let sum = toolbox
        .call("get-sum", json!({"a": 2, "b": 3}), ctx())
        .await
        .unwrap();
    assert!(sum.to_string().contains('5'), "{sum}");
    // The server's own schema is checked before anything is sent.
    match toolbox
        .call("get-sum", json!({"a": "two", "b": 3}), ctx())
        .await
    {
        Err(ToolError::InvalidArguments { field, .. }) => assert_eq!(field.as_deref(), Some("a")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_mcp_server_over_stdio_lists_its_tools_and_answers_calls() {
    exercise(&stdio_server().await).await;
}

#[tokio::test]
async fn an_mcp_server_over_streamable_http_lists_its_tools_and_answers_calls() {
    let http = HttpServer::start().await;
    let server = McpServer::http(&http.url).await.unwrap();
    exercise(&server).await;
}

#[tokio::test]
async fn the_server_saying_its_tool_list_changed_is_heard_and_the_list_has_the_new_tools() {
    let server = stdio_server().await;
    let mut changes = server.changes();
    // The reference server adds tools once the client is initialized and
    // says so with notifications/tools/list_changed.
    tokio::time::timeout(Duration::from_secs(10), changes.wait_for(|n| *n > 0))
        .await
        .expect("a list_changed notification")
        .unwrap();
    let names: Vec<String> = server
        .tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name().to_owned())
        .collect();
    assert!(
        names.iter().any(|n| n == "simulate-research-query"),
        "{names:?}"
    );
}

#[tokio::test]
async fn the_stock_agent_calls_an_mcp_tool() {
    let server = stdio_server().await;
    let model = Arc::new(
        ScriptedModel::new()
            .text(r#"{"tool_calls": [{"name": "echo", "arguments": {"message": "ping"}}]}"#)
            .text(r#"{"final_answer": "The server said ping back."}"#),
    );
    let machine = statewise_states::agent(
        model.clone(),
        Toolbox::new(server.registry().await.unwrap()),
    );
    let events: Vec<_> =
        futures::StreamExt::collect(machine.stream(Env::from_user("Echo ping"))).await;
    let observation = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Emitted(Emit::Observation(o)) => Some(o.clone()),
            _ => None,
        })
        .expect("the tool ran");
    assert!(!observation.is_error, "{}", observation.render());
    assert_eq!(observation.content, json!("Echo: ping"));
    // The model saw the server's reply before answering.
    let second = &model.calls()[1];
    assert!(second
        .messages
        .iter()
        .any(|m| m.content.contains("Echo: ping")));
    assert_eq!(
        crate::support::answer_text(&events),
        "The server said ping back."
    );
}
