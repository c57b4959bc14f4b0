//! MCP servers' tools in a toolbox, against the reference server
//! `@modelcontextprotocol/server-everything` (pinned in tests/mcp;
//! `scripts/setup-tests` installs it), over stdio and streamable HTTP.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use statewise::model::ScriptedModel;
use statewise::tool::mcp::McpServer;
use statewise::tool::{ToolContext, ToolError};
use statewise::{Emit, Env, EventKind};

/// The reference server's launcher, installed by `scripts/setup-tests`.
fn server_script() -> PathBuf {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(
        script.exists(),
        "{} is missing: run scripts/setup-tests (it runs npm ci in tests/mcp)",
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
    let toolbox = server.toolbox();
    let names = toolbox.names();
    for expected in ["echo", "get-sum"] {
        assert!(names.iter().any(|n| n == expected), "{names:?}");
    }
    let specs = toolbox.specs();
    let echo = specs.iter().find(|s| s.name == "echo").unwrap();
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

/// tests/mcp/changing_server.mjs: `add_tool` adds `late_tool`.
async fn changing_server() -> McpServer {
    let script = server_script()
        .ancestors()
        .nth(5)
        .unwrap()
        .join("changing_server.mjs");
    let mut command = tokio::process::Command::new("node");
    command.arg(script);
    McpServer::stdio(command)
        .await
        .expect("the changing server starts")
}

#[tokio::test]
async fn a_live_toolbox_offers_the_tools_a_server_adds_after_list_changed() {
    let server = changing_server().await;
    let toolbox = server.toolbox();
    assert_eq!(toolbox.names(), ["add_tool"]);
    let before = toolbox.specs();
    let mut refreshes = server.refreshes();

    // The agent asks for the new tool's addition, then uses it: the model
    // is offered it on the request after the server announced it.
    let model = Arc::new(
        ScriptedModel::new()
            .text(r#"{"tool_calls": [{"name": "add_tool", "arguments": {}}]}"#)
            .text(r#"{"tool_calls": [{"name": "late_tool", "arguments": {"who": "Ada"}}]}"#)
            .text(r#"{"final_answer": "Greeted."}"#),
    );
    let machine = statewise_states::agent(model.clone(), toolbox.clone());
    let mut events = machine.stream(Env::from_user("Add the tool, then greet Ada"));
    let mut observations = Vec::new();
    while let Some(event) = futures::StreamExt::next(&mut events).await {
        if let EventKind::Emitted(Emit::Observation(o)) = &event.kind {
            observations.push(o.clone());
            if o.tool == "add_tool" {
                // The run goes on once the new list is in (a model request
                // racing the notification would not see it yet).
                tokio::time::timeout(Duration::from_secs(10), refreshes.wait_for(|n| *n > 0))
                    .await
                    .expect("the list is read again after list_changed")
                    .unwrap();
            }
        }
    }
    assert_eq!(observations.len(), 2, "{observations:?}");
    assert_eq!(
        observations[1].content,
        json!("Hello, Ada!"),
        "{observations:?}"
    );
    assert_eq!(toolbox.names(), ["add_tool", "late_tool"]);
    assert!(
        !Arc::ptr_eq(&before, &toolbox.specs()),
        "the specs were read again"
    );
    // The first request offered one tool; the second, both.
    let calls = model.calls();
    let offers_late_tool = |n: usize| calls[n].messages[0].content.contains("Greets someone.");
    assert!(
        !offers_late_tool(0) && offers_late_tool(1),
        "{:#?}",
        calls[1].messages[0]
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
    let machine = statewise_states::agent(model.clone(), server.toolbox());
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
